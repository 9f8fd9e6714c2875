package admin

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/dmqio/dmq/internal/auth"
	"github.com/dmqio/dmq/internal/broker"
	"github.com/dmqio/dmq/internal/meta"
)

// Security configures who may use the API.
type Security struct {
	// Registry holds applications, users and sessions.
	Registry *auth.Registry
	// On requires a console session or an application token on every
	// endpoint but login, logout and session.
	On bool
	// TLS marks session cookies Secure.
	TLS bool
}

// sessionCookie carries the console session id.
const sessionCookie = "dmq_session"

// rule decides whether the caller may use an endpoint; p is nil when
// authentication is off.
type rule func(p *auth.App, r *http.Request) error

var (
	public rule = nil
	// anyone authenticated
	authenticated rule = func(*auth.App, *http.Request) error { return nil }
	adminOnly     rule = func(p *auth.App, r *http.Request) error {
		return p.RequireAdmin("use " + r.Method + " " + r.URL.Path)
	}
	seesTopic rule = func(p *auth.App, r *http.Request) error {
		return p.RequireSees(r.PathValue("topic"))
	}
	managesTopic rule = func(p *auth.App, r *http.Request) error {
		return p.Allowed(auth.Manage, r.PathValue("topic"), "")
	}
)

func publishesOrManages(p *auth.App, r *http.Request) error {
	if p.Allowed(auth.Manage, r.PathValue("topic"), "") == nil {
		return nil
	}
	return p.Allowed(auth.Publish, r.PathValue("topic"), "")
}

type principalKey struct{}

// principal is the caller of a request; nil when authentication is off.
func principal(r *http.Request) *auth.App {
	p, _ := r.Context().Value(principalKey{}).(*auth.App)
	return p
}

// who names the caller for the audit log and the registry.
func who(r *http.Request) string {
	p := principal(r)
	switch {
	case p == nil:
		return "unauthenticated"
	case strings.HasPrefix(p.Name, "user:"):
		return p.Name
	default:
		return "app:" + p.Name
	}
}

