// Per-minute charts drawn with uPlot (vendored, see vendor.sh), each with a
// table of its non-zero minutes for screen readers and for copying values.
import uPlot from '../vendor/uplot/uPlot.esm.js';
import { h, replace } from './dom.js';
import { t } from './i18n.js';
import { minute, num } from './format.js';

const colors = ['#2563eb', '#16a34a', '#dc2626', '#9333ea', '#ea580c', '#0891b2', '#ca8a04', '#db2777'];

// Chart is one uPlot chart in el. series: [{label, values}], xs in Unix
// milliseconds; bars draws bars (counters) instead of lines (levels).
export class Chart {
  constructor(el, { bars = false, format = num } = {}) {
    this.el = el;
    this.bars = bars;
    this.format = format;
    this.plot = null;
    this.resize = new ResizeObserver(() => this.plot && this.plot.setSize(this.size()));
    this.resize.observe(el);
  }

  size() {
    return { width: Math.max(this.el.clientWidth, 300), height: 220 };
  }

  // update draws xs and series, rebuilding the chart when the series changed.
  update(xs, series) {
    const data = [xs.map((x) => x / 1000), ...series.map((s) => s.values)];
    const key = series.map((s) => s.label).join('\n');
    if (this.plot && this.key === key) {
      this.plot.setData(data);
      return;
    }
    this.destroyPlot();
    this.key = key;
    const fmt = this.format;
    this.plot = new uPlot({
      ...this.size(),
      cursor: { points: { size: 6 } },
      scales: { x: { time: true }, y: { range: (u, lo, hi) => [0, Math.max(hi, 1) * 1.1] } },
      axes: [{}, { values: (u, ticks) => ticks.map((v) => fmt(v)), size: 60 }],
      series: [{ label: t('monitor.minute'), value: (u, v) => (v == null ? '' : minute(v * 1000)) },
        ...series.map((s, i) => ({
          label: s.label,
          stroke: colors[i % colors.length],
          fill: this.bars ? colors[i % colors.length] + '55' : undefined,
          width: this.bars ? 1 : 2,
          paths: this.bars ? uPlot.paths.bars({ size: [0.7, 40] }) : undefined,
          points: { show: !this.bars },
          value: (u, v) => (v == null ? '' : fmt(v)),
        }))],
    }, data, this.el);
  }

  destroyPlot() {
    if (this.plot) this.plot.destroy();
    this.plot = null;
  }

  destroy() {
    this.resize.disconnect();
    this.destroyPlot();
  }
}

// minutesTable lists the minutes where any series is non-zero.
export function minutesTable(el, xs, series, format = num) {
  const rows = xs.map((x, i) => [x, series.map((s) => s.values[i])]).filter(([, vs]) => vs.some((v) => v));
  return replace(el,
    h('summary', {}, t('monitor.minutesWithData', { n: rows.length })),
    h('table', { class: 'minutes' },
      h('thead', {}, h('tr', {}, h('th', {}, t('monitor.minute')), series.map((s) => h('th', { class: 'num' }, s.label)))),
      h('tbody', {}, rows.map(([x, vs]) => h('tr', { 'data-minute-ms': x },
        h('td', {}, minute(x)), vs.map((v) => h('td', { class: 'num' }, format(v))))))));
}
