package browser_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/config"
	"github.com/dmqio/dmq/internal/dmqtest"
)

// startServer runs a server where prod topics wait for approval and
// clients go offline 300 ms after their last heartbeat.
func startServer(t *testing.T) *dmqtest.Server {
	t.Helper()
	return dmqtest.Start(t, "", func(c *config.Config) {
		c.AutoApproveEnvs = []string{"dev", "test"}
		c.HeartbeatInterval, c.ClientTimeout = 50*time.Millisecond, 300*time.Millisecond
	})
}

// getJSON reads an admin API answer.
func getJSON(t *testing.T, s *dmqtest.Server, path string, v any) int {
	t.Helper()
	resp, err := http.Get("http://" + s.HTTPAddr() + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: decode: %v", path, err)
	}
	return resp.StatusCode
}

// The scenario: register a prod topic in the form, approve it,
// publish with the SDK, see the counters and a chart point for the minute,
// trace a message by business key, switch to Chinese, and delete offline
// clients. Dead letters and delayed messages are handled on their pages.
func TestConsoleRegisterApprovePublishTraceAndClients(t *testing.T) {
	s := startServer(t)
	b := newBrowser(t, "http://"+s.HTTPAddr())
	ctx := context.Background()
	const topic = "prod.shop.orders"

	// Register: the topic waits for approval.
	b.open("/topics", "#register-form")
	b.screenshot("topics-empty")
	b.click("#register summary")
	b.fill("#register-form [name=name]", topic)
	b.fill("#register-form [name=department]", "shop")
	b.fill("#register-form [name=owner]", "alice")
	b.fill("#register-form [name=requested_by]", "alice")
	b.fill("#register-form [name=purpose]", "order events")
	b.click("#register-form button[type=submit]")
	b.waitText("#notice", topic)
	b.waitJS("the pending topic in the table", `!!document.querySelector('#topics-table [data-status="pending"]')`)

	// Approve. The requester may not approve her own topic: the dialog
	// shows the API's refusal next to the name and the topic stays pending.
	b.click("#topics-table [data-action=approve]")
	b.fill("dialog [name=by]", "alice")
	b.click("dialog [data-action=confirm]")
	b.waitText(`dialog [data-field="by"] .field-error`, "cannot approve it too")
	b.screenshot("topics-approve-refused")
	var tp struct {
		Status    string `json:"status"`
		DecidedBy string `json:"decided_by"`
	}
	getJSON(t, s, "/api/v1/topics/"+topic, &tp)
	if tp.Status != "pending" {
		t.Fatalf("after a refused approval the topic is %q, want it still pending", tp.Status)
	}
	b.fill("dialog [name=by]", "bob")
	b.fill("dialog [name=reason]", "reviewed")
	b.click("dialog [data-action=confirm]")
	b.waitJS("the approved topic in the table", `!!document.querySelector('#topics-table [data-status="approved"]') && !document.querySelector('dialog')`)
	getJSON(t, s, "/api/v1/topics/"+topic, &tp)
	if tp.Status != "approved" || tp.DecidedBy != "bob" {
		t.Fatalf("topic after approval: status %q by %q, want approved by bob", tp.Status, tp.DecidedBy)
	}
	b.screenshot("topics")

	// Publish with the SDK and consume: billing acks everything, mailer
	// fails everything into its dead letters.
	admin := dmqtest.Dial(t, s.GRPCAddr())
	for _, g := range []client.GroupSpec{
		{Topic: topic, Name: "billing"},
		{Topic: topic, Name: "mailer", MaxAttempts: 1},
	} {
		if _, err := admin.CreateGroup(ctx, g); err != nil {
			t.Fatalf("CreateGroup %s: %v", g.Name, err)
		}
	}
	consumer := dmqtest.Dial(t, s.GRPCAddr(), client.WithClientID("billing-1"))
	billing, err := consumer.Subscribe(ctx, topic, "billing", func(context.Context, *client.Message) error { return nil }, client.ConsumerClientID("billing-1"))
	if err != nil {
		t.Fatal(err)
	}
	mailer, err := consumer.Subscribe(ctx, topic, "mailer", func(context.Context, *client.Message) error {
		return errors.New("smtp: connection refused")
	}, client.ConsumerClientID("billing-1"))
	if err != nil {
		t.Fatal(err)
	}
	producer := dmqtest.Dial(t, s.GRPCAddr(), client.WithClientID("order-service"))
	firstMinute := time.Now().Truncate(time.Minute)
	const published = 5
	for i := range published {
		if _, err := producer.Publish(ctx, topic, &client.Message{Key: fmt.Sprint("order-", 40+i), Body: []byte(fmt.Sprintf(`{"order":%d}`, 40+i))}); err != nil {
			t.Fatal(err)
		}
	}
	// A delayed message counts as produced when it is published.
	if _, err := producer.Publish(ctx, topic, (&client.Message{Key: "order-99", Body: []byte("close unpaid order")}).WithDelay(time.Hour)); err != nil {
		t.Fatal(err)
	}
	const produced = published + 1
	lastMinute := time.Now().Truncate(time.Minute)
	dmqtest.Eventually(t, 10*time.Second, "billing acked and mailer dead-lettered everything", func() bool {
		bg, err1 := admin.GetGroup(ctx, topic, "billing")
		mg, err2 := admin.GetGroup(ctx, topic, "mailer")
		return err1 == nil && err2 == nil && bg.Stats.AckFloor >= published && bg.Stats.InFlight == 0 && mg.Stats.DeadLetters == published
	})

	// The topic page lists both groups.
	b.open("/topics/"+topic, "#groups-table")
	b.waitText("#groups-table", "mailer")
	b.screenshot("topic")

	// Monitoring: the produced counter and a chart point for the minute.
	// A range around the publishes (in the browser's local time, the
	// form's), so the test does not depend on the day it runs.
	local := func(t time.Time) string { return t.Local().Format("2006-01-02T15:04") }
	b.open(fmt.Sprintf("/monitor?topic=%s&from=%s&to=%s", topic, local(firstMinute.Add(-time.Hour)), local(lastMinute.Add(time.Hour))),
		`[data-metric="produced"] [data-stat="total"]`)
	b.waitText(`[data-metric="produced"] [data-stat="total"]`, fmt.Sprint(produced))
	b.waitJS("the produced chart drawn", `!!document.querySelector('[data-metric="produced"] .uplot canvas')`)
	rows := eval[map[string]string](b, `Object.fromEntries([...document.querySelectorAll('[data-metric="produced"] tr[data-minute-ms]')].map((r) => [r.dataset.minuteMs, r.cells[1].textContent]))`)
	sum := 0
	for ms, v := range rows {
		var n int
		fmt.Sscan(v, &n)
		sum += n
		if ms != fmt.Sprint(firstMinute.UnixMilli()) && ms != fmt.Sprint(lastMinute.UnixMilli()) {
			t.Errorf("produced chart has a point at minute %s, want only the publishing minute %d", ms, firstMinute.UnixMilli())
		}
	}
	if sum != produced {
		t.Errorf("produced chart points %v sum to %d, want %d", rows, sum, produced)
	}
	b.waitText(`[data-metric="consumed"] [data-stat="total"]`, fmt.Sprint(published))
	b.screenshot("monitor")

	// Live mode picks up a new publish by itself.
	b.click("#monitor-form [name=live]")
	b.click("#monitor-form button[type=submit]")
	b.waitText("#monitor-status", "5 s")
	if _, err := producer.Publish(ctx, topic, &client.Message{Key: "order-50", Body: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	b.waitText(`[data-metric="produced"] [data-stat="total"]`, fmt.Sprint(produced+1))
	b.screenshot("monitor-live")

	// Trace by business key: delivered to billing-1, then acked.
	b.open("/trace?topic="+topic, "#trace-by-key")
	b.fill("#trace-by-key [name=key]", "order-42")
	b.click("#trace-by-key button[type=submit]")
	b.waitJS("the acked event", `!!document.querySelector('#trace-results [data-kind="acked"]')`)
	kinds := eval[[]string](b, `[...document.querySelectorAll('#trace-results .trace')].filter((m) => m.querySelector('[data-kind="acked"]')).flatMap((m) => [...m.querySelectorAll('[data-kind]')].map((e) => e.dataset.kind))`)
	if got := strings.Join(kinds, ","); !strings.Contains(got, "delivered") || !strings.Contains(got, "acked") {
		t.Errorf("trace of order-42 shows %s, want delivered and acked events", got)
	}
	b.waitText(`#trace-results [data-kind="delivered"]`, "billing-1")
	b.screenshot("trace")

	// Language: Chinese labels, remembered after a reload.
	b.click("#lang-toggle")
	b.waitText("#header nav", "消息轨迹")
	b.waitText("#trace-results", "已确认")
	if untranslated := eval[[]string](b, `[...document.querySelectorAll('#trace-results .badge')].map((e) => e.textContent).filter((s) => !/[\u4e00-\u9fff]/.test(s))`); len(untranslated) > 0 {
		t.Errorf("trace events without a Chinese label: %q", untranslated)
	}
	b.do("reload", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#trace-by-key")))
	b.waitText("main h1", "消息轨迹")
	if lang := eval[string](b, `document.documentElement.lang`); lang != "zh-CN" {
		t.Errorf("html lang after switching to Chinese = %q, want zh-CN", lang)
	}
	b.screenshot("trace-zh")

	// Dead letters: listed with the failure, purged from the page.
	b.open("/deadletters?topic="+topic+"&group=mailer", "#dl-table")
	b.waitText("#dl-table", "smtp: connection refused")
	b.screenshot("deadletters-zh")
	b.click("#lang-toggle")
	b.waitText("#header nav", "Dead letters")
	// A dead letter's trace, by message id, ends in its dead-lettering.
	b.follow(`#dl-table tbody tr:first-child a[href^="/trace"]`, "#trace-by-id")
	b.waitJS("the dead-lettered event", `!!document.querySelector('#trace-results [data-kind="dead-lettered"]')`)
	b.waitText(`#trace-results [data-kind="dead-lettered"]`, "smtp: connection refused")
	b.open("/deadletters?topic="+topic+"&group=mailer", "#dl-table")
	b.waitText("#dl-table", "smtp: connection refused")
	b.click(`#dl-list [data-action="purge-all"]`)
	b.click("dialog [data-action=confirm]")
	b.waitText("#notice", fmt.Sprintf("%d dead letter(s) purged", published+1)) // the live mode's publish too
	b.waitText("#dl-table", "No dead letters")

	// Reset mailer past its backlog. A time left empty is refused by the
	// API, which the dialog shows next to the time field.
	b.open("/topics/"+topic, "#groups-table")
	b.click(`#groups-table tr:nth-child(2) [data-action="reset"]`)
	b.do("choose a time", chromedp.SetValue(chromedp.CSS("dialog select[name=to]"), "time"))
	b.click("dialog [data-action=confirm]")
	b.waitJS("the API's error next to the time", `document.querySelector('dialog [data-field="at"] .field-error').textContent.length > 0`)
	b.do("choose latest", chromedp.SetValue(chromedp.CSS("dialog select[name=to]"), "latest"))
	b.click("dialog [data-action=confirm]")
	b.waitText("#notice", "Group mailer reset")
	var mg struct {
		AckFloor uint64 `json:"ack_floor"`
	}
	getJSON(t, s, "/api/v1/topics/"+topic+"/groups/mailer", &mg)
	if mg.AckFloor != published+1 {
		t.Errorf("mailer's ack floor after a reset to latest = %d, want %d", mg.AckFloor, published+1)
	}

	// Delayed messages: listed, cancelled from the page.
	b.open("/delays?topic="+topic, "#delay-table")
	b.waitText("#delay-table", "order-99")
	b.screenshot("delays")
	b.click(`#delay-table [data-action="cancel"]`)
	b.click("dialog [data-action=confirm]")
	b.waitText("#delay-table", "No pending delayed messages")

	// Clients: both go offline when they leave; delete one, then the rest.
	billing.Close()
	mailer.Close()
	consumer.Close()
	producer.Close()
	offline := func(id string) bool {
		var r struct {
			Clients []struct {
				ID     string `json:"id"`
				Online bool   `json:"online"`
			} `json:"clients"`
		}
		getJSON(t, s, "/api/v1/clients", &r)
		for _, c := range r.Clients {
			if c.ID == id {
				return !c.Online
			}
		}
		return false
	}
	dmqtest.Eventually(t, 5*time.Second, "both clients offline", func() bool { return offline("order-service") && offline("billing-1") })
	b.open("/clients", "#clients-table")
	b.waitText("#clients-table", "order-service")
	b.screenshot("clients")
	b.click(`#clients-table [data-client="order-service"]`)
	b.click("dialog [data-action=confirm]")
	b.waitJS("order-service gone", `!document.querySelector('#clients-table [data-client="order-service"]') && document.querySelector('#clients-table').textContent.includes('billing-1')`)
	var r struct {
		Clients []struct {
			ID string `json:"id"`
		} `json:"clients"`
	}
	getJSON(t, s, "/api/v1/clients", &r)
	if len(r.Clients) != 1 || r.Clients[0].ID != "billing-1" {
		t.Fatalf("clients after deleting order-service = %+v, want only billing-1", r.Clients)
	}
	b.click("#delete-offline")
	b.click("dialog [data-action=confirm]")
	b.waitText("#clients-table", "No clients match")
	getJSON(t, s, "/api/v1/clients", &r)
	if len(r.Clients) != 0 {
		t.Fatalf("clients after deleting all offline = %+v, want none", r.Clients)
	}
}
