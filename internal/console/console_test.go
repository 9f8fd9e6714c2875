package console

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// Page paths answer the shell, assets their files with an ETag, anything
// else the shell with 404.
func TestHandlerRoutes(t *testing.T) {
	h := Handler()
	for _, c := range []struct {
		method, path string
		status       int
		contentType  string
		body         string
	}{
		{"GET", "/", 200, "text/html", `src="/assets/js/main.js"`},
		{"GET", "/topics", 200, "text/html", "<main"},
		{"GET", "/topics/prod.shop.orders", 200, "text/html", "<main"},
		{"GET", "/monitor", 200, "text/html", "<main"},
		{"GET", "/trace", 200, "text/html", "<main"},
		{"GET", "/clients", 200, "text/html", "<main"},
		{"GET", "/deadletters", 200, "text/html", "<main"},
		{"GET", "/delays", 200, "text/html", "<main"},
		{"GET", "/cluster", 200, "text/html", "<main"},
		{"GET", "/login", 200, "text/html", "<main"},
		{"GET", "/audit", 200, "text/html", "<main"},
		{"GET", "/users", 200, "text/html", "<main"},
		{"GET", "/tokens", 200, "text/html", "<main"},
		{"HEAD", "/topics", 200, "text/html", ""},
		{"GET", "/nope", 404, "text/html", "Page not found"},
		{"GET", "/topics/a/b", 404, "text/html", "data-not-found"},
		{"POST", "/topics", 404, "text/html", "Page not found"},
		{"GET", "/assets/js/main.js", 200, "text/javascript", "import"},
		{"GET", "/assets/app.css", 200, "text/css", "--blue"},
		{"GET", "/assets/vendor/uplot/uPlot.esm.js", 200, "text/javascript", "export { uPlot as default }"},
		{"GET", "/assets/js/", 404, "text/html", "Page not found"},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(c.method, c.path, nil))
		body := rec.Body.String()
		if rec.Code != c.status || !strings.HasPrefix(rec.Header().Get("Content-Type"), c.contentType) || !strings.Contains(body, c.body) {
			t.Errorf("%s %s = %d %q (body %.80q), want %d %q containing %q", c.method, c.path, rec.Code, rec.Header().Get("Content-Type"), body, c.status, c.contentType, c.body)
		}
	}
}

// A browser revalidating an unchanged asset gets 304 without the body.
func TestAssetsRevalidate(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/assets/js/main.js")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	etag := resp.Header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag on an asset")
	}
	req, _ := http.NewRequest("GET", srv.URL+"/assets/js/main.js", nil)
	req.Header.Set("If-None-Match", etag)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotModified || len(b) != 0 {
		t.Errorf("revalidation with ETag %s = %d with %d bytes, want 304 and no body", etag, resp.StatusCode, len(b))
	}
}

var (
	// labelRE matches a line of messages.js: 'key': ['English', '中文'],
	labelRE = regexp.MustCompile(`(?m)^\s*'([a-zA-Z0-9_.]+)': \['((?:[^'\\]|\\.)*)', '((?:[^'\\]|\\.)*)'\],$`)
	// usedRE matches a literal key passed to t() or has(), or listed as
	// ['topic.env', value] for a later t().
	usedRE = regexp.MustCompile(`(?:\b(?:t|has)\(|\[)'([a-z]+\.[a-zA-Z0-9_.]*)'`)
)

// Every label has both languages, and every literal key the scripts use
// has a label; keys built at run time from API values are listed here
// with their values.
func TestEveryLabelHasEnglishAndChinese(t *testing.T) {
	src, err := fs.ReadFile(assetFiles, "assets/js/messages.js")
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string]bool{}
	for _, m := range labelRE.FindAllStringSubmatch(string(src), -1) {
		if m[2] == "" || m[3] == "" {
			t.Errorf("label %s lacks a language: %q / %q", m[1], m[2], m[3])
		}
		if labels[m[1]] {
			t.Errorf("label %s defined twice", m[1])
		}
		labels[m[1]] = true
	}
	if lines := strings.Count(string(src), "': ['"); lines != len(labels) {
		t.Fatalf("messages.js has %d label lines but %d parse; keep one label per line as 'key': ['English', '中文'],", lines, len(labels))
	}

	used := map[string]bool{}
	err = fs.WalkDir(assetFiles, "assets/js", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || name == "assets/js/messages.js" {
			return err
		}
		b, err := fs.ReadFile(assetFiles, name)
		for _, m := range usedRE.FindAllStringSubmatch(string(b), -1) {
			used[m[1]] = true
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// Keys made from API values and from the page list.
	dynamic := map[string][]string{
		"status.": {"pending", "approved", "rejected", "disabled"},
		"mode.":   {"cluster", "broadcast"},
		"ack.":    {"business", "auto"},
		"role.":   {"producer", "consumer"},
		"kind.":   {"published", "scheduled", "due", "delivered", "acked", "nacked", "timed_out", "consumer_disconnected", "dead_lettered", "redriven", "cancelled"},
		"nav.":    {"topics", "monitor", "trace", "clients", "deadletters", "delays", "cluster", "notfound", "audit", "users", "tokens", "login"},
		"urole.":  {"admin", "owner", "viewer"},
		"decision.": {"approve", "reject", "disable", "approve.title", "reject.title", "disable.title",
			"approve.text", "reject.text", "disable.text", "approve.done", "reject.done", "disable.done"},
		"dl.":      {"redrive", "purge", "redrive.title", "purge.title", "redrive.done", "purge.done"},
		"monitor.": {"produced", "consumed", "failures", "backlog", "oldest"},
		"unit.":    {"ms", "s", "m", "h", "d"},
	}
	for prefix, names := range dynamic {
		for _, n := range names {
			used[prefix+n] = true
		}
	}
	for k := range used {
		if !labels[k] && !strings.HasSuffix(k, ".") {
			t.Errorf("the scripts use label %q, which messages.js lacks", k)
		}
	}
	for k := range labels {
		if !used[k] {
			t.Errorf("label %q is not used by any script", k)
		}
	}
}
