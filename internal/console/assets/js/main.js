// Entry point: draws the header and the page the path names. Pages are
// modules under pages/ exporting render(main, params), which may return a
// function that stops what the page started (timers); it runs before the
// page is drawn again (after a language switch).
//
// With --auth the session (user, role, CSRF token) is fetched first; without
// one the API answers 401 and api.js sends the browser to /login. Without
// --auth (the session says auth: false) there is no login at all.
import { has, lang, setLang, t } from './i18n.js';
import { h, replace } from './dom.js';
import { ApiError, get, post } from './api.js';
import { authOn, isAdmin, session, setSession } from './session.js';

// routes map paths to page modules; keep them in step with pages in
// console.go, which answers these paths with the shell.
const routes = [
  [/^\/$/, 'topics'],
  [/^\/topics$/, 'topics'],
  [/^\/topics\/([^/]+)$/, 'topic'],
  [/^\/monitor$/, 'monitor'],
  [/^\/trace$/, 'trace'],
  [/^\/clients$/, 'clients'],
  [/^\/deadletters$/, 'deadletters'],
  [/^\/delays$/, 'delays'],
  [/^\/cluster$/, 'cluster'],
  [/^\/audit$/, 'audit'],
  [/^\/users$/, 'users'],
  [/^\/tokens$/, 'tokens'],
  [/^\/login$/, 'login'],
];

const nav = [
  ['/topics', 'nav.topics', ['topics', 'topic']],
  ['/monitor', 'nav.monitor', ['monitor']],
  ['/trace', 'nav.trace', ['trace']],
  ['/clients', 'nav.clients', ['clients']],
  ['/deadletters', 'nav.deadletters', ['deadletters']],
  ['/delays', 'nav.delays', ['delays']],
  ['/cluster', 'nav.cluster', ['cluster']],
];

// adminNav are the administrators' pages, hidden from other roles (the API
// refuses them anyway).
const adminNav = [
  ['/audit', 'nav.audit', ['audit']],
  ['/users', 'nav.users', ['users']],
  ['/tokens', 'nav.tokens', ['tokens']],
];

function route() {
  if (document.body.hasAttribute('data-not-found')) return ['notfound', []];
  for (const [re, name] of routes) {
    const m = location.pathname.match(re);
    if (m) return [name, m.slice(1).map(decodeURIComponent)];
  }
  return ['notfound', []];
}

function header(page) {
  const other = lang() === 'zh' ? 'en' : 'zh';
  const s = session();
  const links = page === 'login' ? [] : [...nav, ...(isAdmin() ? adminNav : [])];
  return replace(document.getElementById('header'),
    h('a', { class: 'brand', href: '/topics' }, 'DMQ'),
    h('nav', {}, links.map(([href, key, pages]) =>
      h('a', { href, class: pages.includes(page) ? 'active' : null }, t(key)))),
    authOn() && page !== 'login' ? h('span', { class: 'who', id: 'who' },
      h('span', { class: 'who-user' }, s.user), ' ',
      h('span', { class: 'badge who-role', 'data-role': s.role }, t('urole.' + s.role) + (s.department ? ' · ' + s.department : ''))) : null,
    authOn() && page !== 'login' ? h('button', { id: 'logout', type: 'button', class: 'secondary small', onclick: logout }, t('login.logout')) : null,
    h('button', {
      id: 'lang-toggle', type: 'button', class: 'lang', lang: other === 'zh' ? 'zh-CN' : 'en',
      title: t('lang.switch'),
      onclick: () => { setLang(other); draw(); },
    }, other === 'zh' ? '中文' : 'English'));
}

// logout ends the session and goes to the login page, also when the
// session had already ended.
async function logout() {
  try {
    await post('/logout');
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
  }
  setSession(null);
  location.assign('/login');
}

// loadSession asks who is logged in. It reports false when the browser is
// leaving for the login page (no session; api.js navigates).
async function loadSession() {
  try {
    setSession(await get('/session'));
    return true;
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    if (e.status === 401) {
      setSession(null);
      return location.pathname === '/login';
    }
    // The server cannot be reached or failed: draw the page, whose own
    // calls report the problem.
    setSession({ auth: false });
    return true;
  }
}

let stop = null;

async function draw() {
  if (stop) stop();
  stop = null;
  document.documentElement.lang = lang() === 'zh' ? 'zh-CN' : 'en';
  const [name, params] = route();
  header(name);
  document.title = (has('nav.' + name) ? t('nav.' + name) + ' · ' : '') + t('app.title');
  const main = document.getElementById('main');
  main.replaceChildren(h('p', { class: 'muted' }, t('common.loading')));
  const page = await import(`./pages/${name}.js`);
  try {
    stop = (await page.render(main, ...params)) || null;
  } catch (e) {
    if (!(e instanceof ApiError)) throw e; // a bug: let it reach the console
    replace(main, h('div', { class: 'error-box', role: 'alert' }, t('common.failed'), ' ', e.message));
  }
}

if (await loadSession()) draw();
