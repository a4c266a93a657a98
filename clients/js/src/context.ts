import type { PresenceError } from './errors.js';
import { MIN_INTERVAL_MS } from './heartbeat.js';
import { DEFAULT_SESSION_KEY, loadSessionId, randomSessionId } from './session.js';
import { EMPTY_SNAPSHOT } from './snapshot.js';
import type {
  DocumentLike,
  EventSourceConstructor,
  FetchLike,
  NavigatorLike,
  PresenceListener,
  PresenceOptions,
  PresenceSnapshot,
  PresenceState,
  StorageLike,
  TimerHandle,
  WindowLike,
} from './types.js';

/**
 * What the modules of one presence instance share: the options resolved once, the injected
 * globals, this tab's session, the snapshot the app sees, and the run flags. Everything else
 * is private to the module that uses it.
 */
export interface Context {
  /** The caller's options; getToken and onError are read from here at call time. */
  readonly options: PresenceOptions;
  /** Without trailing slashes. */
  readonly baseUrl: string;
  readonly artifactId: string;
  /** `/v1/artifacts/{artifactId}`, encoded. */
  readonly artifactPath: string;
  readonly recordViews: boolean;
  readonly live: 'auto' | 'poll' | 'off';
  readonly usersLimit: number;
  readonly maxBackoffMs: number;
  readonly maxEventSourceFailures: number;
  readonly sessionKey: string;
  readonly generateSessionId: () => string;

  /* injected globals, null when the environment has none; the functions call the injected ones without `this` */
  readonly fetch: FetchLike;
  readonly EventSource: EventSourceConstructor | null;
  readonly document: DocumentLike | null;
  readonly window: WindowLike | null;
  readonly storage: StorageLike | null;
  readonly navigator: NavigatorLike | null;
  readonly setTimeout: (fn: () => void, ms: number) => TimerHandle;
  /** clearTimeout that accepts null; returns null so `timer = ctx.clearTimer(timer)` resets the handle. */
  readonly clearTimer: (handle: TimerHandle | null) => null;
  readonly random: () => number;

  /* this tab's session on the artifact */
  sessionId: string;
  versionId: string | undefined;
  state: PresenceState | undefined;
  /** Heartbeat interval (the server's once it answered); polling uses it too. */
  intervalMs: number;

  /* what the app sees */
  snapshot: PresenceSnapshot;
  readonly listeners: Set<PresenceListener>;
  /** Last error passed to onError: one getToken() failure is shared by concurrent requests. */
  reported: PresenceError | null;

  /* run flags */
  started: boolean;
  stopped: boolean;
  /** document.visibilityState === 'hidden' */
  hidden: boolean;
  /** Between pagehide and pageshow. */
  pageHidden: boolean;
}

/** The browser globals used by default; any of them may be missing (node, workers). */
interface Globals {
  fetch: FetchLike;
  EventSource?: EventSourceConstructor;
  document?: DocumentLike;
  window?: WindowLike;
  sessionStorage?: StorageLike;
  navigator?: NavigatorLike;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

function pick<T>(injected: T | null | undefined, fallback: () => T | null | undefined): T | null {
  if (injected !== undefined) return injected;
  try {
    return fallback() ?? null;
  } catch {
    return null; // e.g. window.sessionStorage throws SecurityError in sandboxed iframes
  }
}

export function createContext(options: PresenceOptions): Context {
  const g = globalThis as unknown as Globals;
  const artifactId = options.artifactId;
  const storage = pick<StorageLike>(options.sessionStorage, () => g.sessionStorage);
  const sessionKey = options.sessionKey ?? DEFAULT_SESSION_KEY;
  const generate = options.generateSessionId ?? randomSessionId;
  const generateSessionId = () => generate();
  const fetchFn: FetchLike = options.fetch ?? ((input, init) => g.fetch(input, init));
  const setT = options.setTimeout ?? ((fn: () => void, ms: number): TimerHandle => g.setTimeout(fn, ms));
  const clearT = options.clearTimeout ?? ((h: TimerHandle) => g.clearTimeout(h));
  const random = options.random ?? Math.random;
  return {
    options,
    baseUrl: String(options.baseUrl ?? '').replace(/\/+$/, ''),
    artifactId,
    artifactPath: `/v1/artifacts/${encodeURIComponent(artifactId)}`,
    recordViews: options.recordViews !== false,
    live: options.live ?? 'auto',
    usersLimit: options.usersLimit ?? 100,
    maxBackoffMs: options.maxBackoffMs ?? 30_000,
    maxEventSourceFailures: Math.max(1, options.maxEventSourceFailures ?? 3),
    sessionKey,
    generateSessionId,

    fetch: (input, init) => fetchFn(input, init),
    EventSource: pick<EventSourceConstructor>(options.EventSource, () => g.EventSource),
    document: pick<DocumentLike>(options.document, () => g.document),
    window: pick<WindowLike>(options.window, () => g.window),
    storage,
    navigator: pick<NavigatorLike>(options.navigator, () => g.navigator),
    setTimeout: (fn, ms) => setT(fn, ms),
    clearTimer: (handle) => {
      if (handle != null) clearT(handle);
      return null;
    },
    random: () => random(),

    sessionId: loadSessionId(storage, sessionKey, generateSessionId),
    versionId: options.versionId,
    state: options.state,
    intervalMs: Math.max(MIN_INTERVAL_MS, (options.defaultIntervalS ?? 15) * 1000),

    snapshot: EMPTY_SNAPSHOT,
    listeners: new Set<PresenceListener>(),
    reported: null,

    started: false,
    stopped: false,
    hidden: false,
    pageHidden: false,
  };
}
