// Delayed messages of a topic: pending ones, soonest first, filtered by key
// and due time, paged; cancel one.
import { h, link, query, replace, setQuery } from '../dom.js';
import { t } from '../i18n.js';
import { del, get, seg } from '../api.js';
import { clearErrors, field, formError, required, showError, values } from '../form.js';
import { topicInput } from '../pickers.js';
import { confirmAction } from '../dialog.js';
import { table } from '../table.js';
import { Pager } from '../pager.js';
import { notice } from '../notice.js';
import { rfc3339, time } from '../format.js';
import { messageView } from '../message.js';

const pageSize = 50;

export function render(main) {
  const q = query();
  const form = h('form', { class: 'filters', id: 'delay-form' },
    field('topic', t('common.topic'), { control: topicInput(q.get('topic')) }),
    field('key', t('trace.key'), { value: q.get('key') || '' }),
    field('from', t('delay.dueFrom'), { type: 'datetime-local', value: q.get('from') || '' }),
    field('to', t('delay.dueTo'), { type: 'datetime-local', value: q.get('to') || '' }),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, t('common.search'))),
    formError());
  const list = h('div', { id: 'delay-list' });
  const topic = () => values(form).topic.trim();

  const pager = new Pager(async (after) => {
    const v = values(form);
    setQuery(v);
    clearErrors(form);
    if (!required(form, ['topic'])) return;
    try {
      const page = await get(`/topics/${seg(topic())}/delayed`, { key: v.key.trim(), from: rfc3339(v.from), to: rfc3339(v.to), limit: pageSize, after });
      replace(list,
        page.next_due_ms ? h('p', { class: 'muted' }, t('delay.nextDue', { time: time(page.next_due_ms) })) : null,
        delaysTable(page.messages), pager.view(page.messages.length, page.total, page.next_after));
    } catch (err) {
      if (!err.code) throw err;
      replace(list);
      showError(form, err, (m) => (/topic/.test(m) ? 'topic' : /from|time/.test(m) ? 'from' : /to/.test(m) ? 'to' : null));
    }
  });
  const cancel = async (id) => {
    const ok = await confirmAction({
      title: t('delay.cancelTitle', { id }), text: t('delay.cancelText'), danger: true, confirm: t('delay.cancel'),
      run: () => del(`/topics/${seg(topic())}/delayed/${seg(id)}`),
    });
    if (ok) { notice(t('delay.cancelled', { id })); pager.reload(); }
  };
  const delaysTable = (rows) => table([
    { label: t('dl.id'), cell: (d) => h('span', { class: 'mono' }, d.id) },
    { label: t('delay.due'), cell: (d) => time(d.due_ms), class: 'nowrap' },
    { label: t('trace.key'), cell: (d) => d.message.key },
    { label: t('msg.published'), cell: (d) => time(d.message.published_at_ms), class: 'nowrap' },
    { label: t('dl.message'), cell: (d) => h('details', { class: 'inspect' }, h('summary', {}, t('dl.inspect')), messageView(d.message)) },
    { label: t('common.actions'), cell: (d) => h('div', { class: 'row-actions' },
      h('button', { type: 'button', class: 'small danger', 'data-action': 'cancel', onclick: () => cancel(d.id) }, t('delay.cancel')),
      h('a', { class: 'small', href: link('/trace', { topic: topic(), id: d.id }) }, t('nav.trace'))) },
  ], rows, t('delay.none'), { id: 'delay-table' });

  form.addEventListener('submit', (e) => { e.preventDefault(); pager.first(); });
  replace(main, h('div', { class: 'page-head' }, h('h1', {}, t('delay.title'))), h('section', { class: 'card' }, form, list));
  return q.get('topic') ? pager.first().then(() => null) : null;
}
