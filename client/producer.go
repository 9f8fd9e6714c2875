package client

import (
	"context"
	"errors"
	"io"
	"sort"
	"sync"
	"time"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrProducerClosed is returned by a Producer after Close.
var ErrProducerClosed = errors.New("dmq: producer is closed")

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
// Every message gets a client message id (unless it has one). When the
// stream breaks or the broker is unavailable, unanswered messages are sent
// again with the same ids, following the retry policy; the broker's
// duplicate window drops the copies it already stored and answers with the
// original id (PublishResult.Duplicate). In a cluster, a stream refused by a
// node that names the leader is reopened on the leader and its messages are
// sent again at once, without counting an attempt (at most 3 times in a row).
type Producer struct {
	c     *Client
	topic string
	opts  producerOptions
	ids   *idSource

	queue chan *pendingPublish
	// resend carries batches of a broken stream back to the sender. It has
	// room for every unanswered message, so the receiver never blocks on it.
	resend chan []*pendingPublish
	slots  chan struct{} // one per unanswered message
	quit   chan struct{}
	done   chan struct{}

	mu struct {
		sync.Mutex
		inflight int
		idle     chan struct{} // closed while inflight == 0
		closed   bool
	}
}

type pendingPublish struct {
	msg      *dmqv1.OutgoingMessage
	done     func(PublishResult, error)
	attempts int
	lastErr  error
	// redirects counts the NOT_LEADER redirects followed in a row; redirected
	// says the last failure was one, to resend without a backoff.
	redirects  int
	redirected bool
}

type producerOptions struct {
	maxInFlight int
	batchSize   int
	retry       RetryPolicy
}

// ProducerOption configures NewProducer.
type ProducerOption func(*producerOptions)

// MaxInFlight bounds unanswered messages (default 1000).
func MaxInFlight(n int) ProducerOption { return func(o *producerOptions) { o.maxInFlight = n } }

// BatchSize bounds the messages sent in one request (default 256).
func BatchSize(n int) ProducerOption { return func(o *producerOptions) { o.batchSize = n } }

// ProducerRetry sets how unanswered messages are retransmitted (default: the client's).
func ProducerRetry(r RetryPolicy) ProducerOption { return func(o *producerOptions) { o.retry = r } }

// NewProducer starts a pipelined producer for topic.
func (c *Client) NewProducer(topic string, opts ...ProducerOption) *Producer {
	o := producerOptions{maxInFlight: 1000, batchSize: 256, retry: c.retry}
	for _, f := range opts {
		f(&o)
	}
	o.maxInFlight = max(o.maxInFlight, 1)
	o.batchSize = max(o.batchSize, 1)
	p := &Producer{
		c: c, topic: topic, opts: o, ids: newIDSource(),
		queue:  make(chan *pendingPublish, o.maxInFlight),
		resend: make(chan []*pendingPublish, o.maxInFlight),
		slots:  make(chan struct{}, o.maxInFlight),
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	p.mu.idle = make(chan struct{})
	close(p.mu.idle)
	c.presence.produce(topic)
	go p.sendLoop()
	return p
}

// PublishAsync queues m and returns; done is called exactly once, from
// another goroutine, once the broker stored m or the producer gave up.
// It blocks while MaxInFlight messages are unanswered.
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
	p.queue <- &pendingPublish{msg: out, done: done}
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

// Flush waits until every queued message was answered.
func (p *Producer) Flush(ctx context.Context) error {
	p.mu.Lock()
	idle := p.mu.idle
	p.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close waits for every queued message to be answered (or given up), then
// stops the producer.
func (p *Producer) Close() error {
	p.mu.Lock()
	if p.mu.closed {
		p.mu.Unlock()
		return nil
	}
	p.mu.closed = true
	p.mu.Unlock()
	err := p.Flush(context.Background())
	close(p.quit)
	<-p.done
	return err
}

// publishStream is one open PublishStream with the batches it awaits.
type publishStream struct {
	stream dmqv1.Broker_PublishStreamClient
	cancel context.CancelFunc
	mu     sync.Mutex
	seq    uint64
	await  map[uint64][]*pendingPublish
	err    error // set when the stream broke; awaiting batches were handed back
}

// sendLoop batches queued messages onto the stream and re-sends batches of
// a broken stream. It wakes on the queue and on resend, and stops on quit
// (after Close flushed everything).
func (p *Producer) sendLoop() {
	defer close(p.done)
	var ps *publishStream
	defer func() {
		if ps != nil {
			ps.stream.CloseSend()
			ps.cancel()
		}
	}()
	batch := make([]*pendingPublish, 0, p.opts.batchSize)
	for {
		batch = batch[:0]
		select {
		case <-p.quit:
			return
		case again := <-p.resend:
			batch = p.prepareResend(batch, again)
			if len(batch) == 0 {
				continue
			}
		case pp := <-p.queue:
			batch = append(batch, pp)
		fill:
			for len(batch) < p.opts.batchSize {
				select {
				case pp := <-p.queue:
					batch = append(batch, pp)
				default:
					break fill
				}
			}
		}
		if ps == nil || ps.broken() {
			var err error
			if ps, err = p.openStream(); err != nil {
				ps = nil
				p.retryOrFail(batch, err)
				continue
			}
		}
		ps.send(p, batch)
	}
}

// prepareResend waits the backoff of a batch coming back from a broken
// stream (none after a redirect to the leader) and returns it to send.
func (p *Producer) prepareResend(batch, again []*pendingPublish) []*pendingPublish {
	if !again[0].redirected {
		select {
		case <-time.After(p.opts.retry.backoff(again[0].attempts)):
		case <-p.quit:
		}
	}
	return append(batch, again...)
}

// retryOrFail hands a failed batch back for retransmission when err is
// worth retrying and attempts are left, and fails it otherwise. A redirect
// to the leader is not an attempt: the node refused the stream untouched.
func (p *Producer) retryOrFail(batch []*pendingPublish, err error) {
	var now, again []*pendingPublish // resent at once / after a backoff
	redirect := isRedirect(err)
	for _, pp := range batch {
		pp.lastErr = err
		pp.redirected = redirect && pp.redirects < maxRedirects
		if pp.redirected {
			pp.redirects++
			now = append(now, pp)
			continue
		}
		pp.redirects = 0
		pp.attempts++
		if retryable(err) && pp.attempts < p.opts.retry.Attempts {
			again = append(again, pp)
		} else {
			p.finish(pp, PublishResult{}, err)
		}
	}
	for _, b := range [][]*pendingPublish{now, again} {
		if len(b) > 0 {
			p.resend <- b
		}
	}
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

func (ps *publishStream) broken() bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.err != nil
}

func (p *Producer) openStream() (*publishStream, error) {
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := p.c.api.PublishStream(ctx, withTopic(p.topic))
	if err != nil {
		cancel()
		return nil, err
	}
	ps := &publishStream{stream: stream, cancel: cancel, await: make(map[uint64][]*pendingPublish)}
	go ps.receive(p)
	return ps, nil
}

// send transmits one batch; if the stream already broke, the batch goes
// back for retransmission.
func (ps *publishStream) send(p *Producer, batch []*pendingPublish) {
	req := &dmqv1.PublishRequest{Topic: p.topic, ClientId: p.c.clientID, Messages: make([]*dmqv1.OutgoingMessage, len(batch))}
	for i, pp := range batch {
		req.Messages[i] = pp.msg
	}
	own := append([]*pendingPublish(nil), batch...)
	ps.mu.Lock()
	if ps.err != nil {
		err := ps.err
		ps.mu.Unlock()
		p.retryOrFail(own, err)
		return
	}
	ps.seq++
	req.Sequence = ps.seq
	ps.await[req.Sequence] = own
	ps.mu.Unlock()
	if err := ps.stream.Send(req); err != nil {
		// receive sees the same failure and hands back every awaiting batch.
		ps.cancel()
	}
}

// receive matches answers to batches until the stream ends, then hands
// whatever is still awaited back for retransmission, oldest first.
func (ps *publishStream) receive(p *Producer) {
	for {
		resp, err := ps.stream.Recv()
		if err != nil {
			if status.Code(err) == codes.Canceled || errors.Is(err, context.Canceled) || errors.Is(err, io.EOF) {
				err = status.Error(codes.Unavailable, "publish stream closed before the broker answered")
			}
			ps.mu.Lock()
			ps.err = err
			awaiting := ps.await
			ps.await = nil
			ps.mu.Unlock()
			seqs := make([]uint64, 0, len(awaiting))
			for seq := range awaiting {
				seqs = append(seqs, seq)
			}
			sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
			for _, seq := range seqs {
				p.retryOrFail(awaiting[seq], err)
			}
			return
		}
		ps.mu.Lock()
		batch := ps.await[resp.Sequence]
		delete(ps.await, resp.Sequence)
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
				pp.attempts++
				pp.redirects, pp.redirected = 0, false
				if retryable(err) && pp.attempts < p.opts.retry.Attempts {
					again, againErr = append(again, pp), err
					continue
				}
				p.finish(pp, PublishResult{}, err)
				continue
			}
			p.finish(pp, PublishResult{ID: r.Id, Duplicate: r.Duplicate}, nil)
		}
		if len(again) > 0 {
			for _, pp := range again {
				pp.lastErr = againErr
			}
			p.resend <- again
		}
	}
}
