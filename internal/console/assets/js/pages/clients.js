// Clients: producers and consumers that announced themselves, online or
// offline, filtered by topic, group and status; offline ones can be
// deleted one by one or all at once.
import { h, link, query, replace, setQuery } from '../dom.js';
import { t } from '../i18n.js';
import { del, get, post, seg } from '../api.js';
import { clearErrors, field, formError, select, showError, values } from '../form.js';
import { topicInput } from '../pickers.js';
import { confirmAction } from '../dialog.js';
import { table } from '../table.js';
import { notice } from '../notice.js';
import { time } from '../format.js';
import { onlineBadge } from '../badges.js';

export function render(main) {
  const q = query();
  const form = h('form', { class: 'filters', id: 'client-filters' },
    field('topic', t('common.topic'), { control: topicInput(q.get('topic')) }),
    field('group', t('common.group'), { value: q.get('group') || '' }),
    field('online', t('client.status'), { control: select('online', [['', t('common.all')], ['true', t('client.online')], ['false', t('client.offline')]], q.get('online') || '') }),
    h('div', { class: 'actions' },
      h('button', { type: 'submit', class: 'primary' }, t('common.search')),
      h('button', { type: 'button', class: 'danger', id: 'delete-offline', onclick: () => deleteAllOffline() }, t('client.deleteOffline'))),
    formError());
  const list = h('div', { id: 'client-list' });

  const load = async () => {
    const v = values(form);
    setQuery(v);
    clearErrors(form);
    try {
      const r = await get('/clients', { topic: v.topic.trim(), group: v.group.trim(), online: v.online });
      replace(list, h('p', { class: 'muted' }, t('client.count', { n: r.clients.length })), clientsTable(r.clients));
    } catch (err) {
      if (!err.code) throw err;
      replace(list);
      showError(form, err, (m) => (/group/.test(m) ? 'group' : /topic/.test(m) ? 'topic' : null));
    }
  };
  const deleteOne = async (id) => {
    const ok = await confirmAction({
      title: t('client.deleteTitle', { id }), text: t('client.deleteText'), danger: true, confirm: t('common.delete'),
      run: () => del('/clients/' + seg(id)),
    });
    if (ok) { notice(t('client.deleted', { n: 1 })); load(); }
  };
  const deleteAllOffline = async () => {
    const r = await confirmAction({
      title: t('client.deleteOfflineTitle'), text: t('client.deleteText'), danger: true, confirm: t('client.deleteOffline'),
      run: () => post('/clients/delete-offline'),
    });
    if (r) { notice(t('client.deleted', { n: r.deleted })); load(); }
  };
  const clientsTable = (clients) => table([
    { label: t('client.id'), cell: (c) => h('span', { class: 'mono' }, c.id) },
    { label: t('client.status'), cell: (c) => onlineBadge(c.online) },
    { label: t('client.roles'), cell: (c) => (c.roles || []).map((r) => t('role.' + r)).join(', ') },
    { label: t('client.host'), cell: (c) => [c.host, h('div', { class: 'muted small' }, c.address)] },
    { label: t('client.pid'), cell: (c) => c.pid, class: 'num' },
    { label: t('client.sdk'), cell: (c) => c.sdk_version },
    { label: t('client.produces'), cell: (c) => (c.produces || []).map((tp) => h('div', {},
      h('a', { href: '/topics/' + seg(tp), class: 'mono' }, tp), ' ',
      h('a', { class: 'small', href: link('/monitor', { topic: tp, client: c.id }) }, t('nav.monitor')))) },
    { label: t('client.consumes'), cell: (c) => (c.consumes || []).map((s) => h('div', {}, h('a', { href: link('/clients', { topic: s.topic, group: s.group }), class: 'mono' }, `${s.topic} / ${s.group}`))) },
    { label: t('client.since'), cell: (c) => time(c.connected_since_ms), class: 'nowrap' },
    { label: t('client.lastSeen'), cell: (c) => time(c.last_seen_ms), class: 'nowrap' },
    { label: t('common.actions'), cell: (c) => (c.online ? '' : h('button', { type: 'button', class: 'small danger', 'data-action': 'delete', 'data-client': c.id, onclick: () => deleteOne(c.id) }, t('common.delete'))) },
  ], clients, t('client.none'), { id: 'clients-table' });

  form.addEventListener('submit', (e) => { e.preventDefault(); load(); });
  replace(main, h('div', { class: 'page-head' }, h('h1', {}, t('client.title'))), h('section', { class: 'card' }, form, list));
  return load().then(() => null);
}
