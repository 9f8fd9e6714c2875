package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Handler processes one message. Returning nil acks it; returning an error
// (or panicking) nacks it so the broker delivers it again.
type Handler func(ctx context.Context, m *Message) error

// ConsumerOption configures Subscribe.
type ConsumerOption func(*consumerOptions)

type consumerOptions struct {
	concurrency int
	prefetch    int
	clientID    string
	onError     func(error)
}

// Concurrency sets how many handler calls run at once (default 1).
func Concurrency(n int) ConsumerOption { return func(o *consumerOptions) { o.concurrency = n } }

// Prefetch sets how many messages the broker may send ahead of the
// handlers (the credit; default 256).
func Prefetch(n int) ConsumerOption { return func(o *consumerOptions) { o.prefetch = n } }

// ConsumerClientID overrides the client's id for this subscription; in a
// broadcast group it names the member's own position.
func ConsumerClientID(id string) ConsumerOption { return func(o *consumerOptions) { o.clientID = id } }

// OnError receives errors the consumer recovers from (a broken stream it
// re-opens, a broker it cannot reach yet, an ack the broker refused). An error
// that ends the consumer is not passed to it: see Consumer.Err.
func OnError(f func(error)) ConsumerOption { return func(o *consumerOptions) { o.onError = f } }

// Consumer is a running subscription. Close drains it gracefully.
//
// While the broker is unreachable, stops answering, restarts or changes leader,
// the consumer re-attaches by itself, with a backoff of up to 2 s, for as long as it takes:
// those errors go to OnError. An error that cannot heal by waiting ends it
// (see final): its token was revoked or lost its grant (Unauthenticated,
// PermissionDenied), its topic or group was deleted (NotFound), its topic is
// disabled or no longer approved (FailedPrecondition), or the broker refuses
// the subscription itself (InvalidArgument, Unimplemented). Then the handlers
// that run finish, their messages are acked where the broker still allows it,
// Done is closed and Err returns the error.
type Consumer struct {
	c            *Client
	topic, group string
	opts         consumerOptions
	handler      Handler

	ctx    context.Context // canceled by Close: stop taking new messages
	cancel context.CancelFunc
	// handlerCtx is what handlers get: Close does not cancel it, so a
	// running handler finishes its work and is acked (graceful drain).
	handlerCtx context.Context
	work       chan delivery
	// results carries handler outcomes to the stream sender.
	results chan result
	// running is read-held by each handler call; the drain write-locks it
	// to wait until no handler runs.
	running   sync.RWMutex
	sessionID int // owned by run
	done      chan struct{}
	err       error // set by run before done is closed

	// started is closed once the first subscription was accepted.
	started  chan struct{}
	startErr error
}

// delivery is a received message and the session that received it.
type delivery struct {
	msg     *Message
	session int
}

// result is a handler's outcome for one delivery.
type result struct {
	id      string
	err     error
	session int
}

// Subscribe joins group on topic and calls h for each message until Close
// or until ctx is canceled. It returns once the broker accepted the
// subscription, or with the broker's error (unknown topic or group...).
// While the broker is unavailable it returns at once and the consumer keeps
// trying to attach in the background; in a cluster it attaches to the
// leader, and re-attaches to the new one after a leader change.
func (c *Client) Subscribe(ctx context.Context, topic, group string, h Handler, opts ...ConsumerOption) (*Consumer, error) {
	o := consumerOptions{concurrency: 1, prefetch: 256, clientID: c.clientID, onError: func(error) {}}
	for _, f := range opts {
		f(&o)
	}
	o.concurrency = max(o.concurrency, 1)
	o.prefetch = max(o.prefetch, 1)
	cctx, cancel := context.WithCancel(ctx)
	k := &Consumer{
		c: c, topic: topic, group: group, opts: o, handler: h,
		ctx: cctx, cancel: cancel, handlerCtx: context.WithoutCancel(ctx),
		work:    make(chan delivery, o.prefetch),
		results: make(chan result, o.prefetch+o.concurrency),
		done:    make(chan struct{}),
		started: make(chan struct{}),
	}
	c.presence.consume(topic, group, +1)
	go func() {
		<-k.done
		c.presence.consume(topic, group, -1)
	}()
	go k.run()
	select {
	case <-k.started:
		if k.startErr != nil {
			cancel()
			<-k.done
			return nil, k.startErr
		}
		return k, nil
	case <-ctx.Done():
		select {
		case <-k.started:
			// Started, and its handlers may already have ended ctx.
			if k.startErr == nil {
				return k, nil
			}
		default:
		}
		cancel()
		<-k.done
		return nil, ctx.Err()
	}
}

