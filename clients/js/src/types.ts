/** Free-form per-session state sent with heartbeats (e.g. `{ typing: true }`). */
export type PresenceState = Record<string, unknown>;

/** One user currently online on an artifact, as the server reports it. */
export interface PresenceUser {
  userId: string;
  name?: string | null;
  avatarUrl?: string | null;
  versionId?: string | null;
  /** Server timestamp of the user's last heartbeat (format as the server sends it). */
  lastSeen?: string | number | null;
  /** Number of sessions (tabs) of this user that are online. */
  sessions?: number;
  state?: PresenceState | null;
  /** `away` when every session of the user is hidden or idle (a service that tracks it). */
  status?: 'active' | 'away';
  /** Each online session of the user (never its id), with `includeSessions`. */
  sessionList?: SessionMeta[];
}

/** One online session of a user, as `sessionList` lists it. */
export interface SessionMeta {
  versionId?: string | null;
  state?: PresenceState | null;
  lastSeen: string;
  status?: 'active' | 'away';
}

/** A user seen on the artifact recently and offline now (`includeRecent`), newest first. */
export interface RecentUser {
  userId: string;
  name?: string | null;
  avatarUrl?: string | null;
  lastSeen: string;
  /** How their last session went: `left`, `timeout`, or null. */
  reason?: 'left' | 'timeout' | null;
}

/** What `fetchPresence()` asks for; every field is optional. */
export interface PageOptions {
  /** Users per page, 1-500. Default 100. */
  limit?: number;
  /** `nextCursor` of the previous page. */
  cursor?: string;
  /** Adds `sessionList` to each row. */
  includeSessions?: boolean;
  /** Adds `recent` (who was here recently, offline now) and `recentNextCursor`. */
  includeRecent?: boolean;
  /** Recent users per page, 1-500 (with `includeRecent`). */
  recentLimit?: number;
  /** `recentNextCursor` of the previous page (with `includeRecent`). */
  recentCursor?: string;
}

/** An artifact the user is online on (`whereNow`). */
export interface WhereOnline {
  artifactId: string;
  /** Of the user's most recent session there. */
  versionId?: string | null;
  /** `away` when every session of theirs there is away. */
  status: 'active' | 'away';
  lastSeen: string;
  sessions: number;
}

/** An artifact the user left recently (`whereNow`). */
export interface WhereRecent {
  artifactId: string;
  lastSeen: string;
  reason?: 'left' | 'timeout' | null;
}

/** `GET /v1/users/{userId}/presence`: where the user is now, most recent first. */
export interface WhereNow {
  userId: string;
  online: WhereOnline[];
  recent: WhereRecent[];
}

/** What the instance is doing right now. */
export type PresenceStatus =
  /** Created, first heartbeat not answered yet. */
  | 'connecting'
  /** Heartbeats are being answered. */
  | 'active'
  /** Tab hidden (or page hidden): no heartbeats until it is visible again. */
  | 'hidden'
  /** A transient error (503, network, ...): backing off, will recover by itself. */
  | 'retrying'
  /** Stopped for good: `leave()`, `destroy()` or a fatal error (see `error`). */
  | 'stopped';

/** How live updates of `users` arrive. */
export type PresenceTransport = 'connecting' | 'events' | 'polling' | 'off';

/**
 * How the service streams the artifact: `exact` (an event per change) or `interval` (a large
 * room: the counts and who came and went, every couple of seconds; `users` is then the first
 * page plus those changes, a sample of who is there).
 */
export type PresenceMode = 'exact' | 'interval';

/** Immutable snapshot of the presence state; a new object on every change. */
export interface PresenceSnapshot {
  /** Unique users online. */
  readonly online: number;
  /** Sessions (tabs) online. */
  readonly sessions: number;
  readonly users: readonly PresenceUser[];
  /** Total views of the current version, once a view was recorded. */
  readonly views: number | null;
  readonly uniqueViewers: number | null;
  readonly status: PresenceStatus;
  readonly transport: PresenceTransport;
  readonly mode: PresenceMode;
  /** Last error; cleared when the failing operation succeeds again. */
  readonly error: import('./errors.js').PresenceError | null;
}

export type PresenceListener = (snapshot: PresenceSnapshot) => void;

/* ---- minimal shapes of the browser globals we use (all injectable) ---- */

export interface EventTargetLike {
  addEventListener(type: string, listener: (event: any) => void): void;
  removeEventListener(type: string, listener: (event: any) => void): void;
}

