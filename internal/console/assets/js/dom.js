// Small helpers to build the DOM. Text always goes in as text nodes, never
// as HTML, so names and message bodies from the API cannot inject markup.

// h creates an element: h('a', {href: '/x', class: 'link'}, 'text', child).
// Attributes starting with "on" become event listeners; null, undefined and
// false attributes and children are skipped.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'value') el.value = v;
    else if (k === 'checked') el.checked = !!v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

// clear empties el and appends children.
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// query returns the page's URL query parameters.
export function query() {
  return new URLSearchParams(location.search);
}

// setQuery replaces the URL's query with the non-empty values of params,
// keeping the page, so a reload or a shared link shows the same view.
export function setQuery(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== '' && v !== null && v !== undefined) q.set(k, v);
  const s = q.toString();
  history.replaceState(null, '', location.pathname + (s ? '?' + s : ''));
}

// link builds a path with a query from the non-empty values of params.
export function link(path, params = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== '' && v !== null && v !== undefined) q.set(k, v);
  const s = q.toString();
  return path + (s ? '?' + s : '');
}
