import { PresenceError, errorFromResponse } from './errors.js';
import { DEFAULT_SESSION_KEY, loadSessionId, randomSessionId, storeSessionId } from './session.js';
import type {
  DocumentLike,
  EventSourceConstructor,
  EventSourceLike,
  FetchLike,
  HeartbeatResponse,
  LeaveResponse,
  NavigatorLike,
  Presence,
  PresenceListener,
  PresenceOptions,
  PresencePage,
  PresenceSnapshot,
  PresenceState,
  PresenceUser,
  StorageLike,
  TimerHandle,
  ViewResponse,
  WindowLike,
} from './types.js';

const EMPTY_USERS: readonly PresenceUser[] = Object.freeze([]);
const EVENT_TYPES = ['sync', 'join', 'leave', 'state', 'sessions', 'count'] as const;
const ES_CLOSED = 2;
const MIN_INTERVAL_MS = 1_000;
const MAX_INTERVAL_MS = 3_600_000;
const BASE_BACKOFF_MS = 1_000;
const MAX_VIEW_ATTEMPTS = 5;

/**
 * Running instances per (baseUrl, artifact, session) in this tab. A destroyed instance skips its
 * leave when another one for the same session is running (React StrictMode remounts, two components).
 */
const running = new Map<string, number>();

/** Initial snapshot, also used by the React hook before an instance exists. */
export const EMPTY_SNAPSHOT: PresenceSnapshot = Object.freeze({
  online: 0,
  sessions: 0,
  users: EMPTY_USERS,
  views: null,
  uniqueViewers: null,
  status: 'connecting',
  transport: 'off',
  error: null,
});

type AnyGlobal = Record<string, any>;

function pick<T>(injected: T | null | undefined, fallback: () => T | null | undefined): T | null {
  if (injected !== undefined) return injected;
  try {
    return fallback() ?? null;
  } catch {
    return null; // e.g. window.sessionStorage throws SecurityError in sandboxed iframes
  }
}

function count(value: unknown, fallback: number): number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : fallback;
}

