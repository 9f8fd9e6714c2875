// Monitoring: per-minute produced, consumed and consume failures of a
// topic over a day or a time range, narrowed by server and client id, each
// with total/max/min beside its chart; stored messages; per-group backlog
// and oldest unacked age. Live mode shows the last hour, refreshed every
// few seconds.
import { h, query, replace, setQuery } from '../dom.js';
import { t } from '../i18n.js';
import { get, seg } from '../api.js';
import { field, formError, select, showError, values, clearErrors } from '../form.js';
import { topicInput } from '../pickers.js';
import { Chart, minutesTable } from '../chart.js';
import { age, localInput, num, rfc3339, time } from '../format.js';

const liveEveryMs = 5000;
const liveWindowMs = 60 * 60 * 1000;

export function render(main) {
  const q = query();
  const today = localInput(Date.now()).slice(0, 10);
  const form = h('form', { class: 'filters', id: 'monitor-form' },
    field('topic', t('common.topic'), { control: topicInput(q.get('topic')) }),
    field('span', t('monitor.span'), { control: select('span', [['day', t('monitor.day')], ['range', t('monitor.range')]], q.get('from') ? 'range' : 'day') }),
    field('day', t('monitor.day'), { type: 'date', value: q.get('day') || today }),
    field('from', t('common.from'), { type: 'datetime-local', value: q.get('from') || localInput(Date.now() - 3600e3) }),
    field('to', t('common.to'), { type: 'datetime-local', value: q.get('to') || localInput(Date.now() + 60e3) }),
    field('server', t('monitor.server'), { value: q.get('server') || '' }),
    field('client', t('monitor.client'), { value: q.get('client') || '' }),
    h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'live', checked: q.get('live') === '1' }), t('monitor.live')),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, t('monitor.show'))),
    formError());
  const status = h('p', { class: 'muted', id: 'monitor-status' });
  const board = h('div', { id: 'monitor-board' });
  replace(main, h('div', { class: 'page-head' }, h('h1', {}, t('monitor.title'))), h('section', { class: 'card' }, form, status), board);

  const view = new Board(board);
  let timer = 0;
  const showSpan = () => {
    const v = values(form);
    const live = form.elements.live.checked;
    for (const n of ['span', 'day']) form.querySelector(`[data-field="${n}"]`).hidden = live || (n === 'day' && v.span !== 'day');
    for (const n of ['from', 'to']) form.querySelector(`[data-field="${n}"]`).hidden = live || v.span !== 'range';
  };
  form.addEventListener('change', showSpan);
  showSpan();

  const load = async () => {
    const v = values(form);
    const live = form.elements.live.checked;
    clearTimeout(timer);
    if (!v.topic) {
      status.textContent = t('monitor.pickTopic');
      return;
    }
    setQuery({ topic: v.topic, server: v.server, client: v.client, live: live ? '1' : '',
      day: !live && v.span === 'day' ? v.day : '', from: !live && v.span === 'range' ? v.from : '', to: !live && v.span === 'range' ? v.to : '' });
    const params = { server: v.server.trim(), client: v.client.trim(), ...range(v, live) };
    clearErrors(form);
    try {
      const stats = await get(`/topics/${seg(v.topic.trim())}/stats`, params);
      view.update(stats);
      status.textContent = t('monitor.updated', { time: time(Date.now()) }) + (live ? ' · ' + t('monitor.liveEvery', { s: liveEveryMs / 1000 }) : '');
    } catch (err) {
      if (!err.code) throw err;
      showError(form, err, (m) => (/topic/.test(m) ? 'topic' : /day/.test(m) ? 'day' : /from|to|range|retention/.test(m) ? 'from' : null));
    }
    if (live) timer = setTimeout(load, liveEveryMs);
  };
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    load();
  });
  load();
  return () => {
    clearTimeout(timer);
    view.destroy();
  };
}

// range is the stats query's time range: the last hour when live, else the
// chosen local day or range, in RFC 3339.
function range(v, live) {
  if (live) {
    const to = Math.ceil((Date.now() + 1) / 60e3) * 60e3;
    return { from: new Date(to - liveWindowMs).toISOString(), to: new Date(to).toISOString() };
  }
  if (v.span === 'range') return { from: rfc3339(v.from), to: rfc3339(v.to) };
  const [y, m, d] = v.day.split('-').map(Number);
  return { from: new Date(y, m - 1, d).toISOString(), to: new Date(y, m - 1, d + 1).toISOString() };
}

// Board is the set of metric cards, updated in place on each refresh.
class Board {
  constructor(el) {
    this.el = el;
    this.cards = new Map();
  }

  card(id, title, opts) {
    let c = this.cards.get(id);
    if (!c) {
      const chart = h('div', { class: 'chart' });
      const aside = h('dl', { class: 'summary' });
      const data = h('details', { class: 'chart-data' });
      c = { el: h('section', { class: 'card metric', 'data-metric': id }, h('h2', {}, title), h('div', { class: 'metric-body' }, chart, aside), data),
        chart: new Chart(chart, opts), aside, data };
      this.cards.set(id, c);
      this.el.append(c.el);
    }
    return c;
  }

  update(st) {
    const xs = st.minutes.map((m) => m.minute_ms);
    for (const id of ['produced', 'consumed', 'failures']) {
      const c = this.card(id, t('monitor.' + id), { bars: true });
      const series = [{ label: t('monitor.' + id), values: st.minutes.map((m) => m[id]) }];
      c.chart.update(xs, series);
      summary(c.aside, [[t('stats.total'), num(st[id].total), 'total'], [t('stats.max'), num(st[id].max), 'max'], [t('stats.min'), num(st[id].min), 'min']]);
      minutesTable(c.data, xs, series);
    }
    const stored = this.card('stored', t('monitor.stored'));
    const storedSeries = [{ label: t('monitor.stored'), values: st.minutes.map((m) => m.stored) }];
    stored.chart.update(xs, storedSeries);
    summary(stored.aside, [[t('monitor.storedNow'), num(st.stored_now), 'now']]);
    minutesTable(stored.data, xs, storedSeries);
    if (st.groups && st.groups.length) this.groups(xs, st);
    else for (const id of ['backlog', 'oldest']) this.drop(id);
  }

  drop(id) {
    const c = this.cards.get(id);
    if (!c) return;
    c.chart.destroy();
    c.el.remove();
    this.cards.delete(id);
  }

  // groups draws one chart of backlog and one of oldest unacked age, a
  // series per group.
  groups(xs, st) {
    for (const [id, field, fmt] of [['backlog', 'backlog', num], ['oldest', 'oldest_unacked_age_ms', age]]) {
      const c = this.card(id, t('monitor.' + id), { format: fmt });
      const series = st.groups.map((g) => ({ label: g.group, values: byMinute(xs, g.minutes, field) }));
      c.chart.update(xs, series);
      summary(c.aside, st.groups.flatMap((g) => [[`${g.group} · ${t('stats.max')}`, fmt(g[field].max)], [`${g.group} · ${t('stats.min')}`, fmt(g[field].min)]]));
      minutesTable(c.data, xs, series, fmt);
    }
  }

  destroy() {
    for (const c of this.cards.values()) c.chart.destroy();
  }
}

// byMinute aligns a group's minutes with xs (missing minutes are 0).
function byMinute(xs, minutes, field) {
  const m = new Map((minutes || []).map((e) => [e.minute_ms, e[field]]));
  return xs.map((x) => m.get(x) ?? 0);
}

function summary(dl, items) {
  replace(dl, items.map(([k, v, name]) => [h('dt', {}, k), h('dd', { 'data-stat': name || null }, v)]));
}
