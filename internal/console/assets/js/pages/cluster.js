// Cluster: the node's view of its cluster (GET /api/v1/cluster): the
// cluster id, this node and its role, the leader, and every member with
// its health as the leader sees it and its replica as it last told this
// node: whether it answered in the last few seconds (nodes ask each other
// every second over the cluster port; an unreachable member is marked, with
// the last error, and its positions are those it last told), its Raft
// state, term and positions, and its lag (this node's commit index minus
// the member's applied index: on the shard's leader, each follower's lag).
// Refreshed every few seconds. A single node has no cluster endpoint (404):
// the page says so.
//
// A cluster of several shards (Raft groups, each with its own leader) also
// gets a table of shards × nodes: each shard's leader and term, each node's
// role in it, its applied index and lag. With --replicas R each shard but
// s0 is kept by R of the nodes (s0, the cluster-wide state, by every node):
// the node's status then has in `groups` only the shards it keeps, and in
// `elsewhere` the others as their leaders last told it (their commit index
// is what the leader had applied, their lags are measured against it). The
// table lists both, in shard order; a node that keeps no replica of a shard
// shows "—" there, and a replica still catching up (not a voter yet) is
// marked. The overview says how many nodes keep each shard. A node that
// leads several shards is pointed out (the cluster spreads them one per
// node while every node is healthy). The members table's positions are then
// shard s0's, and a member is a leader if it leads any shard.
//
// The console reads only the node that served it; in a cluster of one
// shard a follower redirects pages to the leader, so that is normally the
// leader (with several, the node asked answers and passes the rest on). The
// other members' positions come from that node's status (its `replicas`),
// not from the browser: the console's Content-Security-Policy allows
// connections to its own origin only (console.go). Where this node does not
// lead a shard, a lag is measured against what this node knows committed,
// which can trail the leader's commit index: the page says so.
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
    replace(body, view(st));
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

// shardNumber is the number of a shard's name ("s10" is 10), for sorting.
function shardNumber(name) {
  const m = /^s(\d+)$/.exec(name || '');
  return m ? Number(m[1]) : Number.MAX_SAFE_INTEGER;
}

// allShards is every shard of the cluster in order: those this node keeps
// (groups) and, marked elsewhere, those it keeps no replica of, as their
// leaders last told it.
function allShards(st) {
  const away = (st.elsewhere || []).map((g) => ({ ...g, elsewhere: true }));
  return [...groups(st), ...away].sort((a, b) => shardNumber(a.name) - shardNumber(b.name));
}

// shardCount is the cluster's number of shards (a status from before
// replica placement has no count: then every shard is in groups).
const shardCount = (st) => st.shards || groups(st).length;

// ledBy maps each node to the shards it leads, as this node sees them.
function ledBy(st) {
  const led = new Map();
  for (const g of allShards(st)) {
    const id = g.leader && g.leader.id;
    if (id) led.set(id, [...(led.get(id) || []), g.name]);
  }
  return led;
}