export interface DocumentLike extends EventTargetLike {
  readonly visibilityState: string;
  /** Whether the page has the focus (engaged time); absent: taken as focused. */
  hasFocus?(): boolean;
}

export type WindowLike = EventTargetLike;

export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

export interface NavigatorLike {
  sendBeacon?(url: string, data?: BodyInit | null): boolean;
}

export interface EventSourceLike extends EventTargetLike {
  readonly readyState: number;
  close(): void;
}

export type EventSourceConstructor = new (url: string, init?: { withCredentials?: boolean }) => EventSourceLike;

export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

export type TimerHandle = unknown;

export interface PresenceOptions {
  /** Base URL of presence-svc, e.g. `https://presence.example.com` (no trailing `/v1`). */
  baseUrl: string;
  /** Returns a bearer token. Called once at start and again (once) after a 401. */
  getToken: () => string | Promise<string>;
  artifactId: string;
  /** Version being looked at; enables view counting. */
  versionId?: string;
  /** Initial per-session state sent with heartbeats. */
  state?: PresenceState;
  /** Non-transient errors (401 after a token refresh, 403, 409, other 4xx), and getToken failures (retried too). */
  onError?: (error: import('./errors.js').PresenceError) => void;

  /** Record a view (`POST /v1/views`) on start and on `setVersion`. Default true. */
  recordViews?: boolean;
  /** Live updates: `'auto'` (EventSource, falling back to polling), `'poll'`, or `'off'`. Default `'auto'`. */
  live?: 'auto' | 'poll' | 'off';
  /** Page size of the presence endpoint when polling. Default 100. */
  usersLimit?: number;
  /** Heartbeat interval before the server answered one, in seconds. Default 15. */
  defaultIntervalS?: number;
  /** Seconds without input (pointer, keys, wheel) after which heartbeats say `away`; 0: never. Default 300. */
  idleAfterS?: number;
  /**
   * Engaged time (sent as `engagedMs` with each heartbeat and the page-close beacon) counts while the
   * tab is visible and focused and an input (pointer, key, wheel, scroll, touch) came within this many
   * seconds. Default 60; 0: no input needed.
   */
  engagedIdleAfterS?: number;
  /**
   * Cap of the exponential backoff for transient errors, in ms. Default 30000. A longer Retry-After is
   * still waited out, up to 60 s.
   */
  maxBackoffMs?: number;
  /** Consecutive EventSource failures (without an event in between) before polling. Default 3. */
  maxEventSourceFailures?: number;
  /** sessionStorage key for the tab's session id. Default `presence-svc:session`. */
  sessionKey?: string;
  /** Start immediately. Default true; otherwise call `start()`. */
  autoStart?: boolean;

  /* ---- injectable globals (default: the browser's) ---- */
  fetch?: FetchLike;
  /** Pass `null` to force polling. */
  EventSource?: EventSourceConstructor | null;
  document?: DocumentLike | null;
  window?: WindowLike | null;
  sessionStorage?: StorageLike | null;
  navigator?: NavigatorLike | null;
  setTimeout?: (fn: () => void, ms: number) => TimerHandle;
  clearTimeout?: (handle: TimerHandle) => void;
  /** Returns a number in [0, 1); used for jitter. */
  random?: () => number;
  /** The clock engaged time is measured with, in ms (default: Date.now). */
  now?: () => number;
  /** Generates session ids (default: crypto.randomUUID without dashes). */
  generateSessionId?: () => string;
}

export interface HeartbeatResponse {
  online: number;
  sessions: number;
  intervalS: number;
}

export interface LeaveResponse {
  online: number;
  sessions: number;
}

export interface ViewResponse {
  counted: boolean;
  views: number;
  uniqueViewers: number;
}

/** `reads.timeline()`'s range: `until` defaults to now, `since` to an hour before it. */
export interface TimelineQuery {
  since?: string | Date;
  until?: string | Date;
  step?: '1m' | '1h' | '1d';
}

export interface TimelinePoint {
  /** The step's start (ISO 8601). */
  t: string;
  /** The most users online at once in the step. */
  online: number;
  sessions: number;
}

export interface TimelineResponse {
  artifactId: string;
  step: '1m' | '1h' | '1d';
  points: TimelinePoint[];
  /** The most users of the range, and the start of the first step that had them. */
  peak: { online: number; at: string | null };
}

