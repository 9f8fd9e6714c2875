package rpc

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"github.com/dmqio/dmq/internal/auth"
	"github.com/dmqio/dmq/internal/broker"
	"github.com/dmqio/dmq/internal/faultfs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// unary is one unary method with its request type.
type unary struct {
	name string
	req  func() proto.Message
	call func(s *Service, ctx context.Context, m proto.Message) error
}

func method[Req proto.Message, Resp any](name string, newReq func() Req, f func(*Service, context.Context, Req) (Resp, error)) unary {
	return unary{name, func() proto.Message { return newReq() }, func(s *Service, ctx context.Context, m proto.Message) error {
		_, err := f(s, ctx, m.(Req))
		return err
	}}
}

var unaries = []unary{
	method("CreateTopic", func() *dmqv1.CreateTopicRequest { return &dmqv1.CreateTopicRequest{} }, (*Service).CreateTopic),
	method("GetTopic", func() *dmqv1.GetTopicRequest { return &dmqv1.GetTopicRequest{} }, (*Service).GetTopic),
	method("ListTopics", func() *dmqv1.ListTopicsRequest { return &dmqv1.ListTopicsRequest{} }, (*Service).ListTopics),
	method("ApproveTopic", func() *dmqv1.TopicDecision { return &dmqv1.TopicDecision{} }, (*Service).ApproveTopic),
	method("RejectTopic", func() *dmqv1.TopicDecision { return &dmqv1.TopicDecision{} }, (*Service).RejectTopic),
	method("DisableTopic", func() *dmqv1.TopicDecision { return &dmqv1.TopicDecision{} }, (*Service).DisableTopic),
	method("DeleteTopic", func() *dmqv1.DeleteTopicRequest { return &dmqv1.DeleteTopicRequest{} }, (*Service).DeleteTopic),
	method("Publish", func() *dmqv1.PublishRequest { return &dmqv1.PublishRequest{} }, (*Service).Publish),
	method("CreateGroup", func() *dmqv1.CreateGroupRequest { return &dmqv1.CreateGroupRequest{} }, (*Service).CreateGroup),
	method("GetGroup", func() *dmqv1.GetGroupRequest { return &dmqv1.GetGroupRequest{} }, (*Service).GetGroup),
	method("ListGroups", func() *dmqv1.ListGroupsRequest { return &dmqv1.ListGroupsRequest{} }, (*Service).ListGroups),
	method("Ack", func() *dmqv1.AckRequest { return &dmqv1.AckRequest{} }, (*Service).Ack),
	method("Nack", func() *dmqv1.NackRequest { return &dmqv1.NackRequest{} }, (*Service).Nack),
	method("ResetGroup", func() *dmqv1.ResetGroupRequest { return &dmqv1.ResetGroupRequest{} }, (*Service).ResetGroup),
	method("ListDeadLetters", func() *dmqv1.ListDeadLettersRequest { return &dmqv1.ListDeadLettersRequest{} }, (*Service).ListDeadLetters),
	method("GetDeadLetter", func() *dmqv1.GetDeadLetterRequest { return &dmqv1.GetDeadLetterRequest{} }, (*Service).GetDeadLetter),
	method("RedriveDeadLetters", func() *dmqv1.DeadLetterSelector { return &dmqv1.DeadLetterSelector{} }, (*Service).RedriveDeadLetters),
	method("PurgeDeadLetters", func() *dmqv1.DeadLetterSelector { return &dmqv1.DeadLetterSelector{} }, (*Service).PurgeDeadLetters),
	method("ListDelayed", func() *dmqv1.ListDelayedRequest { return &dmqv1.ListDelayedRequest{} }, (*Service).ListDelayed),
	method("CancelDelayed", func() *dmqv1.CancelDelayedRequest { return &dmqv1.CancelDelayedRequest{} }, (*Service).CancelDelayed),
	method("Heartbeat", func() *dmqv1.HeartbeatRequest { return &dmqv1.HeartbeatRequest{} }, (*Service).Heartbeat),
	method("ListClients", func() *dmqv1.ListClientsRequest { return &dmqv1.ListClientsRequest{} }, (*Service).ListClients),
	method("DeleteClients", func() *dmqv1.DeleteClientsRequest { return &dmqv1.DeleteClientsRequest{} }, (*Service).DeleteClients),
	method("GetTopicStats", func() *dmqv1.TopicStatsRequest { return &dmqv1.TopicStatsRequest{} }, (*Service).GetTopicStats),
	method("GetTrace", func() *dmqv1.GetTraceRequest { return &dmqv1.GetTraceRequest{} }, (*Service).GetTrace),
	method("SearchTrace", func() *dmqv1.SearchTraceRequest { return &dmqv1.SearchTraceRequest{} }, (*Service).SearchTrace),
	method("ServerInfo", func() *dmqv1.ServerInfoRequest { return &dmqv1.ServerInfoRequest{} }, (*Service).ServerInfo),
	method("CreateToken", func() *dmqv1.CreateTokenRequest { return &dmqv1.CreateTokenRequest{} }, (*Service).CreateToken),
	method("RevokeToken", func() *dmqv1.RevokeTokenRequest { return &dmqv1.RevokeTokenRequest{} }, (*Service).RevokeToken),
	method("ListTokens", func() *dmqv1.ListTokensRequest { return &dmqv1.ListTokensRequest{} }, (*Service).ListTokens),
	method("CreateUser", func() *dmqv1.CreateUserRequest { return &dmqv1.CreateUserRequest{} }, (*Service).CreateUser),
	method("DeleteUser", func() *dmqv1.DeleteUserRequest { return &dmqv1.DeleteUserRequest{} }, (*Service).DeleteUser),
	method("ListUsers", func() *dmqv1.ListUsersRequest { return &dmqv1.ListUsersRequest{} }, (*Service).ListUsers),
	method("ListAudit", func() *dmqv1.ListAuditRequest { return &dmqv1.ListAuditRequest{} }, (*Service).ListAudit),
}

