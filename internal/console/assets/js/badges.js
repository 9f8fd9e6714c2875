// Coloured labels for statuses and trace event kinds.
import { h } from './dom.js';
import { t } from './i18n.js';

export function statusBadge(status) {
  return h('span', { class: 'badge status-' + status, 'data-status': status }, t('status.' + status));
}

export function onlineBadge(online) {
  return h('span', { class: 'badge ' + (online ? 'online' : 'offline') }, t(online ? 'client.online' : 'client.offline'));
}
