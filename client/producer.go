package client

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrProducerClosed is returned by a Producer after Close.
var ErrProducerClosed = errors.New("dmq: producer is closed")

// ErrRetriesExhausted is wrapped, together with the last failure, in the error of
// every message a Producer gave up on because its RetryPolicy was spent (see
// Producer). errors.Is finds it, and Code returns the last failure's code
// (Unavailable, DeadlineExceeded or Aborted): the message may or may not be stored,
// and may be sent again with the same client message id.
var ErrRetriesExhausted = errors.New("dmq: retry budget spent")

// PublishResult is the broker's answer for one message.
type PublishResult struct {
	// ID is the message id; for a duplicate, the id of the message stored first.
	ID string
	// Duplicate is true when the broker had already stored a message with
	// the same client message id (a retransmission) and did not store it again.
	Duplicate bool
}

// Producer publishes to one topic over a pipelined stream: messages queued
// with PublishAsync are batched, sent without waiting, and their callbacks
// run as the broker answers. At most MaxInFlight messages are unanswered;
// PublishAsync blocks beyond that.
//
// Every message gets a client message id (unless it has one). In a cluster, a
// stream refused by a node that names the leader is reopened on the leader and
// its messages are sent again at once, without counting an attempt (at most 3
// times in a row).
//
// Retry budget. A failure that may heal (Unavailable: the stream broke, the
// broker is down, stopped answering or has no leader; DeadlineExceeded: the
// stream's batches got no answer for 10 s; Aborted) starts an outage, which
// lasts until the broker stores a message again. An outage counts from the
// moment the broker stopped answering, when it went silent before the failure
// was noticed. During an outage the
// unanswered messages, and those queued meanwhile, are held and sent again
// together, with the same client message ids, after the RetryPolicy's backoff;
// one backoff is waited per resend for all of them, however many batches were in
// flight. The broker's duplicate window drops the copies it already stored and
// answers with the original id (PublishResult.Duplicate). Once the policy is
// spent — Attempts sends failed, or MaxElapsed (about 30 s with DefaultRetry)
// passed since the outage's first failure, whichever comes first — every
// unanswered message, sent, held or queued, fails with ErrRetriesExhausted
// wrapping the last failure. Until the broker answers again, each message
// published after that is sent once: when that send fails, it fails at once
// with its own error (wrapping ErrRetriesExhausted too), and so do the messages
// queued at that moment, so PublishAsync does not block for another budget; the
// first stored message ends the outage and the next one gets the whole budget
// again. Other failures (InvalidArgument, PermissionDenied, NotFound,
// FailedPrecondition, ResourceExhausted...) fail their messages at once: they
// were not stored, unless an earlier attempt of the message failed ambiguously;
// then its error matches ErrOutcomeUnknown, with code Unavailable.
//
// A message that failed with ErrRetriesExhausted (or that Shutdown gave up on)
// may or may not be stored: publishing it again with the same client message id
// (Message.ClientMessageID) is safe within the broker's duplicate window, and
// stores it at most once.
type Producer struct {
	c     *Client
	topic string
	opts  producerOptions
	ids   *idSource
	seq   atomic.Uint64 // orders messages in the resends

	queue chan *pendingPublish
	// failed carries messages back from the streams to the send loop: those of a
	// broken stream, and those the broker answered with an error worth a retry. It
	// has room for every unanswered message, so the receivers never block on it.
	failed chan failure
	// answered counts the messages the broker stored: one stored since the last
	// failure ends the outage.
	answered atomic.Uint64
	slots    chan struct{} // one per unanswered message
	// stopStreams cancels the context of every stream and of a stream being opened:
	// Shutdown gives up.
	stopStreams context.CancelFunc
	stopOnce    sync.Once
	quit        chan struct{} // closed by Shutdown, after mu.stopErr is set
	done        chan struct{}

	mu struct {
		sync.Mutex
		inflight int
		idle     chan struct{} // closed while inflight == 0
		closed   bool
		// stopErr is what the unanswered messages fail with once Shutdown gave up.
		stopErr error
	}
}

type pendingPublish struct {
	msg  *dmqv1.OutgoingMessage
	done func(PublishResult, error)
	seq  uint64
	// redirects counts the NOT_LEADER redirects followed in a row.
	redirects int
	// maybeStored is set once an attempt failed in a way that leaves it open whether
	// the broker stored it: a later refusal then fails it with ErrOutcomeUnknown.
	maybeStored bool
}

