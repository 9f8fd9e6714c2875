package browser_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/config"
	"github.com/dmqio/dmq/internal/dmqtest"
)

// Passwords of the users startAuthServer creates.
const (
	adminPassword  = "admin-password-1"
	viewerPassword = "viewer-password-1"
)

// startAuthServer runs a server with --auth where prod topics wait for
// approval, with users admin (administrator) and vic (viewer), and pending
// topics prod.shop.orders and prod.shop.refunds registered over gRPC by
// the shop application. It returns the server and an administrator
// token, created while authentication was still off (as in
// test/e2e/security_test.go).
func startAuthServer(t *testing.T) (*dmqtest.Server, string) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	s := dmqtest.Start(t, dir, nil)
	c := dmqtest.Dial(t, s.GRPCAddr())
	resp, err := c.API().CreateToken(ctx, &dmqv1.CreateTokenRequest{App: "ops", Admin: true})
	if err != nil {
		t.Fatalf("CreateToken ops: %v", err)
	}
	c.Close()
	s.Stop(t)
	s = dmqtest.Start(t, dir, func(c *config.Config) {
		c.Auth = true
		c.AutoApproveEnvs = []string{"dev", "test"}
	})
	ops := dmqtest.Dial(t, s.GRPCAddr(), client.WithToken(resp.Token))
	for _, u := range []*dmqv1.CreateUserRequest{
		{Name: "admin", Role: "admin", Password: adminPassword},
		{Name: "vic", Role: "viewer", Password: viewerPassword},
	} {
		if _, err := ops.API().CreateUser(ctx, u); err != nil {
			t.Fatalf("CreateUser %s: %v", u.Name, err)
		}
	}
	shopToken, err := ops.API().CreateToken(ctx, &dmqv1.CreateTokenRequest{App: "shop", Grants: []*dmqv1.TokenGrant{{Pattern: "prod.shop.*", Manage: true}}})
	if err != nil {
		t.Fatalf("CreateToken shop: %v", err)
	}
	shop := dmqtest.Dial(t, s.GRPCAddr(), client.WithToken(shopToken.Token))
	for _, name := range []string{"prod.shop.orders", "prod.shop.refunds"} {
		tp, err := shop.CreateTopic(ctx, client.TopicSpec{Name: name, Department: "shop", Owner: "alice", Purpose: "shop events"})
		if err != nil {
			t.Fatalf("CreateTopic %s: %v", name, err)
		}
		if tp.Status != "pending" {
			t.Fatalf("CreateTopic %s: status %q, want pending", name, tp.Status)
		}
	}
	return s, resp.Token
}

// apiAs calls the admin API with an application token and decodes the
// answer into v (when not nil); it returns the status.
func apiAs(t *testing.T, s *dmqtest.Server, token, method, path string, body, v any) int {
	t.Helper()
	var rd bytes.Buffer
	if body != nil {
		json.NewEncoder(&rd).Encode(body)
	}
	req, err := http.NewRequest(method, "http://"+s.HTTPAddr()+path, &rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if v != nil {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("%s %s: decode: %v", method, path, err)
		}
	}
	return resp.StatusCode
}

// login fills the login form the browser is on and waits for ready.
func (b *browser) login(user, password, ready string) {
	b.t.Helper()
	b.fill("#login-form [name=user]", user)
	b.fill("#login-form [name=password]", password)
	b.clickToLoad("#login-form button[type=submit]")
	b.waitJS("the page after logging in", `!!document.querySelector(`+js(ready)+`)`)
}

// clickToLoad clicks sel, which makes the page load another, and waits
// for that load.
func (b *browser) clickToLoad(sel string) {
	b.t.Helper()
	b.do("click "+sel+" and wait for the next page",
		chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := chromedp.WaitEvent(page.LoadEventFired, nil, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))(ctx, t)
			return err
		}))
}

// choose selects value in the <select> sel, as a person would (the page
// hears the change).
func (b *browser) choose(sel, value string) {
	b.t.Helper()
	if !eval[bool](b, `(() => { const s = document.querySelector(`+js(sel)+`); s.value = `+js(value)+`; s.dispatchEvent(new Event('change', {bubbles: true})); return s.value === `+js(value)+`; })()`) {
		b.t.Fatalf("choose %q in %s: no such option", value, sel)
	}
}

