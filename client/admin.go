package client

import (
	"context"
	"time"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
)

// TopicSpec describes a topic to create.
type TopicSpec struct {
	Name, Department, Owner, Purpose string
	// DedupeWindow is how long the broker remembers client message ids to
	// drop retransmitted duplicates; zero means the broker default (2 min).
	DedupeWindow time.Duration
	// RequestedBy names who asks for the topic (recorded in the registry).
	RequestedBy string
}

// CreateTopic creates a topic.
func (c *Client) CreateTopic(ctx context.Context, spec TopicSpec) (*dmqv1.Topic, error) {
	return c.api.CreateTopic(ctx, &dmqv1.CreateTopicRequest{Name: spec.Name, Department: spec.Department, Owner: spec.Owner, Purpose: spec.Purpose,
		DedupeWindowMs: spec.DedupeWindow.Milliseconds(), RequestedBy: spec.RequestedBy})
}

// GetTopic describes a topic.
func (c *Client) GetTopic(ctx context.Context, name string) (*dmqv1.Topic, error) {
	return c.api.GetTopic(ctx, &dmqv1.GetTopicRequest{Name: name})
}

// TopicFilter narrows ListTopics; empty fields match everything.
type TopicFilter struct {
	Department, Owner, Environment, Status, NameContains string
}

// ListTopics lists the topics that match f.
func (c *Client) ListTopics(ctx context.Context, f TopicFilter) ([]*dmqv1.Topic, error) {
	resp, err := c.api.ListTopics(ctx, &dmqv1.ListTopicsRequest{Department: f.Department, Owner: f.Owner,
		Environment: f.Environment, Status: f.Status, NameContains: f.NameContains})
	if err != nil {
		return nil, err
	}
	return resp.Topics, nil
}

// ApproveTopic approves a topic on behalf of by.
func (c *Client) ApproveTopic(ctx context.Context, name, by, reason string) (*dmqv1.Topic, error) {
	return c.api.ApproveTopic(ctx, &dmqv1.TopicDecision{Name: name, By: by, Reason: reason})
}

// RejectTopic rejects a pending topic on behalf of by.
func (c *Client) RejectTopic(ctx context.Context, name, by, reason string) (*dmqv1.Topic, error) {
	return c.api.RejectTopic(ctx, &dmqv1.TopicDecision{Name: name, By: by, Reason: reason})
}

// DisableTopic disables an approved topic on behalf of by.
func (c *Client) DisableTopic(ctx context.Context, name, by, reason string) (*dmqv1.Topic, error) {
	return c.api.DisableTopic(ctx, &dmqv1.TopicDecision{Name: name, By: by, Reason: reason})
}

// DeleteTopic deletes a topic with its groups and messages.
func (c *Client) DeleteTopic(ctx context.Context, name string) error {
	_, err := c.api.DeleteTopic(ctx, &dmqv1.DeleteTopicRequest{Name: name})
	return err
}

// Group modes and ack modes.
const (
	Cluster   = dmqv1.GroupMode_GROUP_MODE_CLUSTER
	Broadcast = dmqv1.GroupMode_GROUP_MODE_BROADCAST
	// BusinessAck keeps a message in flight until the handler succeeded.
	BusinessAck = dmqv1.AckMode_ACK_MODE_BUSINESS
	// AutoAck counts a message as acked once the broker sent it.
	AutoAck = dmqv1.AckMode_ACK_MODE_AUTO
)

// GroupSpec describes a group to create. Zero values mean cluster mode,
// business ack, the broker's ack timeout, and starting at the topic's end.
type GroupSpec struct {
	Topic, Name string
	Mode        dmqv1.GroupMode
	AckMode     dmqv1.AckMode
	AckTimeout  time.Duration
	// FromEarliest starts the group at the oldest stored message.
	FromEarliest bool
	// RetryBackoff is the wait before redelivering a nacked message, by
	// failure number (the last repeats); nil means the broker's default
	// schedule (1s 5s 10s 30s 1m 2m ... 2h).
	RetryBackoff []time.Duration
	// MaxAttempts is the deliveries before a failing message moves to the
	// group's dead letters; zero means 16.
	MaxAttempts int
}