// refusal is the error of a message the broker refused with err, which says that this
// attempt stored nothing: not that an earlier one did not.
func (pp *pendingPublish) refusal(err error) error {
	if pp.maybeStored {
		return outcomeUnknown(err)
	}
	return err
}

// failure is messages handed back to the send loop with what they failed with.
// final says the producer gave up on them (it abandoned their stream). since, when
// set, is when the broker stopped answering them: an outage they start counts from
// then (a stream that got no answer is taken for failed seconds later).
type failure struct {
	batch []*pendingPublish
	err   error
	final bool
	since time.Time
}

type producerOptions struct {
	maxInFlight   int
	batchSize     int
	retry         RetryPolicy
	answerTimeout time.Duration
}

// ProducerOption configures NewProducer.
type ProducerOption func(*producerOptions)

// MaxInFlight bounds unanswered messages (default 1000).
func MaxInFlight(n int) ProducerOption { return func(o *producerOptions) { o.maxInFlight = n } }

// BatchSize bounds the messages sent in one request (default 256).
func BatchSize(n int) ProducerOption { return func(o *producerOptions) { o.batchSize = n } }

// ProducerRetry sets how unanswered messages are retransmitted and when the
// producer gives up (default: the client's; see Producer).
func ProducerRetry(r RetryPolicy) ProducerOption { return func(o *producerOptions) { o.retry = r } }

// NewProducer starts a pipelined producer for topic.
func (c *Client) NewProducer(topic string, opts ...ProducerOption) *Producer {
	o := producerOptions{maxInFlight: 1000, batchSize: 256, retry: c.retry, answerTimeout: answerTimeout}
	for _, f := range opts {
		f(&o)
	}
	o.maxInFlight = max(o.maxInFlight, 1)
	o.batchSize = max(o.batchSize, 1)
	o.retry = o.retry.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	p := &Producer{
		c: c, topic: topic, opts: o, ids: newIDSource(),
		queue:       make(chan *pendingPublish, o.maxInFlight),
		failed:      make(chan failure, o.maxInFlight),
		slots:       make(chan struct{}, o.maxInFlight),
		stopStreams: cancel,
		quit:        make(chan struct{}),
		done:        make(chan struct{}),
	}
	p.mu.idle = make(chan struct{})
	close(p.mu.idle)
	c.presence.produce(topic)
	go p.sendLoop(ctx)
	return p
}

// PublishAsync queues m and returns; done is called exactly once, from
// another goroutine, once the broker stored m or the producer gave up (see
// Producer for the retry budget). It blocks while MaxInFlight messages are
// unanswered, until ctx ends.
func (p *Producer) PublishAsync(ctx context.Context, m *Message, done func(PublishResult, error)) error {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-p.quit:
		return ErrProducerClosed
	}
	p.mu.Lock()
	if p.mu.closed {
		p.mu.Unlock()
		<-p.slots
		return ErrProducerClosed
	}
	if p.mu.inflight == 0 {
		p.mu.idle = make(chan struct{})
	}
	p.mu.inflight++
	p.mu.Unlock()
	out := m.outgoing()
	if out.ClientMessageId == "" {
		out.ClientMessageId = p.ids.next()
	}
	p.queue <- &pendingPublish{msg: out, done: done, seq: p.seq.Add(1)}
	return nil
}

// Publish sends m through the pipeline and waits for the broker's answer.
func (p *Producer) Publish(ctx context.Context, m *Message) (PublishResult, error) {
	type outcome struct {
		r   PublishResult
		err error
	}
	ch := make(chan outcome, 1)
	if err := p.PublishAsync(ctx, m, func(r PublishResult, err error) { ch <- outcome{r, err} }); err != nil {
		return PublishResult{}, err
	}
	select {
	case o := <-ch:
		return o.r, o.err
	case <-ctx.Done():
		return PublishResult{}, ctx.Err()
	}
}

// finish runs the callback of one message and frees its slot.
func (p *Producer) finish(pp *pendingPublish, r PublishResult, err error) {
	pp.done(r, err)
	<-p.slots
	p.mu.Lock()
	p.mu.inflight--
	if p.mu.inflight == 0 {
		close(p.mu.idle)
	}
	p.mu.Unlock()
}

// Flush waits until every queued message was answered or given up.
func (p *Producer) Flush(ctx context.Context) error {
	select {
	case <-p.idle():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *Producer) idle() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.idle
}

// Close waits for every queued message to be answered or given up (within the
// retry budget: see Producer), then stops the producer. It is Shutdown without
// a deadline.
func (p *Producer) Close() error {
	return p.Shutdown(context.Background())
}

