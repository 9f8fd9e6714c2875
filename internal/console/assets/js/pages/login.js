// Login: user name and password for a console session (only with --auth).
// A wrong password, or too many failed attempts (429, with the wait the
// server asks for), shows under the form; success returns to the page the
// user came from (?next=).
import { h, query, replace } from '../dom.js';
import { t } from '../i18n.js';
import { post } from '../api.js';
import { busy, clearErrors, field, formError, required, values } from '../form.js';
import { authOn, returnPath, session, setSession } from '../session.js';

export function render(main) {
  const next = returnPath(query().get('next'));
  // Logged in already, or nothing to log in to: go on.
  if (session() && (!authOn() || session().user)) {
    location.replace(next);
    return null;
  }
  const form = h('form', { id: 'login-form', class: 'login-form', novalidate: true },
    h('h1', {}, t('login.title')),
    field('user', t('login.user'), { autocomplete: 'username', autofocus: true }),
    field('password', t('login.password'), { type: 'password', autocomplete: 'current-password' }),
    formError(),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, t('login.submit'))));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form);
    if (!required(form, ['user', 'password'])) return;
    const v = values(form);
    try {
      const s = await busy(form, () => post('/login', { user: v.user.trim(), password: v.password }));
      setSession(s);
      location.assign(next);
    } catch (err) {
      if (!err.code) throw err;
      form.elements.password.value = '';
      const line = form.querySelector('.form-error');
      if (err.status === 429) line.textContent = t('login.tooMany', { s: err.retryAfter || '?' });
      else if (err.status === 401) line.textContent = t('login.wrong');
      else line.textContent = t('common.failed') + ' ' + err.message;
    }
  });
  replace(main, h('section', { class: 'card login' }, form));
  return null;
}
