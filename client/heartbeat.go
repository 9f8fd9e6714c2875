package client

import (
	"context"
	"os"
	"sort"
	"sync"
	"time"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
)

// presence announces this client to the broker's client registry: its id,
// host, SDK version, the topics it publishes to and the groups it consumes
// from. The loop sends a heartbeat at once when that changes, then at the
// interval the broker asks for, and a last one (leaving) on Close.
type presence struct {
	c    *Client
	kick chan struct{} // room for one: a change to announce now
	quit chan struct{}
	done chan struct{}
	// announced is owned by loop until done is closed, then read by stop.
	announced bool

	mu struct {
		sync.Mutex
		produces map[string]bool
		consumes map[subscription]int // refcount of live consumers
	}
}

type subscription struct{ topic, group string }

func newPresence(c *Client) *presence {
	p := &presence{c: c, kick: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	p.mu.produces = map[string]bool{}
	p.mu.consumes = map[subscription]int{}
	return p
}

func (p *presence) poke() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// produce notes that the client publishes to topic.
func (p *presence) produce(topic string) {
	p.mu.Lock()
	known := p.mu.produces[topic]
	p.mu.produces[topic] = true
	p.mu.Unlock()
	if !known {
		p.poke()
	}
}

// consume notes a consumer of topic/group starting (+1) or stopping (-1).
func (p *presence) consume(topic, group string, delta int) {
	k := subscription{topic, group}
	p.mu.Lock()
	p.mu.consumes[k] += delta
	if p.mu.consumes[k] <= 0 {
		delete(p.mu.consumes, k)
	}
	p.mu.Unlock()
	p.poke()
}

func (p *presence) request(leaving bool) *dmqv1.HeartbeatRequest {
	host, _ := os.Hostname()
	req := &dmqv1.HeartbeatRequest{ClientId: p.c.clientID, Host: host, Pid: int32(os.Getpid()), SdkVersion: Version, Leaving: leaving}
	p.mu.Lock()
	for t := range p.mu.produces {
		req.Produces = append(req.Produces, t)
	}
	for s := range p.mu.consumes {
		req.Consumes = append(req.Consumes, &dmqv1.Subscription{Topic: s.topic, Group: s.group})
	}
	p.mu.Unlock()
	sort.Strings(req.Produces)
	sort.Slice(req.Consumes, func(i, j int) bool {
		a, b := req.Consumes[i], req.Consumes[j]
		return a.Topic < b.Topic || a.Topic == b.Topic && a.Group < b.Group
	})
	return req
}

// loop sends heartbeats until stop. It wakes on a change (kick) and on the
// interval timer; a failed heartbeat is simply tried again next time.
func (p *presence) loop() {
	defer close(p.done)
	interval := 10 * time.Second
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-p.quit:
			return
		case <-p.kick:
		case <-timer.C:
		}
		req := p.request(false)
		if !p.announced && len(req.Produces) == 0 && len(req.Consumes) == 0 {
			continue // admin-only clients (the CLI's topic list...) stay out of the registry
		}
		p.announced = true
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := p.c.api.Heartbeat(ctx, req)
		cancel()
		if err == nil && resp.IntervalMs > 0 {
			interval = time.Duration(resp.IntervalMs) * time.Millisecond
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(interval)
	}
}

// stop ends the loop and tells the broker the client is leaving.
func (p *presence) stop() {
	close(p.quit)
	<-p.done
	if !p.announced {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	p.c.api.Heartbeat(ctx, p.request(true))
}
