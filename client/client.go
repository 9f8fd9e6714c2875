// Package client is the Go SDK of DMQ: connect with Dial, manage topics and
// groups, publish with Client.Publish or a pipelined Producer, and consume
// with Subscribe.
//
// Errors returned by the SDK are gRPC status errors; use Code to branch on
// them. Retry contract: an Unavailable publish may or may not have been
// stored (resend it; duplicates are possible until producer retransmission
// with client message ids lands), every other code means nothing was stored.
package client

import (
	"context"
	"fmt"
	"os"
	"time"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// Version is the SDK version announced to brokers.
const Version = "0.1.0"

// Client is a connection to a DMQ broker. It is safe for concurrent use.
type Client struct {
	conn     *grpc.ClientConn
	api      dmqv1.BrokerClient
	clientID string
}

// Option configures Dial.
type Option func(*dialOptions)

type dialOptions struct {
	clientID string
}

// WithClientID sets the client id used for subscriptions (default: host-pid).
func WithClientID(id string) Option { return func(o *dialOptions) { o.clientID = id } }

// Dial connects to the broker at addr (host:port). The connection is made
// lazily and re-established as needed; Dial fails only on a bad address.
func Dial(addr string, opts ...Option) (*Client, error) {
	o := dialOptions{}
	for _, f := range opts {
		f(&o)
	}
	if o.clientID == "" {
		host, _ := os.Hostname()
		o.clientID = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)),
	)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return &Client{conn: conn, api: dmqv1.NewBrokerClient(conn), clientID: o.clientID}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// ClientID is the id this client subscribes with unless a subscription overrides it.
func (c *Client) ClientID() string { return c.clientID }

// API returns the raw generated gRPC client, for calls the SDK does not wrap.
func (c *Client) API() dmqv1.BrokerClient { return c.api }

// Code returns the gRPC status code of an SDK error (codes.OK for nil).
func Code(err error) codes.Code { return status.Code(err) }

// Message is a message to publish or a delivered one.
type Message struct {
	// Set by the broker.
	ID          string
	Topic       string
	PublishedAt time.Time
	// Attempt is 1 on the first delivery to a group, 2 on the first redelivery...
	Attempt int
	// LastFailure says why the previous attempt failed (empty on attempt 1).
	LastFailure string

	Key             string
	Headers         map[string]string
	Body            []byte
	ClientMessageID string
}

func (m *Message) outgoing() *dmqv1.OutgoingMessage {
	return &dmqv1.OutgoingMessage{Key: m.Key, Headers: m.Headers, Body: m.Body, ClientMessageId: m.ClientMessageID}
}

func fromProto(m *dmqv1.Message) *Message {
	return &Message{
		ID: m.Id, Topic: m.Topic, PublishedAt: time.UnixMilli(m.PublishedAtMs), Attempt: int(m.Attempt), LastFailure: m.LastFailure,
		Key: m.Key, Headers: m.Headers, Body: m.Body, ClientMessageID: m.ClientMessageId,
	}
}

// Publish stores msgs in topic and returns their ids once the broker has
// them durably. All messages are stored, or none.
func (c *Client) Publish(ctx context.Context, topic string, msgs ...*Message) ([]string, error) {
	req := &dmqv1.PublishRequest{Topic: topic, Messages: make([]*dmqv1.OutgoingMessage, len(msgs))}
	for i, m := range msgs {
		req.Messages[i] = m.outgoing()
	}
	resp, err := c.api.Publish(ctx, req)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(resp.Results))
	for i, r := range resp.Results {
		if r.Error != nil {
			return nil, status.Error(codes.Code(r.Error.Code), r.Error.Message)
		}
		ids[i] = r.Id
	}
	return ids, nil
}
