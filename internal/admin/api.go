package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/dmqio/dmq/internal/broker"
)

// maxRequestBytes bounds a request body: every admin request is a small
// JSON object, so anything larger is a mistake or abuse.
const maxRequestBytes = 1 << 20

// api serves the JSON admin API under /api/v1/. Handlers only parse,
// call the broker and convert, like the gRPC handlers in package rpc: no
// business logic lives here. docs/api.md is the reference.
type api struct {
	b   *broker.Broker
	sec Security
	mux *http.ServeMux
}

// NewAPI returns the JSON admin API of b, to be mounted at /api/v1/, with
// sec deciding who may use it.
func NewAPI(b *broker.Broker, sec Security) http.Handler {
	a := &api{b: b, sec: sec, mux: http.NewServeMux()}
	a.handleW("POST /api/v1/login", a.login)
	a.handleW("POST /api/v1/logout", a.logout)
	a.handleW("GET /api/v1/session", a.session)
	a.handle("GET /api/v1/topics", authenticated, a.listTopics)
	a.handle("POST /api/v1/topics", authenticated, a.createTopic) // the handler checks the name
	a.handle("GET /api/v1/topics/{topic}", seesTopic, a.getTopic)
	a.handle("POST /api/v1/topics/{topic}/approve", adminOnly, a.decide("topic.approve", b.ApproveTopic))
	a.handle("POST /api/v1/topics/{topic}/reject", adminOnly, a.decide("topic.reject", b.RejectTopic))
	a.handle("POST /api/v1/topics/{topic}/disable", adminOnly, a.decide("topic.disable", b.DisableTopic))
	a.handle("GET /api/v1/topics/{topic}/stats", seesTopic, a.topicStats)
	a.handle("GET /api/v1/topics/{topic}/trace", seesTopic, a.traceByKey)
	a.handle("GET /api/v1/topics/{topic}/trace/{id}", seesTopic, a.traceMessage)
	a.handle("GET /api/v1/topics/{topic}/delayed", seesTopic, a.listDelayed)
	a.handle("DELETE /api/v1/topics/{topic}/delayed/{id}", publishesOrManages, a.cancelDelayed)
	a.handle("GET /api/v1/topics/{topic}/groups/{group}", seesTopic, a.getGroup)
	a.handle("POST /api/v1/topics/{topic}/groups/{group}/reset", managesTopic, a.resetGroup)
	a.handle("DELETE /api/v1/topics/{topic}/groups/{group}", managesTopic, a.deleteGroup)
	a.handle("GET /api/v1/topics/{topic}/groups/{group}/deadletters", seesTopic, a.listDeadLetters)
	a.handle("POST /api/v1/topics/{topic}/groups/{group}/deadletters/redrive", managesTopic, a.deadLetterAction("deadletters.redrive", b.RedriveDeadLetters, "redriven"))
	a.handle("POST /api/v1/topics/{topic}/groups/{group}/deadletters/purge", managesTopic, a.deadLetterAction("deadletters.purge", b.PurgeDeadLetters, "purged"))
	a.handle("GET /api/v1/clients", authenticated, a.listClients)
	a.handle("DELETE /api/v1/clients/{id}", adminOnly, a.deleteClient)
	a.handle("POST /api/v1/clients/delete-offline", adminOnly, a.deleteOfflineClients)
	if sec.Registry != nil {
		a.handle("GET /api/v1/users", adminOnly, a.listUsers)
		a.handle("POST /api/v1/users", adminOnly, a.createUser)
		a.handle("DELETE /api/v1/users/{name}", adminOnly, a.deleteUser)
		a.handle("GET /api/v1/tokens", adminOnly, a.listTokens)
		a.handle("POST /api/v1/tokens", adminOnly, a.createToken)
		a.handle("DELETE /api/v1/tokens/{app}", adminOnly, a.revokeToken)
	}
	a.handle("GET /api/v1/audit", adminOnly, a.listAudit)
	return a
}

