package cli

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/dmqio/dmq/internal/dmqtest"
)

// The workloads of the peers' harness run under their names with tiny
// counts, and their JSON lines hold sane figures: every message published
// and delivered to every group, positive rates, p50 <= p99 <= max.
func TestBenchWorkloadsJSON(t *testing.T) {
	s := dmqtest.Start(t, "", nil)
	addr := s.GRPCAddr()
	quick := []string{"--scale", "0.005", "--no-warmup", "--settle", "0s", "--hard", "20s", "--json"}
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"all", []string{"bench", "all"}, suiteWorkloads},
		{"w1 with 2 producers over 2 topics", []string{"bench", "w1", "--producers", "2", "--topics", "2"}, []string{"w1_1k", "w1_128"}},
		{"w3 with 2 producers over 2 topics", []string{"bench", "w3", "--producers", "2", "--topics", "2"}, []string{"w3_tput", "w3_lat"}},
		{"w4 twice", []string{"bench", "w4", "--reps", "2"}, []string{"w4", "w4"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := mustRun(t, addr, "", append(tc.args, quick...)...)
			var got []string
			for line := range strings.Lines(out) {
				var r SuiteResult
				if err := json.Unmarshal([]byte(line), &r); err != nil {
					t.Fatalf("dmq %s printed %q: %v", strings.Join(tc.args, " "), line, err)
				}
				got = append(got, r.Workload)
				checkSuiteResult(t, r)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("dmq %s ran workloads %v, want %v", strings.Join(tc.args, " "), got, tc.want)
			}
		})
	}
	if _, errOut, code := run(t, addr, "", "bench", "all", "--workloads", "w9"); code == 0 || !strings.Contains(errOut, `unknown workload "w9"`) {
		t.Errorf("bench all --workloads w9: exit %d, stderr %q; want an unknown workload error", code, errOut)
	}
}

func checkSuiteResult(t *testing.T, r SuiteResult) {
	t.Helper()
	if r.Err != "" || r.Capped {
		t.Errorf("%s: err %q capped %v", r.Workload, r.Err, r.Capped)
	}
	if r.Msgs != r.Target || r.Msgs <= 0 {
		t.Errorf("%s: %d of %d messages acked", r.Workload, r.Msgs, r.Target)
	}
	if r.MsgsPerSec <= 0 || r.MBPerSec <= 0 || r.Secs <= 0 {
		t.Errorf("%s: %.0f msgs/s, %.1f MB/s in %.3f s; want positive figures", r.Workload, r.MsgsPerSec, r.MBPerSec, r.Secs)
	}
	if !r.Fsync || r.Durability != "fsync before ack" || r.Label != "dmq-fsync" {
		t.Errorf("%s: fsync %v, durability %q, label %q; want the broker's fsync mode", r.Workload, r.Fsync, r.Durability, r.Label)
	}
	if r.Groups > 0 {
		var sum int64
		for _, n := range r.PerConsumer {
			sum += n
		}
		if want := int64(r.Msgs * r.Groups); r.Delivered != want || sum != want {
			t.Errorf("%s: delivered %d (per consumer %v), want %d", r.Workload, r.Delivered, r.PerConsumer, want)
		}
	}
	if r.Workload == "w2" || r.Workload == "w3_lat" {
		if !(0 < r.P50 && r.P50 <= r.P99 && r.P99 <= r.Max) {
			t.Errorf("%s: p50 %.3f, p99 %.3f, max %.3f ms; want 0 < p50 <= p99 <= max", r.Workload, r.P50, r.P99, r.Max)
		}
	}
}
