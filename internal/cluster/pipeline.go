package cluster

import (
	"sync"

	"github.com/hashicorp/raft"
)

// hashicorp/raft v1.8.0 can stop replicating to a follower for good while heartbeats go
// on (hashicorp/raft#612, open): when a follower answers an append with Success=false
// (it could not store the entries: a full disk, or a gap after one), the leader's
// pipelineDecode returns and nothing reads the pipeline's responses any more; the send
// loop may then issue one more send, which waits for a slot in the pipeline while the
// transport's decoder waits to hand over a response, and the deferred pipeline.Close
// that would free both is never reached. The follower never receives another entry and
// never times out, and its copy of the shard stays behind while `cluster status` shows
// it reachable (issue 20: a replica at 0 messages while the others held 108,732; here,
// TestOneNodesDiskFillsAndHeals in test/cluster, a node whose disk had filled and was
// freed again and never caught up).
//
// pipelineTransport keeps the responses read: each pipeline's responses are moved by a
// goroutine of its own into a queue that the leader consumes, so the transport's
// decoder never waits, a send never waits on it, and the send loop reaches Close.

// pipelineTransport is the NetworkTransport with responses always drained.
type pipelineTransport struct {
	*raft.NetworkTransport
}

// AppendEntriesPipeline returns the transport's pipeline with its responses drained.
func (t pipelineTransport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	p, err := t.NetworkTransport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	d := &drainedPipeline{AppendPipeline: p, out: make(chan raft.AppendFuture), quit: make(chan struct{})}
	d.wg.Add(1)
	go d.forward()
	return d, nil
}

// drainedPipeline is a pipeline whose responses are read as they come.
type drainedPipeline struct {
	raft.AppendPipeline
	out  chan raft.AppendFuture // to the leader's decoder
	quit chan struct{}          // closed by Close: forward stops
	wg   sync.WaitGroup
	once sync.Once
}

// Consumer is where the leader reads the responses.
func (d *drainedPipeline) Consumer() <-chan raft.AppendFuture { return d.out }

// forward moves the responses from the transport into a queue and hands them on in
// order; it never blocks the transport. The queue holds at most what was sent and not
// consumed, which the send loop bounds once the consumer stopped (it then closes the
// pipeline).
func (d *drainedPipeline) forward() {
	defer d.wg.Done()
	in := d.AppendPipeline.Consumer()
	var queue []raft.AppendFuture
	for {
		var out chan raft.AppendFuture
		var next raft.AppendFuture
		if len(queue) > 0 {
			out, next = d.out, queue[0]
		}
		select {
		case f := <-in:
			queue = append(queue, f)
		case out <- next:
			queue[0] = nil
			queue = queue[1:]
		case <-d.quit:
			return
		}
	}
}

// Close stops the forwarding and closes the transport's pipeline.
func (d *drainedPipeline) Close() error {
	d.once.Do(func() { close(d.quit) })
	err := d.AppendPipeline.Close()
	d.wg.Wait()
	return err
}
