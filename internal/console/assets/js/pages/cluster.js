// Cluster: the node's view of its cluster (GET /api/v1/cluster): the
// cluster id, this node and its role, the leader, and every member with
// its health as the leader sees it and, where known, its Raft term and
// positions and its lag (the leader's commit index minus the member's
// applied index, as `dmq cluster status` computes it). Refreshed every few
// seconds. A single node has no cluster endpoint (404): the page says so.
//
// A cluster of several shards (Raft groups, each with its own leader; every
// node holds every shard) also gets a table of shards × nodes: each shard's
// leader and term, each node's role in it and, for this node, its applied
// index. A node that leads several shards is pointed out (the cluster spreads
// them one per node while every node is healthy). The members table's
// positions are then shard s0's, and a member is a leader if it leads any
// shard.
//
// The console reads only the node that served it; in a cluster of one
// shard a follower redirects pages to the leader, so that is normally the
// leader (with several, the node asked answers and passes the rest on), and
// the other members' positions are unknown. NB: asking the others from the
// browser, at the HTTP address a member recorded when it led (the answer's
// nodes), cannot work: the console's Content-Security-Policy allows
// connections to its own origin only (console.go), and the API sends no CORS
// headers. The leader's status would have to carry them.
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
const groups = (st) => st.groups || [];

// ledBy maps each node to the shards it leads, as this node sees them.
function ledBy(st) {
  const led = new Map();
  for (const g of groups(st)) {
    const id = g.leader && g.leader.id;
    if (id) led.set(id, [...(led.get(id) || []), g.name]);
  }
  return led;
}

function view(st, views) {
  const g = (st.groups && st.groups[0]) || {};
  const sharded = groups(st).length > 1;
  const led = ledBy(st);
  const leaderID = st.leader && st.leader.id;
  const leaderView = leaderID ? views.get(leaderID) : null;
  const leaderGroup = leaderView && leaderView.groups && leaderView.groups[0];
  const here = st.role === 'leader';
  const leaderLink = st.leader && st.leader.http && !here
    ? h('a', { href: `${location.protocol}//${st.leader.http}/cluster`, id: 'cluster-leader-link' }, t('cluster.openLeader'))
    : null;
  const leader = leaderID
    ? h('span', { id: 'cluster-leader' }, h('span', { class: 'mono' }, leaderID), st.leader.http ? h('span', { class: 'muted' }, ' · HTTP ', st.leader.http) : null, leaderLink ? [' ', leaderLink] : null)
    : h('span', { id: 'cluster-leader', class: 'muted' }, t('cluster.noLeader'));
  const facts = [
    ['cluster.id', h('span', { class: 'mono', id: 'cluster-id' }, st.cluster_id)],
    ['cluster.thisNode', h('span', { id: 'cluster-this-node' }, h('span', { class: 'mono' }, st.node_id), ' ',
      sharded ? leadsBadges(led.get(st.node_id)) : roleBadge(here))],
    sharded ? ['cluster.metaLeader', leader] : ['cluster.leader', leader],
    // With several shards, terms and positions are in the shards table.
    ...(sharded ? [['cluster.shardCount', h('span', { id: 'cluster-shard-count' }, num(groups(st).length))]] : [
      ['cluster.term', num(g.term)],
      ['cluster.commit', num(g.commit_index)],
      here
        ? ['cluster.leadingSince', time(g.leading_since_ms)]
        : ['cluster.lastContact', g.last_contact_ms ? t('cluster.ago', { age: age(Math.max(0, Date.now() - g.last_contact_ms)) }) : ''],
    ]),
  ];
  return [
    st.replica_error ? h('div', { class: 'error-box', role: 'alert', id: 'cluster-replica-error' }, t('cluster.replicaError'), ' ', st.replica_error) : null,
    // With several shards this node serves the console itself, whatever it leads.
    here || sharded ? null : h('p', { class: 'warn-box', id: 'cluster-not-leader' }, t('cluster.notLeader'), leaderLink ? [' ', leaderLink] : null),
    h('section', { class: 'card' }, h('h2', {}, t('cluster.overview')),
      h('dl', { class: 'details' }, facts.map(([k, v]) => [h('dt', {}, t(k)), h('dd', {}, v || '—')]))),
    sharded ? shardsCard(st, led) : null,
    h('section', { class: 'card' }, h('h2', {}, t('cluster.members')),
      membersTable(st, views, leaderID, leaderGroup, sharded ? led : null),
      h('p', { class: 'muted small' }, t('cluster.lagHint')),
      sharded ? h('p', { class: 'muted small' }, t('cluster.positionsOfS0')) : null),
  ];
}

