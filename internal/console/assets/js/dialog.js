// A modal that confirms an action before running it. A failed action keeps
// the dialog open with the API's error next to the field it is about, so
// nothing happens behind the user's back.
import { h } from './dom.js';
import { t } from './i18n.js';
import { busy, clearErrors, formError, showError, values } from './form.js';

// confirmAction shows title and text with optional fields (made by
// form.field) and runs run(values) on confirmation. It resolves to run's
// result, or null when cancelled.
export function confirmAction({ title, text, fields = [], confirm, danger = false, run, guess }) {
  return new Promise((resolve) => {
    const form = h('form', { method: 'dialog', class: 'dialog-form' },
      h('h2', {}, title),
      text ? h('p', {}, text) : null,
      fields,
      formError(),
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'secondary', 'data-action': 'cancel', onclick: () => close(null) }, t('common.cancel')),
        h('button', { type: 'submit', class: danger ? 'danger' : 'primary', 'data-action': 'confirm' }, confirm || t('common.confirm'))));
    const dialog = h('dialog', { class: 'confirm' }, form);
    const close = (result) => {
      dialog.close();
      dialog.remove();
      resolve(result);
    };
    dialog.addEventListener('cancel', (e) => { e.preventDefault(); close(null); });
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      clearErrors(form);
      try {
        const result = await busy(form, () => run(values(form)));
        close(result ?? true);
      } catch (err) {
        if (!err.code) throw err;
        showError(form, err, guess);
      }
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}