// CreateGroup creates a consumer group.
func (c *Client) CreateGroup(ctx context.Context, spec GroupSpec) (*dmqv1.Group, error) {
	req := &dmqv1.CreateGroupRequest{
		Topic: spec.Topic, Name: spec.Name, Mode: spec.Mode, AckMode: spec.AckMode,
		AckTimeoutMs: spec.AckTimeout.Milliseconds(),
	}
	if spec.FromEarliest {
		req.Start = dmqv1.StartPosition_START_POSITION_EARLIEST
	}
	for _, d := range spec.RetryBackoff {
		req.RetryBackoffMs = append(req.RetryBackoffMs, d.Milliseconds())
	}
	req.MaxAttempts = uint32(max(spec.MaxAttempts, 0))
	return c.api.CreateGroup(ctx, req)
}

// GetGroup describes a group.
func (c *Client) GetGroup(ctx context.Context, topic, name string) (*dmqv1.Group, error) {
	return c.api.GetGroup(ctx, &dmqv1.GetGroupRequest{Topic: topic, Name: name})
}

// ListGroups lists the groups of a topic.
func (c *Client) ListGroups(ctx context.Context, topic string) ([]*dmqv1.Group, error) {
	resp, err := c.api.ListGroups(ctx, &dmqv1.ListGroupsRequest{Topic: topic})
	if err != nil {
		return nil, err
	}
	return resp.Groups, nil
}

// ResetTo says where ResetGroup moves a group: set exactly one field.
type ResetTo struct {
	Earliest, Latest bool
	// Time: the first message published at or after it.
	Time time.Time
}

// DeleteGroup removes a group with its position, acks and dead letters. Its
// consumers end with NotFound (see Consumer.Err); the messages only it had not
// acked become subject to retention. A group created again under the name starts
// afresh.
func (c *Client) DeleteGroup(ctx context.Context, topic, group string) error {
	_, err := c.api.DeleteGroup(ctx, &dmqv1.DeleteGroupRequest{Topic: topic, Name: group})
	return err
}

// ResetGroup moves a group's position so messages are delivered again from
// there (replay), or skipped up to the end.
func (c *Client) ResetGroup(ctx context.Context, topic, group string, to ResetTo) (*dmqv1.Group, error) {
	req := &dmqv1.ResetGroupRequest{Topic: topic, Group: group}
	switch {
	case to.Earliest:
		req.To = &dmqv1.ResetGroupRequest_Earliest{Earliest: true}
	case to.Latest:
		req.To = &dmqv1.ResetGroupRequest_Latest{Latest: true}
	case !to.Time.IsZero():
		req.To = &dmqv1.ResetGroupRequest_TimeMs{TimeMs: to.Time.UnixMilli()}
	}
	return c.api.ResetGroup(ctx, req)
}

// DeadLetterPage is one page of a group's dead letters.
type DeadLetterPage struct {
	DeadLetters []*dmqv1.DeadLetter
	// Total counts all dead letters of the group.
	Total uint64
}

// ListDeadLetters lists up to limit dead letters of a group after the id
// afterID (empty: from the oldest), optionally only those with key.
func (c *Client) ListDeadLetters(ctx context.Context, topic, group, afterID string, limit int, key string) (DeadLetterPage, error) {
	resp, err := c.api.ListDeadLetters(ctx, &dmqv1.ListDeadLettersRequest{Topic: topic, Group: group, AfterId: afterID, Limit: uint32(max(limit, 0)), Key: key})
	if err != nil {
		return DeadLetterPage{}, err
	}
	return DeadLetterPage{DeadLetters: resp.DeadLetters, Total: resp.Total}, nil
}

// GetDeadLetter returns one dead letter with its message.
func (c *Client) GetDeadLetter(ctx context.Context, topic, group, id string) (*dmqv1.DeadLetter, error) {
	return c.api.GetDeadLetter(ctx, &dmqv1.GetDeadLetterRequest{Topic: topic, Group: group, Id: id})
}

// DeadLetters selects dead letters of a group: set exactly one of IDs, Key
// or All.
type DeadLetters struct {
	IDs []string
	Key string
	All bool
}

func (d DeadLetters) selector(topic, group string) *dmqv1.DeadLetterSelector {
	return &dmqv1.DeadLetterSelector{Topic: topic, Group: group, Ids: d.IDs, Key: d.Key, All: d.All}
}

// RedriveDeadLetters hands dead letters back to their group for delivery
// with a fresh attempt count, and returns how many.
func (c *Client) RedriveDeadLetters(ctx context.Context, topic, group string, which DeadLetters) (int, error) {
	resp, err := c.api.RedriveDeadLetters(ctx, which.selector(topic, group))
	if err != nil {
		return 0, err
	}
	return int(resp.Count), nil
}

