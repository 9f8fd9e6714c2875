// Inputs that suggest names from the API as you type: topics (the server
// filters and pages, so thousands of topics cost one small request) and a
// topic's groups.
import { h } from './dom.js';
import { get, seg } from './api.js';

let lists = 0;

// topicInput is a text input for a topic name with suggestions.
export function topicInput(value, attrs = {}) {
  const id = 'topics-' + ++lists;
  const list = h('datalist', { id });
  const input = h('input', { type: 'text', name: 'topic', list: id, value: value || '', autocomplete: 'off', placeholder: 'env.dept.name', ...attrs });
  let timer = 0;
  const suggest = async () => {
    const page = await get('/topics', { name: input.value.trim(), limit: 20 }).catch(() => null);
    if (page) list.replaceChildren(...page.topics.map((tp) => h('option', { value: tp.name })));
  };
  input.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(suggest, 200);
  });
  input.addEventListener('focus', suggest, { once: true });
  return h('span', { class: 'picker' }, input, list);
}

// groupsOf returns the group names of topic, or [] when it cannot be read.
export async function groupsOf(topic) {
  if (!topic) return [];
  const tp = await get('/topics/' + seg(topic)).catch(() => null);
  return tp ? (tp.groups || []).map((g) => g.name) : [];
}
