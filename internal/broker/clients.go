package broker

import (
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/dmqio/dmq/internal/meta"
)

// clientRegistry knows the SDK clients that announced themselves with
// heartbeats: online while they keep coming within the timeout, offline after,
// until someone deletes them or ClientRetention passed. A client that leaves
// within its first heartbeat interval (a dmq pub, a one-shot job) is forgotten at
// once: each such process has an id of its own, and thousands of them would bury
// the registry.
type clientRegistry struct {
	mu      sync.Mutex
	clients map[string]*meta.Client
}

// ClientInfo is a registry entry with its online state.
type ClientInfo struct {
	meta.Client
	Online bool
}

// ClientFilter narrows ListClients.
type ClientFilter struct {
	Topic, Group string
	Online       *bool
}

func (b *Broker) loadClients() error {
	cs, err := b.meta.Clients()
	if err != nil {
		return err
	}
	b.clients.clients = make(map[string]*meta.Client, len(cs))
	for i := range cs {
		b.clients.clients[cs[i].ID] = &cs[i]
	}
	return nil
}

func (b *Broker) online(c *meta.Client, nowMs int64) bool {
	return !c.Left && nowMs-c.LastSeenMs <= b.cfg.ClientTimeout.Milliseconds()
}

// Heartbeat records that a client is alive (or, with Left, leaving) and
// what it produces and consumes. addr is where the broker sees it.
func (b *Broker) Heartbeat(c meta.Client, addr string) error {
	if c.ID == "" || len(c.ID) > MaxClientIDLen {
		return errorf(KindInvalid, "client id must be 1 to %d bytes", MaxClientIDLen)
	}
	if err := checkTexts(textField{"host", c.Host, MaxHostLen}, textField{"sdk_version", c.SDKVersion, MaxSDKVersionLen}); err != nil {
		return err
	}
	if len(c.Produces) > MaxClientTopics || len(c.Consumes) > MaxClientTopics {
		return errorf(KindInvalid, "a heartbeat lists %d produced and %d consumed topics; the limit is %d each", len(c.Produces), len(c.Consumes), MaxClientTopics)
	}
	for _, name := range c.Produces {
		if len(name) > maxTopicNameLen {
			return errorf(KindInvalid, "a heartbeat names a produced topic longer than %d bytes", maxTopicNameLen)
		}
	}
	for _, s := range c.Consumes {
		if len(s.Topic) > maxTopicNameLen || len(s.Group) > maxTopicNameLen {
			return errorf(KindInvalid, "a heartbeat names a consumed topic or group longer than %d bytes", maxTopicNameLen)
		}
	}
	nowMs := b.Now().UnixMilli()
	b.clients.mu.Lock()
	defer b.clients.mu.Unlock()
	old := b.clients.clients[c.ID]
	c.Address, c.LastSeenMs = addr, nowMs
	if old != nil && b.online(old, nowMs) {
		c.ConnectedSinceMs = old.ConnectedSinceMs
	} else {
		c.ConnectedSinceMs = nowMs
	}
	if c.Left && (old == nil || b.online(old, nowMs) && nowMs-old.ConnectedSinceMs < b.cfg.HeartbeatInterval.Milliseconds()) {
		if old == nil {
			return nil
		}
		if err := b.meta.DeleteClient(c.ID); err != nil {
			return wrap(KindInternal, err, "delete client %q", c.ID)
		}
		delete(b.clients.clients, c.ID)
		return nil
	}
	sort.Strings(c.Produces)
	if err := b.meta.PutClient(c); err != nil {
		return wrap(KindInternal, err, "store client %q", c.ID)
	}
	b.clients.clients[c.ID] = &c
	return nil
}

// ListClients returns the registry entries that match f, sorted by id.
func (b *Broker) ListClients(f ClientFilter) []ClientInfo {
	nowMs := b.Now().UnixMilli()
	b.clients.mu.Lock()
	defer b.clients.mu.Unlock()
	var out []ClientInfo
	for _, c := range b.clients.clients {
		ci := ClientInfo{Client: *c, Online: b.online(c, nowMs)}
		if f.Online != nil && *f.Online != ci.Online {
			continue
		}
		if f.Topic != "" {
			uses := slices.Contains(c.Produces, f.Topic) && f.Group == ""
			for _, s := range c.Consumes {
				uses = uses || (s.Topic == f.Topic && (f.Group == "" || s.Group == f.Group))
			}
			if !uses {
				continue
			}
		}
		out = append(out, ci)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// DeleteClients removes one offline client, or with allOffline every
// offline one, and returns how many.
func (b *Broker) DeleteClients(id string, allOffline bool) (int, error) {
	if (id == "") == !allOffline {
		return 0, errorf(KindInvalid, "name one client id, or ask for all offline clients")
	}
	nowMs := b.Now().UnixMilli()
	b.clients.mu.Lock()
	defer b.clients.mu.Unlock()
	var victims []string
	if id != "" {
		c := b.clients.clients[id]
		if c == nil {
			return 0, errorf(KindNotFound, "client %q is not in the registry", id)
		}
		if b.online(c, nowMs) {
			return 0, errorf(KindPrecondition, "client %q is online (last seen %s); only offline clients can be deleted",
				id, time.UnixMilli(c.LastSeenMs).UTC().Format(time.RFC3339))
		}
		victims = []string{id}
	} else {
		for cid, c := range b.clients.clients {
			if !b.online(c, nowMs) {
				victims = append(victims, cid)
			}
		}
	}
	for _, v := range victims {
		if err := b.meta.DeleteClient(v); err != nil {
			return 0, wrap(KindInternal, err, "delete client %q", v)
		}
		delete(b.clients.clients, v)
	}
	return len(victims), nil
}

// expireClients forgets the clients offline for longer than ClientRetention.
func (b *Broker) expireClients() {
	nowMs := b.Now().UnixMilli()
	limit := nowMs - b.cfg.ClientRetention.Milliseconds()
	b.clients.mu.Lock()
	defer b.clients.mu.Unlock()
	for id, c := range b.clients.clients {
		if c.LastSeenMs >= limit || b.online(c, nowMs) {
			continue
		}
		if err := b.meta.DeleteClient(id); err != nil {
			b.logger.Error("forget offline client", "client", id, "err", err)
			return
		}
		delete(b.clients.clients, id)
	}
}
