package meta

import (
	"encoding/json"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

//	k/<client id> → Client as JSON

// Client is a registry entry of an SDK client.
type Client struct {
	ID               string      `json:"id"`
	Host             string      `json:"host,omitempty"`
	Address          string      `json:"address,omitempty"`
	Pid              int32       `json:"pid,omitempty"`
	SDKVersion       string      `json:"sdk_version,omitempty"`
	Produces         []string    `json:"produces,omitempty"`
	Consumes         []ClientSub `json:"consumes,omitempty"`
	ConnectedSinceMs int64       `json:"connected_since_ms"`
	LastSeenMs       int64       `json:"last_seen_ms"`
	// Left is set when the client said goodbye; it is offline at once.
	Left bool `json:"left,omitempty"`
}

// ClientSub is a group a client consumes from.
type ClientSub struct {
	Topic string `json:"topic"`
	Group string `json:"group"`
}

func clientKey(id string) []byte { return append([]byte("k/"), id...) }

// PutClient stores a registry entry. Unsynced: losing the last heartbeat
// in a crash only makes a client look offline a little earlier.
func (s *Store) PutClient(c Client) error {
	v, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return s.set(clientKey(c.ID), v, pebble.NoSync)
}

// DeleteClient removes a registry entry durably.
func (s *Store) DeleteClient(id string) error {
	return s.del(clientKey(id), pebble.Sync)
}

// Clients returns every registry entry.
func (s *Store) Clients() ([]Client, error) {
	var out []Client
	err := s.scan([]byte("k/"), func(k, v []byte) error {
		var c Client
		if err := json.Unmarshal(v, &c); err != nil {
			return fmt.Errorf("client record %q: %w", k, err)
		}
		out = append(out, c)
		return nil
	})
	return out, err
}