function view(st) {
  const g = (st.groups && st.groups[0]) || {};
  const sharded = shardCount(st) > 1;
  const led = ledBy(st);
  const leaderID = st.leader && st.leader.id;
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
    ...(sharded ? [['cluster.shardCount', h('span', { id: 'cluster-shard-count' }, num(shardCount(st)))]] : [
      ['cluster.term', num(g.term)],
      ['cluster.commit', num(g.commit_index)],
      here
        ? ['cluster.leadingSince', time(g.leading_since_ms)]
        : ['cluster.lastContact', g.last_contact_ms ? t('cluster.ago', { age: age(Math.max(0, Date.now() - g.last_contact_ms)) }) : ''],
    ]),
    ...(sharded || st.replicas > 0 ? [['cluster.replicasPerShard', replicasFact(st)]] : []),
  ];
  return [
    st.replica_error ? h('div', { class: 'error-box', role: 'alert', id: 'cluster-replica-error' }, t('cluster.replicaError'), ' ', st.replica_error) : null,
    // With several shards this node serves the console itself, whatever it leads.
    here || sharded ? null : h('p', { class: 'warn-box', id: 'cluster-not-leader' }, t('cluster.notLeader'), leaderLink ? [' ', leaderLink] : null),
    h('section', { class: 'card' }, h('h2', {}, t('cluster.overview')),
      h('dl', { class: 'details' }, facts.map(([k, v]) => [h('dt', {}, t(k)), h('dd', {}, v || '—')]))),
    sharded ? shardsCard(st, led) : null,
    h('section', { class: 'card' }, h('h2', {}, t('cluster.members')),
      membersTable(st, leaderID, sharded ? led : null),
      h('p', { class: 'muted small' }, t('cluster.membersHint')),
      g.role === 'leader' ? null : h('p', { class: 'muted small', id: 'cluster-lag-basis' }, lagBasis(g)),
      sharded ? h('p', { class: 'muted small' }, t('cluster.positionsOfS0')) : null),
  ];
}

// replicasFact says how many nodes keep each shard: every node, or R of the
// N members (s0 still on every node). With R at least N every member keeps
// every shard, as with 0.
function replicasFact(st) {
  const n = members(st).length;
  const r = st.replicas || 0;
  if (r > 0 && r < n) {
    return h('span', { id: 'cluster-replicas', 'data-replicas': r, 'data-nodes': n }, t('cluster.replicasOf', { r, n }),
      shardCount(st) > 1 ? h('span', { class: 'muted small' }, ' · ', t('cluster.replicasS0')) : null);
  }
  return h('span', { id: 'cluster-replicas', 'data-replicas': r, 'data-nodes': n }, t('cluster.replicasEvery'),
    r > 0 ? h('span', { class: 'muted small' }, ' · ', t('cluster.replicasAtLeastNodes', { r })) : null);
}