// authorize finds the caller and applies the endpoint's rule. A request
// with the session cookie that would change something must also carry the
// session's CSRF token.
func (a *api) authorize(r *http.Request, check rule) (*http.Request, error) {
	if !a.sec.On || check == nil {
		return r, nil
	}
	var p *auth.App
	if h := r.Header.Get("Authorization"); h != "" {
		token, ok := auth.BearerToken(h)
		if !ok {
			return r, unauthenticated("Authorization must be Bearer <application token>")
		}
		app, _, err := a.sec.Registry.Authenticate(token)
		if err != nil {
			return r, unauthenticated("%v", err)
		}
		p = app
	} else {
		c, err := r.Cookie(sessionCookie)
		if err != nil {
			return r, unauthenticated("log in first (POST /api/v1/login) or send an application token")
		}
		s, user, err := a.sec.Registry.Session(c.Value)
		if err != nil {
			return r, unauthenticated("%v", err)
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead && subtle.ConstantTimeCompare([]byte(r.Header.Get("X-CSRF-Token")), []byte(s.CSRF)) != 1 {
			return r, errCSRF
		}
		p = user
	}
	if err := check(p, r); err != nil {
		return r, err
	}
	return r.WithContext(context.WithValue(r.Context(), principalKey{}, p)), nil
}

// errCSRF refuses a change made with the session cookie but without its CSRF token.
var errCSRF = &apiError{status: http.StatusForbidden, code: "PermissionDenied", msg: "missing or wrong CSRF token (send the X-CSRF-Token header given at login)"}

func unauthenticated(format string, args ...any) error {
	return &apiError{status: http.StatusUnauthorized, code: "Unauthenticated", msg: fmt.Sprintf(format, args...)}
}

// audit records an administrative action; failures are logged, the action
// stands.
func (a *api) audit(r *http.Request, action, target, detail string) {
	e := meta.AuditEntry{TimeMs: time.Now().UnixMilli(), Who: who(r), Action: action, Target: target, From: r.RemoteAddr, Detail: detail}
	if err := a.b.Store().AddAudit(e); err != nil {
		a.b.Logger().Error("write audit entry", "action", action, "err", err)
	}
}

type sessionJSON struct {
	Auth       bool   `json:"auth"`
	User       string `json:"user,omitempty"`
	Role       string `json:"role,omitempty"`
	Department string `json:"department,omitempty"`
	CSRFToken  string `json:"csrf_token,omitempty"`
}

type loginRequest struct {
	User     string `json:"user"`
	Password string `json:"password"`
}

func (a *api) login(w http.ResponseWriter, r *http.Request) (int, any, error) {
	if !a.sec.On {
		return http.StatusOK, sessionJSON{Auth: false}, nil
	}
	var req loginRequest
	if err := decodeBody(r, &req); err != nil {
		return 0, nil, err
	}
	if len(req.User) > auth.MaxNameLen {
		// No user has such a name: refused before it reaches the limiter or the audit log.
		return 0, nil, badRequest("user name is %d bytes long; user names have at most %d characters", len(req.User), auth.MaxNameLen)
	}
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	if wait := a.sec.Registry.Limiter.Wait(req.User, host); wait > 0 {
		secs := int(math.Ceil(wait.Seconds()))
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		return 0, nil, &apiError{status: http.StatusTooManyRequests, code: "ResourceExhausted",
			msg: fmt.Sprintf("too many failed logins: try again in %d s", secs)}
	}
	s, err := a.sec.Registry.Login(req.User, req.Password)
	if err != nil {
		a.sec.Registry.Limiter.Failed(req.User, host)
		// who is not the typed name: anyone can type any name.
		e := meta.AuditEntry{TimeMs: time.Now().UnixMilli(), Who: "anonymous", Action: "login.failed", Target: "user:" + req.User, From: r.RemoteAddr}
		if aerr := a.b.Store().AddAudit(e); aerr != nil {
			a.b.Logger().Error("write audit entry", "err", aerr)
		}
		return 0, nil, unauthenticated("wrong user name or password")
	}
	a.sec.Registry.Limiter.Succeeded(req.User)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: s.ID, Path: "/", HttpOnly: true, Secure: a.sec.TLS,
		SameSite: http.SameSiteStrictMode, Expires: s.Expires})
	return http.StatusOK, sessionJSON{Auth: true, User: s.User, Role: s.Role, Department: s.Department, CSRFToken: s.CSRF}, nil
}

// logout ends the session of the cookie. Like every change made with the cookie,
// it needs the session's CSRF token; a cookie of no live session is only cleared.
func (a *api) logout(w http.ResponseWriter, r *http.Request) (int, any, error) {
	if c, err := r.Cookie(sessionCookie); err == nil && a.sec.Registry != nil {
		if s, _, err := a.sec.Registry.Session(c.Value); err == nil {
			if subtle.ConstantTimeCompare([]byte(r.Header.Get("X-CSRF-Token")), []byte(s.CSRF)) != 1 {
				return 0, nil, errCSRF
			}
			a.sec.Registry.Logout(c.Value)
		}
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", HttpOnly: true, Secure: a.sec.TLS,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
	return http.StatusOK, map[string]bool{"logged_out": true}, nil
}

func (a *api) session(_ http.ResponseWriter, r *http.Request) (int, any, error) {
	if !a.sec.On {
		return http.StatusOK, sessionJSON{Auth: false}, nil
	}
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return 0, nil, unauthenticated("not logged in")
	}
	s, _, err := a.sec.Registry.Session(c.Value)
	if err != nil {
		return 0, nil, unauthenticated("%v", err)
	}
	return http.StatusOK, sessionJSON{Auth: true, User: s.User, Role: s.Role, Department: s.Department, CSRFToken: s.CSRF}, nil
}

// authError maps auth errors to API errors.
func authError(err error) error {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		return err
	case errors.Is(err, auth.ErrDenied):
		return &apiError{status: http.StatusForbidden, code: "PermissionDenied", msg: err.Error()}
	case errors.Is(err, auth.ErrUnauthenticated):
		return unauthenticated("%v", err)
	case errors.Is(err, auth.ErrInvalid):
		return badRequest("%v", err)
	case errors.Is(err, auth.ErrNotFound):
		return &apiError{status: http.StatusNotFound, code: "NotFound", msg: err.Error()}
	case errors.Is(err, auth.ErrExists):
		return &apiError{status: http.StatusConflict, code: "AlreadyExists", msg: err.Error()}
	}
	return err
}

