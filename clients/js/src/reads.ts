/*
 * Reads and settings a dashboard, an inbox or a settings page asks for, without a presence
 * instance: a page of an artifact's presence list (e.g. who was here recently), its latest version,
 * a user's unseen artifacts, who has seen a version (a page, or a check of an audience), an
 * artifact's stats, a version's viewers, its timeline, where a user is now, a user's privacy
 * settings. A separate entry point (`@presence-svc/client/reads`): the browser bundle a tab loads
 * for its presence loop does not carry them. Requests, the 401 token refresh, the errors
 * (PresenceError, same `operation` values) and the backoff are the core's (http.ts). Every call
 * here is idempotent (GETs, PUT privacy, and POST seen/check, a read whose list of users is too
 * long for a query), so what `PresenceError.transient` says is retried by itself, with the Python
 * SDK's rules (presence_svc/client/retry.py): `maxAttempts` in all, Retry-After waited out up to
 * `maxRetryAfterMs`, a longer one rejected at once.
 */
import { PresenceError, type PresenceOperation } from './errors.js';
import { MAX_RETRY_AFTER_MS, backoff, request, toPresenceError, type BackoffContext, type HttpContext } from './http.js';
import type {
  ArtifactStats,
  LatestVersion,
  PageOptions,
  PresencePage,
  Privacy,
  PrivacySettings,
  Reads,
  ReadsOptions,
  SeenCheck,
  SeenPage,
  SeenQuery,
  TimelineQuery,
  TimelineResponse,
  ViewersPage,
  ViewersQuery,
  WhereNow,
} from './types.js';

export { PresenceError } from './errors.js';
export type { PresenceOperation, ProblemDetails } from './errors.js';
export type {
  ArtifactStats,
  HistogramBucket,
  LatestVersion,
  PageOptions,
  PresencePage,
  Privacy,
  PrivacySettings,
  Reads,
  ReadsOptions,
  RecentUser,
  SeenCheck,
  SeenPage,
  SeenQuery,
  SeenViewer,
  SessionMeta,
  TimelinePoint,
  TimelineQuery,
  TimelineResponse,
  VersionStats,
  Viewer,
  ViewersPage,
  ViewersQuery,
  Visibility,
  WhereNow,
  WhereOnline,
  WhereRecent,
} from './types.js';

const PASSED = ['cursor', 'recentLimit', 'recentCursor'] as const;
const artifactPath = (artifactId: string) => `/v1/artifacts/${encodeURIComponent(artifactId)}`;
const userPath = (userId: string) => `/v1/users/${encodeURIComponent(userId)}`;

/** `?limit=…` and the other parameters given (an absent or null one is left to the service's default). */
function pageQuery(limit: number | undefined, params: Record<string, string | null | undefined>): string {
  const q = new URLSearchParams({ limit: String(limit ?? 100) });
  for (const [k, v] of Object.entries(params)) if (v != null) q.set(k, v);
  return '?' + q;
}