// PurgeDeadLetters deletes dead letters and returns how many.
func (c *Client) PurgeDeadLetters(ctx context.Context, topic, group string, which DeadLetters) (int, error) {
	resp, err := c.api.PurgeDeadLetters(ctx, which.selector(topic, group))
	if err != nil {
		return 0, err
	}
	return int(resp.Count), nil
}

// DelayedFilter narrows ListDelayed; zero values mean no filter.
type DelayedFilter struct {
	From, To time.Time // due in [From, To)
	Key      string
	AfterID  string
	Limit    int
}

// DelayedPage is one page of a topic's pending delayed messages.
type DelayedPage struct {
	Messages []*dmqv1.DelayedMessage
	Total    uint64
	NextDue  time.Time // zero when nothing is pending
}

// ListDelayed lists a topic's pending delayed messages, soonest first.
func (c *Client) ListDelayed(ctx context.Context, topic string, f DelayedFilter) (DelayedPage, error) {
	req := &dmqv1.ListDelayedRequest{Topic: topic, Key: f.Key, AfterId: f.AfterID, Limit: uint32(max(f.Limit, 0))}
	if !f.From.IsZero() {
		req.FromMs = f.From.UnixMilli()
	}
	if !f.To.IsZero() {
		req.ToMs = f.To.UnixMilli()
	}
	resp, err := c.api.ListDelayed(ctx, req)
	if err != nil {
		return DelayedPage{}, err
	}
	page := DelayedPage{Messages: resp.Messages, Total: resp.Total}
	if resp.NextDueMs > 0 {
		page.NextDue = time.UnixMilli(resp.NextDueMs)
	}
	return page, nil
}

// CancelDelayed cancels a pending delayed message by the id its publish
// returned. It fails with NotFound once the message was delivered.
func (c *Client) CancelDelayed(ctx context.Context, topic, id string) error {
	_, err := c.api.CancelDelayed(ctx, &dmqv1.CancelDelayedRequest{Topic: topic, Id: id})
	return err
}

// ClientFilter narrows ListClients; Online nil means online and offline.
type ClientFilter struct {
	Topic, Group string
	Online       *bool
}

// ListClients lists the broker's client registry.
func (c *Client) ListClients(ctx context.Context, f ClientFilter) ([]*dmqv1.ClientInfo, error) {
	resp, err := c.api.ListClients(ctx, &dmqv1.ListClientsRequest{Topic: f.Topic, Group: f.Group, Online: f.Online})
	if err != nil {
		return nil, err
	}
	return resp.Clients, nil
}

// DeleteClient removes an offline client from the registry.
func (c *Client) DeleteClient(ctx context.Context, id string) error {
	_, err := c.api.DeleteClients(ctx, &dmqv1.DeleteClientsRequest{ClientId: id})
	return err
}

// DeleteOfflineClients removes every offline client and returns how many.
func (c *Client) DeleteOfflineClients(ctx context.Context) (int, error) {
	resp, err := c.api.DeleteClients(ctx, &dmqv1.DeleteClientsRequest{AllOffline: true})
	if err != nil {
		return 0, err
	}
	return int(resp.Count), nil
}

// StatsQuery selects a topic's per-minute counters over [From, To),
// optionally one server's or one client's share.
type StatsQuery struct {
	From, To       time.Time
	Server, Client string
}

// TopicStats returns a topic's per-minute produced, consumed and failed
// counts with their totals, maxima and minima.
func (c *Client) TopicStats(ctx context.Context, topic string, q StatsQuery) (*dmqv1.TopicStatsResponse, error) {
	return c.api.GetTopicStats(ctx, &dmqv1.TopicStatsRequest{Topic: topic, FromMs: q.From.UnixMilli(), ToMs: q.To.UnixMilli(),
		Server: q.Server, ClientId: q.Client})
}

// Trace returns the life of one message (by id or delayed id) in time order.
func (c *Client) Trace(ctx context.Context, topic, id string) (*dmqv1.MessageTrace, error) {
	return c.api.GetTrace(ctx, &dmqv1.GetTraceRequest{Topic: topic, Id: id})
}

// SearchTrace finds a topic's messages by business key published in
// [from, to) (at most 7 days) and returns their traces.
func (c *Client) SearchTrace(ctx context.Context, topic, key string, from, to time.Time, limit int) ([]*dmqv1.MessageTrace, error) {
	resp, err := c.api.SearchTrace(ctx, &dmqv1.SearchTraceRequest{Topic: topic, Key: key, FromMs: from.UnixMilli(), ToMs: to.UnixMilli(), Limit: uint32(max(limit, 0))})
	if err != nil {
		return nil, err
	}
	return resp.Messages, nil
}
