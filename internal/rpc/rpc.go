// Package rpc implements the dmq.v1 gRPC service on top of package broker.
// Handlers validate, convert between protobuf and broker types, call the
// broker and map its errors to gRPC status codes; nothing else lives here.
package rpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"github.com/dmqio/dmq/internal/auth"
	"github.com/dmqio/dmq/internal/broker"
	"github.com/dmqio/dmq/internal/cluster"
	"github.com/dmqio/dmq/internal/message"
	"github.com/dmqio/dmq/internal/meta"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Service serves dmq.v1.Broker.
type Service struct {
	dmqv1.UnimplementedBrokerServer
	b       *broker.Broker
	reg     *auth.Registry
	version string
	started time.Time
}

// Register adds the DMQ service for b to gs, with reg managing tokens;
// version is reported by ServerInfo.
func Register(gs *grpc.Server, b *broker.Broker, reg *auth.Registry, version string) {
	dmqv1.RegisterBrokerServer(gs, &Service{b: b, reg: reg, version: version, started: time.Now()})
}

// RegisterRouted adds the DMQ service to gs for a cluster node, whose calls each find
// their backend through the RoutingInterceptors gs was built with.
func RegisterRouted(gs *grpc.Server, version string) {
	dmqv1.RegisterBrokerServer(gs, &Service{version: version, started: time.Now()})
}

// brokerOf is the broker serving ctx's call.
func (s *Service) brokerOf(ctx context.Context) *broker.Broker {
	if b := backendOf(ctx); b != nil {
		return b.Broker
	}
	return s.b
}

// appsOf is the application registry of ctx's call.
func (s *Service) appsOf(ctx context.Context) *auth.Registry {
	if b := backendOf(ctx); b != nil {
		return b.Apps
	}
	return s.reg
}

// ServerInfo implements dmq.v1.Broker.
func (s *Service) ServerInfo(ctx context.Context, _ *dmqv1.ServerInfoRequest) (*dmqv1.ServerInfoResponse, error) {
	cfg := s.brokerOf(ctx).Config()
	return &dmqv1.ServerInfoResponse{
		Version: s.version, Fsync: !cfg.NoSync, MaxBodyBytes: int64(cfg.MaxBodyBytes),
		MaxDelayMs: cfg.MaxDelay.Milliseconds(),
		RssBytes:   procStatusBytes("VmRSS:"), PeakRssBytes: procStatusBytes("VmHWM:"),
		StartedAtMs: s.started.UnixMilli(),
	}, nil
}

var kindCodes = map[broker.Kind]codes.Code{
	broker.KindInternal:     codes.Internal,
	broker.KindInvalid:      codes.InvalidArgument,
	broker.KindNotFound:     codes.NotFound,
	broker.KindExists:       codes.AlreadyExists,
	broker.KindPrecondition: codes.FailedPrecondition,
	broker.KindExhausted:    codes.ResourceExhausted,
	broker.KindUnavailable:  codes.Unavailable,
	broker.KindPermission:   codes.PermissionDenied,
}

// toStatus maps a broker error to a gRPC status error.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, cluster.ErrNotLeader), errors.Is(err, cluster.ErrShutdown), errors.Is(err, cluster.ErrOutcomeUnknown):
		// A write through a shard's Raft group (a user, a token) on a node that just
		// lost its leadership, or a publish whose outcome the node cannot tell: the
		// client retries (with the same client message id) at the leader.
		return status.Error(codes.Unavailable, err.Error())
	}
	return status.Error(kindCodes[broker.KindOf(err)], err.Error())
}

func protoError(err error) *dmqv1.Error {
	st, _ := status.FromError(toStatus(err))
	return &dmqv1.Error{Code: int32(st.Code()), Message: st.Message()}
}

func invalid(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}

// parseIDs turns message ids into offsets.
func parseIDs(ids []string) ([]uint64, error) {
	if len(ids) == 0 {
		return nil, invalid("no message id given")
	}
	offs := make([]uint64, len(ids))
	for i, id := range ids {
		off, err := broker.ParseOffset(id)
		if err != nil {
			return nil, toStatus(err)
		}
		offs[i] = off
	}
	return offs, nil
}