/** Reads for one service and token source; the token is shared by its calls and refreshed once after a 401. */
export function createReads(options: ReadsOptions): Reads {
  if (!options || typeof options.getToken !== 'function') throw new TypeError('createReads: getToken() is required');
  const { signal } = options;
  const fetchFn = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  const setT = options.setTimeout ?? ((fn: () => void, ms: number) => globalThis.setTimeout(fn, ms));
  const clearT = options.clearTimeout ?? ((h) => globalThis.clearTimeout(h as ReturnType<typeof setTimeout>));
  const random = options.random ?? Math.random;
  const maxAttempts = Math.max(1, options.maxAttempts ?? 5);
  // setTimeout fires at once past 2^31 - 1 ms: a longer bound would retry back to back.
  const maxRetryAfterMs = Math.min(options.maxRetryAfterMs ?? MAX_RETRY_AFTER_MS, 2 ** 31 - 1);
  const backoffCtx: BackoffContext = { maxBackoffMs_: options.maxBackoffMs ?? 30_000, random_: () => random() };
  const ctx: HttpContext = {
    options_: options,
    baseUrl_: String(options.baseUrl ?? '').replace(/\/+$/, ''),
    fetch_: (input, init) => fetchFn(input, signal ? { ...init, signal } : init),
    token_: null,
    tokenPromise_: null,
    stopped_: false,
  };

  /** Resolves after `ms`; rejects with `err` (the failure it was to retry) if `signal` aborts first. */
  const wait = (ms: number, err: PresenceError) =>
    new Promise<void>((resolve, reject) => {
      const abort = () => {
        clearT(timer);
        reject(err);
      };
      const timer = setT(() => {
        signal?.removeEventListener('abort', abort);
        resolve();
      }, ms);
      signal?.addEventListener('abort', abort, { once: true });
    });

  /**
   * `request`, retried with backoff on transient failures: `maxAttempts` in all, then the last error;
   * at once when the service asks for a wait longer than `maxRetryAfterMs` (its retryAfterMs says it).
   */
  async function call<T>(operation: PresenceOperation, method: 'GET' | 'POST' | 'PUT', path: string, body?: unknown): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await request<T>(ctx, operation, method, path, body);
      } catch (e) {
        const err = toPresenceError(e, operation);
        const tooLong = err.retryAfterMs != null && err.retryAfterMs > maxRetryAfterMs;
        if (attempt >= maxAttempts || !err.transient || tooLong || signal?.aborted) throw err;
        await wait(backoff(backoffCtx, attempt, err.retryAfterMs, maxRetryAfterMs), err);
      }
    }
  }

  return {
    latest: (artifactId) =>
      call<LatestVersion>('seen', 'GET', artifactPath(artifactId) + '/latest').catch((e: PresenceError) => {
        if (e instanceof PresenceError && e.status === 404) return null;
        throw e;
      }),
    unseen: (userId, artifactIds) =>
      call<{ artifacts: LatestVersion[] }>(
        'seen',
        'GET',
        userPath(userId) + '/unseen?' + artifactIds.map((a) => 'artifactId=' + encodeURIComponent(a)).join('&'),
      ).then((r) => r.artifacts),
    seen: (artifactId, o: SeenQuery = {}) =>
      call<SeenPage>('seen', 'GET', `${artifactPath(artifactId)}/seen${pageQuery(o.limit, { versionId: o.versionId, cursor: o.cursor })}`),
    seenCheck: (artifactId, userIds, o: { versionId?: string } = {}) =>
      call<SeenCheck>('seen', 'POST', artifactPath(artifactId) + '/seen/check', { userIds, versionId: o.versionId }),
    stats: (artifactId) => call<ArtifactStats>('stats', 'GET', artifactPath(artifactId) + '/stats'),
    viewers: (artifactId, versionId, o: ViewersQuery = {}) =>
      call<ViewersPage>(
        'stats',
        'GET',
        `${artifactPath(artifactId)}/versions/${encodeURIComponent(versionId)}/viewers${pageQuery(o.limit, { cursor: o.cursor })}`,
      ),
    timeline(artifactId, query: TimelineQuery = {}) {
      const q = new URLSearchParams();
      for (const k of ['since', 'until', 'step'] as const) {
        const v = query[k];
        if (v != null) q.set(k, v instanceof Date ? v.toISOString() : v);
      }
      return call<TimelineResponse>('timeline', 'GET', `${artifactPath(artifactId)}/timeline?${q}`);
    },
    fetchPresence(artifactId, o: PageOptions = {}) {
      const q = new URLSearchParams({ limit: String(o.limit ?? 100) });
      const include = [o.includeSessions && 'sessions', o.includeRecent && 'recent'].filter(Boolean);
      if (include.length) q.set('include', include.join(','));
      for (const k of PASSED) if (o[k] != null) q.set(k, String(o[k]));
      return call<PresencePage>('presence', 'GET', `${artifactPath(artifactId)}/presence?${q}`);
    },
    whereNow: (userId) => call<WhereNow>('presence', 'GET', userPath(userId) + '/presence'),
    getPrivacy: (userId) => call<Privacy>('privacy', 'GET', userPath(userId) + '/privacy'),
    setPrivacy: (userId, settings: PrivacySettings) => call<Privacy>('privacy', 'PUT', userPath(userId) + '/privacy', settings),
  };
}
