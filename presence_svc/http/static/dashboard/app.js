// presence-svc dashboard: plain ES module, no build step, no third-party code.
// The token comes from the URL fragment (#token=...) or the form, and is kept in
// sessionStorage (this tab only). Every value from the API is written with textContent.

const TOKEN_KEY = 'presence-svc:dashboard-token';
const WATCH_KEY = 'presence-svc:dashboard-watch';
const COUNTS_EVERY_MS = 3000;
const DETAIL_EVERY_MS = 10000;
const PRESENCE_POLL_MS = 3000;

const $ = (id) => document.getElementById(id);
const state = {
  token: null,
  artifacts: [],          // ids shown in the list
  counts: {},             // id -> {online, sessions}
  selected: null,
  versions: [],
  versionStats: [],
  latest: null,           // the selected artifact's latest version id
  viewersVersion: null,
  events: null,           // EventSource of the selected artifact, if the service has events
  live: 'polling',
  timers: {},
};

/* ---------------------------------------------------------------- token */

function readToken() {
  const hash = new URLSearchParams(location.hash.slice(1));
  const fromHash = hash.get('token');
  if (fromHash) {
    sessionStorage.setItem(TOKEN_KEY, fromHash);
    hash.delete('token');
    const rest = hash.toString();
    history.replaceState(null, '', location.pathname + location.search + (rest ? `#${rest}` : ''));
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

function setStatus(text, kind) {
  const el = $('status');
  el.textContent = text;
  el.className = `status ${kind || ''}`;
}

/* ---------------------------------------------------------------- API */

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

async function api(path, body) {
  if (!state.token) throw new ApiError(401, 'no token');
  const headers = { Authorization: `Bearer ${state.token}`, Accept: 'application/json' };
  const init = { headers };
  if (body !== undefined) {
    init.method = 'POST';
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (!res.ok) {
    let detail = res.statusText;
    try {
      detail = (await res.json()).detail || detail;
    } catch {
      // not problem+json
    }
    throw new ApiError(res.status, detail);
  }
  return res.json();
}

function reportError(err) {
  if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
    setStatus(err.status === 401 ? 'token rejected: paste a valid dashboard token' : 'this token is not a dashboard token', 'bad');
    stopAll();
    return;
  }
  setStatus(`retrying: ${err.message}`, 'bad');
}

const enc = encodeURIComponent;

/* ---------------------------------------------------------------- rendering helpers */

function cell(row, text, cls) {
  const td = document.createElement('td');
  td.textContent = text == null ? '' : String(text);
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function fillTable(id, items, render, emptyText) {
  const body = $(id).tBodies[0];
  body.replaceChildren();
  if (!items.length) {
    const tr = document.createElement('tr');
    tr.className = 'empty';
    cell(tr, emptyText).colSpan = $(id).tHead.rows[0].cells.length;
    body.appendChild(tr);
    return;
  }
  for (const item of items) {
    const tr = document.createElement('tr');
    render(tr, item);
    body.appendChild(tr);
  }
}

function when(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  const secs = Math.round((Date.now() - d.getTime()) / 1000);
  if (secs < 60) return `${Math.max(0, secs)} s ago`;
  if (secs < 3600) return `${Math.round(secs / 60)} min ago`;
  return d.toLocaleString();
}

function who(u) {
  return u.name ? `${u.name} (${u.userId})` : u.userId;
}

/* ---------------------------------------------------------------- artifact list */

function watched() {
  try {
    return JSON.parse(sessionStorage.getItem(WATCH_KEY) || '[]');
  } catch {
    return [];
  }
}

async function refreshArtifactIds() {
  const ledger = await api('/v1/ledger?order=desc&limit=200');
  const ids = new Set(watched());
  for (const row of ledger.items) ids.add(row.artifactId);
  if (state.selected) ids.add(state.selected);
  state.artifacts = Array.from(ids).slice(0, 1000);
}

async function refreshCounts() {
  if (!state.artifacts.length) return renderArtifacts();
  const query = state.artifacts.map((a) => `artifactId=${enc(a)}`).join('&');
  const data = await api(`/v1/online?${query}`);
  state.counts = data.counts;
  renderArtifacts();
}

function renderArtifacts() {
  const sorted = [...state.artifacts].sort((a, b) => {
    const d = (state.counts[b]?.online ?? 0) - (state.counts[a]?.online ?? 0);
    return d || a.localeCompare(b);
  });
  fillTable(
    'artifacts',
    sorted,
    (tr, id) => {
      const c = state.counts[id] || { online: 0, sessions: 0 };
      tr.dataset.artifact = id;
      if (id === state.selected) tr.className = 'selected';
      cell(tr, id);
      cell(tr, c.online, 'num');
      cell(tr, c.sessions, 'num');
      tr.addEventListener('click', () => select(id));
    },
    'no artifacts yet: watch one by id',
  );
  if (state.selected && state.counts[state.selected] && state.live !== 'events') {
    $('d-online').textContent = state.counts[state.selected].online;
    $('d-sessions').textContent = state.counts[state.selected].sessions;
  }
}

/* ---------------------------------------------------------------- one artifact */

function renderPresence(page) {
  $('d-online').textContent = page.online;
  $('d-sessions').textContent = page.sessions;
  if (state.counts[state.selected]) state.counts[state.selected] = { online: page.online, sessions: page.sessions };
  fillTable(
    'presence',
    page.users,
    (tr, u) => {
      cell(tr, who(u));
      cell(tr, u.versionId ?? '');
      cell(tr, u.sessions, 'num');
      cell(tr, when(u.lastSeen));
    },
    'nobody online',
  );
}

async function refreshPresence() {
  if (!state.selected) return;
  renderPresence(await api(`/v1/artifacts/${enc(state.selected)}/presence?limit=100`));
}

const SVG = 'http://www.w3.org/2000/svg';

function svg(tag, attrs, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text != null) el.textContent = String(text);
  return el;
}

function renderChart(versions) {
  const box = $('chart');
  box.replaceChildren();
  if (!versions.length) {
    box.textContent = 'no views yet';
    return;
  }
  const shown = versions.slice(-12);
  const w = 420;
  const h = 200;
  const pad = { l: 34, r: 8, t: 14, b: 34 };
  const max = Math.max(1, ...shown.map((v) => v.views));
  const group = (w - pad.l - pad.r) / shown.length;
  const bar = Math.min(28, group / 2.6);
  const y = (n) => pad.t + (h - pad.t - pad.b) * (1 - n / max);
  const root = svg('svg', { viewBox: `0 0 ${w} ${h}`, role: 'img', 'aria-label': 'views and unique viewers per version' });
  root.appendChild(svg('line', { x1: pad.l, x2: w - pad.r, y1: y(0), y2: y(0), stroke: '#c4c9d4' }));
  root.appendChild(svg('text', { x: pad.l - 4, y: y(max) + 4, 'text-anchor': 'end' }, max));
  root.appendChild(svg('text', { x: pad.l - 4, y: y(0) + 4, 'text-anchor': 'end' }, 0));
  shown.forEach((v, i) => {
    const cx = pad.l + group * i + group / 2;
    const views = svg('rect', { class: 'bar-views', x: cx - bar, y: y(v.views), width: bar, height: y(0) - y(v.views) });
    views.appendChild(svg('title', {}, `${v.versionId}: ${v.views} views`));
    const unique = svg('rect', { class: 'bar-unique', x: cx, y: y(v.uniqueViewers), width: bar, height: y(0) - y(v.uniqueViewers) });
    unique.appendChild(svg('title', {}, `${v.versionId}: ${v.uniqueViewers} unique viewers`));
    root.append(views, unique);
    root.appendChild(svg('text', { x: cx - bar / 2, y: y(v.views) - 3, 'text-anchor': 'middle' }, v.views));
    root.appendChild(svg('text', { x: cx + bar / 2, y: y(v.uniqueViewers) - 3, 'text-anchor': 'middle' }, v.uniqueViewers));
    const label = v.versionId.length > 10 ? `${v.versionId.slice(0, 9)}…` : v.versionId;
    root.appendChild(svg('text', { x: cx, y: h - pad.b + 16, 'text-anchor': 'middle' }, label));
  });
  box.appendChild(root);
}

function duration(ms) {
  const s = Math.round((ms || 0) / 1000);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

function renderVersions(versions) {
  // engagedMs and readers come with engaged time; a server without it shows 0.
  fillTable(
    'versions',
    [...versions].reverse(),
    (tr, v) => {
      const name = cell(tr, v.versionId);
      if (v.versionId === state.latest) {
        const mark = document.createElement('span');
        mark.className = 'latest-mark';
        mark.textContent = 'latest';
        name.appendChild(mark);
      }
      cell(tr, v.uniqueViewers, 'num');
      cell(tr, v.readers ?? 0, 'num');
      cell(tr, duration(v.engagedMs ?? 0), 'num');
      cell(tr, duration(v.uniqueViewers ? (v.engagedMs ?? 0) / v.uniqueViewers : 0), 'num');
    },
    'no views yet',
  );
}

async function refreshStats() {
  const stats = await api(`/v1/artifacts/${enc(state.selected)}/stats`);
  $('d-views').textContent = stats.views;
  $('d-unique').textContent = stats.uniqueViewers;
  const versions = [...stats.versions].sort((a, b) => (a.lastViewedAt < b.lastViewedAt ? -1 : 1));
  state.versions = versions.map((v) => v.versionId);
  state.versionStats = versions;
  renderChart(versions);
  renderVersions(versions);
  const select = $('version');
  if (!state.versions.includes(state.viewersVersion)) state.viewersVersion = state.versions.at(-1) ?? null;
  select.replaceChildren(...state.versions.map((v) => new Option(v, v, false, v === state.viewersVersion)));
}

async function refreshViewers() {
  if (!state.viewersVersion) return fillTable('viewers', [], () => undefined, 'no viewers yet');
  const data = await api(`/v1/artifacts/${enc(state.selected)}/versions/${enc(state.viewersVersion)}/viewers?limit=50`);
  fillTable(
    'viewers',
    data.viewers,
    (tr, v) => {
      cell(tr, who(v));
      cell(tr, v.views, 'num');
      cell(tr, when(v.firstViewedAt));
      cell(tr, when(v.lastViewedAt));
    },
    'no viewers yet',
  );
}

async function refreshLedger() {
  const data = await api(`/v1/ledger?artifactId=${enc(state.selected)}&order=desc&limit=20`);
  fillTable(
    'ledger',
    data.items,
    (tr, r) => {
      cell(tr, new Date(r.viewedAt).toLocaleString());
      cell(tr, r.userId);
      cell(tr, r.versionId);
    },
    'no rows yet (the worker writes them within a second or two)',
  );
}

/* ---------------------------------------------------------------- latest version: seen / not seen */

function renderSeen(latest, seen, notSeen) {
  $('latest-version').textContent = latest ? latest.versionId : 'none set';
  $('latest-set').textContent = latest ? `marked ${when(latest.setAt)}` : '(PUT /v1/artifacts/{id}/latest with a publisher token)';
  $('l-seen').textContent = seen ? seen.seen : 0;
  $('l-read').textContent = seen ? seen.read : 0;
  $('l-hidden').textContent = seen && seen.hiddenViewers ? `(${seen.hiddenViewers} hidden)` : '';
  $('l-not-seen').textContent = notSeen.length;
  fillTable(
    'seen',
    seen ? seen.viewers : [],
    (tr, v) => {
      cell(tr, who(v));
      cell(tr, duration(v.engagedMs ?? 0), 'num');
      cell(tr, v.read ? 'read' : '', v.read ? 'read-yes' : '');
      cell(tr, when(v.lastViewedAt));
    },
    latest ? 'nobody has seen it yet' : 'no latest version',
  );
  fillTable(
    'not-seen',
    notSeen,
    (tr, v) => {
      cell(tr, who(v));
      cell(tr, v.versionId);
      cell(tr, when(v.lastViewedAt));
    },
    latest ? 'everyone who viewed an earlier version has seen it' : 'no latest version',
  );
}

async function refreshSeen() {
  const id = state.selected;
  let latest;
  try {
    latest = await api(`/v1/artifacts/${enc(id)}/latest`);
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 404) throw err;
    state.latest = null;
    renderVersions(state.versionStats || []);
    return renderSeen(null, null, []);
  }
  state.latest = latest.versionId;
  renderVersions(state.versionStats || []);
  const seen = await api(`/v1/artifacts/${enc(id)}/seen?versionId=${enc(latest.versionId)}&limit=100`);
  // The audience the dashboard knows: who viewed one of the last ten earlier versions.
  const others = state.versions.filter((v) => v !== latest.versionId).slice(-10);
  const pages = await Promise.all(others.map((v) => api(`/v1/artifacts/${enc(id)}/versions/${enc(v)}/viewers?limit=100`)));
  const earlier = new Map();
  pages.forEach((page, i) => {
    for (const v of page.viewers) {
      const had = earlier.get(v.userId);
      if (!had || had.lastViewedAt < v.lastViewedAt) earlier.set(v.userId, { ...v, versionId: others[i] });
    }
  });
  let notSeen = [];
  if (earlier.size) {
    const userIds = [...earlier.keys()].slice(0, 1000);
    const check = await api(`/v1/artifacts/${enc(id)}/seen/check`, { versionId: latest.versionId, userIds });
    notSeen = check.notSeen.map((u) => earlier.get(u)).sort((a, b) => (a.lastViewedAt < b.lastViewedAt ? 1 : -1));
  }
  if (state.selected === id) renderSeen(latest, seen, notSeen);
}

/* ---------------------------------------------------------------- timeline and its peak */

function renderTimeline(data) {
  const box = $('timeline');
  box.replaceChildren();
  if (!data) {
    $('peak').textContent = '';
    box.textContent = 'no timeline on this server';
    return;
  }
  const points = data.points || [];
  const peak = data.peak || { online: 0, at: null };
  $('peak').textContent = peak.at ? `peak ${peak.online} at ${new Date(peak.at).toLocaleTimeString()}` : 'no peak yet';
  if (!points.length) {
    box.textContent = 'nobody online in this hour';
    return;
  }
  const w = 420;
  const h = 170;
  const pad = { l: 34, r: 8, t: 14, b: 26 };
  const t0 = Date.parse(points[0].t);
  const t1 = Math.max(t0 + 60_000, Date.parse(points.at(-1).t));
  const max = Math.max(1, ...points.map((p) => Math.max(p.online, p.sessions)));
  const x = (t) => pad.l + ((w - pad.l - pad.r) * (Date.parse(t) - t0)) / (t1 - t0);
  const y = (n) => pad.t + (h - pad.t - pad.b) * (1 - n / max);
  const root = svg('svg', { viewBox: `0 0 ${w} ${h}`, role: 'img', 'aria-label': 'users online and sessions per minute' });
  root.appendChild(svg('line', { x1: pad.l, x2: w - pad.r, y1: y(0), y2: y(0), stroke: '#c4c9d4' }));
  root.appendChild(svg('text', { x: pad.l - 4, y: y(max) + 4, 'text-anchor': 'end' }, max));
  root.appendChild(svg('text', { x: pad.l - 4, y: y(0) + 4, 'text-anchor': 'end' }, 0));
  const path = (key) => points.map((p) => `${x(p.t).toFixed(1)},${y(p[key]).toFixed(1)}`).join(' ');
  root.appendChild(svg('polyline', { class: 'line-sessions', points: path('sessions') }));
  root.appendChild(svg('polyline', { class: 'line-online', points: path('online') }));
  if (peak.at) {
    const px = Math.min(w - pad.r, Math.max(pad.l, x(peak.at)));
    const dot = svg('circle', { class: 'peak-dot', cx: px, cy: y(peak.online), r: 4 });
    dot.appendChild(svg('title', {}, `peak: ${peak.online} online`));
    root.appendChild(dot);
  }
  root.appendChild(svg('text', { x: pad.l, y: h - 6 }, new Date(t0).toLocaleTimeString()));
  root.appendChild(svg('text', { x: w - pad.r, y: h - 6, 'text-anchor': 'end' }, new Date(t1).toLocaleTimeString()));
  box.appendChild(root);
}

async function refreshTimeline() {
  const id = state.selected;
  let data = null;
  try {
    data = await api(`/v1/artifacts/${enc(id)}/timeline?step=1m`);
  } catch (err) {
    // A server without the timeline answers 404 (no such path): say so, no error.
    if (!(err instanceof ApiError) || err.status !== 404) throw err;
  }
  if (state.selected === id) renderTimeline(data);
}

async function refreshDetail() {
  if (!state.selected) return;
  await refreshStats();
  await Promise.all([refreshViewers(), refreshLedger(), refreshSeen(), refreshTimeline()]);
}

/* ---------------------------------------------------------------- live presence of the selected artifact */

function closeEvents() {
  if (state.events) state.events.close();
  state.events = null;
}

function setLive(mode) {
  state.live = mode;
  $('detail-live').textContent = mode === 'events' ? '● live' : '● polling';
}

function openEvents(id) {
  closeEvents();
  setLive('polling');
  if (typeof EventSource !== 'function') return;
  const source = new EventSource(`/v1/artifacts/${enc(id)}/events?access_token=${enc(state.token)}`);
  state.events = source;
  let refetch = null;
  source.addEventListener('sync', (ev) => {
    setLive('events');
    const data = JSON.parse(ev.data);
    if (Array.isArray(data.users)) renderPresence(data);
    else refreshPresence().catch(reportError);
  });
  for (const type of ['join', 'leave', 'state', 'sessions', 'count', 'interval']) {
    source.addEventListener(type, () => {
      // Patch by re-reading the list once a burst of events is over.
      clearTimeout(refetch);
      refetch = setTimeout(() => refreshPresence().catch(reportError), 250);
    });
  }
  source.addEventListener('error', () => {
    if (source.readyState === EventSource.CLOSED) {
      // No events endpoint (or it refused): poll instead.
      if (state.events === source) state.events = null;
      setLive('polling');
    }
  });
}

function select(id) {
  state.selected = id;
  location.hash = `artifact=${enc(id)}`;
  $('detail').hidden = false;
  $('detail-title').textContent = id;
  state.viewersVersion = null;
  state.latest = null;
  renderArtifacts();
  openEvents(id);
  refreshPresence().catch(reportError);
  refreshDetail().catch(reportError);
}

/* ---------------------------------------------------------------- loops */

function every(name, ms, fn) {
  clearInterval(state.timers[name]);
  state.timers[name] = setInterval(() => {
    if (document.visibilityState === 'hidden' || !state.token) return;
    fn().then(() => setStatus('connected', 'ok'), reportError);
  }, ms);
}

function stopAll() {
  for (const t of Object.values(state.timers)) clearInterval(t);
  state.timers = {};
  closeEvents();
}

async function connect() {
  stopAll();
  state.token = readToken();
  if (!state.token) {
    setStatus('paste a dashboard token', 'bad');
    return;
  }
  setStatus('connecting…');
  try {
    await refreshArtifactIds();
    await refreshCounts();
    await refreshWebhooks();
    setStatus('connected', 'ok');
  } catch (err) {
    reportError(err);
    if (err instanceof ApiError && (err.status === 401 || err.status === 403)) return;
  }
  every('counts', COUNTS_EVERY_MS, refreshCounts);
  every('ids', DETAIL_EVERY_MS, refreshArtifactIds);
  every('webhooks', DETAIL_EVERY_MS, refreshWebhooks);
  every('detail', DETAIL_EVERY_MS, refreshDetail);
  every('presence', PRESENCE_POLL_MS, async () => {
    if (state.live !== 'events') await refreshPresence();
  });
  const wanted = new URLSearchParams(location.hash.slice(1)).get('artifact');
  if (wanted) select(wanted);
  else if (state.artifacts.length) select([...state.artifacts].sort((a, b) => (state.counts[b]?.online ?? 0) - (state.counts[a]?.online ?? 0))[0]);
}

/* ---------------------------------------------------------------- webhooks (admin tokens) */

async function refreshWebhooks() {
  let list;
  try {
    list = await api('/v1/webhooks');
  } catch (err) {
    if (err instanceof ApiError && err.status === 403) {
      $('webhooks-section').hidden = true; // a dashboard token: not an admin's view
      return;
    }
    throw err;
  }
  $('webhooks-section').hidden = false;
  fillTable('webhooks', list.items, (tr, w) => {
    cell(tr, w.url);
    cell(tr, w.events.join(', '));
    cell(tr, w.health.status, `health ${w.health.status}`);
    cell(tr, w.health.pending, 'num');
    cell(tr, w.health.failures, 'num');
    cell(tr, when(w.health.lastSuccessAt));
  }, 'no webhook endpoints');
}

/* ---------------------------------------------------------------- forms */

$('token-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const value = $('token').value.trim();
  if (!value) return;
  sessionStorage.setItem(TOKEN_KEY, value);
  $('token').value = '';
  connect();
});

$('forget').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  stopAll();
  setStatus('token forgotten', 'bad');
});

$('watch-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const id = $('watch').value.trim();
  if (!id) return;
  const list = watched().filter((a) => a !== id);
  list.unshift(id);
  sessionStorage.setItem(WATCH_KEY, JSON.stringify(list.slice(0, 200)));
  $('watch').value = '';
  if (!state.artifacts.includes(id)) state.artifacts.push(id);
  select(id);
  refreshCounts().catch(reportError);
});

$('version').addEventListener('change', () => {
  state.viewersVersion = $('version').value;
  refreshViewers().catch(reportError);
});

document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible' && state.token) refreshCounts().catch(reportError);
});

connect();
