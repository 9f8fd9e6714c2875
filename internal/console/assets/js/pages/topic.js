// One topic: its registry entry, its groups (mode, ack mode, members
// online, backlog, oldest unacked age, dead letters; an "abandoned" badge for a
// group without members holding old messages back) with reset and delete
// actions, and links to its monitoring, trace, dead letters and delayed messages.
import { h, link, replace } from '../dom.js';
import { t } from '../i18n.js';
import { del, get, post, seg } from '../api.js';
import { field, select } from '../form.js';
import { confirmAction } from '../dialog.js';
import { table } from '../table.js';
import { notice } from '../notice.js';
import { age, bytes, num, rfc3339, time } from '../format.js';
import { decisionButtons } from '../decisions.js';
import { statusBadge } from '../badges.js';

export async function render(main, name) {
  const topic = await get('/topics/' + seg(name));
  document.title = name + ' · DMQ';
  const redraw = () => render(main, name);
  replace(main,
    h('div', { class: 'page-head' },
      h('h1', { class: 'mono' }, topic.name), statusBadge(topic.status),
      h('div', { class: 'row-actions' }, decisionButtons(topic, redraw),
        h('button', { type: 'button', class: 'secondary small', onclick: redraw }, t('common.refresh')))),
    h('nav', { class: 'links' },
      h('a', { href: link('/monitor', { topic: name }) }, t('nav.monitor')),
      h('a', { href: link('/trace', { topic: name }) }, t('nav.trace')),
      h('a', { href: link('/delays', { topic: name }) }, t('nav.delays') + ` (${num(topic.delayed_pending)})`),
      h('a', { href: link('/clients', { topic: name }) }, t('nav.clients'))),
    h('section', { class: 'card' }, h('h2', {}, t('topic.details')), details(topic)),
    h('section', { class: 'card' }, h('h2', {}, t('topic.groups')), groupsTable(topic, redraw)));
}

function details(tp) {
  const rows = [
    ['topic.env', tp.env],
    ['topic.department', tp.department],
    ['topic.owner', tp.owner],
    ['topic.purpose', tp.purpose],
    ['topic.requestedBy', tp.requested_by],
    ['topic.decidedBy', tp.decided_by ? `${tp.decided_by} · ${time(tp.decided_at_ms)}` : ''],
    ['topic.decisionReason', tp.decision_reason],
    ['topic.created', time(tp.created_at_ms)],
    ['topic.stored', num(tp.stored_messages)],
    ['topic.storedBytes', `${bytes(tp.stored_bytes)} · ${num(tp.segments)} ${t('topic.segments')}`],
    ['topic.offsets', `${tp.first_offset} – ${tp.next_offset}`],
    ['topic.dedupe', age(tp.dedupe_window_ms)],
    ['topic.delayedPending', num(tp.delayed_pending)],
    ['topic.nextDue', time(tp.next_delayed_due_ms)],
  ];
  return h('dl', { class: 'details' }, rows.map(([k, v]) => [h('dt', {}, t(k)), h('dd', {}, v || '—')]));
}

function groupsTable(tp, changed) {
  const q = (g) => ({ topic: tp.name, group: g.name });
  return table([
    { label: t('group.name'), cell: (g) => h('span', {}, h('span', { class: 'mono' }, g.name),
      g.abandoned ? [' ', h('span', { class: 'badge abandoned', title: t('group.abandonedHint') }, t('group.abandoned'))] : null) },
    { label: t('group.mode'), cell: (g) => t('mode.' + g.mode) },
    { label: t('group.ackMode'), cell: (g) => t('ack.' + g.ack_mode) },
    { label: t('group.members'), cell: (g) => num(g.members_online), class: 'num' },
    { label: t('group.backlog'), cell: (g) => num(g.backlog), class: 'num' },
    { label: t('group.inFlight'), cell: (g) => num(g.in_flight), class: 'num' },
    { label: t('group.oldestUnacked'), cell: (g) => (g.oldest_unacked_age_ms ? age(g.oldest_unacked_age_ms) : '—'), class: 'num' },
    { label: t('group.deadLetters'), cell: (g) => h('a', { href: link('/deadletters', q(g)) }, num(g.dead_letters)), class: 'num' },
    { label: t('group.retry'), cell: (g) => h('span', { title: (g.retry_backoff || []).join(', ') }, `${age(g.ack_timeout_ms)} · ${g.max_attempts}× · ${schedule(g.retry_backoff_ms)}`), class: 'nowrap' },
    { label: t('common.actions'), cell: (g) => h('div', { class: 'row-actions' },
      h('button', { type: 'button', class: 'small secondary', 'data-action': 'reset', onclick: () => reset(tp.name, g.name, changed) }, t('group.reset')),
      h('button', { type: 'button', class: 'small danger', 'data-action': 'delete-group', onclick: () => remove(tp.name, g.name, changed) }, t('group.delete')),
      h('a', { class: 'small', href: link('/deadletters', q(g)) }, t('nav.deadletters'))) },
  ], tp.groups || [], t('topic.noGroups'), { id: 'groups-table' });
}

// schedule shortens a retry schedule to its first steps and its last.
function schedule(steps = []) {
  const shown = steps.length > 4 ? [...steps.slice(0, 3).map(age), '…', age(steps[steps.length - 1])] : steps.map(age);
  return shown.join(', ');
}

async function remove(topic, group, changed) {
  const done = await confirmAction({
    title: t('groupdel.title', { group, topic }),
    text: t('groupdel.text'),
    danger: true,
    confirm: t('group.delete'),
    run: () => del(`/topics/${seg(topic)}/groups/${seg(group)}`),
  });
  if (done) {
    notice(t('groupdel.done', { group }));
    changed();
  }
}

async function reset(topic, group, changed) {
  const at = h('input', { type: 'datetime-local', name: 'at' });
  const to = select('to', [['earliest', t('reset.earliest')], ['latest', t('reset.latest')], ['time', t('reset.time')]], 'earliest');
  const done = await confirmAction({
    title: t('reset.title', { group, topic }),
    text: t('reset.text'),
    danger: true,
    confirm: t('group.reset'),
    fields: [field('to', t('reset.to'), { control: to }), field('at', t('reset.at'), { control: at })],
    guess: (msg) => (/time|before|RFC 3339|stored/.test(msg) ? 'at' : null),
    run: (v) => post(`/topics/${seg(topic)}/groups/${seg(group)}/reset`, { to: v.to === 'time' ? rfc3339(v.at) : v.to }),
  });
  if (done) {
    notice(t('reset.done', { group }));
    changed();
  }
}