export interface PresencePage {
  online: number;
  sessions: number;
  /** Users active and away (a service that tracks it). */
  active?: number;
  away?: number;
  users: PresenceUser[];
  nextCursor?: string | null;
  /** False when the service could not read the users directory: names are null. */
  namesJoined?: boolean;
  /** Only with `includeRecent`: who was here recently and is offline now, newest first. */
  recent?: RecentUser[] | null;
  recentNextCursor?: string | null;
}

/** An artifact's latest version: the one its audience is expected to read. */
export interface LatestVersion {
  artifactId: string;
  versionId: string;
  /** ISO 8601, when it was marked latest. */
  setAt: string;
}

/** A bucket of a version's engaged-time histogram: viewers whose engaged time is at least `fromS` (below the next bucket's). */
export interface HistogramBucket {
  fromS: number;
  viewers: number;
}

/** One version's row of `reads.stats()`. */
export interface VersionStats {
  versionId: string;
  views: number;
  uniqueViewers: number;
  /** ISO 8601. */
  lastViewedAt: string;
  /** The version's engaged time, all viewers together. */
  engagedMs: number;
  /** Viewers whose engaged time on it reached the service's read-after time. */
  readers: number;
  histogram: HistogramBucket[];
}

/** `reads.stats()`: views and unique viewers of an artifact and of each version, most recently viewed first. */
export interface ArtifactStats {
  artifactId: string;
  views: number;
  /** Users who viewed any version. */
  uniqueViewers: number;
  /** ISO 8601; null when never viewed. */
  lastViewedAt: string | null;
  engagedMs: number;
  versions: VersionStats[];
}

/** A viewer of a version (`reads.viewers()`); `name`, `avatarUrl` from the users directory. */
export interface Viewer {
  userId: string;
  name: string | null;
  avatarUrl: string | null;
  /** That user's counted views of the version. */
  views: number;
  firstViewedAt: string;
  lastViewedAt: string;
  engagedMs: number;
}

/** A page of a version's viewers, most recent view first. */
export interface ViewersPage {
  viewers: Viewer[];
  /** Pass back as `cursor` for the next page; null on the last. */
  nextCursor: string | null;
  /** False when the users directory could not be read: the rows come without names. */
  namesJoined: boolean;
  /** Viewers left out because their view history is hidden (they still count). */
  hiddenViewers: number;
}

/** `reads.viewers()`'s page: `limit` 1-500, default 100. */
export interface ViewersQuery {
  limit?: number;
  cursor?: string;
}

/** `reads.seen()`'s version (default: the latest one) and page. */
export interface SeenQuery extends ViewersQuery {
  versionId?: string;
}

export interface SeenViewer extends Viewer {
  /** Their engaged time on the version reached the service's read-after time. */
  read: boolean;
}

/** Who has seen a version: counts (hidden viewers included) and a page of them, most recent view first. */
export interface SeenPage {
  artifactId: string;
  versionId: string;
  seen: number;
  read: number;
  /** Viewers who hid their view history: counted, not listed. */
  hiddenViewers: number;
  viewers: SeenViewer[];
  nextCursor: string | null;
  namesJoined: boolean;
}

/** `reads.seenCheck()`: which of the given users saw (and read) the version, in the order given. */
export interface SeenCheck {
  versionId: string;
  seen: string[];
  read: string[];
  notSeen: string[];
  /** Of the given users, those who viewed it but hid their view history (in none of the lists). */
  hiddenViewers: number;
}

export interface Presence {
  readonly online: number;
  readonly sessions: number;
  readonly users: readonly PresenceUser[];
  readonly error: import('./errors.js').PresenceError | null;
  readonly status: PresenceStatus;
  readonly sessionId: string;
  readonly artifactId: string;
  readonly versionId: string | undefined;
  readonly state: PresenceState | undefined;
  /** Current immutable snapshot (stable reference until something changes). */
  getSnapshot(): PresenceSnapshot;
  /** Called on every change; returns an unsubscribe function. */
  subscribe(listener: PresenceListener): () => void;
  /** Starts heartbeats/live updates (only needed with `autoStart: false`). */
  start(): void;
  /** Replaces the session state and sends a heartbeat at once (deferred while hidden). */
  setState(state: PresenceState | undefined): void;
  /** Switches version: heartbeat at once and records a view of the new version. */
  setVersion(versionId: string): void;
  /** Explicit leave (no grace) and stop everything. */
  leave(): Promise<LeaveResponse | null>;
  /** Stop everything; sends a leave with grace so a quick re-create (remount) is seamless. */
  destroy(): void;
}

export type Visibility = 'visible' | 'hidden';

