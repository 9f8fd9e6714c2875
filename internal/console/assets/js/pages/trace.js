// Message trace: find a message by topic and id, or by topic, business key
// and time range, and show each message's events as a timeline.
import { h, link, query, replace, setQuery } from '../dom.js';
import { has, t } from '../i18n.js';
import { get, seg } from '../api.js';
import { busy, clearErrors, field, formError, required, showError, values } from '../form.js';
import { topicInput } from '../pickers.js';
import { localInput, rfc3339, timeMs } from '../format.js';

export function render(main) {
  const q = query();
  const results = h('div', { id: 'trace-results' });
  const byID = h('form', { class: 'filters', id: 'trace-by-id' },
    h('h2', {}, t('trace.byId')),
    field('topic', t('common.topic'), { control: topicInput(q.get('topic')) }),
    field('id', t('trace.messageId'), { value: q.get('id') || '', placeholder: '42 / d1764151200000-k3x9' }),
    formError(),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, t('common.search'))));
  const byKey = h('form', { class: 'filters', id: 'trace-by-key' },
    h('h2', {}, t('trace.byKey')),
    field('topic', t('common.topic'), { control: topicInput(q.get('topic')) }),
    field('key', t('trace.key'), { value: q.get('key') || '', placeholder: 'order-42' }),
    field('from', t('common.from'), { type: 'datetime-local', value: q.get('from') || localInput(Date.now() - 24 * 3600e3) }),
    field('to', t('common.to'), { type: 'datetime-local', value: q.get('to') || localInput(Date.now() + 3600e3) }),
    formError(),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, t('common.search'))));

  const guess = (m) => (/topic/.test(m) ? 'topic' : /key/.test(m) ? 'key' : /id/.test(m) ? 'id' : /from|to|range|time/.test(m) ? 'from' : null);
  const search = async (form, needed, fetchMessages) => {
    clearErrors(form);
    if (!required(form, needed)) return;
    const v = values(form);
    try {
      const messages = await busy(form, () => fetchMessages(v));
      replace(results, messages.length === 0
        ? h('p', { class: 'empty' }, t('trace.none'))
        : messages.map((m) => timeline(v.topic.trim(), m)));
    } catch (err) {
      if (!err.code) throw err;
      replace(results);
      showError(form, err, guess);
    }
  };
  const searchID = () => search(byID, ['topic', 'id'], async (v) => {
    setQuery({ topic: v.topic, id: v.id });
    const tr = await get(`/topics/${seg(v.topic.trim())}/trace/${seg(v.id.trim())}`);
    return [tr];
  });
  const searchKey = () => search(byKey, ['topic', 'key'], async (v) => {
    setQuery({ topic: v.topic, key: v.key, from: v.from, to: v.to });
    const r = await get(`/topics/${seg(v.topic.trim())}/trace`, { key: v.key.trim(), from: rfc3339(v.from), to: rfc3339(v.to), limit: 20 });
    return r.messages;
  });
  byID.addEventListener('submit', (e) => { e.preventDefault(); searchID(); });
  byKey.addEventListener('submit', (e) => { e.preventDefault(); searchKey(); });

  replace(main,
    h('div', { class: 'page-head' }, h('h1', {}, t('trace.title'))),
    h('div', { class: 'two-cols' }, h('section', { class: 'card' }, byID), h('section', { class: 'card' }, byKey)),
    results);
  if (q.get('topic') && q.get('id')) searchID();
  else if (q.get('topic') && q.get('key')) searchKey();
}

// timeline draws one message's events in order.
function timeline(topic, m) {
  return h('section', { class: 'card trace', 'data-message-id': m.message_id },
    h('h2', {}, t('trace.message', { id: m.message_id }), ' ',
      h('a', { class: 'small', href: link('/trace', { topic, id: m.message_id }) }, t('trace.link'))),
    m.events.length === 0 ? h('p', { class: 'empty' }, t('trace.noEvents')) : h('ol', { class: 'timeline' }, m.events.map(event)));
}

// kindKey names a trace event kind as a label key and a CSS class:
// "timed out" is kind.timed_out, "dead-lettered" kind.dead_lettered.
const kindKey = (kind) => kind.replace(/[^a-z]+/g, '_');

function event(e) {
  const k = kindKey(e.kind);
  const facts = [
    ['trace.group', e.group], ['trace.client', e.client], ['trace.addr', e.addr],
    ['trace.attempt', e.attempt], ['trace.reason', e.reason],
    ['trace.offset', e.kind === 'due' || e.kind === 'redriven' ? e.offset : ''], ['trace.delayId', e.delay_id],
  ].filter(([, v]) => v !== undefined && v !== '' && v !== 0 && v !== null);
  return h('li', { class: 'event kind-' + k, 'data-kind': e.kind },
    h('span', { class: 'dot' }),
    h('div', {},
      h('span', { class: 'badge kind-' + k }, has('kind.' + k) ? t('kind.' + k) : e.kind),
      h('time', { datetime: e.time }, timeMs(e.time_ms)),
      h('dl', { class: 'facts' }, facts.map(([k, v]) => [h('dt', {}, t(k)), h('dd', {}, String(v))]))));
}