var (
	fuzzOnce    sync.Once
	fuzzService *Service
)

// service is one broker on in-memory disks per fuzzing process, with a
// topic and a group for requests to find.
func service(t *testing.T) *Service {
	fuzzOnce.Do(func() {
		b, err := broker.Open(broker.Config{DataDir: "/data", FS: faultfs.New(),
			Logger: slog.New(slog.DiscardHandler), MaxDelay: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		reg, err := auth.Open(b.Store())
		if err != nil {
			t.Fatal(err)
		}
		fuzzService = &Service{b: b, reg: reg, version: "fuzz", started: time.Now()}
		ctx := context.Background()
		if _, err := fuzzService.CreateTopic(ctx, &dmqv1.CreateTopicRequest{Name: "test.fuzz.t"}); err != nil {
			t.Fatal(err)
		}
		if _, err := fuzzService.CreateGroup(ctx, &dmqv1.CreateGroupRequest{Topic: "test.fuzz.t", Name: "g"}); err != nil {
			t.Fatal(err)
		}
	})
	return fuzzService
}

// Requests of every unary method, decoded from arbitrary bytes, never
// crash the broker and never fail as an internal error: bad input gets an
// input error.
func FuzzUnaryRequests(f *testing.F) {
	seed := func(i int, m proto.Message) {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(i), b)
	}
	for i, u := range unaries {
		seed(i, u.req())
	}
	seed(0, &dmqv1.CreateTopicRequest{Name: "prod.shop.orders", Owner: "alice"})
	seed(7, &dmqv1.PublishRequest{Topic: "test.fuzz.t", Messages: []*dmqv1.OutgoingMessage{{Body: []byte("x"), Key: "k", ClientMessageId: "c1"}}})
	seed(7, &dmqv1.PublishRequest{Topic: "test.fuzz.t", Messages: []*dmqv1.OutgoingMessage{{Body: []byte("later"), DeliverAtMs: time.Now().Add(time.Minute).UnixMilli()}}})
	seed(11, &dmqv1.AckRequest{Topic: "test.fuzz.t", Group: "g", Ids: []string{"0", "1", "99999999999999999999"}})
	seed(13, &dmqv1.ResetGroupRequest{Topic: "test.fuzz.t", Group: "g", To: &dmqv1.ResetGroupRequest_TimeMs{TimeMs: -1}})
	seed(23, &dmqv1.TopicStatsRequest{Topic: "test.fuzz.t", FromMs: 1, ToMs: 1 << 62})
	seed(25, &dmqv1.SearchTraceRequest{Topic: "test.fuzz.t", Key: "k", FromMs: -5, ToMs: 5})
	f.Fuzz(func(t *testing.T, which uint8, raw []byte) {
		s := service(t)
		u := unaries[int(which)%len(unaries)]
		req := u.req()
		if err := proto.Unmarshal(raw, req); err != nil {
			return // gRPC itself refuses bytes that do not decode
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := u.call(s, ctx, req)
		switch code := status.Code(err); code {
		case codes.OK, codes.InvalidArgument, codes.NotFound, codes.AlreadyExists, codes.FailedPrecondition,
			codes.PermissionDenied, codes.OutOfRange, codes.ResourceExhausted:
		default:
			t.Fatalf("%s(%v) failed with %v: %v", u.name, req, code, err)
		}
	})
}
