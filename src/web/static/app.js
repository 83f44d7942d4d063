// DPHIANT web UI: one small script for every page (no build step, no inline script: the CSP forbids it).
// Values are written with textContent only, never as HTML.
'use strict';

const $ = (id) => document.getElementById(id);
let session = null;

async function call(path, options = {}) {
  // options.poll: a timed refresh, not the user; the server does not count it as activity (src/web/server.ts POLL_HEADER)
  const headers = { ...(options.body ? { 'content-type': 'application/json' } : {}), ...(session ? { 'x-csrf-token': session.csrf } : {}), ...(options.poll ? { 'x-dphiant-poll': '1' } : {}) };
  const { poll, ...init } = options;
  const res = await fetch(path, { credentials: 'same-origin', ...init, headers });
  if (res.status === 401) {
    location.href = `/login?next=${encodeURIComponent(location.pathname)}`;
    throw new Error('login required');
  }
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error || `HTTP ${res.status}`);
  return body;
}

function row(cells) {
  const tr = document.createElement('tr');
  for (const c of cells) {
    const td = document.createElement('td');
    if (c instanceof Node) td.appendChild(c);
    else td.textContent = c === null || c === undefined ? '' : String(c);
    tr.appendChild(td);
  }
  return tr;
}

/** A job's failure code (src/reasons.ts), its meaning on hover. */
function code(job) {
  const span = document.createElement('span');
  span.className = 'code';
  span.textContent = job.reasonCode ?? '';
  if (job.reasonMeaning) span.title = job.reasonMeaning;
  return span;
}

function button(label, onClick) {
  const b = document.createElement('button');
  b.textContent = label;
  b.addEventListener('click', onClick);
  return b;
}

async function header() {
  session = await call('/api/session');
  $('user').textContent = `${session.username} (${session.role})`;
  $('logout').addEventListener('click', async () => {
    await call('/api/logout', { method: 'POST' });
    location.href = '/login';
  });
  if (session.role !== 'reidentifier' && $('audit-link')) $('audit-link').hidden = true;
  if ($('link-modality')) {
    $('link-modality').href = session.links.modality;
    $('link-pacs').href = session.links.pacs;
  }
}

