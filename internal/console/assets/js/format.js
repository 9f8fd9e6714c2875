// Formatting of times, ages, counts and sizes, in the browser's time zone.
import { t } from './i18n.js';

const pad = (n) => String(n).padStart(2, '0');

// time renders Unix milliseconds as local "YYYY-MM-DD HH:MM:SS"; 0 is empty.
export function time(ms) {
  if (!ms) return '';
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

// timeMs is time with milliseconds, for trace events.
export function timeMs(ms) {
  return time(ms) + '.' + String(ms % 1000).padStart(3, '0');
}

// minute renders "HH:MM" (with the day when it is not today).
export function minute(ms) {
  const d = new Date(ms);
  const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  return d.toDateString() === new Date().toDateString() ? hm : time(ms).slice(0, 10) + ' ' + hm;
}

// age renders a duration in milliseconds as "2h 5m", "12s", "350ms".
export function age(ms) {
  if (ms === undefined || ms === null) return '';
  if (ms < 1000) return ms + t('unit.ms');
  const s = Math.floor(ms / 1000);
  const parts = [[Math.floor(s / 86400), 'unit.d'], [Math.floor(s / 3600) % 24, 'unit.h'], [Math.floor(s / 60) % 60, 'unit.m'], [s % 60, 'unit.s']];
  const first = parts.findIndex(([n]) => n > 0);
  return parts.slice(first, first + 2).filter(([n]) => n > 0).map(([n, u]) => n + t(u)).join(' ');
}

export const num = (n) => (n ?? 0).toLocaleString('en-US');

export function bytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + ' ' + units[i];
}

// localInput renders ms for an <input type="datetime-local">.
export function localInput(ms) {
  return time(ms).replace(' ', 'T').slice(0, 16);
}

// rfc3339 turns an <input type="datetime-local"> value (local time) into
// the RFC 3339 UTC string the API takes; empty stays empty.
export function rfc3339(local) {
  if (!local) return '';
  const d = new Date(local);
  return isNaN(d) ? local : d.toISOString();
}