// Close stops taking messages, lets running handlers finish, sends their
// acks, and ends the subscription. Messages received but not yet handled go
// back to the broker for redelivery. It returns Err.
func (k *Consumer) Close() error {
	k.cancel()
	<-k.done
	return k.err
}

// Done is closed when the consumer stopped: after Close, once the context
// given to Subscribe ended, or on an error that cannot heal (see Consumer).
func (k *Consumer) Done() <-chan struct{} { return k.done }

// Err returns why the consumer stopped, once Done is closed: the error that
// cannot heal, or an ack that failed while it closed; nil when it stopped
// because of Close or its context, or while it runs.
func (k *Consumer) Err() error {
	select {
	case <-k.done:
		return k.err
	default:
		return nil
	}
}

// final reports whether a consumer's stream that failed with err cannot work
// again by retrying: the consumer ends with it.
func final(err error) bool {
	switch status.Code(err) {
	case codes.Unauthenticated, codes.PermissionDenied, codes.NotFound, codes.FailedPrecondition,
		codes.InvalidArgument, codes.Unimplemented:
		return true
	}
	return false
}

// run owns the workers and the stream sessions, reconnecting with backoff
// until the context is canceled or a session fails with a final error.
func (k *Consumer) run() {
	defer close(k.done)
	var workers sync.WaitGroup
	for i := 0; i < k.opts.concurrency; i++ {
		workers.Add(1)
		go func() {
			defer workers.Done()
			k.workLoop()
		}()
	}
	var carry []result // outcomes not yet sent when a session ended
	const minBackoff = 50 * time.Millisecond
	backoff := minBackoff
	first := true
	for {
		var err error
		var attached bool
		carry, attached, err = k.session(carry, first)
		if attached {
			backoff = minBackoff // a session that worked: the next outage is a new one
		}
		if first {
			first = false
			if err != nil && k.startErr != nil {
				break
			}
		}
		if k.ctx.Err() != nil {
			break
		}
		if err != nil {
			if final(err) {
				k.err = err
				k.cancel() // queued deliveries are left for redelivery, as on Close
				break
			}
			k.opts.onError(err)
		}
		wait := backoff
		if electing(err) {
			wait = min(wait, electionPoll) // follow the election's end closely
		}
		select {
		case <-k.ctx.Done():
		case <-time.After(wait):
		}
		if k.ctx.Err() != nil {
			break
		}
		backoff = min(backoff*2, 2*time.Second)
	}
	close(k.work)
	// Drain: handlers already running finish; queued messages are dropped
	// (their delivery is released by the broker when the stream ended).
	workers.Wait()
	close(k.results)
	var left []string
	for r := range k.results {
		if r.err == nil {
			left = append(left, r.id)
		}
	}
	left = append(left, ackIDs(carry)...)
	if len(left) > 0 {
		actx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := k.c.api.Ack(actx, &dmqv1.AckRequest{Topic: k.topic, Group: k.group, ClientId: k.opts.clientID, Ids: left})
		cancel()
		if err != nil && k.err == nil {
			k.err = fmt.Errorf("ack %d messages at close: %w", len(left), err)
		}
	}
}

func ackIDs(rs []result) []string {
	var ids []string
	for _, r := range rs {
		if r.err == nil {
			ids = append(ids, r.id)
		}
	}
	return ids
}

// workLoop runs the handler on queued messages until work is closed.
func (k *Consumer) workLoop() {
	for d := range k.work {
		k.running.RLock()
		if k.ctx.Err() != nil {
			k.running.RUnlock()
			continue // closing: leave it for redelivery
		}
		// The outcome is queued before the handler counts as done: a closing session
		// that waited for running handlers then finds it, and acks it on its stream
		// before it ends (after, the delivery would be released and redelivered). The
		// buffer holds an outcome for every delivery taken, so this does not block.
		k.results <- result{id: d.msg.ID, err: k.call(d.msg), session: d.session}
		k.running.RUnlock()
	}
}

func (k *Consumer) call(m *Message) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("handler panicked: %v", p)
		}
	}()
	return k.handler(k.handlerCtx, m)
}

