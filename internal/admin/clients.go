package admin

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/dmqio/dmq/internal/broker"
)

type subscriptionJSON struct {
	Topic string `json:"topic"`
	Group string `json:"group"`
}

// clientJSON is an SDK client of the registry in API responses.
type clientJSON struct {
	ID               string             `json:"id"`
	Online           bool               `json:"online"`
	Roles            []string           `json:"roles"`
	Host             string             `json:"host"`
	Address          string             `json:"address"`
	Pid              int32              `json:"pid"`
	SDKVersion       string             `json:"sdk_version"`
	Produces         []string           `json:"produces"`
	Consumes         []subscriptionJSON `json:"consumes"`
	ConnectedSince   string             `json:"connected_since"`
	ConnectedSinceMs int64              `json:"connected_since_ms"`
	LastSeen         string             `json:"last_seen"`
	LastSeenMs       int64              `json:"last_seen_ms"`
	Left             bool               `json:"left"`
}

func clientOf(c broker.ClientInfo) clientJSON {
	out := clientJSON{
		ID: c.ID, Online: c.Online, Roles: []string{}, Host: c.Host, Address: c.Address, Pid: c.Pid,
		SDKVersion: c.SDKVersion, Produces: append([]string{}, c.Produces...), Consumes: []subscriptionJSON{},
		ConnectedSince: formatMs(c.ConnectedSinceMs), ConnectedSinceMs: c.ConnectedSinceMs,
		LastSeen: formatMs(c.LastSeenMs), LastSeenMs: c.LastSeenMs, Left: c.Left,
	}
	if len(c.Produces) > 0 {
		out.Roles = append(out.Roles, "producer")
	}
	if len(c.Consumes) > 0 {
		out.Roles = append(out.Roles, "consumer")
	}
	for _, s := range c.Consumes {
		out.Consumes = append(out.Consumes, subscriptionJSON{Topic: s.Topic, Group: s.Group})
	}
	return out
}

func (a *api) listClients(r *http.Request) (int, any, error) {
	q := r.URL.Query()
	f := broker.ClientFilter{Topic: q.Get("topic"), Group: q.Get("group")}
	if f.Group != "" && f.Topic == "" {
		return 0, nil, badRequest("a group filter needs its topic")
	}
	if s := q.Get("online"); s != "" {
		online, err := strconv.ParseBool(s)
		if err != nil {
			return 0, nil, badRequest("query parameter online=%q must be true or false", s)
		}
		f.Online = &online
	}
	cs := a.b.ListClients(f)
	out := make([]clientJSON, len(cs))
	for i, c := range cs {
		out[i] = clientOf(c)
	}
	return http.StatusOK, map[string]any{"clients": out}, nil
}

func (a *api) deleteClient(r *http.Request) (int, any, error) {
	n, err := a.b.DeleteClients(r.PathValue("id"), false)
	if err != nil {
		return 0, nil, err
	}
	a.audit(r, "clients.delete", r.PathValue("id"), "")
	return http.StatusOK, map[string]int{"deleted": n}, nil
}

func (a *api) deleteOfflineClients(r *http.Request) (int, any, error) {
	n, err := a.b.DeleteClients("", true)
	if err != nil {
		return 0, nil, err
	}
	a.audit(r, "clients.delete", "all offline", fmt.Sprintf("%d deleted", n))
	return http.StatusOK, map[string]int{"deleted": n}, nil
}
