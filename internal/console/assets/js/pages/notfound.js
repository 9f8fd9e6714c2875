// The page for paths the console does not have (the server answered 404).
import { h, replace } from '../dom.js';
import { t } from '../i18n.js';

export function render(main) {
  document.title = t('notfound.title') + ' · DMQ';
  replace(main,
    h('h1', { id: 'not-found' }, t('notfound.title')),
    h('p', {}, t('notfound.text', { path: location.pathname })),
    h('p', {}, h('a', { href: '/topics' }, t('nav.topics'))));
}
