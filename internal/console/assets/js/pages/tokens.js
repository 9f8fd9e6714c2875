// Tokens: the applications that talk to the broker and what their tokens
// allow; administrators create tokens (shown once) and revoke them.
import { h, replace } from '../dom.js';
import { t } from '../i18n.js';
import { del, get, post, seg } from '../api.js';
import { busy, clearErrors, field, formError, required, showError, values } from '../form.js';
import { confirmAction } from '../dialog.js';
import { table } from '../table.js';
import { notice } from '../notice.js';
import { time } from '../format.js';

export function render(main) {
  const list = h('div', { id: 'token-list' });
  const shown = h('div', { id: 'new-token' });
  const load = async () => {
    const r = await get('/tokens');
    replace(list, tokensTable(r.applications || [], load));
  };
  replace(main,
    h('div', { class: 'page-head' }, h('h1', {}, t('token.title'))),
    createForm(shown, load),
    shown,
    h('section', { class: 'card' }, list));
  return load().then(() => null);
}

// allows says what a token allows, one grant per line.
function allows(a) {
  if (a.admin) return h('span', { class: 'badge' }, t('urole.admin'));
  return h('div', {}, (a.grants || []).map((g) => h('div', { class: 'mono' },
    [g.publish && 'publish', g.subscribe && 'subscribe' + (g.groups && g.groups.length ? ':' + g.groups.join(',') : ''), g.manage && 'manage']
      .filter(Boolean).join(' + ') + ' ' + g.pattern)));
}

function tokensTable(apps, changed) {
  return table([
    { label: t('token.app'), cell: (a) => h('span', { class: 'mono' }, a.name) },
    { label: t('token.allows'), cell: allows },
    { label: t('token.prefix'), cell: (a) => h('span', { class: 'mono' }, a.token_prefix + '…') },
    { label: t('topic.created'), cell: (a) => time(a.created_at_ms), class: 'nowrap' },
    { label: t('user.createdBy'), cell: (a) => a.created_by },
    { label: t('common.actions'), cell: (a) => h('button', {
      type: 'button', class: 'small danger', 'data-action': 'revoke', 'data-app': a.name,
      onclick: () => revoke(a.name, changed),
    }, t('token.revoke')) },
  ], apps, t('token.none'), { id: 'tokens-table' });
}

async function revoke(name, changed) {
  const ok = await confirmAction({
    title: t('token.revokeTitle', { name }), text: t('token.revokeText'), danger: true, confirm: t('token.revoke'),
    run: () => del('/tokens/' + seg(name)),
  });
  if (ok) {
    notice(t('token.revoked', { name }));
    changed();
  }
}

// parseGrants reads one grant per line, as the CLI takes them:
// "publish prod.shop.*", "subscribe prod.shop.orders:billing,audit",
// "manage prod.shop.*". It throws a message for a line it cannot read.
export function parseGrants(text) {
  const grants = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line) continue;
    const [action, target, extra] = line.split(/\s+/);
    if (!target || extra || !['publish', 'subscribe', 'manage'].includes(action)) {
      throw new Error(t('token.badGrant', { line }));
    }
    const [pattern, groups] = target.split(':');
    const g = { pattern, [action]: true };
    if (groups) {
      if (action !== 'subscribe') throw new Error(t('token.badGrant', { line }));
      g.groups = groups.split(',').filter(Boolean);
    }
    grants.push(g);
  }
  return grants;
}

function createForm(shown, created) {
  const admin = h('input', { type: 'checkbox', name: 'admin', value: 'yes' });
  const form = h('form', { id: 'token-form', class: 'grid-form', novalidate: true },
    field('app', t('token.app'), { autocomplete: 'off' }),
    field('grants', t('token.grants'), { control: h('textarea', { name: 'grants', rows: 3, placeholder: 'publish prod.shop.*\nsubscribe prod.shop.orders:billing' }), hint: t('token.grantsHint') }),
    field('admin', t('token.admin'), { control: h('label', { class: 'check' }, admin, ' ', t('urole.admin')) }),
    formError(),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, t('token.create'))));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form);
    const v = values(form);
    if (!required(form, ['app'])) return;
    let grants;
    try {
      grants = parseGrants(v.grants || '');
    } catch (err) {
      showError(form, { code: 'InvalidArgument', message: err.message }, () => 'grants');
      return;
    }
    try {
      const r = await busy(form, () => post('/tokens', { app: v.app.trim(), admin: admin.checked, grants }));
      form.reset();
      replace(shown, h('section', { class: 'card notice-token' },
        h('p', {}, t('token.created', { name: r.application.name })),
        h('pre', { class: 'mono', id: 'token-value' }, r.token)));
      created();
    } catch (err) {
      if (!err.code) throw err;
      showError(form, err, (msg) => (/grant|pattern|allowed nothing/.test(msg) ? 'grants' : 'app'));
    }
  });
  return h('details', { class: 'card', id: 'create-token', open: true },
    h('summary', {}, t('token.createTitle')), form);
}
