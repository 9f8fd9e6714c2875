package cluster

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Peer is one voter of the initial cluster configuration.
type Peer struct {
	ID   string // node id, e.g. "n1"
	Addr string // cluster listen address, host:port
}

// ParsePeers parses a peers list such as "n1=127.0.0.1:7431,n2=127.0.0.1:7432". Ids and
// addresses must be unique, every id must be a valid node id and every address host:port
// with a numeric port. An empty string gives no peers. Whether the node itself is in the
// list is checked by Config.Validate, which knows the node id.
func ParsePeers(s string) ([]Peer, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var peers []Peer
	ids := make(map[string]bool)
	addrs := make(map[string]string)
	for i, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		id, addr, ok := strings.Cut(item, "=")
		if !ok {
			return nil, fmt.Errorf("cluster: peers entry %d %q: want id=host:port", i+1, item)
		}
		id, addr = strings.TrimSpace(id), strings.TrimSpace(addr)
		if err := validateID("node id", id); err != nil {
			return nil, fmt.Errorf("cluster: peers entry %d %q: %w", i+1, item, err)
		}
		if err := validateAddr(addr); err != nil {
			return nil, fmt.Errorf("cluster: peers entry %d %q: %w", i+1, item, err)
		}
		if ids[id] {
			return nil, fmt.Errorf("cluster: peers list names node %q twice", id)
		}
		if other, dup := addrs[addr]; dup {
			return nil, fmt.Errorf("cluster: peers list gives address %s to both %q and %q", addr, other, id)
		}
		ids[id] = true
		addrs[addr] = id
		peers = append(peers, Peer{ID: id, Addr: addr})
	}
	return peers, nil
}

// FormatPeers is the inverse of ParsePeers.
func FormatPeers(peers []Peer) string {
	parts := make([]string, len(peers))
	for i, p := range peers {
		parts[i] = p.ID + "=" + p.Addr
	}
	return strings.Join(parts, ",")
}

// validateAddr accepts host:port with a non-empty host and a port in 1..65535.
func validateAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("bad address %q: %v", addr, err)
	}
	if host == "" {
		return fmt.Errorf("bad address %q: no host (peers must dial it)", addr)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("bad address %q: port must be a number from 1 to 65535", addr)
	}
	return nil
}

// validateID accepts 1 to 64 characters from [a-zA-Z0-9_.-]: node ids, cluster ids and group
// names appear in file paths, handshakes and logs.
func validateID(what, id string) error {
	if id == "" {
		return fmt.Errorf("empty %s", what)
	}
	if len(id) > 64 {
		return fmt.Errorf("%s %.20q... is longer than 64 characters", what, id)
	}
	for _, r := range id {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-', r == '.':
		default:
			return fmt.Errorf("%s %q has %q; use letters, digits, '_', '-' and '.'", what, id, r)
		}
	}
	if id == "." || id == ".." {
		return fmt.Errorf("%s %q is not a name", what, id)
	}
	return nil
}
