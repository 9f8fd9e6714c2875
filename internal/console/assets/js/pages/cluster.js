// Cluster: the node's view of its cluster (GET /api/v1/cluster): the
// cluster id, this node and its role, the leader, and every member with
// its health as the leader sees it and, where known, its Raft term and
// positions and its lag (the leader's commit index minus the member's
// applied index, as `dmq cluster status` computes it). Refreshed every few
// seconds. A single node has no cluster endpoint (404): the page says so.
//
// The console reads only the node that served it; a follower redirects
// pages to the leader, so that is normally the leader, and the other
// members' positions are unknown. NB: asking the others from the browser,
// at the HTTP address a member recorded when it led (the answer's nodes),
// cannot work: the console's Content-Security-Policy allows connections to
// its own origin only (console.go), and the API sends no CORS headers. The
// leader's status would have to carry them.
import { h, replace } from '../dom.js';
import { t } from '../i18n.js';
import { ApiError, get } from '../api.js';
import { table } from '../table.js';
import { age, num, time } from '../format.js';

const refreshEveryMs = 5000;

export function render(main) {
  const status = h('p', { class: 'muted', id: 'cluster-status' });
  const body = h('div', { id: 'cluster-body' });
  let timer = 0;
  let stopped = false;

  const load = async () => {
    clearTimeout(timer);
    let st;
    try {
      st = await get('/cluster');
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      if (stopped) return;
      if (err.status === 404) {
        // A single node: no cluster to watch, nothing to refresh.
        replace(status);
        replace(body, h('section', { class: 'card', id: 'cluster-single' },
          h('p', {}, t('cluster.single')), h('p', { class: 'muted' }, t('cluster.singleHint'))));
        return;
      }
      replace(body, h('div', { class: 'error-box', role: 'alert', id: 'cluster-error' }, t('common.failed'), ' ', err.message));
      status.textContent = t('monitor.updated', { time: time(Date.now()) }) + ' · ' + t('monitor.liveEvery', { s: refreshEveryMs / 1000 });
      timer = setTimeout(load, refreshEveryMs);
      return;
    }
    if (stopped) return;
    // Each member's own view by node id: this node's only (see above).
    replace(body, view(st, new Map([[st.node_id, st]])));
    status.textContent = t('monitor.updated', { time: time(Date.now()) }) + ' · ' + t('monitor.liveEvery', { s: refreshEveryMs / 1000 });
    timer = setTimeout(load, refreshEveryMs);
  };

  replace(main,
    h('div', { class: 'page-head' }, h('h1', {}, t('cluster.title')),
      h('div', { class: 'row-actions' },
        h('button', { type: 'button', class: 'secondary small', id: 'cluster-refresh', onclick: load }, t('common.refresh')))),
    status, body);
  return load().then(() => () => {
    stopped = true;
    clearTimeout(timer);
  });
}

const members = (st) => (st.groups && st.groups[0] && st.groups[0].servers) || [];

function view(st, views) {
  const g = (st.groups && st.groups[0]) || {};
  const leaderID = st.leader && st.leader.id;
  const leaderView = leaderID ? views.get(leaderID) : null;
  const leaderGroup = leaderView && leaderView.groups && leaderView.groups[0];
  const here = st.role === 'leader';
  const leaderLink = st.leader && st.leader.http && !here
    ? h('a', { href: `${location.protocol}//${st.leader.http}/cluster`, id: 'cluster-leader-link' }, t('cluster.openLeader'))
    : null;
  const facts = [
    ['cluster.id', h('span', { class: 'mono', id: 'cluster-id' }, st.cluster_id)],
    ['cluster.thisNode', h('span', { id: 'cluster-this-node' }, h('span', { class: 'mono' }, st.node_id), ' ', roleBadge(here))],
    ['cluster.leader', leaderID
      ? h('span', { id: 'cluster-leader' }, h('span', { class: 'mono' }, leaderID), st.leader.http ? h('span', { class: 'muted' }, ' · HTTP ', st.leader.http) : null, leaderLink ? [' ', leaderLink] : null)
      : h('span', { id: 'cluster-leader', class: 'muted' }, t('cluster.noLeader'))],
    ['cluster.term', num(g.term)],
    ['cluster.commit', num(g.commit_index)],
    here
      ? ['cluster.leadingSince', time(g.leading_since_ms)]
      : ['cluster.lastContact', g.last_contact_ms ? t('cluster.ago', { age: age(Math.max(0, Date.now() - g.last_contact_ms)) }) : ''],
  ];
  return [
    st.replica_error ? h('div', { class: 'error-box', role: 'alert', id: 'cluster-replica-error' }, t('cluster.replicaError'), ' ', st.replica_error) : null,
    here ? null : h('p', { class: 'warn-box', id: 'cluster-not-leader' }, t('cluster.notLeader'), leaderLink ? [' ', leaderLink] : null),
    h('section', { class: 'card' }, h('h2', {}, t('cluster.overview')),
      h('dl', { class: 'details' }, facts.map(([k, v]) => [h('dt', {}, t(k)), h('dd', {}, v || '—')]))),
    h('section', { class: 'card' }, h('h2', {}, t('cluster.members')),
      membersTable(st, views, leaderID, leaderGroup),
      h('p', { class: 'muted small' }, t('cluster.lagHint'))),
  ];
}