// Shutdown stops taking messages, waits until every queued message was answered
// or given up, and stops the producer. If ctx ends first, every message still
// unanswered fails at once with ctx's error (it may or may not be stored: see
// Producer), and Shutdown returns that error. Safe to call more than once, also
// concurrently: a later call with a shorter deadline cuts the wait short.
func (p *Producer) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	p.mu.closed = true
	p.mu.Unlock()
	err := p.Flush(ctx)
	p.stopOnce.Do(func() {
		if err != nil {
			p.mu.Lock()
			p.mu.stopErr = err
			p.mu.Unlock()
			p.stopStreams() // a stream being opened or written to lets go
		}
		close(p.quit)
	})
	<-p.done
	return err
}

// sendLoop batches queued messages onto the stream and rides out outages (see
// sender). It wakes on the queue, on messages handed back by the streams and on
// the timers of an outage, and stops on quit: at once when Shutdown found
// everything answered, else after failing what is left.
func (p *Producer) sendLoop(ctx context.Context) {
	defer close(p.done)
	s := &sender{p: p, ctx: ctx}
	defer s.closeStream()
	for {
		select {
		case <-p.quit:
			if err := p.stopped(); err != nil {
				s.abandon(err)
			}
			return
		case pp := <-p.queue:
			batch := []*pendingPublish{pp}
		fill:
			for len(batch) < p.opts.batchSize {
				select {
				case pp := <-p.queue:
					batch = append(batch, pp)
				default:
					break fill
				}
			}
			if s.round != nil {
				// A resend is due: these go with it rather than to a broker that
				// just failed.
				s.held = append(s.held, batch...)
			} else {
				s.send(batch)
			}
		case f := <-p.failed:
			if f.final {
				for _, pp := range f.batch {
					p.finish(pp, PublishResult{}, f.err)
				}
				continue
			}
			s.failedSince(f.batch, f.err, f.since)
		case <-s.roundC():
			s.resend()
		case <-s.deadlineC():
			s.deadline()
		}
	}
}

// stopped returns what Shutdown fails the unanswered messages with once it
// gave up, or nil.
func (p *Producer) stopped() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.stopErr
}

// sender is the state of the send loop, owned by its goroutine: the current
// stream, and the outage being ridden out, if any.
type sender struct {
	p   *Producer
	ctx context.Context // canceled by Shutdown giving up
	ps  *publishStream

	out outage
	// held are the messages waiting for the next resend, due when round fires
	// (nil: none due).
	held  []*pendingPublish
	round *time.Timer
	// giveUp fires when the outage's MaxElapsed is over (nil: no outage).
	giveUp *time.Timer
}

// outage is a failure the producer rides out: from the first failure that may
// heal until the broker stores a message again.
type outage struct {
	since   time.Time // first failure; zero: none
	resends int       // resend rounds so far, those during an election left out
	err     error     // the last failure
	mark    uint64    // Producer.answered at the last failure
	spent   bool      // the budget is spent: one send per message until an answer
	// electing is set when the last failure was a node saying that no leader is
	// known yet: the next round is sent after electionPoll at most, and is not
	// counted in resends.
	electing bool
}

func (s *sender) roundC() <-chan time.Time {
	if s.round == nil {
		return nil
	}
	return s.round.C
}

func (s *sender) deadlineC() <-chan time.Time {
	if s.giveUp == nil {
		return nil
	}
	return s.giveUp.C
}

// over reports whether no outage is under way: none began, or the broker stored a
// message since its last failure.
func (s *sender) over() bool {
	return s.out.since.IsZero() || s.p.answered.Load() != s.out.mark
}

// send transmits a batch on the current stream, opening one if needed. It
// returns the error of a stream that could not be opened (the batch was handled
// as failed with it).
func (s *sender) send(batch []*pendingPublish) error {
	if s.ps == nil || s.ps.broken() {
		if s.ps != nil {
			s.ps.cancel()
			s.ps = nil
		}
		ps, err := s.p.openStream(s.ctx)
		if err != nil {
			s.failed(batch, err)
			return err
		}
		s.ps = ps
	}
	if err := s.ps.send(s.p, batch); err != nil {
		s.failed(batch, err)
	}
	return nil
}

// failed handles messages that failed with err: sent again at once after a
// redirect to the leader, held for the next resend when err may heal and the
// budget allows, failed otherwise.
func (s *sender) failed(batch []*pendingPublish, err error) {
	s.failedSince(batch, err, time.Time{})
}