// evalAwait evaluates a JavaScript expression that yields a promise and
// decodes what it resolves to.
func evalAwait[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

type topicStatus struct {
	Status    string `json:"status"`
	DecidedBy string `json:"decided_by"`
}

// The browser check, with --auth: the console sends a visitor to
// the login page and back; a wrong password is refused; the administrator
// approves a pending topic (the registry and the audit log name
// user:admin), adds a user, reads the audit log; after logging out the
// console refuses the next action and goes to the login page, also when
// the session ends behind an open page.
func TestConsoleLoginApproveLogoutAndAudit(t *testing.T) {
	s, opsToken := startAuthServer(t)
	b := newBrowser(t, "http://"+s.HTTPAddr())

	// No session: any page goes to the login page, remembering itself.
	b.open("/topics?status=pending", "#login-form")
	if got := eval[string](b, `location.pathname + location.search`); got != "/login?next=%2Ftopics%3Fstatus%3Dpending" {
		t.Fatalf("without a session /topics went to %s, want /login?next=%%2Ftopics%%3Fstatus%%3Dpending", got)
	}
	if n := eval[int](b, `document.querySelectorAll('#header nav a').length`); n != 0 {
		t.Errorf("the login page shows %d navigation links, want none", n)
	}
	b.screenshot("login")

	// A wrong password is refused on the page.
	b.fill("#login-form [name=user]", "admin")
	b.fill("#login-form [name=password]", "not-the-password")
	b.click("#login-form button[type=submit]")
	b.waitText("#login-form .form-error", "Wrong user name or password")

	// Logging in returns to the page asked for, with the user in the header.
	b.login("admin", adminPassword, "#topics-table [data-status=pending]")
	if got := eval[string](b, `location.pathname + location.search`); got != "/topics?status=pending" {
		t.Errorf("after logging in the console shows %s, want /topics?status=pending", got)
	}
	b.waitText("#who", "admin")
	b.waitText("#header nav", "Audit log")
	if eval[bool](b, `document.cookie.includes('dmq_session') || Object.keys(localStorage).some((k) => localStorage.getItem(k).length > 20)`) {
		t.Error("the session cookie is readable by scripts, or something like a token sits in localStorage")
	}

	// Approve: with --auth the dialog asks no name; the server records the
	// logged-in user.
	b.click(`#topics-table [data-action=approve][data-topic="prod.shop.orders"]`)
	if eval[bool](b, `!!document.querySelector('dialog [name=by]')`) {
		t.Error("with --auth the approval dialog still asks for a name")
	}
	b.fill("dialog [name=reason]", "reviewed")
	b.click("dialog [data-action=confirm]")
	b.waitText("#notice", "prod.shop.orders approved")
	var tp topicStatus
	apiAs(t, s, opsToken, "GET", "/api/v1/topics/prod.shop.orders", nil, &tp)
	if tp.Status != "approved" || tp.DecidedBy != "user:admin" {
		t.Fatalf("after approving in the console: status %q decided by %q, want approved by user:admin", tp.Status, tp.DecidedBy)
	}

	// Users: add an owner in the form; the table shows the users.
	b.follow(`#header nav a[href="/users"]`, "#users-table")
	b.waitText("#users-table", "vic")
	b.fill("#user-form [name=name]", "alice")
	b.choose("#user-form [name=role]", "owner")
	b.fill("#user-form [name=department]", "shop")
	b.fill("#user-form [name=password]", "short")
	b.click("#user-form button[type=submit]")
	b.waitText(`#user-form [data-field="password"] .field-error`, "8")
	b.fill("#user-form [name=password]", "alice-password-1")
	b.click("#user-form button[type=submit]")
	b.waitText("#notice", "User alice added")
	b.waitText("#users-table", "alice")
	b.screenshot("users")

	// Tokens: a grant line the form cannot read is refused next to the
	// field; a valid one creates the token, shown once, then listed by its
	// prefix only; revoking it removes it.
	b.follow(`#header nav a[href="/tokens"]`, "#tokens-table")
	b.fill("#token-form [name=app]", "mailer")
	b.fill("#token-form [name=grants]", "read prod.mail.*")
	b.click("#token-form button[type=submit]")
	b.waitText(`#token-form [data-field="grants"] .field-error`, "read prod.mail.*")
	b.fill("#token-form [name=grants]", "subscribe prod.mail.*:sender")
	b.click("#token-form button[type=submit]")
	b.waitText("#token-value", "dmq_")
	b.waitText("#tokens-table", "subscribe:sender prod.mail.*")
	token := b.text("#token-value")
	if strings.Contains(b.text("#tokens-table"), token) {
		t.Error("the tokens table shows a whole token")
	}
	if code := apiAs(t, s, token, "GET", "/api/v1/topics", nil, nil); code != 200 {
		t.Errorf("the token created in the console: GET /topics answered %d", code)
	}
	b.screenshot("tokens")
	b.click(`#tokens-table [data-action=revoke][data-app="mailer"]`)
	b.click("dialog [data-action=confirm]")
	b.waitText("#notice", "mailer")
	if code := apiAs(t, s, token, "GET", "/api/v1/topics", nil, nil); code != 401 {
		t.Errorf("the token revoked in the console: GET /topics answered %d, want 401", code)
	}

	// The audit log shows the approval by user:admin, and filters.
	b.follow(`#header nav a[href="/audit"]`, "#audit-table")
	b.waitText("#audit-table", "topic.approve")
	b.waitText("#audit-table", "user:admin")
	b.choose("#audit-filters [name=action]", "topic.approve")
	b.click("#audit-filters button[type=submit]")
	b.waitJS("only approvals in the audit table", `[...document.querySelectorAll('#audit-table [data-action-name]')].every((e) => e.textContent === 'topic.approve') && document.querySelector('#audit-table').textContent.includes('prod.shop.orders')`)
	b.screenshot("audit")

	// Log out: the console goes to the login page, and the next action is
	// refused: the API answers 401 and the page asks for a login again.
	b.clickToLoad("#logout")
	b.waitJS("the login page after logging out", `location.pathname === '/login' && !!document.querySelector('#login-form')`)
	if status := evalAwait[int](b, `fetch('/api/v1/topics/prod.shop.refunds/approve', {method: 'POST'}).then((r) => r.status)`); status != 401 {
		t.Errorf("approving after logging out answered %d, want 401", status)
	}
	b.open("/topics", "#login-form")

	// A session that ends behind an open page (logged out in another tab):
	// the approval is refused and the page goes to the login page.
	b.login("admin", adminPassword, "#topics-table [data-action=approve]")
	if status := evalAwait[int](b, `fetch('/api/v1/session').then((r) => r.json()).then((s) => fetch('/api/v1/logout', {method: 'POST', headers: {'X-CSRF-Token': s.csrf_token}})).then((r) => r.status)`); status != 200 {
		t.Fatalf("logging out behind the page answered %d", status)
	}
	b.click(`#topics-table [data-action=approve][data-topic="prod.shop.refunds"]`)
	b.clickToLoad("dialog [data-action=confirm]")
	b.waitJS("the login page after a refused approval", `location.pathname === '/login' && location.search === '?next=%2Ftopics' && !!document.querySelector('#login-form')`)
	apiAs(t, s, opsToken, "GET", "/api/v1/topics/prod.shop.refunds", nil, &tp)
	if tp.Status != "pending" {
		t.Fatalf("after approving with an ended session prod.shop.refunds is %q, want pending", tp.Status)
	}
}

// A viewer sees the topics but the API refuses an approval, which the
// dialog shows; the administrators' pages are not in the navigation.
// Too many failed logins show the wait the server asks for.
func TestConsoleViewerAndFailedLogins(t *testing.T) {
	s, opsToken := startAuthServer(t)
	b := newBrowser(t, "http://"+s.HTTPAddr())

	b.open("/topics", "#login-form")
	b.login("vic", viewerPassword, "#topics-table [data-action=approve]")
	b.waitText("#who", "viewer")
	if eval[bool](b, `!!document.querySelector('#header nav a[href="/audit"], #header nav a[href="/users"]')`) {
		t.Error("a viewer's navigation shows the administrators' pages")
	}
	b.click(`#topics-table [data-action=approve][data-topic="prod.shop.orders"]`)
	b.click("dialog [data-action=confirm]")
	b.waitText("dialog .form-error", "only administrators")
	b.screenshot("topics-viewer-refused")
	var tp topicStatus
	apiAs(t, s, opsToken, "GET", "/api/v1/topics/prod.shop.orders", nil, &tp)
	if tp.Status != "pending" {
		t.Fatalf("after a viewer's approval prod.shop.orders is %q, want pending", tp.Status)
	}
	b.click("dialog [data-action=cancel]")

	// The audit page is refused to a viewer by the API, shown as an error.
	b.open("/audit", "#audit-filters")
	b.waitJS("the audit log refused", `document.querySelector('main').textContent.includes('only administrators')`)

	// Five failed logins for a name: the next attempt must wait.
	b.clickToLoad("#logout")
	b.waitJS("the login page", `!!document.querySelector('#login-form')`)
	for range 5 {
		if code := apiAs(t, s, "", "POST", "/api/v1/login", map[string]string{"user": "mallory", "password": "guess-guess"}, nil); code != http.StatusUnauthorized {
			t.Fatalf("a wrong login answered %d, want 401", code)
		}
	}
	b.fill("#login-form [name=user]", "mallory")
	b.fill("#login-form [name=password]", "guess-again")
	b.click("#login-form button[type=submit]")
	b.waitText("#login-form .form-error", "Too many failed attempts, try again in")
	b.screenshot("login-too-many")
}