// handlerFunc is an endpoint: it returns the status and value to send as
// JSON, or an error that becomes the JSON error body.
type handlerFunc func(r *http.Request) (int, any, error)

func (a *api) handle(pattern string, check rule, h handlerFunc) {
	a.serve(pattern, check, func(_ http.ResponseWriter, r *http.Request) (int, any, error) { return h(r) })
}

// handleW serves an endpoint that sets headers of its own (cookies); it
// needs no authentication.
func (a *api) handleW(pattern string, h func(http.ResponseWriter, *http.Request) (int, any, error)) {
	a.serve(pattern, public, h)
}

func (a *api) serve(pattern string, check rule, h func(http.ResponseWriter, *http.Request) (int, any, error)) {
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if err := refuseCrossSite(r); err != nil {
			writeError(w, err)
			return
		}
		r, err := a.authorize(r, check)
		if err != nil {
			writeError(w, authError(err))
			return
		}
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, maxRequestBytes)
		}
		code, v, err := h(w, r)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, code, v)
	})
}

// ServeHTTP answers requests the mux has no endpoint for with a JSON error
// too (404, or 405 with the Allow header), so clients parse one format.
func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, pattern := a.mux.Handler(r)
	if pattern != "" {
		a.mux.ServeHTTP(w, r)
		return
	}
	rec := &statusRecorder{header: http.Header{}}
	h.ServeHTTP(rec, r)
	if rec.status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", rec.header.Get("Allow"))
		writeJSON(w, http.StatusMethodNotAllowed, errorBody("MethodNotAllowed",
			fmt.Sprintf("%s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, rec.header.Get("Allow"))))
		return
	}
	writeJSON(w, http.StatusNotFound, errorBody("NotFound", fmt.Sprintf("no API endpoint %s %s", r.Method, r.URL.Path)))
}

// statusRecorder captures what the mux's own 404/405 handlers write.
type statusRecorder struct {
	header http.Header
	status int
}

func (s *statusRecorder) Header() http.Header  { return s.header }
func (s *statusRecorder) WriteHeader(code int) { s.status = code }
func (s *statusRecorder) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return len(p), nil
}

// apiError is an error of the HTTP layer itself (bad JSON, bad query
// parameter, body too large), with its own status and code.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &apiError{status: http.StatusBadRequest, code: "InvalidArgument", msg: fmt.Sprintf(format, args...)}
}

// kindStatus maps broker error kinds to HTTP statuses and error codes. The
// codes are the names of the gRPC codes package rpc maps the same kinds to,
// so a failure reads the same over both APIs. Precondition is 409 (the
// object's state conflicts with the call; no conditional headers are
// involved, so 412 would mislead). Exhausted is 507: the only limit it
// reports is a full disk.
var kindStatus = map[broker.Kind]struct {
	status int
	code   string
}{
	broker.KindInternal:     {http.StatusInternalServerError, "Internal"},
	broker.KindInvalid:      {http.StatusBadRequest, "InvalidArgument"},
	broker.KindNotFound:     {http.StatusNotFound, "NotFound"},
	broker.KindExists:       {http.StatusConflict, "AlreadyExists"},
	broker.KindPrecondition: {http.StatusConflict, "FailedPrecondition"},
	broker.KindExhausted:    {http.StatusInsufficientStorage, "ResourceExhausted"},
	broker.KindUnavailable:  {http.StatusServiceUnavailable, "Unavailable"},
	broker.KindPermission:   {http.StatusForbidden, "PermissionDenied"},
}

type errorJSON struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func errorBody(code, msg string) errorJSON {
	var e errorJSON
	e.Error.Code, e.Error.Message = code, msg
	return e
}