// failedSince is failed for messages the broker stopped answering at since (zero:
// now).
func (s *sender) failedSince(batch []*pendingPublish, err error, since time.Time) {
	if stop := s.p.stopped(); stop != nil {
		// Shutdown gave up, and canceled the streams: not a failure to retry.
		for _, pp := range batch {
			s.p.finish(pp, PublishResult{}, stop)
		}
		return
	}
	var now, again []*pendingPublish
	redirect := isRedirect(err)
	for _, pp := range batch {
		if redirect && pp.redirects < maxRedirects {
			pp.redirects++
			now = append(now, pp)
			continue
		}
		pp.redirects = 0
		if !retryable(err) {
			s.p.finish(pp, PublishResult{}, pp.refusal(err))
			continue
		}
		pp.maybeStored = true
		again = append(again, pp)
	}
	if len(again) > 0 {
		s.hold(again, err, since)
	}
	if len(now) > 0 {
		s.send(now) // the recursion ends: each message follows maxRedirects at most
	}
}

// hold keeps messages that failed with err, which may heal, for the next resend,
// or fails them when the outage's budget is spent. An outage they start counts from
// since when it is set (the broker stopped answering them then), else from now.
func (s *sender) hold(msgs []*pendingPublish, err error, since time.Time) {
	retry := s.p.opts.retry
	now := time.Now()
	if s.over() {
		if since.IsZero() || since.After(now) {
			since = now
		}
		s.out = outage{since: since}
		s.stopTimers()
		s.giveUp = time.NewTimer(retry.MaxElapsed - now.Sub(since))
	}
	s.out.err, s.out.mark, s.out.electing = err, s.p.answered.Load(), electing(err)
	if !s.out.spent && (s.out.resends+1 >= retry.Attempts || now.Sub(s.out.since) >= retry.MaxElapsed) {
		s.spend()
	}
	if s.out.spent {
		// The queued messages would meet the same broker: they fail alike.
		err = s.exhausted(err)
		for _, pp := range msgs {
			s.p.finish(pp, PublishResult{}, err)
		}
		s.failQueued(err)
		return
	}
	s.held = append(s.held, msgs...)
	if s.round == nil {
		wait := retry.backoff(s.out.resends + 1)
		if s.out.electing {
			wait = min(wait, electionPoll)
		}
		s.round = time.NewTimer(wait)
	}
}

// resend sends the held messages again, oldest first.
func (s *sender) resend() {
	s.round = nil
	if !s.out.electing {
		s.out.resends++
	}
	held := s.held
	s.held = nil
	slices.SortFunc(held, func(a, b *pendingPublish) int { return cmp.Compare(a.seq, b.seq) })
	for len(held) > 0 {
		n := min(len(held), s.p.opts.batchSize)
		batch := held[:n:n]
		held = held[n:]
		if err := s.send(batch); err != nil && len(held) > 0 {
			s.failed(held, err) // no stream: the rest fails alike, without trying
			return
		}
	}
}

// deadline ends the outage when its MaxElapsed is over: the producer gives up,
// unless the broker stored a message since the last failure.
func (s *sender) deadline() {
	s.giveUp = nil
	if !s.over() {
		s.spend()
		return
	}
	if len(s.held) == 0 {
		s.out = outage{}
		return
	}
	// The broker answered, but these failed before it did and wait for their
	// resend: a new outage counts from now.
	s.out = outage{since: time.Now(), err: s.out.err, mark: s.p.answered.Load()}
	s.giveUp = time.NewTimer(s.p.opts.retry.MaxElapsed)
}

// spend gives up on the outage: every unanswered message fails with
// ErrRetriesExhausted and the last failure; the held and queued ones now, those
// on the stream as it hands them back.
func (s *sender) spend() {
	s.out.spent = true
	s.stopTimers()
	err := s.exhausted(s.out.err)
	for _, pp := range s.held {
		s.p.finish(pp, PublishResult{}, err)
	}
	s.held = nil
	s.failQueued(err)
	if s.ps != nil {
		s.ps.abandon(err) // a stream that does not answer within the budget
		s.ps = nil
	}
}

// failQueued fails the messages queued now with err.
func (s *sender) failQueued(err error) {
	for {
		select {
		case pp := <-s.p.queue:
			s.p.finish(pp, PublishResult{}, err)
		default:
			return
		}
	}
}

