package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/config"
	"github.com/dmqio/dmq/internal/dmqtest"
	"github.com/dmqio/dmq/internal/server"
	"github.com/dmqio/dmq/internal/testcert"
	"google.golang.org/grpc/codes"
)

// authServer starts a broker with authentication on and returns it with
// an administrator token, created while authentication was still off (a
// restart proves tokens persist).
func authServer(t *testing.T) (*dmqtest.Server, string) {
	t.Helper()
	dir := t.TempDir()
	s := dmqtest.Start(t, dir, nil)
	c := dmqtest.Dial(t, s.GRPCAddr())
	resp, err := c.API().CreateToken(context.Background(), &dmqv1.CreateTokenRequest{App: "ops", Admin: true})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	s.Stop(t)
	s = dmqtest.Start(t, dir, func(cfg *config.Config) { cfg.Auth = true })
	return s, resp.Token
}

func createToken(t *testing.T, admin *client.Client, req *dmqv1.CreateTokenRequest) string {
	t.Helper()
	resp, err := admin.API().CreateToken(context.Background(), req)
	if err != nil {
		t.Fatalf("create token %s: %v", req.App, err)
	}
	return resp.Token
}

// A token with publish on test.a.* publishes to test.a.x only and may not
// subscribe; a missing or unknown token is refused; only administrators
// approve; a revoked token is refused at once, also on an open stream.
func TestTokensAndPermissions(t *testing.T) {
	s, adminToken := authServer(t)
	ctx := context.Background()
	admin := dmqtest.Dial(t, s.GRPCAddr(), client.WithToken(adminToken))
	for _, name := range []string{"test.a.x", "test.b.x"} {
		if _, err := admin.CreateTopic(ctx, client.TopicSpec{Name: name}); err != nil {
			t.Fatal(err)
		}
		if _, err := admin.CreateGroup(ctx, client.GroupSpec{Topic: name, Name: "g"}); err != nil {
			t.Fatal(err)
		}
	}
	pubTok := createToken(t, admin, &dmqv1.CreateTokenRequest{App: "shop", Grants: []*dmqv1.TokenGrant{{Pattern: "test.a.*", Publish: true}}})
	shop := dmqtest.Dial(t, s.GRPCAddr(), client.WithToken(pubTok), client.WithRetry(client.RetryPolicy{Attempts: 1}))
	if _, err := shop.Publish(ctx, "test.a.x", &client.Message{Body: []byte("ok")}); err != nil {
		t.Fatalf("publish with the grant: %v", err)
	}
	_, err := shop.Publish(ctx, "test.b.x", &client.Message{Body: []byte("no")})
	if client.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "test.b.x") || !strings.Contains(err.Error(), "publish") {
		t.Fatalf("publish outside the grant: %v, want PermissionDenied naming the topic and the permission", err)
	}
	k, err := shop.Subscribe(ctx, "test.a.x", "g", func(context.Context, *client.Message) error { return nil })
	if err == nil {
		k.Close()
		t.Fatal("subscribe without a subscribe grant was accepted")
	} else if client.Code(err) != codes.PermissionDenied {
		t.Fatalf("subscribe without a grant: %v, want PermissionDenied", err)
	}
	if _, err := shop.ApproveTopic(ctx, "test.a.x", "shop", ""); client.Code(err) != codes.PermissionDenied {
		t.Fatalf("a non-administrator approving: %v, want PermissionDenied", err)
	}
	if topics, err := shop.ListTopics(ctx, client.TopicFilter{}); err != nil || len(topics) != 1 || topics[0].Name != "test.a.x" {
		t.Fatalf("topics seen by shop = %v, %v; want only test.a.x", topics, err)
	}

	for label, opts := range map[string][]client.Option{"no token": nil, "unknown token": {client.WithToken("dmq_forged")}} {
		c := dmqtest.Dial(t, s.GRPCAddr(), append(opts, client.WithRetry(client.RetryPolicy{Attempts: 1}))...)
		if _, err := c.Publish(ctx, "test.a.x", &client.Message{Body: []byte("x")}); client.Code(err) != codes.Unauthenticated {
			t.Fatalf("%s: %v, want Unauthenticated", label, err)
		}
	}

	// An open subscription ends as soon as its token is revoked.
	subTok := createToken(t, admin, &dmqv1.CreateTokenRequest{App: "billing", Grants: []*dmqv1.TokenGrant{{Pattern: "test.a.x", Subscribe: true, Groups: []string{"g"}}}})
	billing := dmqtest.Dial(t, s.GRPCAddr(), client.WithToken(subTok), client.WithRetry(client.RetryPolicy{Attempts: 1}))
	got := make(chan string, 10)
	k, err = billing.Subscribe(ctx, "test.a.x", "g", func(_ context.Context, m *client.Message) error {
		got <- string(m.Body)
		return nil
	})
	if err != nil {
		t.Fatalf("subscribe with the grant: %v", err)
	}
	defer k.Close()
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the subscriber got nothing")
	}
	if _, err := billing.Subscribe(ctx, "test.a.x", "other", func(context.Context, *client.Message) error { return nil }); client.Code(err) != codes.PermissionDenied {
		t.Fatalf("subscribe with a group outside the grant: %v, want PermissionDenied", err)
	}
	if _, err := admin.API().RevokeToken(ctx, &dmqv1.RevokeTokenRequest{App: "billing"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-k.Done():
		if client.Code(k.Err()) != codes.Unauthenticated {
			t.Fatalf("the open stream ended with %v, want Unauthenticated", k.Err())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the open subscription of a revoked token did not end")
	}
	if _, err := billing.GetTopic(ctx, "test.a.x"); client.Code(err) != codes.Unauthenticated {
		t.Fatalf("a call with the revoked token: %v, want Unauthenticated", err)
	}
	// Who requests and who decides are the authenticated applications.
	manager := createToken(t, admin, &dmqv1.CreateTokenRequest{App: "shop-team", Grants: []*dmqv1.TokenGrant{{Pattern: "prod.shop.*", Manage: true}}})
	mc := dmqtest.Dial(t, s.GRPCAddr(), client.WithToken(manager))
	if _, err := mc.CreateTopic(ctx, client.TopicSpec{Name: "prod.shop.orders", Owner: "alice", RequestedBy: "someone-else"}); err != nil {
		t.Fatal(err)
	}
	if _, err := mc.CreateTopic(ctx, client.TopicSpec{Name: "prod.pay.charges", Owner: "alice"}); client.Code(err) != codes.PermissionDenied {
		t.Fatalf("registering a topic outside the grant: %v, want PermissionDenied", err)
	}
	tp, err := admin.ApproveTopic(ctx, "prod.shop.orders", "whoever", "")
	if err != nil || tp.RequestedBy != "app:shop-team" || tp.DecidedBy != "app:ops" {
		t.Fatalf("approved topic %v, %v; want requested by shop-team and decided by ops", tp, err)
	}
}

// With authentication on and no administrator, the first start prints a
// one-time setup token that works until an administrator token exists.
func TestSetupToken(t *testing.T) {
	dir := t.TempDir()
	p := dmqtest.StartProcess(t, dir, "--auth")
	// The log (stderr) is read apart from the "listening" line (stdout): wait for it.
	var m []string
	dmqtest.Eventually(t, 5*time.Second, "the setup token in the log", func() bool {
		m = regexp.MustCompile(`setup_token=(dmq_[A-Za-z0-9_-]+)`).FindStringSubmatch(p.Logs())
		return m != nil
	})
	ctx := context.Background()
	setup := dmqtest.Dial(t, p.Addr, client.WithToken(m[1]))
	resp, err := setup.API().CreateToken(ctx, &dmqv1.CreateTokenRequest{App: "ops", Admin: true})
	if err != nil {
		t.Fatalf("create the first administrator with the setup token: %v", err)
	}
	if _, err := setup.API().ListTokens(ctx, &dmqv1.ListTokensRequest{}); client.Code(err) != codes.Unauthenticated {
		t.Fatalf("the setup token after an administrator exists: %v, want Unauthenticated", err)
	}
	ops := dmqtest.Dial(t, p.Addr, client.WithToken(resp.Token))
	if list, err := ops.API().ListTokens(ctx, &dmqv1.ListTokensRequest{}); err != nil || len(list.Apps) != 1 || list.Apps[0].Name != "ops" {
		t.Fatalf("tokens = %v, %v; want only ops", list, err)
	}
	p.Stop(t)
	p = dmqtest.StartProcess(t, dir, "--auth")
	if strings.Contains(p.Logs(), "setup_token") {
		t.Fatalf("a setup token printed although an administrator exists:\n%s", p.Logs())
	}
}

// Without authentication the broker listens on loopback only unless told
// --insecure.
func TestNoAuthBeyondLoopbackIsRefused(t *testing.T) {
	cfg := dmqtest.Config(t.TempDir())
	cfg.Listen = "0.0.0.0:0"
	if _, err := server.New(cfg, nil); err == nil || !strings.Contains(err.Error(), "--insecure") {
		t.Fatalf("listening on 0.0.0.0 without auth: %v, want a refusal that mentions --insecure", err)
	}
	cfg.Insecure = true
	if _, err := server.New(cfg, nil); err != nil {
		t.Fatalf("with insecure: %v", err)
	}
	cfg.Insecure, cfg.Auth = false, true
	if _, err := server.New(cfg, nil); err != nil {
		t.Fatalf("with auth: %v", err)
	}
}

// certs writes a CA, a server certificate for 127.0.0.1 and a client
// certificate, all signed by the CA, and returns their file names.
func certs(t *testing.T) (ca, serverCert, serverKey, clientCert, clientKey string) {
	t.Helper()
	c := testcert.NewCA(t, "dmq test")
	server := c.Issue(t, "server", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, testcert.Loopback)
	cl := c.Issue(t, "client", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth})
	return c.File, server.CertFile, server.KeyFile, cl.CertFile, cl.KeyFile
}

