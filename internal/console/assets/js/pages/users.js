// Users: the people who log in to the console, with their role (admin,
// owner of a department, viewer); administrators add and delete them.
import { h, replace } from '../dom.js';
import { t } from '../i18n.js';
import { del, get, post, seg } from '../api.js';
import { busy, clearErrors, field, formError, required, select, showError, values } from '../form.js';
import { confirmAction } from '../dialog.js';
import { table } from '../table.js';
import { notice } from '../notice.js';
import { time } from '../format.js';
import { session } from '../session.js';

const roles = ['admin', 'owner', 'viewer'];

export function render(main) {
  const list = h('div', { id: 'user-list' });
  const load = async () => {
    const r = await get('/users');
    replace(list, usersTable(r.users || [], load));
  };
  replace(main,
    h('div', { class: 'page-head' }, h('h1', {}, t('user.title'))),
    addForm(load),
    h('section', { class: 'card' }, list));
  return load().then(() => null);
}

function usersTable(users, changed) {
  const me = session() && session().user;
  return table([
    { label: t('user.name'), cell: (u) => h('span', { class: 'mono' }, u.name) },
    { label: t('user.role'), cell: (u) => h('span', { class: 'badge', 'data-role': u.role }, t('urole.' + u.role)) },
    { label: t('topic.department'), cell: (u) => u.department || '' },
    { label: t('topic.created'), cell: (u) => time(u.created_at_ms), class: 'nowrap' },
    { label: t('user.createdBy'), cell: (u) => u.created_by },
    { label: t('common.actions'), cell: (u) => (u.name === me ? '' : h('button', {
      type: 'button', class: 'small danger', 'data-action': 'delete', 'data-user': u.name,
      onclick: () => deleteUser(u.name, changed),
    }, t('common.delete'))) },
  ], users, t('user.none'), { id: 'users-table' });
}

async function deleteUser(name, changed) {
  const ok = await confirmAction({
    title: t('user.deleteTitle', { name }), text: t('user.deleteText'), danger: true, confirm: t('common.delete'),
    run: () => del('/users/' + seg(name)),
  });
  if (ok) {
    notice(t('user.deleted', { name }));
    changed();
  }
}

// addForm adds a user; created() runs afterwards.
function addForm(created) {
  const dept = field('department', t('topic.department'), { hint: t('user.deptHint') });
  const role = select('role', roles.map((r) => [r, t('urole.' + r)]), 'viewer');
  const form = h('form', { id: 'user-form', class: 'grid-form', novalidate: true },
    field('name', t('user.name'), { autocomplete: 'off' }),
    field('role', t('user.role'), { control: role }),
    dept,
    field('password', t('login.password'), { type: 'password', autocomplete: 'new-password', hint: t('user.passwordHint') }),
    formError(),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, t('user.add'))));
  // Only owners have a department.
  const showDept = () => { dept.hidden = role.value !== 'owner'; };
  role.addEventListener('change', showDept);
  showDept();
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form);
    const v = values(form);
    if (!required(form, v.role === 'owner' ? ['name', 'department', 'password'] : ['name', 'password'])) return;
    const body = { name: v.name.trim(), role: v.role, department: v.role === 'owner' ? v.department.trim() : '', password: v.password };
    try {
      const u = await busy(form, () => post('/users', body));
      form.reset();
      showDept();
      notice(t('user.added', { name: u.name }));
      created();
    } catch (err) {
      if (!err.code) throw err;
      showError(form, err, guessField);
    }
  });
  return h('details', { class: 'card', id: 'add-user', open: true },
    h('summary', {}, t('user.addTitle')), form);
}

function guessField(msg) {
  if (/password/.test(msg)) return 'password';
  if (/department/.test(msg)) return 'department';
  if (/role/.test(msg)) return 'role';
  if (/name|exists/.test(msg)) return 'name';
  return null;
}