func writeError(w http.ResponseWriter, err error) {
	var ae *apiError
	if errors.As(err, &ae) {
		writeJSON(w, ae.status, errorBody(ae.code, ae.msg))
		return
	}
	ks, ok := kindStatus[broker.KindOf(err)]
	if !ok {
		ks = kindStatus[broker.KindInternal]
	}
	writeJSON(w, ks.status, errorBody(ks.code, err.Error()))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		// Only our own response types are encoded; failing is a bug.
		status, body = http.StatusInternalServerError, []byte(`{"error":{"code":"Internal","message":"encode response"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}

// decodeBody reads the request body as one JSON object into v. Unknown
// fields are refused so a misspelt field fails loudly instead of being
// ignored.
func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if dec.Decode(&struct{}{}) != io.EOF {
			return badRequest("request body must hold exactly one JSON object")
		}
		return nil
	}
	var tooLarge *http.MaxBytesError
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &tooLarge):
		return &apiError{status: http.StatusRequestEntityTooLarge, code: "InvalidArgument",
			msg: fmt.Sprintf("request body is larger than %d bytes", tooLarge.Limit)}
	case errors.Is(err, io.EOF):
		return badRequest("request body is empty; want a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("request body is not valid JSON: it ends in the middle of a value")
	case errors.As(err, &syntax):
		return badRequest("request body is not valid JSON (at byte %d): %v", syntax.Offset, err)
	case errors.As(err, &typ) && typ.Field == "":
		return badRequest("request body must be a JSON object, not %s", typ.Value)
	case errors.As(err, &typ):
		return badRequest("request body field %q must be %s, not %s", typ.Field, typ.Type, typ.Value)
	default:
		return badRequest("request body: %v", err)
	}
}

// timeParam parses an optional RFC 3339 query parameter.
func timeParam(r *http.Request, name string) (time.Time, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, badRequest("query parameter %s=%q is not an RFC 3339 time such as 2026-11-26T08:00:00Z", name, s)
	}
	return t, nil
}

// limitParam parses the optional page size: 1 to 1000, 100 when absent.
func limitParam(r *http.Request) (int, error) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return 100, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 1000 {
		return 0, badRequest("query parameter limit=%q must be a number from 1 to 1000", s)
	}
	return n, nil
}

// timeFormat is RFC 3339 with milliseconds, the precision DMQ stores.
const timeFormat = "2006-01-02T15:04:05.000Z07:00"

// formatMs renders a Unix-millisecond time in UTC; zero stays empty.
func formatMs(ms int64) string {
	if ms == 0 {
		return ""
	}
	return time.UnixMilli(ms).UTC().Format(timeFormat)
}

// refuseCrossSite stops other web sites from changing anything through a
// browser that can reach the API (cross-site request forgery). Browsers
// mark their requests with Origin and Sec-Fetch-Site: a state-changing
// request so marked must come from the API's own origin (the console) and
// carry JSON, which a page of another origin cannot send without the CORS
// preflight this API never grants. Programs such as curl send neither
// header and are not affected.
func refuseCrossSite(r *http.Request) error {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return nil
	}
	site, origin := r.Header.Get("Sec-Fetch-Site"), r.Header.Get("Origin")
	if site == "" && origin == "" {
		return nil
	}
	if site != "" && site != "same-origin" && site != "none" {
		return &apiError{status: http.StatusForbidden, code: "PermissionDenied", msg: "requests from other sites may not change anything (Sec-Fetch-Site: " + site + ")"}
	}
	if origin != "" {
		if u, err := url.Parse(origin); err != nil || u.Host != r.Host {
			return &apiError{status: http.StatusForbidden, code: "PermissionDenied", msg: fmt.Sprintf("requests from origin %q may not change anything on %s", origin, r.Host)}
		}
	}
	if r.ContentLength != 0 {
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
			return &apiError{status: http.StatusUnsupportedMediaType, code: "InvalidArgument", msg: fmt.Sprintf("request body must be JSON with Content-Type: application/json, not %q", r.Header.Get("Content-Type"))}
		}
	}
	return nil
}