function membersTable(st, views, leaderID, leaderGroup) {
  const httpOf = new Map((st.nodes || []).map((n) => [n.id, n]));
  const own = (m) => {
    const v = views.get(m.ID);
    return v && v.groups && v.groups[0];
  };
  const position = (col, field) => (m) => {
    const g = own(m);
    return g ? cell(col, num(g[field])) : unknown(col);
  };
  return table([
    { label: t('cluster.node'), cell: (m) => [h('span', { class: 'mono', 'data-member': m.ID }, m.ID),
      m.ID === st.node_id ? h('span', { class: 'muted small' }, ' · ', t('cluster.thisNodeShort')) : null] },
    { label: t('cluster.role'), cell: (m) => roleBadge(m.ID === leaderID) },
    { label: t('cluster.address'), cell: (m) => h('span', { class: 'mono' }, m.Addr) },
    { label: t('cluster.clientAddrs'), cell: (m) => {
      const n = httpOf.get(m.ID);
      return n ? h('span', { class: 'mono small' }, 'gRPC ', n.grpc, h('br'), 'HTTP ', n.http) : '—';
    } },
    { label: t('cluster.voter'), cell: (m) => cell('voter', m.Voter ? t('common.yes') : t('common.no')) },
    { label: t('cluster.healthy'), cell: (m) => health(m, leaderID, leaderGroup) },
    { label: t('cluster.term'), cell: position('term', 'term'), class: 'num' },
    { label: t('cluster.lastLog'), cell: position('last_log', 'last_log_index'), class: 'num' },
    { label: t('cluster.commit'), cell: position('commit', 'commit_index'), class: 'num' },
    { label: t('cluster.applied'), cell: position('applied', 'applied_index'), class: 'num' },
    { label: t('cluster.lag'), cell: (m) => {
      const g = own(m);
      return g && leaderGroup ? cell('lag', num(Math.max(0, leaderGroup.commit_index - g.applied_index))) : unknown('lag');
    }, class: 'num' },
  ], members(st), t('cluster.none'), { id: 'cluster-members' });
}

// health is the leader's view of a member: the leader itself answered;
// a follower is healthy while the leader's heartbeats to it succeed.
function health(m, leaderID, leaderGroup) {
  if (!leaderGroup) return unknown('healthy');
  if (m.ID === leaderID) return healthBadge(true);
  const f = (leaderGroup.followers || []).find((x) => x.ID === m.ID);
  if (!f) return unknown('healthy');
  const since = Date.parse(f.LastContact);
  // A healthy follower's LastContact is Go's zero time.
  const last = !f.Healthy && since > 0 ? h('div', { class: 'muted small' }, t('cluster.lastContact'), ' ', t('cluster.ago', { age: age(Math.max(0, Date.now() - since)) })) : null;
  return [healthBadge(f.Healthy), last];
}

function healthBadge(ok) {
  return h('span', { class: 'badge ' + (ok ? 'healthy' : 'unhealthy'), 'data-col': 'healthy', 'data-healthy': ok ? 'true' : 'false' }, ok ? t('common.yes') : t('common.no'));
}

function roleBadge(leader) {
  return h('span', { class: 'badge ' + (leader ? 'node-leader' : 'node-follower'), 'data-node-role': leader ? 'leader' : 'follower' },
    leader ? t('cluster.roleLeader') : t('cluster.roleFollower'));
}

const cell = (col, text) => h('span', { 'data-col': col }, text);

function unknown(col) {
  return h('span', { class: 'muted', 'data-col': col, 'data-unknown': '', title: t('cluster.unknownHint') }, t('cluster.unknown'));
}
