// Language of the console: English or Simplified Chinese, chosen with the
// header's switch and remembered per browser in localStorage.
import messages from './messages.js';

const storageKey = 'dmq.lang';

let current = localStorage.getItem(storageKey) || (navigator.language.toLowerCase().startsWith('zh') ? 'zh' : 'en');

export function lang() {
  return current;
}

export function setLang(l) {
  current = l === 'zh' ? 'zh' : 'en';
  localStorage.setItem(storageKey, current);
}

// t returns the label for key in the current language, with {name}
// placeholders filled from vars. A missing key is a bug: it is reported on
// the console (which fails the browser tests) and shown as the key.
export function t(key, vars) {
  const m = messages[key];
  if (!m) {
    console.error(`i18n: no label for key "${key}"`);
    return key;
  }
  let s = m[current === 'zh' ? 1 : 0];
  for (const [k, v] of Object.entries(vars || {})) s = s.replaceAll(`{${k}}`, v);
  return s;
}

// has reports whether key has a label (for values from the API that may
// grow, like trace event kinds).
export function has(key) {
  return key in messages;
}
