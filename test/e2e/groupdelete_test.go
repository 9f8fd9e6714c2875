package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/config"
	"github.com/dmqio/dmq/internal/dmqtest"
	"google.golang.org/grpc/codes"
)

// A group without members whose oldest unacked message is older than
// abandoned_group_after is reported (API, metric); deleting it — through the SDK,
// the HTTP API or the CLI — ends its consumers with NotFound, is audited, lets
// retention remove what only it held back, survives a restart, and a group created
// again under the name starts afresh.
func TestGroupsCanBeDeleted(t *testing.T) {
	dir := t.TempDir()
	edit := func(c *config.Config) {
		c.AbandonedGroupAfter = time.Second
		c.SegmentBytes, c.RetentionAge, c.RetentionInterval = 1<<20, time.Millisecond, 100*time.Millisecond
	}
	s := dmqtest.Start(t, dir, edit)
	c := dmqtest.Dial(t, s.GRPCAddr())
	ctx := context.Background()
	const topic = "test.groups.orders"
	setupTopic(t, c, topic, client.GroupSpec{Name: "stale"}, client.GroupSpec{Name: "live"},
		client.GroupSpec{Name: "doomed"}, client.GroupSpec{Name: "viahttp"}, client.GroupSpec{Name: "viacli"})

	// live and doomed have consumers; stale, viahttp and viacli none.
	subscribe(t, dmqtest.Dial(t, s.GRPCAddr()), topic, "live", "live-1", func(context.Context, *client.Message) error { return nil })
	doomed := subscribe(t, dmqtest.Dial(t, s.GRPCAddr()), topic, "doomed", "doomed-1", func(context.Context, *client.Message) error { return nil })

	// About 3 MiB: the log has sealed segments that only the groups without
	// consumers keep from retention.
	body := strings.Repeat("x", 64<<10)
	p := c.NewProducer(topic)
	for range 48 {
		if err := p.PublishAsync(ctx, &client.Message{Body: []byte(body)}, func(client.PublishResult, error) {}); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	waitAcked(t, c, topic, "live", 48)

	// Abandoned: no members, oldest unacked older than 1 s.
	dmqtest.Eventually(t, 10*time.Second, "stale reported abandoned", func() bool {
		g, err := c.GetGroup(ctx, topic, "stale")
		return err == nil && g.Stats.Abandoned
	})
	if g, _ := c.GetGroup(ctx, topic, "live"); g.Stats.Abandoned {
		t.Fatalf("a group with a consumer is reported abandoned: %+v", g.Stats)
	}
	metrics := httpGet(t, "http://"+s.HTTPAddr()+"/metrics")
	gauge := func(group string) string { // a cluster node adds a shard label
		for _, l := range strings.Split(metrics, "\n") {
			if strings.HasPrefix(l, `dmq_group_abandoned{group="`+group+`",`) && strings.Contains(l, `topic="`+topic+`"`) {
				return l[strings.LastIndex(l, " ")+1:]
			}
		}
		return ""
	}
	if gauge("stale") != "1" || gauge("live") != "0" {
		t.Fatalf("/metrics lacks the abandoned gauges:\n%s", grepLines(metrics, "dmq_group_abandoned"))
	}
	if _, body := httpJSON(t, "GET", "http://"+s.HTTPAddr()+"/api/v1/topics/"+topic+"/groups/stale", ""); !strings.Contains(body, `"abandoned": true`) {
		t.Fatalf("GET group over HTTP: %s, want abandoned", body)
	}
	if tp, _ := c.GetTopic(ctx, topic); tp.Stats.FirstOffset != 0 {
		t.Fatalf("retention removed messages groups without consumers had not acked: first offset %d", tp.Stats.FirstOffset)
	}

	// SDK: the consumer ends with NotFound.
	if err := c.DeleteGroup(ctx, topic, "doomed"); err != nil {
		t.Fatalf("DeleteGroup: %v", err)
	}
	select {
	case <-doomed.Done():
		if client.Code(doomed.Err()) != codes.NotFound {
			t.Fatalf("the deleted group's consumer ended with %v, want NotFound", doomed.Err())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the deleted group's consumer did not end")
	}
	if _, err := c.GetGroup(ctx, topic, "doomed"); client.Code(err) != codes.NotFound {
		t.Fatalf("GetGroup after delete: %v, want NotFound", err)
	}
	if err := c.DeleteGroup(ctx, topic, "doomed"); client.Code(err) != codes.NotFound {
		t.Fatalf("second DeleteGroup: %v, want NotFound", err)
	}
	// HTTP and CLI.
	base := "http://" + s.HTTPAddr() + "/api/v1/topics/" + topic + "/groups/"
	if code, body := httpJSON(t, "DELETE", base+"viahttp", ""); code != http.StatusOK || !strings.Contains(body, `"deleted": "viahttp"`) {
		t.Fatalf("DELETE group over HTTP: %d %s", code, body)
	}
	if code, body := httpJSON(t, "DELETE", base+"viahttp", ""); code != http.StatusNotFound {
		t.Fatalf("second DELETE over HTTP: %d %s, want 404", code, body)
	}
	if out, errOut, code := runDMQ(t, s.GRPCAddr(), "", "group", "delete", topic, "viacli"); code != 0 || !strings.Contains(out, "deleted group viacli") {
		t.Fatalf("dmq group delete: %d %s %s", code, out, errOut)
	}
	if _, errOut, code := runDMQ(t, s.GRPCAddr(), "", "group", "delete", topic, "viacli"); code == 0 || !strings.Contains(errOut, "NotFound") {
		t.Fatalf("dmq group delete of a deleted group: exit %d, %s", code, errOut)
	}
	au, err := c.API().ListAudit(ctx, &dmqv1.ListAuditRequest{Action: "group.delete"})
	if err != nil {
		t.Fatal(err)
	}
	var targets []string
	for _, e := range au.Entries {
		targets = append(targets, e.Target)
	}
	if got := strings.Join(targets, ","); !strings.Contains(got, topic+"/doomed") || !strings.Contains(got, topic+"/viahttp") || !strings.Contains(got, topic+"/viacli") {
		t.Fatalf("audit of group.delete: %v", targets)
	}

	// The abandoned group deleted, retention removes the sealed segments.
	if err := c.DeleteGroup(ctx, topic, "stale"); err != nil {
		t.Fatal(err)
	}
	dmqtest.Eventually(t, 10*time.Second, "retention past what only the deleted group held", func() bool {
		tp, err := c.GetTopic(ctx, topic)
		return err == nil && tp.Stats.FirstOffset > 0
	})

	// A restart keeps them deleted; a group created again starts afresh.
	c.Close()
	s.Stop(t)
	s = dmqtest.Start(t, dir, edit)
	c = dmqtest.Dial(t, s.GRPCAddr())
	gs, err := c.ListGroups(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, g := range gs {
		names = append(names, g.Name)
	}
	if fmt.Sprint(names) != "[live]" {
		t.Fatalf("groups after a restart: %v, want [live]", names)
	}
	g, err := c.CreateGroup(ctx, client.GroupSpec{Topic: topic, Name: "stale"})
	if err != nil {
		t.Fatalf("create a deleted group's name again: %v", err)
	}
	if g.Stats.GetBacklog() != 0 || g.Stats.GetDeadLetters() != 0 || g.StartOffset != 48 {
		t.Fatalf("the group created again: %+v, start %d; want a fresh group at the end", g.Stats, g.StartOffset)
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