// exhausted is the error of a message given up on after err, in this outage.
func (s *sender) exhausted(err error) error {
	if errors.Is(err, ErrRetriesExhausted) {
		return err
	}
	return newExhaustedError(err, time.Since(s.out.since))
}

// exhaustedError is the error of a message given up on: the last failure's
// status, its message saying so.
type exhaustedError struct {
	st    *status.Status
	cause error
}

func newExhaustedError(err error, after time.Duration) *exhaustedError {
	p := status.Convert(err).Proto()
	p.Message = fmt.Sprintf("%s (%v after %s)", p.Message, ErrRetriesExhausted, after.Round(time.Millisecond))
	return &exhaustedError{st: status.FromProto(p), cause: err}
}

func (e *exhaustedError) Error() string              { return e.st.Err().Error() }
func (e *exhaustedError) GRPCStatus() *status.Status { return e.st }
func (e *exhaustedError) Is(target error) bool {
	return target == ErrRetriesExhausted || target == ErrOutcomeUnknown
}
func (e *exhaustedError) Unwrap() error { return e.cause }

func (s *sender) stopTimers() {
	if s.round != nil {
		s.round.Stop()
		s.round = nil
	}
	if s.giveUp != nil {
		s.giveUp.Stop()
		s.giveUp = nil
	}
}

// abandon fails every unanswered message with err (Shutdown gave up), waiting
// for the streams to hand back theirs.
func (s *sender) abandon(err error) {
	s.stopTimers()
	if s.ps != nil {
		s.ps.abandon(err)
		s.ps = nil
	}
	for _, pp := range s.held {
		s.p.finish(pp, PublishResult{}, err)
	}
	s.held = nil
	for {
		select {
		case pp := <-s.p.queue:
			s.p.finish(pp, PublishResult{}, err)
		case f := <-s.p.failed:
			for _, pp := range f.batch {
				s.p.finish(pp, PublishResult{}, err)
			}
		case <-s.p.idle():
			return
		}
	}
}

func (s *sender) closeStream() {
	if s.ps != nil {
		s.ps.stream.CloseSend()
		s.ps.cancel()
	}
}

// electionPoll is how soon a stream or call refused by a node that knows no leader
// yet is tried again, whatever the backoff has grown to: an election ends within
// seconds, and a resend backoff of 2 s would follow it up to 2 s late (issue 20:
// publishing resumed up to 7.8 s after a leader's SIGKILL under load). Such rounds do
// not count as attempts: the producer's MaxElapsed bounds them.
const electionPoll = 250 * time.Millisecond

// electing reports whether err is a node's answer that no leader is known yet.
func electing(err error) bool {
	h, notLeader := leaderHint(err)
	return notLeader && h.leader == ""
}

// retryable reports whether a publish that failed with err may succeed
// when sent again with the same client message id.
func retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted:
		return true
	}
	return false
}

// answerTimeout is how long a stream may leave its batches unanswered before the
// producer counts it as failed (DeadlineExceeded) and sends them again on a new one:
// a broker answers a batch once it is stored, within milliseconds to a second, and a
// leader that loses its followers steps down and says so. The router's watchdog finds a
// node that stopped answering altogether sooner (watchdog.go); this catches a node that
// answers its probes but not its publishes. A variable for the tests.
var answerTimeout = 10 * time.Second

// publishStream is one open PublishStream with the batches it awaits.
type publishStream struct {
	stream dmqv1.Broker_PublishStreamClient
	cancel context.CancelFunc
	// silence fires timeout after quiet (see checkSilence).
	silence *time.Timer
	timeout time.Duration // answerTimeout when the stream was opened
	mu      sync.Mutex
	seq     uint64
	await   map[uint64][]*pendingPublish
	// quiet is when the broker last answered or, if later, when the oldest batch it
	// did not answer yet was sent; zero while no batch awaits an answer.
	quiet time.Time
	// silent is set when the stream got no answer for timeout and was canceled for it.
	silent bool
	err    error // set when the stream broke; awaiting batches were handed back
	// abandoned, when set, is what the awaiting batches fail with: the producer
	// gave up on the stream.
	abandoned error
}

func (ps *publishStream) broken() bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.err != nil
}

// abandon ends the stream; its awaiting batches come back failed with err.
func (ps *publishStream) abandon(err error) {
	ps.mu.Lock()
	ps.abandoned = err
	ps.mu.Unlock()
	ps.cancel()
}

