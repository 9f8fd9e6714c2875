// Package console serves DMQ's web console: a small front end (plain
// JavaScript modules, no build step) embedded in the binary, that reads and
// changes the broker only through the JSON admin API under /api/v1/.
//
// Every page path answers the same HTML shell and the script in
// assets/js/main.js picks the page from the path; files under /assets/ are
// served from the embedded tree; any other path answers the shell with
// status 404, whose script shows "page not found". Charts use uPlot,
// vendored under assets/vendor/uplot by vendor.sh.
package console

import (
	"embed"
	"html/template"
	"net/http"
)

//go:embed shell.html
var shellHTML string

//go:embed assets
var assetFiles embed.FS

var shell = template.Must(template.New("shell").Parse(shellHTML))

// pages are the paths of the console's pages. Keep them in step with the
// routes in assets/js/main.js.
var pages = []string{
	"/{$}",
	"/topics",
	"/topics/{topic}",
	"/monitor",
	"/trace",
	"/clients",
	"/deadletters",
	"/delays",
	"/cluster",
	"/audit",
	"/users",
	"/tokens",
	"/login",
}

// Handler returns the console, to be mounted at "/" next to the API.
func Handler() http.Handler {
	mux := http.NewServeMux()
	for _, p := range pages {
		mux.Handle("GET "+p, page(http.StatusOK))
	}
	mux.Handle("GET /assets/", newAssets(assetFiles, page(http.StatusNotFound)))
	mux.Handle("/", page(http.StatusNotFound))
	return mux
}

// page answers the HTML shell with status.
type page int

func (p page) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	// Everything comes from this server; uPlot sizes its parts with style
	// attributes, hence 'unsafe-inline' for styles only.
	h.Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
	w.WriteHeader(int(p))
	if r.Method == http.MethodHead {
		return
	}
	shell.Execute(w, struct{ NotFound bool }{int(p) == http.StatusNotFound})
}
