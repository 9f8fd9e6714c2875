package admin

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dmqio/dmq/internal/auth"
	"github.com/dmqio/dmq/internal/broker"
	"github.com/dmqio/dmq/internal/faultfs"
	"github.com/dmqio/dmq/internal/meta"
)

var (
	fuzzOnce sync.Once
	fuzzAPI  http.Handler
)

func fuzzHandler(t *testing.T) http.Handler {
	fuzzOnce.Do(func() {
		b, err := broker.Open(broker.Config{DataDir: "/data", FS: faultfs.New(),
			Logger: slog.New(slog.DiscardHandler), MaxDelay: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.CreateTopic(meta.Topic{Name: "test.fuzz.t"}); err != nil {
			t.Fatal(err)
		}
		if _, err := b.CreateGroup(broker.GroupSpec{Topic: "test.fuzz.t", Name: "g"}); err != nil {
			t.Fatal(err)
		}
		reg, err := auth.Open(b.Store())
		if err != nil {
			t.Fatal(err)
		}
		fuzzAPI = NewAPI(b, Security{Registry: reg})
	})
	return fuzzAPI
}

// Arbitrary methods, paths, query strings and bodies get a JSON answer
// with a status the API documents, never a crash and never a 500.
func FuzzAdminAPI(f *testing.F) {
	for _, s := range []struct{ method, target, body string }{
		{"GET", "/api/v1/topics?dept=shop&limit=5&after=test", ""},
		{"POST", "/api/v1/topics", `{"name":"prod.shop.orders","owner":"alice","dedupe_window_ms":-1}`},
		{"POST", "/api/v1/topics/test.fuzz.t/approve", `{"by":"bob"}`},
		{"GET", "/api/v1/topics/test.fuzz.t/stats?from=2026-11-26T00:00:00Z&to=2026-11-27T00:00:00Z&client=c", ""},
		{"GET", "/api/v1/topics/test.fuzz.t/stats?day=2026-13-01", ""},
		{"GET", "/api/v1/topics/test.fuzz.t/trace?key=k&from=2026-11-26T00:00:00Z&to=2026-11-27T00:00:00Z&limit=7", ""},
		{"GET", "/api/v1/topics/test.fuzz.t/trace/d1764151200000-k3x9", ""},
		{"GET", "/api/v1/topics/test.fuzz.t/delayed?limit=1000&after=d1-1", ""},
		{"DELETE", "/api/v1/topics/test.fuzz.t/delayed/d0-0", ""},
		{"POST", "/api/v1/topics/test.fuzz.t/groups/g/reset", `{"to":"2026-11-26T08:00:00+01:00"}`},
		{"POST", "/api/v1/topics/test.fuzz.t/groups/g/deadletters/redrive", `{"ids":["1","x"],"all":true}`},
		{"GET", "/api/v1/clients?topic=test.fuzz.t&online=maybe", ""},
		{"POST", "/api/v1/clients/delete-offline", `[]`},
		{"PATCH", "/api/v1/topics", `{`},
		{"POST", "/api/v1/login", `{"user":"root","password":"secret-password"}`},
		{"POST", "/api/v1/users", `{"name":"bob","role":"owner","department":"shop","password":"12345678"}`},
		{"GET", "/api/v1/audit?from=2026-11-26T00:00:00Z&who=user:bob&limit=3", ""},
	} {
		f.Add(s.method, s.target, s.body)
	}
	f.Fuzz(func(t *testing.T, method, target, body string) {
		if !strings.HasPrefix(target, "/") {
			target = "/api/v1/" + target
		}
		req, err := http.NewRequest(method, "http://dmq"+target, strings.NewReader(body))
		if err != nil {
			return // net/http would not deliver it
		}
		w := httptest.NewRecorder()
		fuzzHandler(t).ServeHTTP(w, req)
		if p := req.URL.Path; path.Clean(p) != p && (w.Code == 301 || w.Code == 307 || w.Code == 308) {
			return // net/http redirects an unclean path to its clean form
		}
		switch w.Code {
		case 200, 201, 400, 401, 403, 404, 405, 409, 413, 415, 429:
		default:
			t.Fatalf("%s %s %q: status %d %s", method, target, body, w.Code, w.Body)
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/json" || !json.Valid(w.Body.Bytes()) {
			t.Fatalf("%s %s %q: answer %q is not JSON: %s", method, target, body, ct, w.Body)
		}
	})
}
