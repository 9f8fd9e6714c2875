package browser_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// An invalid topic name shows the API's error next to the name field and
// creates nothing; a missing owner is caught before the API is called.
func TestConsoleRegisterFormShowsAPIErrorAndCreatesNothing(t *testing.T) {
	s := startServer(t)
	b := newBrowser(t, "http://"+s.HTTPAddr())
	b.open("/topics", "#register-form")
	b.click("#register summary")

	b.fill("#register-form [name=name]", "prod.shop.orders")
	b.click("#register-form button[type=submit]")
	b.waitText(`#register-form [data-field="owner"] .field-error`, "Required")

	b.fill("#register-form [name=name]", "Prod.Shop..orders")
	b.fill("#register-form [name=owner]", "alice")
	b.click("#register-form button[type=submit]")
	b.waitText(`#register-form [data-field="name"] .field-error`, `topic name "Prod.Shop..orders"`)
	if got := b.text(`#register-form [data-field="owner"] .field-error`); got != "" {
		t.Errorf("owner field shows %q after an error about the name", got)
	}
	b.screenshot("register-invalid-name")

	var r struct {
		Topics []struct{ Name string } `json:"topics"`
	}
	getJSON(t, s, "/api/v1/topics", &r)
	if len(r.Topics) != 0 {
		t.Fatalf("topics after an invalid registration = %+v, want none", r.Topics)
	}
	if got := b.text("#topics-table"); !strings.Contains(got, "No topics match") {
		t.Errorf("topics table = %q, want it empty", got)
	}
}

// Unknown pages answer a real 404 (an HTML page saying so); the API,
// metrics, health and assets keep their own handlers.
func TestConsoleUnknownPageIs404(t *testing.T) {
	s := startServer(t)
	base := "http://" + s.HTTPAddr()
	for _, c := range []struct {
		path, contentType string
		status            int
	}{
		{"/", "text/html", 200},
		{"/topics/prod.shop.orders", "text/html", 200},
		{"/assets/js/main.js", "text/javascript", 200},
		{"/assets/vendor/uplot/uPlot.esm.js", "text/javascript", 200},
		{"/nope", "text/html", 404},
		{"/topics/a/b", "text/html", 404},
		{"/assets/nope.js", "text/html", 404},
		{"/api/v1/nope", "application/json", 404},
		{"/api/v1/topics", "application/json", 200},
		{"/healthz", "application/json", 200},
		{"/metrics", "text/plain", 200},
	} {
		resp, err := http.Get(base + c.path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status || !strings.HasPrefix(resp.Header.Get("Content-Type"), c.contentType) {
			t.Errorf("GET %s = %d %s, want %d %s", c.path, resp.StatusCode, resp.Header.Get("Content-Type"), c.status, c.contentType)
		}
	}

	b := newBrowser(t, base)
	b.expectFailedLoad("/no/such/page")
	resp, err := chromedp.Run(b.ctx, chromedp.NavigateResponse(base+"/no/such/page"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 404 {
		t.Errorf("browser got status %d for an unknown page, want 404", resp.Status)
	}
	b.waitText("#not-found", "Page not found")
	b.screenshot("not-found")
}
