// The admin API client: every call goes to /api/v1/ and either returns the
// decoded JSON or throws an ApiError with the API's code and message.
// Changes carry the session's CSRF token; a 401 (no session, or it ended)
// sends the browser to the login page.
import { csrfToken, toLogin } from './session.js';

export class ApiError extends Error {
  constructor(status, code, message, retryAfter = 0) {
    super(message);
    this.status = status;
    this.code = code;
    // retryAfter is the Retry-After header in seconds (429), else 0.
    this.retryAfter = retryAfter;
  }
}

// seg escapes a path segment (topic, group, client id, message id).
export const seg = encodeURIComponent;

export async function api(method, path, body) {
  const init = { method, headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  if (method !== 'GET' && csrfToken()) init.headers['X-CSRF-Token'] = csrfToken();
  let resp;
  try {
    resp = await fetch('/api/v1' + path, init);
  } catch (e) {
    throw new ApiError(0, 'Unavailable', 'the server cannot be reached: ' + e.message);
  }
  let data = null;
  try {
    data = await resp.json();
  } catch {
    // A proxy's HTML error page, for example: reported below by status.
  }
  if (!resp.ok) {
    // The login page handles its own 401s (a wrong password, no session yet).
    if (resp.status === 401) toLogin();
    const e = data && data.error;
    throw new ApiError(resp.status, e ? e.code : 'HTTP' + resp.status, e ? e.message : resp.status + ' ' + resp.statusText,
      Number(resp.headers.get('Retry-After')) || 0);
  }
  return data;
}

// get calls GET path with the non-empty values of params as its query.
export function get(path, params = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== '' && v !== null && v !== undefined) q.set(k, v);
  const s = q.toString();
  return api('GET', path + (s ? '?' + s : ''));
}

export const post = (path, body) => api('POST', path, body);
export const del = (path) => api('DELETE', path);
