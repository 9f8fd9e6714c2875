// Entry point: draws the header and the page the path names. Pages are
// modules under pages/ exporting render(main, params), which may return a
// function that stops what the page started (timers); it runs before the
// page is drawn again (after a language switch).
import { has, lang, setLang, t } from './i18n.js';
import { h, replace } from './dom.js';
import { ApiError } from './api.js';

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
];

const nav = [
  ['/topics', 'nav.topics', ['topics', 'topic']],
  ['/monitor', 'nav.monitor', ['monitor']],
  ['/trace', 'nav.trace', ['trace']],
  ['/clients', 'nav.clients', ['clients']],
  ['/deadletters', 'nav.deadletters', ['deadletters']],
  ['/delays', 'nav.delays', ['delays']],
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
  return replace(document.getElementById('header'),
    h('a', { class: 'brand', href: '/topics' }, 'DMQ'),
    h('nav', {}, nav.map(([href, key, pages]) =>
      h('a', { href, class: pages.includes(page) ? 'active' : null }, t(key)))),
    h('button', {
      id: 'lang-toggle', type: 'button', class: 'lang', lang: other === 'zh' ? 'zh-CN' : 'en',
      title: t('lang.switch'),
      onclick: () => { setLang(other); draw(); },
    }, other === 'zh' ? '中文' : 'English'));
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

draw();
