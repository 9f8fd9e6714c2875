// A short message at the top of the page after an action: what was done,
// or that it failed and why.
import { h } from './dom.js';

export function notice(text, kind = 'ok') {
  let box = document.getElementById('notice');
  if (!box) {
    box = h('div', { id: 'notice', role: 'status' });
    document.getElementById('main').prepend(box);
  }
  box.className = 'notice ' + kind;
  box.textContent = text;
}
