// The console session when the server runs with --auth: who is logged in,
// their role and the CSRF token every change must carry. It lives in
// memory only (never localStorage, where any script could read the token)
// and is fetched again from /api/v1/session on each page load; the
// session itself is the HttpOnly dmq_session cookie, which scripts cannot
// read.

// current is the answer of GET /api/v1/session or POST /api/v1/login:
// {auth, user, role, department, csrf_token}; null until loaded.
let current = null;

export function session() {
  return current;
}

export function setSession(s) {
  current = s;
}

// authOn reports whether the server requires a login.
export function authOn() {
  return !!(current && current.auth);
}

// isAdmin reports whether the user may use administrators' pages; without
// --auth everyone may.
export function isAdmin() {
  return !authOn() || current.role === 'admin';
}

// csrfToken is the token to send as X-CSRF-Token, or '' without a session.
export function csrfToken() {
  return (current && current.csrf_token) || '';
}

// returnPath is where the login page sends the user afterwards: a path on
// this site only (never "//host", which would leave it).
export function returnPath(next) {
  return next && next.startsWith('/') && !next.startsWith('//') && !next.startsWith('/login') ? next : '/topics';
}

// toLogin leaves for the login page, remembering the page to come back to.
export function toLogin() {
  if (location.pathname === '/login') return;
  location.assign('/login?next=' + encodeURIComponent(location.pathname + location.search));
}
