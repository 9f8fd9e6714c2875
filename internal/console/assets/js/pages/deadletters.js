// Dead letters of a group: list (paged, by key), inspect a message,
// redrive or purge the selected ones, one key, or all.
import { h, link, query, replace, setQuery } from '../dom.js';
import { t } from '../i18n.js';
import { get, post, seg } from '../api.js';
import { clearErrors, field, formError, required, select, showError, values } from '../form.js';
import { groupsOf, topicInput } from '../pickers.js';
import { confirmAction } from '../dialog.js';
import { table } from '../table.js';
import { Pager } from '../pager.js';
import { notice } from '../notice.js';
import { num, time } from '../format.js';
import { messageView } from '../message.js';

const pageSize = 50;

export function render(main) {
  const q = query();
  const groupSelect = select('group', [], '');
  const form = h('form', { class: 'filters', id: 'dl-form' },
    field('topic', t('common.topic'), { control: topicInput(q.get('topic')) }),
    field('group', t('common.group'), { control: groupSelect }),
    field('key', t('trace.key'), { value: q.get('key') || '' }),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, t('common.search'))),
    formError());
  const list = h('div', { id: 'dl-list' });
  let page = { dead_letters: [] };

  // fillGroups lists the topic's groups in the select.
  const fillGroups = async (want) => {
    const names = await groupsOf(form.elements.topic.value.trim());
    groupSelect.replaceChildren(...names.map((n) => h('option', { value: n, selected: n === want ? true : null }, n)));
  };
  form.elements.topic.addEventListener('change', () => fillGroups(''));

  const path = () => {
    const v = values(form);
    return `/topics/${seg(v.topic.trim())}/groups/${seg(v.group || '')}/deadletters`;
  };
  const pager = new Pager(async (after) => {
    const v = values(form);
    setQuery({ topic: v.topic, group: v.group, key: v.key });
    clearErrors(form);
    if (!required(form, ['topic', 'group'])) return;
    try {
      page = await get(path(), { key: v.key.trim(), limit: pageSize, after });
      replace(list, actionsBar(), lettersTable(v.topic.trim(), page.dead_letters), pager.view(page.dead_letters.length, page.total, page.next_after));
    } catch (err) {
      if (!err.code) throw err;
      replace(list);
      showError(form, err, (m) => (/group/.test(m) ? 'group' : /topic/.test(m) ? 'topic' : /key/.test(m) ? 'key' : null));
    }
  });

  const selected = () => [...list.querySelectorAll('input[name="dl"]:checked')].map((c) => c.value);
  const act = async (action, which, label) => {
    const r = await confirmAction({
      title: t('dl.' + action + '.title'), text: label, danger: action === 'purge', confirm: t('dl.' + action),
      run: () => post(path() + '/' + action, which),
    });
    if (r) {
      notice(t('dl.' + action + '.done', { n: r.redriven ?? r.purged }));
      pager.reload();
    }
  };
  const actionsBar = () => {
    const v = values(form);
    const chosen = () => {
      const ids = selected();
      if (ids.length) return [{ ids }, t('dl.selectedN', { n: ids.length })];
      if (v.key.trim()) return [{ key: v.key.trim() }, t('dl.ofKey', { key: v.key.trim() })];
      return null;
    };
    const run = (action) => {
      const c = chosen();
      if (!c) return notice(t('dl.chooseFirst'), 'error');
      act(action, c[0], c[1]);
    };
    return h('div', { class: 'toolbar' },
      h('button', { type: 'button', class: 'primary', 'data-action': 'redrive', onclick: () => run('redrive') }, t('dl.redriveSelected')),
      h('button', { type: 'button', class: 'danger', 'data-action': 'purge', onclick: () => run('purge') }, t('dl.purgeSelected')),
      h('button', { type: 'button', class: 'secondary', 'data-action': 'redrive-all', onclick: () => act('redrive', { all: true }, t('dl.allOf', { n: num(page.total) })) }, t('dl.redriveAll')),
      h('button', { type: 'button', class: 'secondary', 'data-action': 'purge-all', onclick: () => act('purge', { all: true }, t('dl.allOf', { n: num(page.total) })) }, t('dl.purgeAll')));
  };

  form.addEventListener('submit', (e) => { e.preventDefault(); pager.first(); });
  replace(main, h('div', { class: 'page-head' }, h('h1', {}, t('dl.title'))), h('section', { class: 'card' }, form, list));
  return fillGroups(q.get('group')).then(() => (q.get('topic') ? pager.first() : null)).then(() => null);
}

function lettersTable(topic, rows) {
  return table([
    { label: '', cell: (d) => h('input', { type: 'checkbox', name: 'dl', value: d.id, 'aria-label': d.id }) },
    { label: t('dl.id'), cell: (d) => h('span', { class: 'mono' }, d.id) },
    { label: t('trace.key'), cell: (d) => d.message.key },
    { label: t('dl.member'), cell: (d) => d.member },
    { label: t('dl.attempts'), cell: (d) => d.attempts, class: 'num' },
    { label: t('dl.lastFailure'), cell: (d) => d.last_failure, class: 'wrap' },
    { label: t('dl.deadAt'), cell: (d) => time(d.dead_at_ms), class: 'nowrap' },
    { label: t('dl.redriven'), cell: (d) => (d.redriven ? t('common.yes') : '') },
    { label: t('dl.message'), cell: (d) => h('details', { class: 'inspect' }, h('summary', {}, t('dl.inspect')), messageView(d.message)) },
    { label: '', cell: (d) => h('a', { class: 'small', href: link('/trace', { topic, id: d.id }) }, t('nav.trace')) },
  ], rows, t('dl.none'), { id: 'dl-table' });
}
