package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/dmqio/dmq/internal/diskfs"
)

// identityFile, under <data dir>/raft/, records the cluster id and node id the data belongs
// to, so that a data directory is never joined to another cluster or reused under another
// node id (which would let one node vote twice, or replay another cluster's log).
const identityFile = "identity"

// ErrIdentityMismatch is matched (errors.Is) when the data directory belongs to another
// cluster id or node id than the configuration.
var ErrIdentityMismatch = errors.New("data directory belongs to another cluster or node")

// checkIdentity creates <raftDir>/identity on first start and otherwise compares it with the
// configured ids. A mismatch changes nothing on disk.
func checkIdentity(fs vfs.FS, raftDir, clusterID, nodeID string) error {
	path := filepath.Join(raftDir, identityFile)
	b, err := diskfs.ReadFile(fs, path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return writeIdentity(fs, raftDir, path, clusterID, nodeID)
	case err != nil:
		return fmt.Errorf("cluster: read %s: %w", path, err)
	}
	gotCluster, gotNode, err := parseIdentity(string(b))
	if err != nil {
		return fmt.Errorf("cluster: %s: %w", path, err)
	}
	if gotCluster != clusterID {
		return fmt.Errorf("cluster: %w: %s was created for cluster id %q, not %q; use the cluster id it was created with or another data dir",
			ErrIdentityMismatch, raftDir, gotCluster, clusterID)
	}
	if gotNode != nodeID {
		return fmt.Errorf("cluster: %w: %s holds node %q's data, not node %q's; use node id %q or another data dir",
			ErrIdentityMismatch, raftDir, gotNode, nodeID, gotNode)
	}
	return nil
}

func parseIdentity(s string) (clusterID, nodeID string, err error) {
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		switch {
		case !ok:
		case k == "cluster_id":
			clusterID = v
		case k == "node_id":
			nodeID = v
		}
	}
	if clusterID == "" || nodeID == "" {
		return "", "", errors.New("damaged identity file: want cluster_id= and node_id= lines")
	}
	return clusterID, nodeID, nil
}

// writeIdentity writes the identity file.
func writeIdentity(fs vfs.FS, dir, path, clusterID, nodeID string) error {
	return writeFileDurable(fs, dir, path, fmt.Appendf(nil, "cluster_id=%s\nnode_id=%s\n", clusterID, nodeID))
}

// writeFileDurable creates dir if needed and writes a small file in it atomically.
func writeFileDurable(fs vfs.FS, dir, path string, data []byte) error {
	if err := diskfs.MkdirAll(fs, dir); err != nil {
		return fmt.Errorf("cluster: create %s: %w", dir, err)
	}
	if err := diskfs.WriteFile(fs, path, data); err != nil {
		return fmt.Errorf("cluster: write %s: %w", path, err)
	}
	return nil
}

// RecordedSetting returns the value of a setting fixed when the node's data was created
// (the cluster's shard count, say), recording value as it on first use: the caller
// compares. The file is <data>/raft/<name>. Call after Start.
func (n *Node) RecordedSetting(name, value string) (string, error) {
	if err := validateID("setting name", name); err != nil || name == identityFile {
		return "", fmt.Errorf("cluster: %q cannot name a setting", name)
	}
	path := filepath.Join(n.raftDir, name)
	b, err := diskfs.ReadFile(n.cfg.FS, path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return value, writeFileDurable(n.cfg.FS, n.raftDir, path, []byte(value+"\n"))
	case err != nil:
		return "", fmt.Errorf("cluster: read %s: %w", path, err)
	}
	return strings.TrimSpace(string(b)), nil
}