function toPresenceError(err: unknown, operation: PresenceError['operation']): PresenceError {
  if (err instanceof PresenceError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new PresenceError(`${operation} failed: ${message}`, { status: 0, operation, transient: true, cause: err });
}

/**
 * Creates a presence instance for one artifact in this tab: heartbeats, view counting,
 * leave on page close, and a live list of who is online (SSE, falling back to polling).
 */
export function createPresence(options: PresenceOptions): Presence {
  if (!options || typeof options.getToken !== 'function') throw new TypeError('createPresence: getToken() is required');
  if (!options.artifactId) throw new TypeError('createPresence: artifactId is required');

  const g = globalThis as AnyGlobal;
  const baseUrl = String(options.baseUrl ?? '').replace(/\/+$/, '');
  const artifactId = options.artifactId;
  const artifactPath = `/v1/artifacts/${encodeURIComponent(artifactId)}`;
  const fetchFn: FetchLike = options.fetch ?? ((input, init) => g.fetch(input, init));
  const EventSourceCtor = pick<EventSourceConstructor>(options.EventSource, () => g.EventSource);
  const doc = pick<DocumentLike>(options.document, () => g.document);
  const win = pick<WindowLike>(options.window, () => g.window);
  const storage = pick<StorageLike>(options.sessionStorage, () => g.sessionStorage);
  const nav = pick<NavigatorLike>(options.navigator, () => g.navigator);
  const setT = options.setTimeout ?? ((fn: () => void, ms: number): TimerHandle => g.setTimeout(fn, ms));
  const clearT = options.clearTimeout ?? ((h: TimerHandle) => g.clearTimeout(h));
  const random = options.random ?? Math.random;
  const generateId = options.generateSessionId ?? randomSessionId;
  const sessionKey = options.sessionKey ?? DEFAULT_SESSION_KEY;
  const recordViews = options.recordViews !== false;
  const liveMode = options.live ?? 'auto';
  const usersLimit = options.usersLimit ?? 100;
  const maxBackoffMs = options.maxBackoffMs ?? 30_000;
  const maxEsFailures = Math.max(1, options.maxEventSourceFailures ?? 3);

  let sessionId = loadSessionId(storage, sessionKey, generateId);
  let versionId = options.versionId;
  let state: PresenceState | undefined = options.state;
  let intervalMs = Math.max(MIN_INTERVAL_MS, (options.defaultIntervalS ?? 15) * 1000);

  let snapshot: PresenceSnapshot = EMPTY_SNAPSHOT;
  const listeners = new Set<PresenceListener>();
  let usersById = new Map<string, PresenceUser>();

  let started = false;
  let stopped = false;
  let hidden = false; // document.visibilityState === 'hidden'
  let pageHidden = false; // between pagehide and pageshow
  let joined = false; // a heartbeat succeeded since start / the last pagehide
  let rotatedSession = false;
  let runningKey: string | null = null;
  let lastReported: PresenceError | null = null;

  let token: string | null = null;
  let tokenPromise: Promise<string> | null = null;

  let hbTimer: TimerHandle | null = null;
  let hbPromise: Promise<number | null> | null = null;
  let hbPending = false;
  let hbFailures = 0;

  let viewedVersion: string | undefined;
  let viewTimer: TimerHandle | null = null;

  let es: EventSourceLike | null = null;
  let esTimer: TimerHandle | null = null;
  let esFailures = 0;
  let esGaveUp = false;

  let pollTimer: TimerHandle | null = null;
  let pollInFlight = false;
  let pollFailures = 0;

  /* ------------------------------------------------------------ state */

  function update(patch: Partial<PresenceSnapshot>): void {
    let changed = false;
    for (const key in patch) {
      if ((patch as AnyGlobal)[key] !== (snapshot as AnyGlobal)[key]) {
        changed = true;
        break;
      }
    }
    if (!changed) return;
    snapshot = Object.freeze({ ...snapshot, ...patch });
    for (const listener of Array.from(listeners)) {
      try {
        listener(snapshot);
      } catch (err) {
        // a broken listener must not break presence
        setT(() => {
          throw err;
        }, 0);
      }
    }
  }

  function clearError(...operations: PresenceError['operation'][]): void {
    const err = snapshot.error;
    if (err && (operations.includes(err.operation) || err.operation === 'token')) update({ error: null });
  }

  function report(err: PresenceError): void {
    if (err === lastReported) return; // one getToken() failure is shared by concurrent requests
    lastReported = err;
    try {
      options.onError?.(err);
    } catch {
      // ignore errors thrown by the app's handler
    }
  }

  function jitter(ms: number): number {
    return ms * (0.9 + 0.2 * random());
  }

  /** Exponential backoff with jitter; `attempt` starts at 1. Retry-After wins (up to the cap). */
  function backoff(attempt: number, retryAfterMs: number | null): number {
    const exp = Math.min(maxBackoffMs, BASE_BACKOFF_MS * 2 ** Math.min(attempt - 1, 20));
    let delay = exp / 2 + (random() * exp) / 2;
    if (retryAfterMs != null) {
      delay = Math.max(delay, retryAfterMs + random() * Math.min(1_000, retryAfterMs * 0.1));
    }
    return Math.min(delay, maxBackoffMs);
  }

  function clearTimer(handle: TimerHandle | null): null {
    if (handle != null) clearT(handle);
    return null;
  }

  /* ------------------------------------------------------------ HTTP */

  function fetchToken(): Promise<string> {
    if (!tokenPromise) {
      const p = Promise.resolve()
        .then(() => options.getToken())
        .then((t) => {
          if (typeof t !== 'string' || t === '') throw new Error('getToken() returned no token');
          token = t;
          return t;
        })
        .catch((err: unknown) => {
          throw new PresenceError(`getToken() failed: ${err instanceof Error ? err.message : String(err)}`, {
            status: 0,
            operation: 'token',
            transient: true,
            cause: err,
          });
        })
        .finally(() => {
          if (tokenPromise === p) tokenPromise = null;
        });
      tokenPromise = p;
    }
    return tokenPromise;
  }

  function currentToken(): Promise<string> {
    return token != null ? Promise.resolve(token) : fetchToken();
  }

  /** A fresh token, unless another request already replaced the one that was rejected. */
  function freshTokenAfter(rejected: string): Promise<string> {
    return token != null && token !== rejected ? Promise.resolve(token) : fetchToken();
  }

  async function request<T>(
    operation: PresenceError['operation'],
    method: 'GET' | 'POST',
    path: string,
    body?: unknown,
    keepalive = false,
  ): Promise<T> {
    const send = async (t: string): Promise<Response> => {
      const headers: Record<string, string> = { Authorization: `Bearer ${t}`, Accept: 'application/json' };
      const init: RequestInit = { method, headers };
      if (body !== undefined) {
        headers['Content-Type'] = 'application/json';
        init.body = JSON.stringify(body);
      }
      if (keepalive) init.keepalive = true;
      try {
        return await fetchFn(baseUrl + path, init);
      } catch (err) {
        throw toPresenceError(err, operation);
      }
    };
    let used = await currentToken();
    if (stopped && operation !== 'leave') throw new PresenceError('stopped', { status: 0, operation, transient: false });
    let res = await send(used);
    if (res.status === 401) {
      used = await freshTokenAfter(used);
      res = await send(used);
    }
    if (!res.ok) throw await errorFromResponse(operation, res);
    if (res.status === 204) return {} as T;
    try {
      return (await res.json()) as T;
    } catch {
      return {} as T;
    }
  }

  /* ------------------------------------------------------------ heartbeats */

  function canBeat(): boolean {
    return started && !stopped && !hidden && !pageHidden;
  }

  function scheduleBeat(ms: number): void {
    hbTimer = clearTimer(hbTimer);
    hbTimer = setT(() => {
      hbTimer = null;
      beat();
    }, ms);
  }

  function beatNow(): void {
    hbTimer = clearTimer(hbTimer);
    beat();
  }

  function beat(): void {
    if (!canBeat()) return;
    if (hbPromise) {
      hbPending = true; // send again (with the latest state) once the current one is answered
      return;
    }
    hbPending = false;
    const p = runBeat();
    hbPromise = p;
    void p.then((next) => {
      if (hbPromise === p) hbPromise = null;
      if (!canBeat()) return;
      if (hbPending) beatNow();
      else if (next != null) scheduleBeat(next);
    });
  }

  /** Sends one heartbeat; resolves to the delay before the next one (null: none). Never rejects. */
  async function runBeat(): Promise<number | null> {
    try {
      const data = await request<Partial<HeartbeatResponse>>('heartbeat', 'POST', '/v1/heartbeat', {
        artifactId,
        versionId,
        sessionId,
        state,
      });
      if (stopped) return null;
      joined = true;
      hbFailures = 0;
      if (typeof data.intervalS === 'number' && data.intervalS > 0) {
        intervalMs = Math.min(MAX_INTERVAL_MS, Math.max(MIN_INTERVAL_MS, data.intervalS * 1000));
      }
      update({
        online: count(data.online, snapshot.online),
        sessions: count(data.sessions, snapshot.sessions),
        status: hidden ? 'hidden' : 'active',
      });
      clearError('heartbeat');
      return jitter(intervalMs);
    } catch (e) {
      if (stopped) return null;
      const err = toPresenceError(e, 'heartbeat');
      if (err.transient) {
        hbFailures++;
        if (err.operation === 'token') report(err);
        update({ status: hidden ? 'hidden' : 'retrying', error: err });
        return backoff(hbFailures, err.retryAfterMs);
      }
      if (err.status === 409 && !rotatedSession) {
        // The stored session id belongs to another user (e.g. account switch in this tab): take a new one.
        rotatedSession = true;
        report(err);
        update({ error: err });
        sessionId = storeSessionId(storage, sessionKey, generateId());
        unregister();
        register();
        return 0;
      }
      fail(err);
      return null;
    }
  }

  /* ------------------------------------------------------------ views */

  function recordView(): void {
    if (!recordViews || !versionId || viewedVersion === versionId || !canBeat()) return;
    viewedVersion = versionId;
    viewTimer = clearTimer(viewTimer);
    void sendView(versionId, 1);
  }

  async function sendView(v: string, attempt: number): Promise<void> {
    try {
      const data = await request<Partial<ViewResponse>>('views', 'POST', '/v1/views', {
        artifactId,
        versionId: v,
        sessionId,
      });
      if (stopped || v !== versionId) return;
      update({ views: count(data.views, snapshot.views ?? 0), uniqueViewers: count(data.uniqueViewers, snapshot.uniqueViewers ?? 0) });
      clearError('views');
    } catch (e) {
      if (stopped) return;
      const err = toPresenceError(e, 'views');
      if (err.transient) {
        if (err.operation === 'token') report(err);
        if (attempt < MAX_VIEW_ATTEMPTS) {
          viewTimer = setT(() => {
            viewTimer = null;
            if (!stopped && v === versionId) void sendView(v, attempt + 1);
          }, backoff(attempt, err.retryAfterMs));
        }
        return;
      }
      if (err.status === 401) return fail(err);
      report(err);
      update({ error: err });
    }
  }

  /* ------------------------------------------------------------ live: EventSource */

  function canLive(): boolean {
    return started && !stopped && !pageHidden;
  }

  function startLive(): void {
    if (liveMode === 'off') return update({ transport: 'off' });
    if (liveMode === 'poll' || !EventSourceCtor || esGaveUp) return startPolling();
    void connectEvents(null);
  }

  function closeEvents(): void {
    esTimer = clearTimer(esTimer);
    if (es) {
      const source = es;
      es = null;
      try {
        source.close();
      } catch {
        // ignore
      }
    }
  }

  async function connectEvents(rejectedToken: string | null): Promise<void> {
    if (!canLive() || es || !EventSourceCtor) return;
    update({ transport: 'connecting' });
    let t: string;
    try {
      t = rejectedToken != null ? await freshTokenAfter(rejectedToken) : await currentToken();
    } catch (e) {
      const err = toPresenceError(e, 'events');
      report(err);
      return eventsFailed(null, err);
    }
    if (!canLive() || es || esGaveUp) return;
    let source: EventSourceLike;
    try {
      source = new EventSourceCtor(`${baseUrl}${artifactPath}/events?access_token=${encodeURIComponent(t)}`);
    } catch {
      esGaveUp = true;
      return startPolling();
    }
    es = source;
    const onEvent = (ev: MessageEvent) => {
      if (es !== source) return;
      let data: unknown;
      try {
        data = JSON.parse(String(ev.data));
      } catch {
        return;
      }
      if (!data || typeof data !== 'object') return;
      // Any event proves the stream works: a resumed stream (Last-Event-ID) gets no sync.
      esFailures = 0;
      update({ transport: 'events' });
      clearError('events');
      applyEvent(ev.type, data as AnyGlobal);
    };
    for (const type of EVENT_TYPES) source.addEventListener(type, onEvent);
    source.addEventListener('error', () => {
      if (es !== source) return;
      eventsFailed(source, null, t);
    });
  }

  function eventsFailed(source: EventSourceLike | null, err: PresenceError | null, usedToken: string | null = null): void {
    esFailures++;
    if (err) update({ error: err });
    if (esFailures >= maxEsFailures) {
      closeEvents();
      esGaveUp = true;
      return startPolling();
    }
    update({ transport: 'connecting' });
    if (source && source.readyState !== ES_CLOSED) return; // the browser reconnects by itself (sends Last-Event-ID)
    // Closed for good (non-200 answer such as an expired token, or creation failed): reconnect ourselves.
    closeEvents();
    esTimer = setT(() => {
      esTimer = null;
      void connectEvents(usedToken);
    }, backoff(esFailures, null));
  }

  /* ------------------------------------------------------------ live: polling */

  function canPoll(): boolean {
    return canLive() && !hidden && snapshot.transport === 'polling';
  }

  function startPolling(): void {
    update({ transport: 'polling' });
    pollNow();
  }

  function pollNow(): void {
    pollTimer = clearTimer(pollTimer);
    void poll();
  }

  async function poll(): Promise<void> {
    if (!canPoll() || pollInFlight) return;
    pollInFlight = true;
    let next: number | null = null;
    try {
      const page = await request<Partial<PresencePage>>('presence', 'GET', `${artifactPath}/presence?limit=${usersLimit}`);
      if (stopped) return;
      pollFailures = 0;
      applyEvent('sync', page as AnyGlobal);
      clearError('presence');
      next = jitter(intervalMs);
    } catch (e) {
      if (stopped) return;
      const err = toPresenceError(e, 'presence');
      if (err.transient) {
        pollFailures++;
        if (err.operation === 'token') report(err);
        update({ error: err });
        next = backoff(pollFailures, err.retryAfterMs);
      } else if (err.status === 401) {
        return fail(err);
      } else {
        report(err);
        update({ error: err, transport: 'off' });
      }
    } finally {
      pollInFlight = false;
    }
    if (next != null && canPoll()) {
      pollTimer = clearTimer(pollTimer);
      pollTimer = setT(() => {
        pollTimer = null;
        void poll();
      }, next);
    }
  }

  /* ------------------------------------------------------------ applying events */

  function publishUsers(extra: Partial<PresenceSnapshot> = {}): void {
    update({ ...extra, users: Object.freeze(Array.from(usersById.values())) });
  }

  function applyEvent(type: string, data: AnyGlobal): void {
    switch (type) {
      case 'sync': {
        const next = new Map<string, PresenceUser>();
        if (Array.isArray(data.users)) {
          for (const u of data.users) if (u && typeof u.userId === 'string') next.set(u.userId, { ...u });
        }
        usersById = next;
        publishUsers({ online: count(data.online, snapshot.online), sessions: count(data.sessions, snapshot.sessions) });
        return;
      }
      case 'join': {
        if (typeof data.userId !== 'string') return;
        const prev = usersById.get(data.userId);
        const row: PresenceUser = { ...prev, ...data } as PresenceUser;
        if (row.sessions == null) row.sessions = 1;
        usersById.set(data.userId, row);
        // `count` events are authoritative; this keeps the numbers right until one arrives.
        publishUsers(
          prev ? {} : { online: snapshot.online + 1, sessions: snapshot.sessions + count(row.sessions, 1) },
        );
        return;
      }
      case 'leave': {
        if (typeof data.userId !== 'string') return;
        const prev = usersById.get(data.userId);
        if (!prev) return;
        usersById.delete(data.userId);
        publishUsers({
          online: Math.max(0, snapshot.online - 1),
          sessions: Math.max(0, snapshot.sessions - count(prev.sessions, 1)),
        });
        return;
      }
      case 'state': {
        if (typeof data.userId !== 'string') return;
        const prev = usersById.get(data.userId);
        if (!prev) return; // unknown user (beyond the page limit): the next sync brings it
        const row: PresenceUser = { ...prev };
        if ('versionId' in data) row.versionId = data.versionId;
        if ('state' in data) row.state = data.state;
        usersById.set(data.userId, row);
        publishUsers();
        return;
      }
      case 'sessions': {
        // An online user opened or closed one of several tabs; `count` brings the totals.
        if (typeof data.userId !== 'string') return;
        const prev = usersById.get(data.userId);
        if (!prev) return;
        usersById.set(data.userId, { ...prev, sessions: count(data.sessions, prev.sessions ?? 1) });
        publishUsers();
        return;
      }
      case 'count':
        update({ online: count(data.online, snapshot.online), sessions: count(data.sessions, snapshot.sessions) });
        return;
    }
  }

  /* ------------------------------------------------------------ page lifecycle */

  function isHidden(): boolean {
    return !!doc && doc.visibilityState === 'hidden';
  }

  function onVisibilityChange(): void {
    if (stopped) return;
    const nowHidden = isHidden();
    if (nowHidden === hidden) return;
    hidden = nowHidden;
    if (hidden) {
      hbTimer = clearTimer(hbTimer);
      pollTimer = clearTimer(pollTimer);
      update({ status: 'hidden' });
      return;
    }
    update({ status: joined ? 'active' : 'connecting' });
    beatNow();
    recordView();
    if (snapshot.transport === 'polling') pollNow();
  }

  function onPageHide(): void {
    if (!started || stopped || pageHidden) return;
    pageHidden = true;
    const wasPresent = joined || hbPromise != null;
    joined = false;
    hbTimer = clearTimer(hbTimer);
    pollTimer = clearTimer(pollTimer);
    closeEvents();
    if (wasPresent) sendBeaconLeave();
  }

  function onPageShow(): void {
    // Back from the back/forward cache: the grace leave is cancelled by this heartbeat if quick enough.
    if (stopped || !pageHidden) return;
    pageHidden = false;
    hidden = isHidden();
    esFailures = 0;
    beatNow();
    if (snapshot.transport === 'polling') pollNow();
    else startLive();
  }

  function sendBeaconLeave(): void {
    if (token == null) return; // never authenticated: nothing to leave
    const url = `${baseUrl}/v1/leave`;
    const payload = JSON.stringify({ artifactId, sessionId, grace: true, token });
    const type = 'text/plain;charset=UTF-8';
    let queued = false;
    try {
      if (nav && typeof nav.sendBeacon === 'function' && typeof g.Blob === 'function') {
        queued = nav.sendBeacon(url, new g.Blob([payload], { type }));
      }
    } catch {
      queued = false;
    }
    if (!queued) {
      // No beacon (or queue full): a keepalive fetch with the same CORS-simple body.
      try {
        void fetchFn(url, { method: 'POST', body: payload, headers: { 'Content-Type': type }, keepalive: true }).catch(
          () => undefined,
        );
      } catch {
        // nothing more we can do while the page goes away
      }
    }
  }

  function attach(): void {
    doc?.addEventListener('visibilitychange', onVisibilityChange);
    win?.addEventListener('pagehide', onPageHide);
    win?.addEventListener('pageshow', onPageShow);
  }

  function detach(): void {
    doc?.removeEventListener('visibilitychange', onVisibilityChange);
    win?.removeEventListener('pagehide', onPageHide);
    win?.removeEventListener('pageshow', onPageShow);
  }

  /* ------------------------------------------------------------ lifecycle */

  function register(): void {
    runningKey = `${baseUrl}\n${artifactId}\n${sessionId}`;
    running.set(runningKey, (running.get(runningKey) ?? 0) + 1);
  }

  function unregister(): void {
    if (runningKey == null) return;
    const left = (running.get(runningKey) ?? 1) - 1;
    if (left > 0) running.set(runningKey, left);
    else running.delete(runningKey);
    runningKey = null;
  }

  function halt(error: PresenceError | null): void {
    stopped = true;
    unregister();
    hbTimer = clearTimer(hbTimer);
    pollTimer = clearTimer(pollTimer);
    viewTimer = clearTimer(viewTimer);
    closeEvents();
    if (started) detach();
    update({ status: 'stopped', transport: 'off', error: error ?? snapshot.error });
  }

  function fail(err: PresenceError): void {
    report(err);
    halt(err);
  }

  /** Leave after the in-flight heartbeat (if any) so a late heartbeat cannot resurrect us. */
  function leaveAfterHeartbeat(): Promise<LeaveResponse> {
    const send = () => request<LeaveResponse>('leave', 'POST', '/v1/leave', { artifactId, sessionId });
    return hbPromise ? hbPromise.then(send, send) : send();
  }

  /** destroy()'s leave: asynchronous, and skipped if the session is still in use by another instance. */
  function leaveOnDestroy(key: string): void {
    const body = { artifactId, sessionId, grace: true };
    const send = (): Promise<unknown> =>
      running.has(key) ? Promise.resolve() : request<LeaveResponse>('leave', 'POST', '/v1/leave', body, true);
    const after = hbPromise ?? Promise.resolve(null);
    void after.then(send, send).catch(() => undefined);
  }

  function start(): void {
    if (started || stopped) return;
    started = true;
    register();
    attach();
    hidden = isHidden();
    if (hidden) update({ status: 'hidden' });
    beat(); // at once (deferred to the first visibility if the tab starts hidden)
    recordView();
    startLive();
  }

  function setState(next: PresenceState | undefined): void {
    if (stopped) return;
    state = next;
    beatNow();
  }

  function setVersion(next: string): void {
    if (stopped) return;
    if (typeof next !== 'string' || next === '') throw new TypeError('setVersion: versionId must be a non-empty string');
    versionId = next;
    beatNow();
    recordView();
  }

  async function leave(): Promise<LeaveResponse | null> {
    if (stopped) return null;
    const wasStarted = started && !pageHidden;
    halt(null);
    if (!wasStarted) return null;
    try {
      return await leaveAfterHeartbeat();
    } catch (e) {
      const err = toPresenceError(e, 'leave');
      if (!err.transient || err.operation === 'token') report(err);
      update({ error: err });
      return null;
    }
  }

  function destroy(): void {
    if (stopped) return;
    const present = started && !pageHidden && (joined || hbPromise != null);
    const key = runningKey;
    halt(null);
    listeners.clear();
    if (present && key != null) leaveOnDestroy(key);
  }

  const presence: Presence = {
    get online() {
      return snapshot.online;
    },
    get sessions() {
      return snapshot.sessions;
    },
    get users() {
      return snapshot.users;
    },
    get error() {
      return snapshot.error;
    },
    get status() {
      return snapshot.status;
    },
    get sessionId() {
      return sessionId;
    },
    get artifactId() {
      return artifactId;
    },
    get versionId() {
      return versionId;
    },
    get state() {
      return state;
    },
    getSnapshot: () => snapshot,
    subscribe(listener: PresenceListener) {
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },
    start,
    setState,
    setVersion,
    leave,
    destroy,
  };

  if (options.autoStart !== false) start();
  return presence;
}
