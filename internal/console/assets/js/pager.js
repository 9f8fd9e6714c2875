// Pager walks a list the API pages with limit/after: it remembers where
// each earlier page started so Previous works, and shows "1–100 of 3,412".
import { h } from './dom.js';
import { t } from './i18n.js';
import { num } from './format.js';

export class Pager {
  // load(after) fetches and draws the page starting after that id ('' is
  // the first page).
  constructor(load) {
    this.load = load;
    this.trail = []; // [after, rows] of each earlier page
    this.after = '';
    this.offset = 0;
  }

  // first loads the first page (at the start, or after the filters changed).
  first() {
    this.trail = [];
    this.after = '';
    this.offset = 0;
    return this.load('');
  }

  reload() {
    return this.load(this.after);
  }

  // view renders the pager under a page of count rows; nextAfter is the
  // API's next_after (absent on the last page), total its total.
  view(count, total, nextAfter) {
    const label = count === 0
      ? t('pager.none')
      : t('pager.range', { from: num(this.offset + 1), to: num(this.offset + count), total: total === undefined ? '?' : num(total) });
    const prev = () => {
      const [after, rows] = this.trail.pop();
      this.after = after;
      this.offset -= rows;
      this.load(after);
    };
    const next = () => {
      this.trail.push([this.after, count]);
      this.offset += count;
      this.after = nextAfter;
      this.load(nextAfter);
    };
    return h('div', { class: 'pager' },
      h('span', { class: 'pager-range' }, label),
      h('button', { type: 'button', class: 'secondary', 'data-action': 'prev', disabled: this.trail.length === 0, onclick: prev }, t('pager.prev')),
      h('button', { type: 'button', class: 'secondary', 'data-action': 'next', disabled: !nextAfter, onclick: next }, t('pager.next')));
  }
}
