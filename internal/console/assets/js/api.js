// The admin API client: every call goes to /api/v1/ and either returns the
// decoded JSON or throws an ApiError with the API's code and message.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
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
    const e = data && data.error;
    throw new ApiError(resp.status, e ? e.code : 'HTTP' + resp.status, e ? e.message : resp.status + ' ' + resp.statusText);
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