func topicProto(ti broker.TopicInfo) *dmqv1.Topic {
	return &dmqv1.Topic{
		Name: ti.Name, Department: ti.Department, Owner: ti.Owner, Purpose: ti.Purpose,
		CreatedAtMs: ti.CreatedAtMs, DedupeWindowMs: ti.DedupeWindowMs,
		Environment: ti.Environment, Status: ti.Status, RequestedBy: ti.RequestedBy,
		DecidedBy: ti.DecidedBy, DecidedAtMs: ti.DecidedAtMs, DecisionReason: ti.DecisionReason,
		Stats: &dmqv1.TopicStats{
			FirstOffset: ti.FirstOffset, NextOffset: ti.NextOffset,
			StoredBytes: ti.StoredBytes, Segments: int32(ti.Segments),
			DelayedPending: ti.DelayedPending, NextDelayedDueMs: ti.NextDelayedDueMs,
		},
	}
}

func groupProto(gi broker.GroupInfo, now time.Time) *dmqv1.Group {
	mode := dmqv1.GroupMode_GROUP_MODE_CLUSTER
	if gi.Mode == broker.ModeBroadcast {
		mode = dmqv1.GroupMode_GROUP_MODE_BROADCAST
	}
	ack := dmqv1.AckMode_ACK_MODE_BUSINESS
	if gi.AckMode == broker.AckAuto {
		ack = dmqv1.AckMode_ACK_MODE_AUTO
	}
	return &dmqv1.Group{
		Topic: gi.Topic, Name: gi.Name, Mode: mode, AckMode: ack,
		AckTimeoutMs: gi.AckTimeoutMs, CreatedAtMs: gi.CreatedAtMs, StartOffset: gi.StartOffset,
		RetryBackoffMs: gi.RetryBackoffMs, MaxAttempts: gi.MaxAttempts,
		Stats: &dmqv1.GroupStats{
			AckFloor: gi.AckFloor, Backlog: gi.Backlog, InFlight: gi.InFlight,
			MembersOnline: int32(gi.MembersOnline), DeadLetters: gi.DeadLetters,
			OldestUnackedAgeMs: gi.OldestUnackedAge(now).Milliseconds(), Abandoned: gi.Abandoned,
		},
	}
}

// CreateTopic implements dmq.v1.Broker.
func (s *Service) CreateTopic(ctx context.Context, req *dmqv1.CreateTopicRequest) (*dmqv1.Topic, error) {
	ti, err := s.brokerOf(ctx).CreateTopic(meta.Topic{Name: req.Name, Department: req.Department, Owner: req.Owner, Purpose: req.Purpose,
		DedupeWindowMs: req.DedupeWindowMs, RequestedBy: req.RequestedBy})
	if err != nil {
		return nil, toStatus(err)
	}
	s.audit(ctx, "topic.create", ti.Name, "status "+ti.Status)
	return topicProto(ti), nil
}

// GetTopic implements dmq.v1.Broker.
func (s *Service) GetTopic(ctx context.Context, req *dmqv1.GetTopicRequest) (*dmqv1.Topic, error) {
	ti, err := s.brokerOf(ctx).GetTopic(req.Name)
	if err != nil {
		return nil, toStatus(err)
	}
	return topicProto(ti), nil
}

// ListTopics implements dmq.v1.Broker.
func (s *Service) ListTopics(ctx context.Context, req *dmqv1.ListTopicsRequest) (*dmqv1.ListTopicsResponse, error) {
	if err := broker.CheckStatus(req.Status); err != nil {
		return nil, toStatus(err)
	}
	resp := &dmqv1.ListTopicsResponse{}
	for _, ti := range s.brokerOf(ctx).ListTopics(broker.TopicFilter{
		Department: req.Department, Owner: req.Owner, Environment: req.Environment,
		Status: req.Status, NameContains: req.NameContains,
	}) {
		resp.Topics = append(resp.Topics, topicProto(ti))
	}
	return resp, nil
}

// ApproveTopic implements dmq.v1.Broker.
func (s *Service) ApproveTopic(ctx context.Context, req *dmqv1.TopicDecision) (*dmqv1.Topic, error) {
	return s.decide(ctx, "topic.approve", s.brokerOf(ctx).ApproveTopic, req)
}