// shardsCard is the shards × nodes table: each shard's leader and term, and
// each member's role in it with its applied index and lag, as it last told
// this node. A shard this node keeps no replica of is as its leader last
// told this node; a node that is not a member of a shard shows "—".
function shardsCard(st, led) {
  const nodes = members(st).map((m) => m.ID);
  const total = shardCount(st);
  const several = [...led].filter(([, shards]) => shards.length > 1);
  return h('section', { class: 'card' }, h('h2', {}, t('cluster.shards')),
    several.map(([id, shards]) => h('p', { class: 'warn-box', 'data-leads-several': id },
      t('cluster.leadsSeveral', { node: id, n: shards.length, total, shards: shards.join(', ') }))),
    table([
      { label: t('cluster.shard'), cell: (g) => h('span', { class: 'mono', 'data-shard': g.name, 'data-elsewhere': g.elsewhere ? '' : null,
        title: g.elsewhere ? t('cluster.elsewhereHint', { shard: g.name }) : null }, g.name) },
      { label: t('cluster.leader'), cell: (g) => {
        const id = g.leader && g.leader.id;
        if (!id && g.elsewhere) return h('span', { class: 'muted', 'data-col': 'leader', 'data-unknown': '', title: t('cluster.elsewhereHint', { shard: g.name }) }, t('cluster.leaderNotTold'));
        if (!id) return h('span', { class: 'muted', 'data-col': 'leader', 'data-unknown': '' }, t('cluster.noLeader'));
        const n = (led.get(id) || []).length;
        return [h('span', { class: 'mono', 'data-col': 'leader' }, id),
          n > 1 ? h('span', { class: 'muted small' }, ' · ', t('cluster.leadsN', { n })) : null];
      } },
      { label: t('cluster.term'), cell: (g) => told(g) ? cell('term', num(g.term)) : unknown('term', t('cluster.elsewhereHint', { shard: g.name })), class: 'num' },
      // Lags in the row are measured against this commit index: in a shard
      // kept elsewhere, what its leader had applied when it last told.
      { label: t('cluster.commit'), cell: (g) => {
        if (!told(g)) return unknown('commit', t('cluster.elsewhereHint', { shard: g.name }));
        if (g.elsewhere) {
          return [cell('commit', num(g.commit_index)),
            h('div', { class: 'muted small', 'data-commit-elsewhere': '', title: lagBasis(g) }, t('cluster.commitElsewhere'))];
        }
        return [cell('commit', num(g.commit_index)),
          g.role === 'leader' ? null : h('div', { class: 'muted small', 'data-commit-here': '', title: lagBasis(g) }, t('cluster.commitHere'))];
      }, class: 'num' },
      ...nodes.map((id) => ({
        label: h('span', { class: 'mono' }, id, id === st.node_id ? h('span', { class: 'muted small' }, ' · ', t('cluster.thisNodeShort')) : null),
        cell: (g) => {
          if (!told(g)) return h('span', { class: 'muted', 'data-node': id, 'data-placed': 'unknown', 'data-unknown': '', title: t('cluster.elsewhereHint', { shard: g.name }) }, t('cluster.unknown'));
          const srv = (g.servers || []).find((s) => s.ID === id);
          if (!srv) {
            const hint = id === st.node_id ? t('cluster.noReplicaHere', { shard: g.name }) : t('cluster.noReplicaOn', { node: id, shard: g.name });
            return h('span', { class: 'muted', 'data-node': id, 'data-placed': 'false', title: hint }, '—');
          }
          const r = replicaOf(g, id);
          const leads = g.leader && g.leader.id === id;
          // The Raft state where it is not what the badge says (a candidate, or a
          // stale state of an unreachable node).
          const odd = r && r.state && r.state !== (leads ? 'Leader' : 'Follower');
          return h('span', { 'data-node': id, 'data-placed': 'true' }, roleBadge(leads),
            srv.Voter ? null : [' ', h('span', { class: 'badge status-pending', 'data-catching-up': '', title: t('cluster.catchingUpHint') }, t('cluster.catchingUp'))],
            id === st.node_id || !r || r.reachable ? null : [' ', reachBadge(r)],
            h('div', { class: 'small' }, h('span', { class: 'muted' }, t('cluster.applied'), ' '), position(r, 'applied', r && r.applied_index),
              h('span', { class: 'muted' }, ' · ', t('cluster.lag'), ' '), lagCell(g, r)),
            odd ? h('div', { class: 'small' }, h('span', { class: 'muted' }, t('cluster.state'), ' '), position(r, 'state', r.state)) : null,
            id === st.node_id || !r || r.reachable ? null : lastAnswer(r));
        },
      })),
    ], allShards(st), t('cluster.none'), { id: 'cluster-shards' }),
    h('p', { class: 'muted small' }, t('cluster.shardsHintReplicas')));
}

function membersTable(st, leaderID, led) {
  const httpOf = new Map((st.nodes || []).map((n) => [n.id, n]));
  const g = groups(st)[0] || {};
  // The groups this node leads see their followers' health.
  const ledHere = groups(st).filter((x) => x.leader && x.leader.id === st.node_id);
  const pos = (col, field) => (m) => {
    const r = replicaOf(g, m.ID);
    return position(r, col, r && (field === 'state' ? r.state : num(r[field])));
  };
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
    { label: t('cluster.reachable'), cell: (m) => {
      const r = replicaOf(g, m.ID);
      if (!r) return unknown('reachable', t('cluster.noReplicas'));
      return [reachBadge(r), m.ID === st.node_id || r.reachable ? null : lastAnswer(r)];
    } },
    { label: t('cluster.state'), cell: pos('state', 'state') },
    { label: t('cluster.term'), cell: pos('term', 'term'), class: 'num' },
    { label: t('cluster.lastLog'), cell: pos('last_log', 'last_log_index'), class: 'num' },
    { label: t('cluster.applied'), cell: pos('applied', 'applied_index'), class: 'num' },
    { label: t('cluster.lag'), cell: (m) => lagCell(g, replicaOf(g, m.ID)), class: 'num' },
  ], members(st), t('cluster.none'), { id: 'cluster-members' });
}

