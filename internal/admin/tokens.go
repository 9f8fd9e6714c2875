package admin

import (
	"net/http"

	"github.com/dmqio/dmq/internal/auth"
)

// tokenGrantJSON is what a token allows on a topic pattern.
type tokenGrantJSON struct {
	Pattern   string   `json:"pattern"`
	Publish   bool     `json:"publish,omitempty"`
	Subscribe bool     `json:"subscribe,omitempty"`
	Manage    bool     `json:"manage,omitempty"`
	Groups    []string `json:"groups,omitempty"`
}

type applicationJSON struct {
	Name        string           `json:"name"`
	Admin       bool             `json:"admin"`
	Grants      []tokenGrantJSON `json:"grants"`
	TokenPrefix string           `json:"token_prefix"`
	CreatedAt   string           `json:"created_at"`
	CreatedAtMs int64            `json:"created_at_ms"`
	CreatedBy   string           `json:"created_by"`
}

func applicationOf(a auth.App) applicationJSON {
	out := applicationJSON{Name: a.Name, Admin: a.Admin, Grants: []tokenGrantJSON{}, TokenPrefix: a.TokenPrefix,
		CreatedAt: formatMs(a.CreatedAtMs), CreatedAtMs: a.CreatedAtMs, CreatedBy: a.CreatedBy}
	for _, g := range a.Grants {
		out.Grants = append(out.Grants, tokenGrantJSON{Pattern: g.Pattern, Publish: g.Publish, Subscribe: g.Subscribe, Manage: g.Manage, Groups: g.Groups})
	}
	return out
}

func (a *api) listTokens(*http.Request) (int, any, error) {
	apps := a.sec.Registry.List()
	out := make([]applicationJSON, len(apps))
	for i, app := range apps {
		out[i] = applicationOf(app)
	}
	return http.StatusOK, map[string]any{"applications": out}, nil
}

type createTokenRequest struct {
	App    string           `json:"app"`
	Admin  bool             `json:"admin"`
	Grants []tokenGrantJSON `json:"grants"`
}

func (a *api) createToken(r *http.Request) (int, any, error) {
	var req createTokenRequest
	if err := decodeBody(r, &req); err != nil {
		return 0, nil, err
	}
	app := auth.App{Name: req.App, Admin: req.Admin}
	for _, g := range req.Grants {
		app.Grants = append(app.Grants, auth.Grant{Pattern: g.Pattern, Publish: g.Publish, Subscribe: g.Subscribe, Manage: g.Manage, Groups: g.Groups})
	}
	created, token, err := a.sec.Registry.Create(app, who(r))
	if err != nil {
		return 0, nil, authError(err)
	}
	a.audit(r, "token.create", created.Name, "")
	return http.StatusCreated, map[string]any{"application": applicationOf(created), "token": token}, nil
}

func (a *api) revokeToken(r *http.Request) (int, any, error) {
	name := r.PathValue("app")
	if err := a.sec.Registry.Revoke(name); err != nil {
		return 0, nil, authError(err)
	}
	a.audit(r, "token.revoke", name, "")
	return http.StatusOK, map[string]string{"revoked": name}, nil
}
