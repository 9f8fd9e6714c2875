// Topics: the registry with the slides' query form, paginated by the
// server, the "register topic" form, and approve/reject/disable.
import { h, query, replace, setQuery } from '../dom.js';
import { t } from '../i18n.js';
import { get, post } from '../api.js';
import { busy, clearErrors, field, formError, required, select, showError, values } from '../form.js';
import { table } from '../table.js';
import { Pager } from '../pager.js';
import { notice } from '../notice.js';
import { num, time } from '../format.js';
import { decisionButtons } from '../decisions.js';
import { statusBadge } from '../badges.js';
import { authOn } from '../session.js';

const pageSize = 50;

export function render(main) {
  const q = query();
  const filters = h('form', { class: 'filters', id: 'topic-filters' },
    field('dept', t('topic.department'), { value: q.get('dept') || '' }),
    field('name', t('topic.name'), { value: q.get('name') || '', placeholder: t('topics.nameContains') }),
    field('owner', t('topic.owner'), { value: q.get('owner') || '' }),
    field('env', t('topic.env'), { value: q.get('env') || '', placeholder: 'prod, test…' }),
    field('status', t('topic.status'), { control: select('status', statusOptions(), q.get('status') || '') }),
    h('div', { class: 'actions' },
      h('button', { type: 'submit', class: 'primary' }, t('common.search')),
      h('button', { type: 'reset', class: 'secondary' }, t('common.clear'))),
    formError());
  const list = h('div', { id: 'topic-list' });

  const pager = new Pager(async (after) => {
    clearErrors(filters);
    try {
      const page = await get('/topics', { ...values(filters), limit: pageSize, after });
      replace(list, topicsTable(page.topics, () => pager.reload()), pager.view(page.topics.length, page.total, page.next_after));
    } catch (err) {
      if (!err.code) throw err;
      replace(list);
      showError(filters, err, (m) => filterOf(m));
    }
  });
  filters.addEventListener('submit', (e) => {
    e.preventDefault();
    setQuery(values(filters));
    pager.first();
  });
  filters.addEventListener('reset', () => {
    setTimeout(() => { setQuery({}); pager.first(); });
  });

  replace(main,
    h('div', { class: 'page-head' }, h('h1', {}, t('topics.title'))),
    registerForm(() => pager.first()),
    h('section', { class: 'card' }, filters, list));
  return pager.first().then(() => null);
}

// filterOf names the filter an API error is about.
function filterOf(msg) {
  for (const n of ['dept', 'owner', 'env', 'status', 'name']) if (msg.includes(n)) return n;
  return null;
}

function statusOptions() {
  return [['', t('common.all')], ...['pending', 'approved', 'rejected', 'disabled'].map((s) => [s, t('status.' + s)])];
}

function topicsTable(topics, changed) {
  return table([
    { label: t('topic.name'), cell: (r) => h('a', { href: '/topics/' + encodeURIComponent(r.name), class: 'mono' }, r.name) },
    { label: t('topic.env'), cell: (r) => r.env },
    { label: t('topic.department'), cell: (r) => r.department },
    { label: t('topic.owner'), cell: (r) => r.owner },
    { label: t('topic.purpose'), cell: (r) => r.purpose, class: 'wrap' },
    { label: t('topic.status'), cell: (r) => statusBadge(r.status) },
    { label: t('topic.requestedBy'), cell: (r) => r.requested_by },
    { label: t('topic.created'), cell: (r) => time(r.created_at_ms), class: 'nowrap' },
    { label: t('topic.stored'), cell: (r) => num(r.stored_messages), class: 'num' },
    { label: t('common.actions'), cell: (r) => h('div', { class: 'row-actions' }, decisionButtons(r, changed)) },
  ], topics, t('topics.none'), { id: 'topics-table' });
}

// registerForm is the "register topic" form; created() runs after a topic
// was registered.
function registerForm(created) {
  const form = h('form', { id: 'register-form', class: 'grid-form', novalidate: true },
    field('name', t('topic.name'), { placeholder: 'prod.shop.orders', hint: t('register.nameHint'), autocomplete: 'off' }),
    field('department', t('topic.department'), {}),
    field('owner', t('topic.owner'), {}),
    // With --auth the server records the logged-in user as the requester.
    authOn() ? null : field('requested_by', t('topic.requestedBy'), { value: localStorage.getItem('dmq.operator') || '' }),
    field('purpose', t('topic.purpose'), { control: h('textarea', { rows: 2 }) }),
    formError(),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, t('register.submit'))));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form);
    if (!required(form, ['name', 'owner'])) return;
    const v = values(form);
    const body = { name: v.name.trim(), department: v.department.trim(), owner: v.owner.trim(), purpose: v.purpose.trim(), requested_by: (v.requested_by || '').trim() };
    try {
      const topic = await busy(form, () => post('/topics', body));
      form.reset();
      notice(t('register.done', { name: topic.name, status: t('status.' + topic.status) }));
      created();
    } catch (err) {
      if (!err.code) throw err;
      showError(form, err, guessField);
    }
  });
  return h('details', { class: 'card', id: 'register' },
    h('summary', {}, t('register.title')), form);
}

// guessField names the form field an API error is about.
function guessField(msg) {
  if (/topic name|topic "[^"]*" already exists/.test(msg)) return 'name';
  if (/owner/.test(msg)) return 'owner';
  if (/department/.test(msg)) return 'department';
  if (/requested/.test(msg)) return 'requested_by';
  return null;
}
