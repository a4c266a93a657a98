import type { PresenceError } from './errors.js';
import { MIN_INTERVAL_MS } from './heartbeat.js';
import { DEFAULT_SESSION_KEY, loadSessionId, randomSessionId, storeSessionId } from './session.js';
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
 * globals, this tab's session, the snapshot the app sees, the run flags and the bearer token.
 * Everything else is private to the module that uses it.
 *
 * Internal property names (here and on the module objects: Heartbeat, Live, Views, Lifecycle)
 * end in `_`, public ones never do: the minified bundle shortens every property name ending
 * in `_` (esbuild --mangle-props=_$ in package.json's bundle script).
 */
export interface Context {
  /** The caller's options; getToken and onError are read from here at call time. */
  readonly options_: PresenceOptions;
  /** Without trailing slashes. */
  readonly baseUrl_: string;
  readonly artifactId_: string;
  /** `/v1/artifacts/{artifactId}`, encoded. */
  readonly artifactPath_: string;
  readonly recordViews_: boolean;
  readonly live_: 'auto' | 'poll' | 'off';
  readonly usersLimit_: number;
  readonly maxBackoffMs_: number;
  readonly maxEventSourceFailures_: number;
  /** Input-less time before the tab counts as away (0: never). */
  readonly idleMs_: number;
  /** Input-less time after which engaged time stops counting (Infinity: never). */
  readonly engagedIdleMs_: number;
  readonly now_: () => number;
  /** Takes a new session id for this tab (stored for reloads) and returns it. */
  readonly newSessionId_: () => string;

  /* injected globals, null when the environment has none; the functions call the injected ones without `this` */
  readonly fetch_: FetchLike;
  readonly EventSource_: EventSourceConstructor | null;
  readonly document_: DocumentLike | null;
  readonly window_: WindowLike | null;
  readonly navigator_: NavigatorLike | null;
  readonly setTimeout_: (fn: () => void, ms: number) => TimerHandle;
  /** clearTimeout that accepts null; returns null so `timer = ctx.clearTimer_(timer)` resets the handle. */
  readonly clearTimer_: (handle: TimerHandle | null) => null;
  readonly random_: () => number;

  /* this tab's session on the artifact */
  sessionId_: string;
  versionId_: string | undefined;
  state_: PresenceState | undefined;
  /** Heartbeat interval (the server's once it answered); polling uses it too. */
  intervalMs_: number;

  /* what the app sees */
  snapshot_: PresenceSnapshot;
  readonly listeners_: Set<PresenceListener>;
  /** Last error passed to onError: one getToken() failure is shared by concurrent requests. */
  reported_: PresenceError | null;

  /* run flags */
  started_: boolean;
  stopped_: boolean;
  /** document.visibilityState === 'hidden' */
  hidden_: boolean;
  /** Between pagehide and pageshow. */
  pageHidden_: boolean;
  /** No input for idleMs_. */
  idle_: boolean;
  /** The window has the focus. */
  focused_: boolean;
  /** Engaged time counted and not sent yet (ms), counted up to engagedFrom_; the last input at inputAt_. */
  engagedMs_: number;
  engagedFrom_: number;
  inputAt_: number;

  /* the bearer token (http.ts): requests, the event stream's URL and the pagehide beacon use it */
  /** The last token getToken() returned; null until one did. */
  token_: string | null;
  /** The getToken() call in progress, shared by the requests waiting for it. */
  tokenPromise_: Promise<string> | null;
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
    options_: options,
    baseUrl_: String(options.baseUrl ?? '').replace(/\/+$/, ''),
    artifactId_: artifactId,
    artifactPath_: `/v1/artifacts/${encodeURIComponent(artifactId)}`,
    recordViews_: options.recordViews !== false,
    live_: options.live ?? 'auto',
    usersLimit_: options.usersLimit ?? 100,
    maxBackoffMs_: options.maxBackoffMs ?? 30_000,
    maxEventSourceFailures_: Math.max(1, options.maxEventSourceFailures ?? 3),
    idleMs_: (options.idleAfterS ?? 300) * 1000,
    engagedIdleMs_: (options.engagedIdleAfterS ?? 60) * 1000 || Infinity,
    now_: options.now ?? Date.now,
    newSessionId_: () => storeSessionId(storage, sessionKey, generateSessionId()),

    fetch_: (input, init) => fetchFn(input, init),
    EventSource_: pick<EventSourceConstructor>(options.EventSource, () => g.EventSource),
    document_: pick<DocumentLike>(options.document, () => g.document),
    window_: pick<WindowLike>(options.window, () => g.window),
    navigator_: pick<NavigatorLike>(options.navigator, () => g.navigator),
    setTimeout_: (fn, ms) => setT(fn, ms),
    clearTimer_: (handle) => {
      if (handle != null) clearT(handle);
      return null;
    },
    random_: () => random(),

    sessionId_: loadSessionId(storage, sessionKey, generateSessionId),
    versionId_: options.versionId,
    state_: options.state,
    intervalMs_: Math.max(MIN_INTERVAL_MS, (options.defaultIntervalS ?? 15) * 1000),

    snapshot_: EMPTY_SNAPSHOT,
    listeners_: new Set<PresenceListener>(),
    reported_: null,

    started_: false,
    stopped_: false,
    hidden_: false,
    pageHidden_: false,
    idle_: false,
    focused_: true,
    engagedMs_: 0,
    engagedFrom_: 0,
    inputAt_: 0,

    token_: null,
    tokenPromise_: null,
  };
}
