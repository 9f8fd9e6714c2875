package server

import (
	"github.com/prometheus/client_golang/prometheus"
)

// clusterCollector exports this node's view of its Raft group. Lag of a follower is
// dmq_cluster_follower_lag_entries on the leader: its commit index minus the follower's
// applied index, as the follower tells it (hashicorp/raft does not tell the leader its
// followers' positions; the nodes tell each other, see cluster_peers.go).
type clusterCollector struct {
	c *clusterNode

	leader, term, lastLog, commit, applied, snapshot, contact, followerUp, followerLag, changes, stalled *prometheus.Desc
	diskFree, diskReserve                                                                                *prometheus.Desc
}

func (c *clusterNode) collector() prometheus.Collector {
	labels := []string{"group"}
	d := func(name, help string, extra ...string) *prometheus.Desc {
		return prometheus.NewDesc("dmq_cluster_"+name, help, append(labels, extra...), prometheus.Labels{"node": c.s.cfg.NodeID})
	}
	return &clusterCollector{
		c:           c,
		leader:      d("leader", "1 while this node leads the group (shard) and serves its clients."),
		term:        d("term", "Raft term this node is in."),
		lastLog:     d("last_log_index", "Index of the last entry in this node's Raft log."),
		commit:      d("commit_index", "Index of the last entry this node knows committed."),
		applied:     d("applied_index", "Index of the last entry applied to this node's replica."),
		snapshot:    d("last_snapshot_index", "Index covered by this node's latest snapshot."),
		contact:     d("last_contact_seconds", "Seconds since this follower last heard from the leader (0 on the leader)."),
		followerUp:  d("follower_healthy", "On the leader: 1 while heartbeats reach the follower.", "follower"),
		followerLag: d("follower_lag_entries", "On the leader: its commit index minus the follower's applied index, as the follower last told (every second).", "follower"),
		changes:     d("leader_changes_total", "Leader changes this node saw since it started (new leaders and leaderless spells)."),
		stalled:     d("replica_stalled", "1 while this node's replica of the group cannot write a committed entry (a full disk) and applies nothing."),
		diskFree: prometheus.NewDesc("dmq_disk_free_bytes", "Free bytes of the file system holding the data directory.",
			nil, prometheus.Labels{"node": c.s.cfg.NodeID}),
		diskReserve: prometheus.NewDesc("dmq_disk_reserve_bytes", "Free bytes below which the node refuses publishes (disk_reserve).",
			nil, prometheus.Labels{"node": c.s.cfg.NodeID}),
	}
}

func (cc *clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{cc.leader, cc.term, cc.lastLog, cc.commit, cc.applied, cc.snapshot, cc.contact, cc.followerUp, cc.followerLag, cc.changes, cc.stalled, cc.diskFree, cc.diskReserve} {
		ch <- d
	}
}

func (cc *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	st := cc.c.status()
	if st.Disk.Error == "" {
		ch <- prometheus.MustNewConstMetric(cc.diskFree, prometheus.GaugeValue, float64(st.Disk.FreeBytes))
		ch <- prometheus.MustNewConstMetric(cc.diskReserve, prometheus.GaugeValue, float64(st.Disk.ReserveBytes))
	}
	for _, g := range st.Groups {
		gauge := func(d *prometheus.Desc, v float64, extra ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append([]string{g.Name}, extra...)...)
		}
		lead := 0.0
		if g.Role == "leader" {
			lead = 1
		}
		gauge(cc.leader, lead)
		stalled := 0.0
		if g.Stalled != "" {
			stalled = 1
		}
		gauge(cc.stalled, stalled)
		gauge(cc.term, float64(g.Term))
		gauge(cc.lastLog, float64(g.LastLogIndex))
		gauge(cc.commit, float64(g.CommitIndex))
		gauge(cc.applied, float64(g.AppliedIndex))
		gauge(cc.snapshot, float64(g.LastSnapshotIndex))
		contact := 0.0
		if g.LastContactMs > 0 {
			contact = float64(nowMs()-g.LastContactMs) / 1000
		}
		gauge(cc.contact, contact)
		ch <- prometheus.MustNewConstMetric(cc.changes, prometheus.CounterValue, float64(cc.c.leaderChanges.Load()), g.Name)
		for _, f := range g.Followers {
			up := 0.0
			if f.Healthy {
				up = 1
			}
			gauge(cc.followerUp, up, f.ID)
		}
		if g.Role == "leader" {
			for _, r := range g.Replicas {
				if r.ID != st.NodeID && r.LastSeenMs > 0 {
					gauge(cc.followerLag, float64(r.Lag), r.ID)
				}
			}
		}
	}
}