// replicaOf is member id's replica of group g as it last told this node
// (undefined from a server without replicas in its status).
const replicaOf = (g, id) => (g.replicas || []).find((r) => r.id === id);

// heard reports whether the member ever answered this node: before, its
// positions are not known.
const heard = (r) => !!r && r.last_seen_ms > 0;

// position shows a value of replica r; an unreachable member's values are
// those it last told, muted, with their age as a tooltip.
function position(r, col, text) {
  if (!heard(r)) return unknown(col, r ? [t('cluster.neverAnswered'), r.error].filter((x) => x).join(': ') : t('cluster.noReplicas'));
  if (r.reachable) return cell(col, text);
  return h('span', { class: 'muted', 'data-col': col, 'data-stale': '', title: t('cluster.staleHint', { age: since(r.last_seen_ms) }) }, text);
}

// lagCell is replica r's lag behind this node's commit index in group g;
// the tooltip says which commit index that is.
function lagCell(g, r) {
  const el = position(r, 'lag', r && num(r.lag));
  if (heard(r) && g.role !== 'leader') el.title = [el.title, lagBasis(g)].filter((x) => x).join(' ');
  return el;
}

function lagBasis(g) {
  if (g.elsewhere) return t('cluster.lagAgainstLeader', { shard: g.name, leader: (g.leader && g.leader.id) || '', commit: num(g.commit_index) });
  return t('cluster.lagAgainstHere', { shard: g.name, commit: num(g.commit_index) });
}

// told reports whether this node knows a shard's members: always for one it
// keeps; for one kept elsewhere once its leader told this node.
const told = (g) => !g.elsewhere || (g.servers || []).length > 0;

// reachBadge says whether the member answered this node in the last few
// seconds; when it did not, the last error is its tooltip.
function reachBadge(r) {
  const ok = !!r.reachable;
  return h('span', { class: 'badge ' + (ok ? 'healthy' : 'unhealthy'), 'data-col': 'reachable', 'data-reachable': ok ? 'true' : 'false', title: ok ? null : r.error || null },
    ok ? t('common.yes') : t('cluster.unreachable'));
}

// lastAnswer is the secondary text of an unreachable member: when it last
// answered and the last error (cut short; the whole is its tooltip).
function lastAnswer(r) {
  const err = r.error || '';
  return h('div', { class: 'muted small', 'data-reach-error': err, title: err || null },
    r.last_seen_ms > 0 ? t('cluster.lastAnswered', { age: since(r.last_seen_ms) }) : t('cluster.neverAnswered'),
    err ? [': ', err.length > 80 ? err.slice(0, 79) + '…' : err] : null);
}

const since = (ms) => age(Math.max(0, Date.now() - ms));

// health is a leader's view of a member, known where this node leads a
// shard (ledHere): this node answered; another is healthy while this node's
// heartbeats to it succeed in every shard it leads.
function health(m, self, ledHere) {
  if (ledHere.length === 0) return unknown('healthy', t('cluster.healthUnknownHint'));
  if (m.ID === self) return healthBadge(true);
  const seen = ledHere.map((g) => (g.followers || []).find((x) => x.ID === m.ID)).filter((f) => f);
  if (seen.length === 0) return unknown('healthy', t('cluster.healthUnknownHint'));
  const f = seen.find((x) => !x.Healthy) || seen[0];
  const at = Date.parse(f.LastContact);
  // A healthy follower's LastContact is Go's zero time.
  const last = !f.Healthy && at > 0 ? h('div', { class: 'muted small' }, t('cluster.lastContact'), ' ', t('cluster.ago', { age: since(at) })) : null;
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

function unknown(col, hint) {
  return h('span', { class: 'muted', 'data-col': col, 'data-unknown': '', title: hint }, t('cluster.unknown'));
}