// ---- login ----
function loginPage() {
  $('login').addEventListener('submit', async (e) => {
    e.preventDefault();
    $('error').textContent = '';
    const res = await fetch('/api/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: $('username').value, password: $('password').value }) });
    if (!res.ok) {
      $('error').textContent = (await res.json().catch(() => ({}))).error || 'login failed';
      return;
    }
    // only a page of this site: a URL parser decides, not a prefix check ("/\\evil.example" is another host)
    const next = new URL(new URLSearchParams(location.search).get('next') || '/', location.origin);
    location.href = next.origin === location.origin ? next.pathname + next.search : '/';
  });
}

// ---- dashboard ----
async function refreshDashboard(poll = false) {
  const s = await call('/api/summary', { poll });
  const counts = $('counts');
  counts.replaceChildren(
    ...s.states.map((state) => {
      const div = document.createElement('div');
      div.className = 'count';
      div.dataset.state = state;
      const b = document.createElement('b');
      b.textContent = String(s.counts[state]);
      div.append(b, state);
      return div;
    }),
  );
  $('oldest').textContent = s.oldestUnfinished ? `${Math.round((Date.now() - Date.parse(s.oldestUnfinished)) / 1000)} s` : 'none';
  $('depth').textContent = String(s.queueDepth);
  for (const [id, up, dep] of [['pacs', s.pacs, s.dependencies.pacs], ['db', s.crosswalk, s.dependencies.crosswalk]]) {
    // reachable now, and whether the worker's calls have been failing (since when, of which class)
    const streak = dep.failing ? `failing ${dep.failingSeconds} s (${dep.lastErrorClass})` : '';
    $(id).textContent = [up ? 'reachable' : 'UNREACHABLE', streak].filter(Boolean).join(', ');
    $(id).className = up && !dep.failing ? 'ok' : 'bad';
  }
  const cause = { pacs: 'the PACS REST API is failing', crosswalk: 'the crosswalk is failing', backlog: 'the backlog is at its bound', lease: 'this node does not hold its lease' }[s.refusing];
  $('intake').textContent = s.refusing ? `REFUSED with 0xA700: ${cause}` : 'accepted';
  $('intake').className = s.refusing ? 'bad' : 'ok';
  $('backlog').textContent = String(s.backlog);
  $('stuck').textContent = String(s.stuckJobs);
  const max = Math.max(1, ...s.perMinute.map((m) => m.done));
  $('bars').replaceChildren(
    ...s.perMinute.map((m) => {
      const d = document.createElement('div');
      d.style.height = `${Math.round((m.done / max) * 60)}px`;
      d.title = `${m.minute}: ${m.done}`;
      return d;
    }),
  );
  // behind a balancer each request may reach another node: the counts above are the answering node's, this table every node's
  const n = await call('/api/nodes', { poll });
  $('node').textContent = n.me;
  const unfinished = (c) => (c.RECEIVED ?? 0) + (c.IN_PACS ?? 0) + (c.DEIDENTIFIED ?? 0);
  const status = (x) => (x.holder !== x.node ? `taken over by ${x.holder}${x.settled ? ' (settled)' : ''}` : x.live ? 'up' : 'DOWN');
  $('nodes').replaceChildren(...n.nodes.map((x) => row([x.node + (x.node === n.me ? ' (this one)' : ''), status(x), `${x.heartbeatSecondsAgo} s ago`, x.counts.DONE ?? 0, unfinished(x.counts), x.counts.QUARANTINED ?? 0])));
  const jobs = await call(`/api/jobs?search=${encodeURIComponent($('job-search').value)}`, { poll });
  $('jobs').replaceChildren(...jobs.map((j) => row([j.id, j.state, j.aliasId, j.newSopInstanceUid, j.updatedAt, code(j), j.reason])));
  const q = await call('/api/quarantine', { poll });
  $('quarantine').replaceChildren(
    ...q.map((j) => {
      const actions = document.createElement('span');
      if (session.role === 'reidentifier') {
        actions.append(
          button('requeue', () => call(`/api/quarantine/${j.id}/requeue`, { method: 'POST' }).then(() => refreshDashboard())),
          button('purge', () => call(`/api/quarantine/${j.id}/purge`, { method: 'POST' }).then(() => refreshDashboard())),
        );
      }
      return row([j.id, j.updatedAt, j.kept ? 'yes' : 'no', code(j), j.reason, actions]);
    }),
  );
}

async function dashboardPage() {
  await header();
  $('job-search').addEventListener('input', () => refreshDashboard());
  await refreshDashboard();
  setInterval(() => refreshDashboard(true).catch(() => {}), 2000); // live: polling every 2 s, not activity
}

// ---- crosswalk ----
let selected = null;
let searchSeq = 0;

async function refreshPatients() {
  const seq = ++searchSeq;
  const page = await call(`/api/patients?search=${encodeURIComponent($('search').value)}`);
  if (seq !== searchSeq) return; // a newer search is on its way: this answer is stale
  $('total').textContent = `${page.total} aliases`;
  $('patients').replaceChildren(
    ...page.items.map((p) => row([p.aliasId, p.aliasName, p.aliasSex, p.studies, p.instances, p.createdAt, p.lastStudyAt, button('open', () => openAlias(p.aliasId))])),
  );
}

async function openAlias(alias) {
  selected = alias;
  $('detail').hidden = false;
  $('detail-alias').textContent = alias;
  $('revealed').hidden = true;
  $('revealed').textContent = '';
  $('reveal-error').textContent = '';
  $('reveal-box').hidden = session.role !== 'reidentifier';
  const studies = await call(`/api/patients/${encodeURIComponent(alias)}/studies`);
  $('studies').replaceChildren(...studies.map((s) => row([s.accessionAlias, s.createdAt])));
}

async function crosswalkPage() {
  await header();
  $('search').addEventListener('input', () => refreshPatients());
  $('reveal').addEventListener('click', async () => {
    $('reveal-error').textContent = '';
    try {
      const r = await call(`/api/patients/${encodeURIComponent(selected)}/reveal`, { method: 'POST', body: JSON.stringify({ reason: $('reason').value }) });
      $('revealed').hidden = false;
      $('revealed').textContent = JSON.stringify(r, null, 2);
    } catch (e) {
      $('reveal-error').textContent = e.message;
    }
  });
  await refreshPatients();
}

// ---- audit ----
async function auditPage() {
  await header();
  try {
    const records = await call('/api/audit');
    $('audit').replaceChildren(...records.map((a) => row([a.at, a.action, a.aliasId ?? '*', a.user, a.reason, a.disclosed.join(', ')])));
  } catch (e) {
    $('error').textContent = e.message;
  }
}

const pages = { login: loginPage, dashboard: dashboardPage, crosswalk: crosswalkPage, audit: auditPage };
pages[document.body.dataset.page]?.();
