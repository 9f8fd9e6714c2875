package client

import (
	"context"
	"errors"
	"sync"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrProducerClosed is returned by a Producer after Close.
var ErrProducerClosed = errors.New("dmq: producer is closed")

// Producer publishes to one topic over a pipelined stream: messages queued
// with PublishAsync are batched, sent without waiting, and their callbacks
// run as the broker answers. At most MaxInFlight messages are unanswered;
// PublishAsync blocks beyond that.
type Producer struct {
	c     *Client
	topic string
	opts  producerOptions

	queue chan *pendingPublish
	slots chan struct{} // one per unanswered message
	quit  chan struct{}
	done  chan struct{}

	mu struct {
		sync.Mutex
		inflight int
		idle     chan struct{} // closed while inflight == 0
		closed   bool
	}
}

type pendingPublish struct {
	msg  *dmqv1.OutgoingMessage
	done func(id string, err error)
}

type producerOptions struct {
	maxInFlight int
	batchSize   int
}

// ProducerOption configures NewProducer.
type ProducerOption func(*producerOptions)

// MaxInFlight bounds unanswered messages (default 1000).
func MaxInFlight(n int) ProducerOption { return func(o *producerOptions) { o.maxInFlight = n } }

// BatchSize bounds the messages sent in one request (default 256).
func BatchSize(n int) ProducerOption { return func(o *producerOptions) { o.batchSize = n } }

// NewProducer starts a pipelined producer for topic.
func (c *Client) NewProducer(topic string, opts ...ProducerOption) *Producer {
	o := producerOptions{maxInFlight: 1000, batchSize: 256}
	for _, f := range opts {
		f(&o)
	}
	o.maxInFlight = max(o.maxInFlight, 1)
	o.batchSize = max(o.batchSize, 1)
	p := &Producer{
		c: c, topic: topic, opts: o,
		queue: make(chan *pendingPublish, o.maxInFlight),
		slots: make(chan struct{}, o.maxInFlight),
		quit:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	p.mu.idle = make(chan struct{})
	close(p.mu.idle)
	go p.sendLoop()
	return p
}

// PublishAsync queues m and returns; done is called exactly once, from
// another goroutine, with the message id once stored or with the error.
// It blocks while MaxInFlight messages are unanswered.
func (p *Producer) PublishAsync(ctx context.Context, m *Message, done func(id string, err error)) error {
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
	p.queue <- &pendingPublish{msg: m.outgoing(), done: done}
	return nil
}

// Publish sends m through the pipeline and waits for its id.
func (p *Producer) Publish(ctx context.Context, m *Message) (string, error) {
	type result struct {
		id  string
		err error
	}
	ch := make(chan result, 1)
	if err := p.PublishAsync(ctx, m, func(id string, err error) { ch <- result{id, err} }); err != nil {
		return "", err
	}
	select {
	case r := <-ch:
		return r.id, r.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// finish runs the callback of one message and frees its slot.
func (p *Producer) finish(pp *pendingPublish, id string, err error) {
	pp.done(id, err)
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

// Close waits for every queued message to be answered, then stops the
// producer.
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
	err    error // set when the stream broke; awaiting batches were failed
}

// sendLoop batches queued messages onto the stream. It wakes on the queue
// and stops on quit (after Close flushed everything).
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
		case pp := <-p.queue:
			batch = append(batch, pp)
		}
	fill:
		for len(batch) < p.opts.batchSize {
			select {
			case pp := <-p.queue:
				batch = append(batch, pp)
			default:
				break fill
			}
		}
		if ps == nil || ps.broken() {
			var err error
			if ps, err = p.openStream(); err != nil {
				for _, pp := range batch {
					p.finish(pp, "", err)
				}
				ps = nil
				continue
			}
		}
		ps.send(p, batch)
	}
}

func (ps *publishStream) broken() bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.err != nil
}

func (p *Producer) openStream() (*publishStream, error) {
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := p.c.api.PublishStream(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	ps := &publishStream{stream: stream, cancel: cancel, await: make(map[uint64][]*pendingPublish)}
	go ps.receive(p)
	return ps, nil
}

// send transmits one batch; on failure the batch fails with the stream.
func (ps *publishStream) send(p *Producer, batch []*pendingPublish) {
	req := &dmqv1.PublishRequest{Topic: p.topic, Messages: make([]*dmqv1.OutgoingMessage, len(batch))}
	for i, pp := range batch {
		req.Messages[i] = pp.msg
	}
	own := append([]*pendingPublish(nil), batch...)
	ps.mu.Lock()
	if ps.err != nil {
		ps.mu.Unlock()
		for _, pp := range own {
			p.finish(pp, "", ps.err)
		}
		return
	}
	ps.seq++
	req.Sequence = ps.seq
	ps.await[req.Sequence] = own
	ps.mu.Unlock()
	if err := ps.stream.Send(req); err != nil {
		// receive sees the same failure and fails every awaiting batch.
		ps.cancel()
	}
}

// receive matches answers to batches until the stream ends, then fails
// whatever is still awaited.
func (ps *publishStream) receive(p *Producer) {
	for {
		resp, err := ps.stream.Recv()
		if err != nil {
			if status.Code(err) == codes.Canceled || errors.Is(err, context.Canceled) {
				err = status.Error(codes.Unavailable, "publish stream closed before the broker answered")
			}
			ps.mu.Lock()
			ps.err = err
			awaiting := ps.await
			ps.await = nil
			ps.mu.Unlock()
			for _, batch := range awaiting {
				for _, pp := range batch {
					p.finish(pp, "", err)
				}
			}
			return
		}
		ps.mu.Lock()
		batch := ps.await[resp.Sequence]
		delete(ps.await, resp.Sequence)
		ps.mu.Unlock()
		for i, pp := range batch {
			if i >= len(resp.Results) {
				p.finish(pp, "", status.Error(codes.Internal, "broker answered fewer results than messages sent"))
				continue
			}
			r := resp.Results[i]
			if r.Error != nil {
				p.finish(pp, "", status.Error(codes.Code(r.Error.Code), r.Error.Message))
			} else {
				p.finish(pp, r.Id, nil)
			}
		}
	}
}
