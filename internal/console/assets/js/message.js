// messageView shows a stored message: id, key, headers, times and body.
import { h } from './dom.js';
import { t } from './i18n.js';
import { time } from './format.js';

export function messageView(m) {
  const headers = Object.entries(m.headers || {});
  return h('dl', { class: 'message' },
    h('dt', {}, t('msg.id')), h('dd', { class: 'mono' }, m.id),
    h('dt', {}, t('trace.key')), h('dd', {}, m.key || '—'),
    h('dt', {}, t('msg.published')), h('dd', {}, time(m.published_at_ms)),
    h('dt', {}, t('msg.clientMessageId')), h('dd', { class: 'mono' }, m.client_message_id || '—'),
    h('dt', {}, t('msg.headers')), h('dd', {}, headers.length ? headers.map(([k, v]) => h('div', { class: 'mono' }, `${k}: ${v}`)) : '—'),
    h('dt', {}, t('msg.body')), h('dd', {}, h('pre', {}, m.body ?? `base64: ${m.body_base64}`)));
}