// RejectTopic implements dmq.v1.Broker.
func (s *Service) RejectTopic(ctx context.Context, req *dmqv1.TopicDecision) (*dmqv1.Topic, error) {
	return s.decide(ctx, "topic.reject", s.brokerOf(ctx).RejectTopic, req)
}

// DisableTopic implements dmq.v1.Broker.
func (s *Service) DisableTopic(ctx context.Context, req *dmqv1.TopicDecision) (*dmqv1.Topic, error) {
	return s.decide(ctx, "topic.disable", s.brokerOf(ctx).DisableTopic, req)
}

func (s *Service) decide(ctx context.Context, action string, fn func(broker.Decision) (broker.TopicInfo, error), req *dmqv1.TopicDecision) (*dmqv1.Topic, error) {
	ti, err := fn(broker.Decision{Topic: req.Name, By: req.By, Reason: req.Reason})
	if err != nil {
		return nil, toStatus(err)
	}
	s.audit(ctx, action, ti.Name, req.Reason)
	return topicProto(ti), nil
}

// DeleteTopic implements dmq.v1.Broker.
func (s *Service) DeleteTopic(ctx context.Context, req *dmqv1.DeleteTopicRequest) (*dmqv1.DeleteTopicResponse, error) {
	if err := s.brokerOf(ctx).DeleteTopic(req.Name); err != nil {
		return nil, toStatus(err)
	}
	s.audit(ctx, "topic.delete", req.Name, "")
	return &dmqv1.DeleteTopicResponse{}, nil
}

// toMessages converts wire messages; a relative delay becomes a deliver-at time, by
// the broker's clock (now, in Unix milliseconds). A delay longer than maxDelay is
// refused here, before the sum could overflow; the broker checks deliver-at times.
func toMessages(in []*dmqv1.OutgoingMessage, now int64, maxDelay time.Duration) ([]*message.Message, error) {
	out := make([]*message.Message, len(in))
	slab := make([]message.Message, len(in)) // one allocation for the batch
	for i, m := range in {
		if m.DeliverAtMs < 0 || m.DelayMs < 0 {
			return nil, invalid("message %d: negative delay or deliver-at time", i)
		}
		at := m.DeliverAtMs
		if at == 0 && m.DelayMs > 0 {
			if m.DelayMs > maxDelay.Milliseconds() {
				return nil, invalid("message %d: delay of %d ms is longer than the maximum delay of %s (the server's --max-delay)", i, m.DelayMs, maxDelay)
			}
			at = now + m.DelayMs
		}
		slab[i] = message.Message{Key: m.Key, ClientMessageID: m.ClientMessageId, Headers: m.Headers, Body: m.Body, DeliverAtMs: at}
		out[i] = &slab[i]
	}
	return out, nil
}

func publishResults(in []broker.PublishResult) []*dmqv1.PublishResult {
	// A batch's results take a few allocations, not two per message.
	ids := broker.FormatOffsets(len(in), func(i int) (uint64, bool) { return in[i].Offset, in[i].DelayID == "" })
	slab := make([]dmqv1.PublishResult, len(in))
	rs := make([]*dmqv1.PublishResult, len(in))
	for i, r := range in {
		id := r.DelayID
		if id == "" {
			id = ids[i]
		}
		slab[i].Id, slab[i].Duplicate = id, r.Duplicate
		rs[i] = &slab[i]
	}
	return rs
}

func failedResults(err error, n int) []*dmqv1.PublishResult {
	pe := protoError(err)
	rs := make([]*dmqv1.PublishResult, n)
	for i := range rs {
		rs[i] = &dmqv1.PublishResult{Error: pe}
	}
	return rs
}

// Publish implements dmq.v1.Broker.
func (s *Service) Publish(ctx context.Context, req *dmqv1.PublishRequest) (*dmqv1.PublishResponse, error) {
	msgs, err := toMessages(req.Messages, s.brokerOf(ctx).Now().UnixMilli(), s.brokerOf(ctx).Config().MaxDelay)
	if err != nil {
		return nil, err
	}
	rs, err := s.brokerOf(ctx).Publish(ctx, req.Topic, origin(ctx, req.ClientId), msgs)
	if err != nil {
		return nil, toStatus(err)
	}
	return &dmqv1.PublishResponse{Sequence: req.Sequence, Results: publishResults(rs)}, nil
}

