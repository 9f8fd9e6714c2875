// table renders rows under columns [{label, cell: row => node or text,
// class}]; an empty list shows emptyText in one wide cell.
import { h } from './dom.js';

export function table(columns, rows, emptyText, attrs = {}) {
  return h('div', { class: 'table-wrap' },
    h('table', attrs,
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', { class: c.class }, c.label)))),
      h('tbody', {}, rows.length === 0
        ? h('tr', {}, h('td', { class: 'empty', colspan: columns.length }, emptyText))
        : rows.map((r) => h('tr', {}, columns.map((c) => h('td', { class: c.class }, c.cell(r))))))));
}
