// Form fields with a place for their error, and the mapping of an API
// error to the field it is about, so the API's own message shows next to
// the input that caused it.
import { h } from './dom.js';
import { t } from './i18n.js';

// field returns a labelled control (an input unless attrs.control is
// given) with an empty error slot below it.
export function field(name, label, attrs = {}) {
  const { control, hint, ...rest } = attrs;
  const id = 'f-' + name + '-' + Math.random().toString(36).slice(2, 7);
  const el = control || h('input', { name, type: 'text', ...rest });
  const input = el.matches('input, select, textarea') ? el : el.querySelector('input, select, textarea');
  input.id = id;
  if (!input.name) input.name = name;
  return h('div', { class: 'field', 'data-field': name },
    h('label', { for: id }, label),
    el,
    hint ? h('div', { class: 'hint' }, hint) : null,
    h('div', { class: 'field-error', role: 'alert' }));
}

// select builds a <select> of [value, label] options.
export function select(name, options, value) {
  return h('select', { name }, options.map(([v, label]) => h('option', { value: v, selected: v === value ? true : null }, label)));
}

export function values(form) {
  return Object.fromEntries(new FormData(form));
}

export function clearErrors(form) {
  for (const el of form.querySelectorAll('.field-error, .form-error')) el.textContent = '';
  for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
}

// fieldError shows message next to the field called name.
export function fieldError(form, name, message) {
  const f = form.querySelector(`[data-field="${name}"]`);
  f.querySelector('.field-error').textContent = message;
  f.querySelector('input, select, textarea').setAttribute('aria-invalid', 'true');
}

// showError puts an API error next to the field it names: guess(message)
// returns a field name or null. Errors about no one field go to the form's
// error line, which a form must contain (formError()).
export function showError(form, err, guess = () => null) {
  clearErrors(form);
  const name = guess(err.message || '');
  if (name && form.querySelector(`[data-field="${name}"]`)) fieldError(form, name, err.message);
  else form.querySelector('.form-error').textContent = t('common.failed') + ' ' + err.message;
}

export function formError() {
  return h('div', { class: 'form-error', role: 'alert' });
}

// required checks that the named fields are filled, showing "required"
// next to each empty one; it reports whether all are.
export function required(form, names) {
  let ok = true;
  for (const n of names) {
    if (!String(form.elements[n].value).trim()) {
      fieldError(form, n, t('form.required'));
      ok = false;
    }
  }
  return ok;
}

// busy disables a form's buttons while fn runs.
export async function busy(form, fn) {
  const buttons = form.querySelectorAll('button');
  buttons.forEach((b) => (b.disabled = true));
  try {
    return await fn();
  } finally {
    buttons.forEach((b) => (b.disabled = false));
  }
}