// shardsCard is the shards × nodes table: each shard's leader and term, and
// each member's role in it with its applied index where known (this node's).
function shardsCard(st, led) {
  const nodes = members(st).map((m) => m.ID);
  const total = groups(st).length;
  const several = [...led].filter(([, shards]) => shards.length > 1);
  return h('section', { class: 'card' }, h('h2', {}, t('cluster.shards')),
    several.map(([id, shards]) => h('p', { class: 'warn-box', 'data-leads-several': id },
      t('cluster.leadsSeveral', { node: id, n: shards.length, total, shards: shards.join(', ') }))),
    table([
      { label: t('cluster.shard'), cell: (g) => h('span', { class: 'mono', 'data-shard': g.name }, g.name) },
      { label: t('cluster.leader'), cell: (g) => {
        const id = g.leader && g.leader.id;
        if (!id) return h('span', { class: 'muted', 'data-col': 'leader', 'data-unknown': '' }, t('cluster.noLeader'));
        const n = (led.get(id) || []).length;
        return [h('span', { class: 'mono', 'data-col': 'leader' }, id),
          n > 1 ? h('span', { class: 'muted small' }, ' · ', t('cluster.leadsN', { n })) : null];
      } },
      { label: t('cluster.term'), cell: (g) => cell('term', num(g.term)), class: 'num' },
      { label: t('cluster.commit'), cell: (g) => cell('commit', num(g.commit_index)), class: 'num' },
      ...nodes.map((id) => ({
        label: h('span', { class: 'mono' }, id, id === st.node_id ? h('span', { class: 'muted small' }, ' · ', t('cluster.thisNodeShort')) : null),
        cell: (g) => h('span', { 'data-node': id }, roleBadge(g.leader && g.leader.id === id),
          h('div', { class: 'small' }, h('span', { class: 'muted' }, t('cluster.applied'), ' '),
            id === st.node_id ? cell('applied', num(g.applied_index)) : unknown('applied'))),
      })),
    ], groups(st), t('cluster.none'), { id: 'cluster-shards' }),
    h('p', { class: 'muted small' }, t('cluster.shardsHint')));
}

function membersTable(st, views, leaderID, leaderGroup, led) {
  const httpOf = new Map((st.nodes || []).map((n) => [n.id, n]));
  const own = (m) => {
    const v = views.get(m.ID);
    return v && v.groups && v.groups[0];
  };
  const position = (col, field) => (m) => {
    const g = own(m);
    return g ? cell(col, num(g[field])) : unknown(col);
  };
  // The groups this node leads see their followers' health.
  const ledHere = groups(st).filter((g) => g.leader && g.leader.id === st.node_id);
  return table([
    { label: t('cluster.node'), cell: (m) => [h('span', { class: 'mono', 'data-member': m.ID }, m.ID),
      m.ID === st.node_id ? h('span', { class: 'muted small' }, ' · ', t('cluster.thisNodeShort')) : null] },
    { label: t('cluster.role'), cell: (m) => led ? leadsBadges(led.get(m.ID)) : roleBadge(m.ID === leaderID) },
    { label: t('cluster.address'), cell: (m) => h('span', { class: 'mono' }, m.Addr) },
    { label: t('cluster.clientAddrs'), cell: (m) => {
      const n = httpOf.get(m.ID);
      return n ? h('span', { class: 'mono small' }, 'gRPC ', n.grpc, h('br'), 'HTTP ', n.http) : '—';
    } },
    { label: t('cluster.voter'), cell: (m) => cell('voter', m.Voter ? t('common.yes') : t('common.no')) },
    { label: t('cluster.healthy'), cell: (m) => health(m, st.node_id, ledHere) },
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

// health is a leader's view of a member, known where this node leads a
// shard (ledHere): this node answered; another is healthy while this node's
// heartbeats to it succeed in every shard it leads.
function health(m, self, ledHere) {
  if (ledHere.length === 0) return unknown('healthy');
  if (m.ID === self) return healthBadge(true);
  const seen = ledHere.map((g) => (g.followers || []).find((x) => x.ID === m.ID)).filter((f) => f);
  if (seen.length === 0) return unknown('healthy');
  const f = seen.find((x) => !x.Healthy) || seen[0];
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

// leadsBadges is a node's role with several shards: a badge per shard it
// leads, or follower.
function leadsBadges(shards) {
  if (!shards || shards.length === 0) return roleBadge(false);
  return shards.map((name, i) => [i ? ' ' : null, h('span', { class: 'badge node-leader', 'data-node-role': 'leader', 'data-leads': name },
    t('cluster.leaderOf', { shard: name }))]);
}

const cell = (col, text) => h('span', { 'data-col': col }, text);

function unknown(col) {
  return h('span', { class: 'muted', 'data-col': col, 'data-unknown': '', title: t('cluster.unknownHint') }, t('cluster.unknown'));
}
