// A short message after an action (what was done, or that it failed and
// why), shown above the page for a few seconds. It lives outside <main> so
// a page that redraws itself after the action keeps it.
import { h } from './dom.js';

const showMs = 8000;
let timer = 0;

export function notice(text, kind = 'ok') {
  let box = document.getElementById('notice');
  if (!box) {
    box = h('div', { id: 'notice', role: 'status' });
    document.body.append(box);
  }
  box.className = 'notice ' + kind;
  box.textContent = text;
  box.hidden = false;
  clearTimeout(timer);
  timer = setTimeout(() => { box.hidden = true; }, showMs);
}
