// Approve, reject and disable buttons for a topic, each asking for
// confirmation with a reason and, without --auth, the operator's name
// (remembered per browser); with --auth the server records the logged-in
// user.
import { h } from './dom.js';
import { t } from './i18n.js';
import { post, seg } from './api.js';
import { field } from './form.js';
import { confirmAction } from './dialog.js';
import { notice } from './notice.js';
import { authOn } from './session.js';

const operatorKey = 'dmq.operator';

// allowed lists the decisions each status permits (docs/api.md).
const allowed = {
  pending: ['approve', 'reject'],
  approved: ['disable'],
  rejected: ['approve'],
  disabled: ['approve'],
};

// decisionButtons returns the buttons for topic's status; after a decision
// went through, done(topic) is called with the topic as it is now.
export function decisionButtons(topic, done) {
  return (allowed[topic.status] || []).map((d) =>
    h('button', {
      type: 'button', class: d === 'approve' ? 'small primary' : 'small danger', 'data-action': d, 'data-topic': topic.name,
      onclick: () => decide(topic.name, d, done),
    }, t('decision.' + d)));
}

async function decide(name, decision, done) {
  const result = await confirmAction({
    title: t('decision.' + decision + '.title', { name }),
    text: t('decision.' + decision + '.text'),
    danger: decision !== 'approve',
    confirm: t('decision.' + decision),
    fields: [
      authOn() ? null : field('by', t('decision.by'), { value: localStorage.getItem(operatorKey) || '', required: true, autocomplete: 'username' }),
      field('reason', t('decision.reason'), {}),
    ],
    guess: (msg) => (/"by"|\bby\b|requested|approve it/.test(msg) ? 'by' : null),
    run: (v) => {
      if (authOn()) return post(`/topics/${seg(name)}/${decision}`, { reason: v.reason.trim() });
      localStorage.setItem(operatorKey, v.by.trim());
      return post(`/topics/${seg(name)}/${decision}`, { by: v.by.trim(), reason: v.reason.trim() });
    },
  });
  if (result) {
    notice(t('decision.' + decision + '.done', { name }));
    done(result);
  }
}