type userJSON struct {
	Name        string `json:"name"`
	Role        string `json:"role"`
	Department  string `json:"department,omitempty"`
	CreatedAt   string `json:"created_at"`
	CreatedAtMs int64  `json:"created_at_ms"`
	CreatedBy   string `json:"created_by"`
}

func userOf(u auth.User) userJSON {
	return userJSON{Name: u.Name, Role: u.Role, Department: u.Department, CreatedAt: formatMs(u.CreatedAtMs), CreatedAtMs: u.CreatedAtMs, CreatedBy: u.CreatedBy}
}

func (a *api) listUsers(r *http.Request) (int, any, error) {
	users := a.sec.Registry.ListUsers()
	out := make([]userJSON, len(users))
	for i, u := range users {
		out[i] = userOf(u)
	}
	return http.StatusOK, map[string]any{"users": out}, nil
}

type createUserRequest struct {
	Name       string `json:"name"`
	Role       string `json:"role"`
	Department string `json:"department"`
	Password   string `json:"password"`
}

func (a *api) createUser(r *http.Request) (int, any, error) {
	var req createUserRequest
	if err := decodeBody(r, &req); err != nil {
		return 0, nil, err
	}
	u, err := a.sec.Registry.CreateUser(auth.User{Name: req.Name, Role: req.Role, Department: req.Department}, req.Password, who(r))
	if err != nil {
		return 0, nil, authError(err)
	}
	a.audit(r, "user.create", u.Name, "role "+u.Role+" "+u.Department)
	return http.StatusCreated, userOf(u), nil
}

func (a *api) deleteUser(r *http.Request) (int, any, error) {
	name := r.PathValue("name")
	if err := a.sec.Registry.DeleteUser(name); err != nil {
		return 0, nil, authError(err)
	}
	a.audit(r, "user.delete", name, "")
	return http.StatusOK, map[string]string{"deleted": name}, nil
}

type auditJSON struct {
	Time   string `json:"time"`
	TimeMs int64  `json:"time_ms"`
	Who    string `json:"who"`
	Action string `json:"action"`
	Target string `json:"target"`
	From   string `json:"from,omitempty"`
	Detail string `json:"detail,omitempty"`
}

func (a *api) listAudit(r *http.Request) (int, any, error) {
	from, err := timeParam(r, "from")
	if err != nil {
		return 0, nil, err
	}
	to, err := timeParam(r, "to")
	if err != nil {
		return 0, nil, err
	}
	limit, err := limitParam(r)
	if err != nil {
		return 0, nil, err
	}
	f := meta.AuditFilter{Who: r.URL.Query().Get("who"), Action: r.URL.Query().Get("action"), Limit: limit}
	if !from.IsZero() {
		f.FromMs = from.UnixMilli()
	}
	if !to.IsZero() {
		f.ToMs = to.UnixMilli()
	}
	es, err := a.b.Store().ListAudit(f)
	if err != nil {
		return 0, nil, err
	}
	out := make([]auditJSON, len(es))
	for i, e := range es {
		out[i] = auditJSON{Time: formatMs(e.TimeMs), TimeMs: e.TimeMs, Who: e.Who, Action: e.Action, Target: e.Target, From: e.From, Detail: e.Detail}
	}
	return http.StatusOK, map[string]any{"entries": out}, nil
}

// AdminOnly guards a handler outside the JSON API (profiles) with the
// API's authentication when it is on: administrators only.
func AdminOnly(b *broker.Broker, sec Security, h http.Handler) http.Handler {
	if !sec.On {
		return h
	}
	a := &api{b: b, sec: sec}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r, err := a.authorize(r, adminOnly)
		if err != nil {
			writeError(w, authError(err))
			return
		}
		h.ServeHTTP(w, r)
	})
}