/** Hidden: still counted everywhere, listed to nobody but the user. */
export interface PrivacySettings {
  viewHistory?: Visibility;
  presence?: Visibility;
}

export interface Privacy {
  userId: string;
  viewHistory: Visibility;
  presence: Visibility;
  /** ISO time of the last change; null when never set. */
  updatedAt: string | null;
}

/** `createReads()`'s options: the service and the token, as for `createPresence`. */
export interface ReadsOptions {
  /** Base URL of presence-svc (no trailing `/v1`). */
  baseUrl: string;
  /** Returns a bearer token. Called at the first request and again (once) after a 401. */
  getToken: () => string | Promise<string>;
  /** Default: the global fetch. */
  fetch?: FetchLike;
  /**
   * Attempts in all for a call meeting a transient failure (`PresenceError.transient`: no answer, a
   * getToken() failure, 408, 429, 5xx), retried with exponential backoff and jitter, never sooner than
   * Retry-After; then it rejects with the last PresenceError. Default 5; 1: no retry. Other 4xx are
   * never retried.
   */
  maxAttempts?: number;
  /** Cap of the exponential backoff between attempts, in ms (a longer Retry-After is still waited out). Default 30000. */
  maxBackoffMs?: number;
  /**
   * The longest Retry-After a call waits out, in ms; a longer one rejects the call at once with that
   * PresenceError (its `retryAfterMs` says when to come back). Default 60000.
   */
  maxRetryAfterMs?: number;
  /**
   * Aborts the client's requests in flight and its waits between attempts: a call then rejects with
   * its last PresenceError at once, without another attempt.
   */
  signal?: AbortSignal;

  /* ---- injectable globals (default: the global ones) ---- */
  setTimeout?: (fn: () => void, ms: number) => TimerHandle;
  clearTimeout?: (handle: TimerHandle) => void;
  /** Returns a number in [0, 1); used for jitter. */
  random?: () => number;
}

/**
 * Reads and settings outside a tab's presence loop (`@presence-svc/client/reads`). Each retries a
 * transient failure by itself (ReadsOptions.maxAttempts), then rejects with a PresenceError: operation
 * `seen` (latest, unseen, seen, seenCheck), `stats` (stats, viewers), `timeline`, `presence`
 * (fetchPresence, whereNow), `privacy`, or `token` (getToken() failed).
 */
export interface Reads {
  /** An artifact's latest version (`GET .../latest`); null when none is set. */
  latest(artifactId: string): Promise<LatestVersion | null>;
  /** Of `artifactIds` (up to 1000), those whose latest version `userId` (this token's user) has not viewed. */
  unseen(userId: string, artifactIds: readonly string[]): Promise<LatestVersion[]>;
  /**
   * How many have seen and read the latest version (or `versionId`), and a page of who, most recent
   * view first (`GET .../seen`; a dashboard or publisher token). Rejects with 404 when no version is
   * given and none is latest.
   */
  seen(artifactId: string, query?: SeenQuery): Promise<SeenPage>;
  /**
   * Which of `userIds` (1 to 1000, an app's audience) have seen and read the latest version (or
   * `versionId`), in one call (`POST .../seen/check`, a read; a dashboard or publisher token).
   */
  seenCheck(artifactId: string, userIds: readonly string[], options?: { versionId?: string }): Promise<SeenCheck>;
  /** Views, unique viewers and engaged time of an artifact and of each version (a dashboard token). */
  stats(artifactId: string): Promise<ArtifactStats>;
  /** A page of who viewed `versionId`, most recent view first, with names (a dashboard token). */
  viewers(artifactId: string, versionId: string, query?: ViewersQuery): Promise<ViewersPage>;
  /** An artifact's most users and sessions online at once per step (needs a dashboard token). */
  timeline(artifactId: string, query?: TimelineQuery): Promise<TimelineResponse>;
  /** One page of an artifact's presence list (`GET .../presence`), e.g. with `includeRecent`. */
  fetchPresence(artifactId: string, options?: PageOptions): Promise<PresencePage>;
  /** Where `userId` is online now and was recently (the user's own token, or a dashboard's). */
  whereNow(userId: string): Promise<WhereNow>;
  /** The privacy settings of `userId` (the token's own user, or any with an admin token). */
  getPrivacy(userId: string): Promise<Privacy>;
  /** Hides (or shows) `userId`'s view history and/or presence; a field left out is kept. */
  setPrivacy(userId: string, settings: PrivacySettings): Promise<Privacy>;
}