func (p *Producer) openStream(ctx context.Context) (*publishStream, error) {
	ctx, cancel := context.WithCancel(ctx)
	stream, err := p.c.api.PublishStream(ctx, withTopic(p.topic))
	if err != nil {
		cancel()
		return nil, err
	}
	ps := &publishStream{stream: stream, cancel: cancel, await: make(map[uint64][]*pendingPublish), timeout: p.opts.answerTimeout}
	ps.mu.Lock() // the timer may fire before ps.silence is set
	ps.silence = time.AfterFunc(ps.timeout, ps.checkSilence)
	ps.mu.Unlock()
	go ps.receive(p)
	return ps, nil
}

// checkSilence cancels the stream when its oldest unanswered batch has waited
// ps.timeout for an answer, else sets its timer again. It runs on the timer.
func (ps *publishStream) checkSilence() {
	ps.mu.Lock()
	if ps.err != nil {
		ps.mu.Unlock()
		return
	}
	wait := ps.timeout
	if !ps.quiet.IsZero() {
		wait -= time.Since(ps.quiet)
	}
	if wait > 0 {
		ps.silence.Reset(wait)
		ps.mu.Unlock()
		return
	}
	ps.silent = true
	ps.mu.Unlock()
	ps.cancel() // receive hands the batches back
}

// send transmits one batch; it returns the stream's error if it already broke
// (the batch was not sent).
func (ps *publishStream) send(p *Producer, batch []*pendingPublish) error {
	req := &dmqv1.PublishRequest{Topic: p.topic, ClientId: p.c.clientID, Messages: make([]*dmqv1.OutgoingMessage, len(batch))}
	for i, pp := range batch {
		req.Messages[i] = pp.msg
	}
	own := append([]*pendingPublish(nil), batch...)
	ps.mu.Lock()
	if ps.err != nil {
		err := ps.err
		ps.mu.Unlock()
		return err
	}
	ps.seq++
	req.Sequence = ps.seq
	if len(ps.await) == 0 {
		ps.quiet = time.Now()
	}
	ps.await[req.Sequence] = own
	ps.mu.Unlock()
	if err := ps.stream.Send(req); err != nil {
		// receive sees the same failure and hands back every awaiting batch.
		ps.cancel()
	}
	return nil
}

// receive matches answers to batches until the stream ends, then hands
// whatever is still awaited back to the send loop, oldest first.
func (ps *publishStream) receive(p *Producer) {
	for {
		resp, err := ps.stream.Recv()
		if err != nil {
			ps.silence.Stop()
			if status.Code(err) == codes.Canceled || errors.Is(err, context.Canceled) || errors.Is(err, io.EOF) {
				err = status.Error(codes.Unavailable, "publish stream closed before the broker answered")
			}
			ps.mu.Lock()
			if ps.silent {
				err = status.Errorf(codes.DeadlineExceeded, "dmq: the broker answered no publish for %v", ps.timeout)
			}
			final := ps.abandoned != nil
			if final {
				err = ps.abandoned
			}
			ps.err = err
			awaiting := ps.await
			ps.await = nil
			since := ps.quiet
			ps.mu.Unlock()
			seqs := make([]uint64, 0, len(awaiting))
			for seq := range awaiting {
				seqs = append(seqs, seq)
			}
			sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
			var back []*pendingPublish
			for _, seq := range seqs {
				back = append(back, awaiting[seq]...)
			}
			if len(back) > 0 {
				p.failed <- failure{batch: back, err: err, final: final, since: since}
			}
			return
		}
		ps.mu.Lock()
		batch := ps.await[resp.Sequence]
		delete(ps.await, resp.Sequence)
		ps.quiet = time.Time{}
		if len(ps.await) > 0 {
			ps.quiet = time.Now()
		}
		ps.mu.Unlock()
		var again []*pendingPublish
		var againErr error
		for i, pp := range batch {
			if i >= len(resp.Results) {
				p.finish(pp, PublishResult{}, status.Error(codes.Internal, "broker answered fewer results than messages sent"))
				continue
			}
			r := resp.Results[i]
			if r.Error != nil {
				err := status.Error(codes.Code(r.Error.Code), r.Error.Message)
				if retryable(err) {
					again, againErr = append(again, pp), err
					continue
				}
				p.finish(pp, PublishResult{}, pp.refusal(err))
				continue
			}
			p.answered.Add(1)
			p.finish(pp, PublishResult{ID: r.Id, Duplicate: r.Duplicate}, nil)
		}
		if len(again) > 0 {
			p.failed <- failure{batch: again, err: againErr}
		}
	}
}