// TLS: a client that does not trust the CA is refused, one that does
// works, and with mutual TLS a client without a certificate is refused.
func TestTLSAndMutualTLS(t *testing.T) {
	ca, serverCert, serverKey, clientCert, clientKey := certs(t)
	pool := x509.NewCertPool()
	pemCA, _ := os.ReadFile(ca)
	pool.AppendCertsFromPEM(pemCA)
	clientPair, err := tls.LoadX509KeyPair(clientCert, clientKey)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	try := func(addr string, tc *tls.Config) error {
		c, err := client.Dial(addr, client.WithTLS(tc), client.WithRetry(client.RetryPolicy{Attempts: 1}))
		if err != nil {
			return err
		}
		defer c.Close()
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err = c.ListTopics(cctx, client.TopicFilter{})
		return err
	}

	s := dmqtest.Start(t, "", func(cfg *config.Config) { cfg.TLSCert, cfg.TLSKey = serverCert, serverKey })
	if err := try(s.GRPCAddr(), &tls.Config{}); client.Code(err) != codes.Unavailable {
		t.Fatalf("a client without the CA: %v, want a refused handshake (Unavailable)", err)
	}
	if err := try(s.GRPCAddr(), &tls.Config{RootCAs: pool}); err != nil {
		t.Fatalf("a client with the CA: %v", err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if resp, err := hc.Get("https://" + s.HTTPAddr() + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("HTTPS health check: %v, %v", resp, err)
	} else {
		resp.Body.Close()
	}

	m := dmqtest.Start(t, "", func(cfg *config.Config) {
		cfg.TLSCert, cfg.TLSKey, cfg.TLSClientCA = serverCert, serverKey, ca
	})
	if err := try(m.GRPCAddr(), &tls.Config{RootCAs: pool}); client.Code(err) != codes.Unavailable {
		t.Fatalf("mutual TLS, a client without a certificate: %v, want refused (Unavailable)", err)
	}
	if err := try(m.GRPCAddr(), &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{clientPair}}); err != nil {
		t.Fatalf("mutual TLS, a client with a certificate: %v", err)
	}
}

// The admin API and console with authentication on: users log in with a
// password, sessions are cookies whose changes need the CSRF token, a
// viewer cannot approve, failed logins are slowed down, logout ends the
// session, and administrative actions land in the audit log.
func TestConsoleLoginOverHTTP(t *testing.T) {
	s, adminToken := authServer(t)
	ctx := context.Background()
	admin := dmqtest.Dial(t, s.GRPCAddr(), client.WithToken(adminToken))
	for _, u := range []*dmqv1.CreateUserRequest{
		{Name: "root", Role: "admin", Password: "correct horse"},
		{Name: "vera", Role: "viewer", Password: "viewer-pass"},
	} {
		if _, err := admin.API().CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := admin.CreateTopic(ctx, client.TopicSpec{Name: "prod.shop.orders", Owner: "alice"}); err != nil {
		t.Fatal(err)
	}
	base := "http://" + s.HTTPAddr() + "/api/v1"
	type answer struct {
		status int
		body   string
		header http.Header
	}
	call := func(method, path, body string, headers map[string]string, cookies ...*http.Cookie) answer {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		for _, c := range cookies {
			req.AddCookie(c)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return answer{resp.StatusCode, string(b), resp.Header}
	}
	login := func(user, password string) (*http.Cookie, string, answer) {
		t.Helper()
		a := call("POST", "/login", fmt.Sprintf(`{"user":%q,"password":%q}`, user, password), nil)
		if a.status != 200 {
			return nil, "", a
		}
		var s struct {
			CSRF string `json:"csrf_token"`
		}
		json.Unmarshal([]byte(a.body), &s)
		for _, c := range (&http.Response{Header: a.header}).Cookies() {
			if c.Name == "dmq_session" {
				if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode {
					t.Fatalf("session cookie %+v: want HttpOnly and SameSite=Strict", c)
				}
				return c, s.CSRF, a
			}
		}
		t.Fatalf("login answered without a session cookie: %+v", a)
		return nil, "", a
	}

	if a := call("GET", "/topics", "", nil); a.status != 401 {
		t.Fatalf("the API without a session: %d %s, want 401", a.status, a.body)
	}
	if _, _, a := login("root", "wrong password"); a.status != 401 {
		t.Fatalf("a wrong password: %d, want 401", a.status)
	}
	cookie, csrf, _ := login("root", "correct horse")
	if a := call("GET", "/topics", "", nil, cookie); a.status != 200 || !strings.Contains(a.body, "prod.shop.orders") {
		t.Fatalf("topics with a session: %d %s", a.status, a.body)
	}
	approve := `{"by":"someone","reason":"reviewed"}`
	if a := call("POST", "/topics/prod.shop.orders/approve", approve, nil, cookie); a.status != 403 || !strings.Contains(a.body, "CSRF") {
		t.Fatalf("a change without the CSRF token: %d %s, want 403", a.status, a.body)
	}
	vcookie, vcsrf, _ := login("vera", "viewer-pass")
	if a := call("POST", "/topics/prod.shop.orders/approve", approve, map[string]string{"X-CSRF-Token": vcsrf}, vcookie); a.status != 403 || !strings.Contains(a.body, "PermissionDenied") {
		t.Fatalf("a viewer approving: %d %s, want 403 PermissionDenied", a.status, a.body)
	}
	if a := call("POST", "/topics/prod.shop.orders/approve", approve, map[string]string{"X-CSRF-Token": csrf}, cookie); a.status != 200 || !strings.Contains(a.body, `"decided_by": "user:root"`) {
		t.Fatalf("the administrator approving: %d %s", a.status, a.body)
	}
	if a := call("GET", "/audit?action=topic.approve", "", nil, cookie); a.status != 200 || !strings.Contains(a.body, `"who": "user:root"`) || !strings.Contains(a.body, "prod.shop.orders") {
		t.Fatalf("audit log: %d %s", a.status, a.body)
	}
	if a := call("GET", "/audit", "", nil, vcookie); a.status != 403 {
		t.Fatalf("a viewer reading the audit log: %d", a.status)
	}
	for label, h := range map[string]map[string]string{"a viewer": nil, "no one": {}} {
		req, _ := http.NewRequest("GET", "http://"+s.HTTPAddr()+"/debug/pprof/", nil)
		if h == nil {
			req.AddCookie(vcookie)
		}
		if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode == 200 {
			t.Fatalf("profiles for %s under --auth: %v %v, want refused", label, resp, err)
		} else {
			resp.Body.Close()
		}
	}
	req, _ := http.NewRequest("GET", "http://"+s.HTTPAddr()+"/debug/pprof/", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("profiles for an administrator: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if a := call("GET", "/topics", "", map[string]string{"Authorization": "Bearer " + adminToken}); a.status != 200 {
		t.Fatalf("an application token on the API: %d %s", a.status, a.body)
	}
	// Tokens over HTTP, for the console: the token is shown once, then only its prefix.
	tok := call("POST", "/tokens", `{"app":"mailer","grants":[{"pattern":"prod.mail.*","subscribe":true,"groups":["sender"]}]}`, map[string]string{"X-CSRF-Token": csrf}, cookie)
	if tok.status != 201 || !strings.Contains(tok.body, `"token": "dmq_`) {
		t.Fatalf("create a token over HTTP: %d %s", tok.status, tok.body)
	}
	if a := call("GET", "/tokens", "", nil, cookie); a.status != 200 || !strings.Contains(a.body, `"mailer"`) || strings.Contains(a.body, `"token": "dmq_`) {
		t.Fatalf("list tokens over HTTP: %d %s", a.status, a.body)
	}
	if a := call("DELETE", "/tokens/mailer", "", map[string]string{"X-CSRF-Token": csrf}, cookie); a.status != 200 {
		t.Fatalf("revoke over HTTP: %d %s", a.status, a.body)
	}
	if a := call("GET", "/tokens", "", nil, vcookie); a.status != 403 {
		t.Fatalf("a viewer listing tokens: %d", a.status)
	}
	// Logging out is a change like any other: it needs the CSRF token.
	if a := call("POST", "/logout", "", nil, cookie); a.status != 403 || !strings.Contains(a.body, "CSRF") {
		t.Fatalf("logout without the CSRF token: %d %s, want 403", a.status, a.body)
	}
	if a := call("GET", "/topics", "", nil, cookie); a.status != 200 {
		t.Fatalf("a logout refused ended the session: %d, want 200", a.status)
	}
	if a := call("POST", "/logout", "", map[string]string{"X-CSRF-Token": csrf}, cookie); a.status != 200 {
		t.Fatalf("logout with the CSRF token: %d %s", a.status, a.body)
	}
	if a := call("GET", "/topics", "", nil, cookie); a.status != 401 {
		t.Fatalf("after logout: %d, want 401", a.status)
	}

	// Ten failed logins slow the next.
	var last answer
	for i := 0; i < 10; i++ {
		_, _, last = login("root", fmt.Sprint("guess ", i))
	}
	if last.status != 429 || last.header.Get("Retry-After") == "" {
		t.Fatalf("after ten failed logins: %d %s (Retry-After %q), want 429 with Retry-After", last.status, last.body, last.header.Get("Retry-After"))
	}
	if _, _, a := login("root", "correct horse"); a.status != 429 {
		t.Fatalf("the right password while slowed down: %d, want 429 until the wait is over", a.status)
	}
	entries, err := admin.API().ListAudit(ctx, &dmqv1.ListAuditRequest{Action: "login.failed"})
	if err != nil || len(entries.Entries) < 5 {
		t.Fatalf("failed logins in the audit log: %v, %v", entries, err)
	}
}