// maxStreamBatchesInFlight bounds the batches of one publish stream that
// are stored but not yet answered, so a client that does not read its
// answers cannot make the broker buffer without limit.
const maxStreamBatchesInFlight = 4096

// PublishStream implements dmq.v1.Broker.
func (s *Service) PublishStream(stream dmqv1.Broker_PublishStreamServer) error {
	ctx := stream.Context()
	// answers is sized so the log's writer goroutine, which runs the
	// completion callbacks, never blocks on it: a slot is taken before each
	// batch is submitted and given back once its answer was handled.
	answers := make(chan *dmqv1.PublishResponse, maxStreamBatchesInFlight)
	slots := make(chan struct{}, maxStreamBatchesInFlight)
	var pending sync.WaitGroup
	var sendErr error
	senderDone := make(chan struct{})
	go func() {
		defer close(senderDone)
		for resp := range answers {
			if sendErr == nil {
				sendErr = stream.Send(resp)
			}
			<-slots
			pending.Done()
		}
	}()
	recvErr := s.receiveBatches(ctx, stream, slots, &pending, answers)
	pending.Wait()
	close(answers)
	<-senderDone
	if errors.Is(recvErr, io.EOF) {
		return sendErr
	}
	return recvErr
}

// receiveBatches reads publish batches until the client closes its side or
// the stream breaks, and submits each to the broker without waiting.
func (s *Service) receiveBatches(ctx context.Context, stream dmqv1.Broker_PublishStreamServer, slots chan struct{}, pending *sync.WaitGroup, answers chan<- *dmqv1.PublishResponse) error {
	for {
		req, err := stream.Recv()
		if err != nil {
			return err
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		pending.Add(1)
		seq, n := req.Sequence, len(req.Messages)
		msgs, err := toMessages(req.Messages, s.brokerOf(ctx).Now().UnixMilli(), s.brokerOf(ctx).Config().MaxDelay)
		if err != nil {
			answers <- &dmqv1.PublishResponse{Sequence: seq, Results: failedResults(err, n)}
			continue
		}
		s.brokerOf(ctx).PublishAsync(req.Topic, origin(ctx, req.ClientId), msgs, func(rs []broker.PublishResult, err error) {
			resp := &dmqv1.PublishResponse{Sequence: seq}
			if err != nil {
				resp.Results = failedResults(err, n)
			} else {
				resp.Results = publishResults(rs)
			}
			answers <- resp
		})
	}
}

func groupSpec(req *dmqv1.CreateGroupRequest) (broker.GroupSpec, error) {
	spec := broker.GroupSpec{Topic: req.Topic, Name: req.Name, AckTimeout: time.Duration(req.AckTimeoutMs) * time.Millisecond}
	switch req.Mode {
	case dmqv1.GroupMode_GROUP_MODE_UNSPECIFIED, dmqv1.GroupMode_GROUP_MODE_CLUSTER:
		spec.Mode = broker.ModeCluster
	case dmqv1.GroupMode_GROUP_MODE_BROADCAST:
		spec.Mode = broker.ModeBroadcast
	default:
		return spec, invalid("unknown group mode %d", req.Mode)
	}
	switch req.AckMode {
	case dmqv1.AckMode_ACK_MODE_UNSPECIFIED, dmqv1.AckMode_ACK_MODE_BUSINESS:
		spec.AckMode = broker.AckBusiness
	case dmqv1.AckMode_ACK_MODE_AUTO:
		spec.AckMode = broker.AckAuto
	default:
		return spec, invalid("unknown ack mode %d", req.AckMode)
	}
	switch req.Start {
	case dmqv1.StartPosition_START_POSITION_UNSPECIFIED, dmqv1.StartPosition_START_POSITION_LATEST:
	case dmqv1.StartPosition_START_POSITION_EARLIEST:
		spec.Earliest = true
	default:
		return spec, invalid("unknown start position %d", req.Start)
	}
	if req.AckTimeoutMs < 0 {
		return spec, invalid("ack timeout %d ms is negative", req.AckTimeoutMs)
	}
	for _, ms := range req.RetryBackoffMs {
		spec.RetryBackoff = append(spec.RetryBackoff, time.Duration(ms)*time.Millisecond)
	}
	spec.MaxAttempts = int(req.MaxAttempts)
	return spec, nil
}

// CreateGroup implements dmq.v1.Broker.
func (s *Service) CreateGroup(ctx context.Context, req *dmqv1.CreateGroupRequest) (*dmqv1.Group, error) {
	spec, err := groupSpec(req)
	if err != nil {
		return nil, err
	}
	gi, err := s.brokerOf(ctx).CreateGroup(spec)
	if err != nil {
		return nil, toStatus(err)
	}
	return groupProto(gi, s.brokerOf(ctx).Now()), nil
}

// GetGroup implements dmq.v1.Broker.
func (s *Service) GetGroup(ctx context.Context, req *dmqv1.GetGroupRequest) (*dmqv1.Group, error) {
	gi, err := s.brokerOf(ctx).GetGroup(req.Topic, req.Name)
	if err != nil {
		return nil, toStatus(err)
	}
	return groupProto(gi, s.brokerOf(ctx).Now()), nil
}

// ListGroups implements dmq.v1.Broker.
func (s *Service) ListGroups(ctx context.Context, req *dmqv1.ListGroupsRequest) (*dmqv1.ListGroupsResponse, error) {
	gs, err := s.brokerOf(ctx).ListGroups(req.Topic)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &dmqv1.ListGroupsResponse{}
	for _, gi := range gs {
		resp.Groups = append(resp.Groups, groupProto(gi, s.brokerOf(ctx).Now()))
	}
	return resp, nil
}

// DeleteGroup implements dmq.v1.Broker.
func (s *Service) DeleteGroup(ctx context.Context, req *dmqv1.DeleteGroupRequest) (*dmqv1.DeleteGroupResponse, error) {
	if err := s.brokerOf(ctx).DeleteGroup(req.Topic, req.Name); err != nil {
		return nil, toStatus(err)
	}
	s.audit(ctx, "group.delete", req.Topic+"/"+req.Name, "")
	return &dmqv1.DeleteGroupResponse{}, nil
}

// Ack implements dmq.v1.Broker.
func (s *Service) Ack(ctx context.Context, req *dmqv1.AckRequest) (*dmqv1.AckResponse, error) {
	offs, err := parseIDs(req.Ids)
	if err != nil {
		return nil, err
	}
	if err := s.brokerOf(ctx).Ack(req.Topic, req.Group, req.ClientId, offs); err != nil {
		return nil, toStatus(err)
	}
	return &dmqv1.AckResponse{}, nil
}

// Nack implements dmq.v1.Broker.
func (s *Service) Nack(ctx context.Context, req *dmqv1.NackRequest) (*dmqv1.NackResponse, error) {
	offs, err := parseIDs(req.Ids)
	if err != nil {
		return nil, err
	}
	if err := s.brokerOf(ctx).Nack(req.Topic, req.Group, req.ClientId, offs, req.Reason); err != nil {
		return nil, toStatus(err)
	}
	return &dmqv1.NackResponse{}, nil
}

// deliveryProtos decodes a batch of stored records into wire messages,
// with a few allocations per batch instead of two per message.
func deliveryProtos(topic string, ds []broker.Delivery) ([]*dmqv1.Message, error) {
	ids := broker.FormatOffsets(len(ds), func(i int) (uint64, bool) { return ds[i].Offset, true })
	slab := make([]dmqv1.Message, len(ds))
	out := make([]*dmqv1.Message, len(ds))
	for i, d := range ds {
		m, err := message.Decode(d.Payload)
		if err != nil {
			return nil, fmt.Errorf("message %d of topic %q: %w", d.Offset, topic, err)
		}
		w := &slab[i]
		w.Id, w.Topic, w.Key, w.Headers, w.Body = ids[i], topic, m.Key, m.Headers, m.Body
		w.PublishedAtMs, w.Attempt, w.ClientMessageId, w.LastFailure = m.PublishedAtMs, d.Attempt, m.ClientMessageID, d.LastFailure
		out[i] = w
	}
	return out, nil
}

// procStatusBytes reads a "kB" field of /proc/self/status (0 if unknown).
func procStatusBytes(field string) int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}

// origin names the caller of a publish: its client id and address.
func origin(ctx context.Context, client string) broker.Origin {
	o := broker.Origin{Client: client}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		o.Addr = p.Addr.String()
	}
	return o
}
