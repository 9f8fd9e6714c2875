package client

import (
	"context"
	"time"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
)

// TopicSpec describes a topic to create.
type TopicSpec struct {
	Name, Department, Owner, Purpose string
}

// CreateTopic creates a topic.
func (c *Client) CreateTopic(ctx context.Context, spec TopicSpec) (*dmqv1.Topic, error) {
	return c.api.CreateTopic(ctx, &dmqv1.CreateTopicRequest{Name: spec.Name, Department: spec.Department, Owner: spec.Owner, Purpose: spec.Purpose})
}

// GetTopic describes a topic.
func (c *Client) GetTopic(ctx context.Context, name string) (*dmqv1.Topic, error) {
	return c.api.GetTopic(ctx, &dmqv1.GetTopicRequest{Name: name})
}

// ListTopics lists every topic.
func (c *Client) ListTopics(ctx context.Context) ([]*dmqv1.Topic, error) {
	resp, err := c.api.ListTopics(ctx, &dmqv1.ListTopicsRequest{})
	if err != nil {
		return nil, err
	}
	return resp.Topics, nil
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