// session runs one Subscribe stream until it breaks or the consumer
// closes. carry holds outcomes of an earlier session to send first.
// attached says the broker accepted the subscription.
func (k *Consumer) session(carry []result, first bool) (_ []result, attached bool, _ error) {
	k.sessionID++
	sid := k.sessionID
	sctx, cancel := context.WithCancel(context.Background())
	recvDone := make(chan struct{})
	defer func() {
		cancel()
		<-recvDone
	}()
	// A node that names the leader refused the stream untouched: attach
	// there at once, a few times in a row at most.
	stream, err := k.attach(sctx)
	for redirects := 0; isRedirect(err) && redirects < maxRedirects; redirects++ {
		stream, err = k.attach(sctx)
	}
	if first {
		if err != nil {
			switch status.Code(err) {
			case codes.Unavailable, codes.DeadlineExceeded:
				// The broker may come up later: keep retrying in the background.
			default:
				k.startErr = err
			}
		}
		close(k.started)
	}
	if err != nil {
		close(recvDone)
		return carry, false, err
	}

	// The receiver moves deliveries into the work queue; it stops when the
	// stream ends or the session is canceled.
	recvErr := make(chan error, 1)
	go func() {
		defer close(recvDone)
		for {
			resp, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			if e := resp.GetError(); e != nil {
				k.opts.onError(status.Error(codes.Code(e.Code), e.Message))
			}
			for _, m := range resp.GetDeliveries().GetMessages() {
				select {
				case k.work <- delivery{msg: fromProto(m), session: sid}:
				case <-sctx.Done():
					return
				}
			}
		}
	}()

	pending := carry
	for {
		if err := k.flush(stream, pending, sid); err != nil {
			return pending, true, err
		}
		pending = pending[:0]
		select {
		case <-k.ctx.Done():
			// Graceful drain: wait for running handlers, send their acks,
			// then end the stream; unhandled deliveries are released.
			k.running.Lock()
			k.running.Unlock()
			pending = k.takeResults(pending)
			if err := k.flush(stream, pending, sid); err != nil {
				return pending, true, err
			}
			// The broker ends the stream once it applied what came before the
			// half-close: wait for that, since canceling the stream could overtake
			// the acks.
			stream.CloseSend()
			select {
			case <-recvErr:
			case <-time.After(drainWait):
			}
			return nil, true, nil
		case err := <-recvErr:
			return pending, true, err
		case r := <-k.results:
			pending = k.takeResults(append(pending, r))
		}
	}
}

// drainWait bounds the wait for the broker to end a stream the consumer closes.
const drainWait = 2 * time.Second

// attach opens a Subscribe stream and waits for the broker to accept it.
func (k *Consumer) attach(ctx context.Context) (dmqv1.Broker_SubscribeClient, error) {
	stream, err := k.c.api.Subscribe(ctx, withTopic(k.topic))
	if err != nil {
		return nil, err
	}
	err = stream.Send(&dmqv1.SubscribeRequest{Request: &dmqv1.SubscribeRequest_Start{Start: &dmqv1.SubscribeStart{
		Topic: k.topic, Group: k.group, ClientId: k.opts.clientID, Credit: uint32(k.opts.prefetch),
	}}})
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	// On io.EOF the broker ended the stream: Recv returns why.
	resp, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	if resp.GetSubscribed() == nil {
		return nil, status.Error(codes.Internal, "broker did not confirm the subscription")
	}
	return stream, nil
}

// takeResults appends every outcome ready now, up to a batch.
func (k *Consumer) takeResults(pending []result) []result {
	for len(pending) < 1024 {
		select {
		case r := <-k.results:
			pending = append(pending, r)
		default:
			return pending
		}
	}
	return pending
}

// flush sends acks and nacks for pending outcomes, and new credit for those
// delivered by this session (earlier sessions' credit died with them).
func (k *Consumer) flush(stream dmqv1.Broker_SubscribeClient, pending []result, sid int) error {
	if len(pending) == 0 {
		return nil
	}
	var acks []string
	nacks := map[string][]string{} // reason → ids
	credit := 0
	for _, r := range pending {
		if r.err == nil {
			acks = append(acks, r.id)
		} else {
			nacks[r.err.Error()] = append(nacks[r.err.Error()], r.id)
		}
		if r.session == sid {
			credit++
		}
	}
	if len(acks) > 0 {
		if err := stream.Send(&dmqv1.SubscribeRequest{Request: &dmqv1.SubscribeRequest_Ack{Ack: &dmqv1.AckIds{Ids: acks}}}); err != nil {
			return err
		}
	}
	for reason, ids := range nacks {
		if err := stream.Send(&dmqv1.SubscribeRequest{Request: &dmqv1.SubscribeRequest_Nack{Nack: &dmqv1.NackIds{Ids: ids, Reason: reason}}}); err != nil {
			return err
		}
	}
	if credit > 0 && k.ctx.Err() == nil {
		if err := stream.Send(&dmqv1.SubscribeRequest{Request: &dmqv1.SubscribeRequest_Credit{Credit: uint32(credit)}}); err != nil {
			return err
		}
	}
	return nil
}
