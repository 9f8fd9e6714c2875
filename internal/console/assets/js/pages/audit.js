// Audit log: administrative actions (approvals, deletions, token and user
// changes, redrives, resets, failed logins), newest first, filtered by who,
// action and time range. Administrators only.
import { h, query, replace, setQuery } from '../dom.js';
import { t } from '../i18n.js';
import { get } from '../api.js';
import { clearErrors, field, formError, select, showError, values } from '../form.js';
import { table } from '../table.js';
import { localInput, rfc3339, timeMs } from '../format.js';

// actions are the audit log's action names (docs/api.md).
const actions = [
  'topic.create', 'topic.approve', 'topic.reject', 'topic.disable', 'topic.delete', 'group.reset', 'group.delete', 'deadletters.redrive', 'deadletters.purge', 'delayed.cancel', 'clients.delete',
  'token.create', 'token.revoke', 'user.create', 'user.delete', 'login.failed'];

export function render(main) {
  const q = query();
  const fromMs = Date.parse(q.get('from') || '');
  const toMs = Date.parse(q.get('to') || '');
  const form = h('form', { class: 'filters', id: 'audit-filters' },
    field('who', t('audit.who'), { value: q.get('who') || '', placeholder: 'user:alice, app:ops' }),
    field('action', t('audit.action'), { control: select('action', [['', t('common.all')], ...actions.map((a) => [a, a])], q.get('action') || '') }),
    field('from', t('common.from'), { type: 'datetime-local', value: isNaN(fromMs) ? '' : localInput(fromMs) }),
    field('to', t('common.to'), { type: 'datetime-local', value: isNaN(toMs) ? '' : localInput(toMs) }),
    field('limit', t('audit.limit'), { type: 'number', min: 1, max: 1000, value: q.get('limit') || '100' }),
    h('div', { class: 'actions' },
      h('button', { type: 'submit', class: 'primary' }, t('common.search')),
      h('button', { type: 'reset', class: 'secondary' }, t('common.clear'))),
    formError());
  const list = h('div', { id: 'audit-list' });

  const load = async () => {
    const v = values(form);
    const params = { who: v.who.trim(), action: v.action, from: rfc3339(v.from), to: rfc3339(v.to), limit: v.limit };
    setQuery(params);
    clearErrors(form);
    try {
      const r = await get('/audit', params);
      replace(list, auditTable(r.entries || []));
    } catch (err) {
      if (!err.code) throw err;
      replace(list);
      // Bad input names its parameter; a refusal is about no one field.
      const param = (m) => ['from', 'to', 'limit'].find((n) => new RegExp(`\\b${n}\\b`).test(m)) || null;
      showError(form, err, (m) => (err.code === 'InvalidArgument' ? param(m) : null));
    }
  };
  form.addEventListener('submit', (e) => { e.preventDefault(); load(); });
  form.addEventListener('reset', () => { setTimeout(load); });
  replace(main, h('div', { class: 'page-head' }, h('h1', {}, t('audit.title'))), h('section', { class: 'card' }, form, list));
  return load().then(() => null);
}

function auditTable(entries) {
  return table([
    { label: t('audit.time'), cell: (e) => timeMs(e.time_ms), class: 'nowrap' },
    { label: t('audit.who'), cell: (e) => h('span', { class: 'mono' }, e.who) },
    { label: t('audit.action'), cell: (e) => h('span', { class: 'mono', 'data-action-name': e.action }, e.action) },
    { label: t('audit.target'), cell: (e) => h('span', { class: 'mono' }, e.target) },
    { label: t('audit.from'), cell: (e) => e.from, class: 'nowrap' },
    { label: t('audit.detail'), cell: (e) => e.detail, class: 'wrap' },
  ], entries, t('audit.none'), { id: 'audit-table' });
}
