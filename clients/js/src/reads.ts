/*
 * Reads and settings a dashboard, an inbox or a settings page asks for, without a presence
 * instance: a page of an artifact's presence list (e.g. who was here recently), its latest version, a user's unseen artifacts, an artifact's timeline,
 * where a user is now, a user's privacy settings. A separate entry point
 * (`@presence-svc/client/reads`): the browser bundle a tab loads for its presence loop does
 * not carry them. Requests, the 401 token refresh and the errors (PresenceError, same
 * `operation` values) are the core's (http.ts).
 */
import { PresenceError } from './errors.js';
import { request, type HttpContext } from './http.js';
import type {
  LatestVersion,
  PageOptions,
  PresencePage,
  Privacy,
  PrivacySettings,
  Reads,
  ReadsOptions,
  TimelineQuery,
  TimelineResponse,
  WhereNow,
} from './types.js';

export { PresenceError } from './errors.js';
export type { PresenceOperation, ProblemDetails } from './errors.js';
export type {
  LatestVersion,
  PageOptions,
  PresencePage,
  Privacy,
  PrivacySettings,
  Reads,
  ReadsOptions,
  RecentUser,
  SessionMeta,
  TimelinePoint,
  TimelineQuery,
  TimelineResponse,
  Visibility,
  WhereNow,
  WhereOnline,
  WhereRecent,
} from './types.js';

const PASSED = ['cursor', 'recentLimit', 'recentCursor'] as const;
const artifactPath = (artifactId: string) => `/v1/artifacts/${encodeURIComponent(artifactId)}`;
const userPath = (userId: string) => `/v1/users/${encodeURIComponent(userId)}`;

/** Reads for one service and token source; the token is shared by its calls and refreshed once after a 401. */
export function createReads(options: ReadsOptions): Reads {
  if (!options || typeof options.getToken !== 'function') throw new TypeError('createReads: getToken() is required');
  const fetchFn = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  const ctx: HttpContext = {
    options_: options,
    baseUrl_: String(options.baseUrl ?? '').replace(/\/+$/, ''),
    fetch_: (input, init) => fetchFn(input, init),
    token_: null,
    tokenPromise_: null,
    stopped_: false,
  };
  return {
    latest: (artifactId) =>
      request<LatestVersion>(ctx, 'seen', 'GET', artifactPath(artifactId) + '/latest').catch((e: PresenceError) => {
        if (e instanceof PresenceError && e.status === 404) return null;
        throw e;
      }),
    unseen: (userId, artifactIds) =>
      request<{ artifacts: LatestVersion[] }>(
        ctx,
        'seen',
        'GET',
        userPath(userId) + '/unseen?' + artifactIds.map((a) => 'artifactId=' + encodeURIComponent(a)).join('&'),
      ).then((r) => r.artifacts),
    timeline(artifactId, query: TimelineQuery = {}) {
      const q = new URLSearchParams();
      for (const k of ['since', 'until', 'step'] as const) {
        const v = query[k];
        if (v != null) q.set(k, v instanceof Date ? v.toISOString() : v);
      }
      return request<TimelineResponse>(ctx, 'timeline', 'GET', `${artifactPath(artifactId)}/timeline?${q}`);
    },
    fetchPresence(artifactId, o: PageOptions = {}) {
      const q = new URLSearchParams({ limit: String(o.limit ?? 100) });
      const include = [o.includeSessions && 'sessions', o.includeRecent && 'recent'].filter(Boolean);
      if (include.length) q.set('include', include.join(','));
      for (const k of PASSED) if (o[k] != null) q.set(k, String(o[k]));
      return request<PresencePage>(ctx, 'presence', 'GET', `${artifactPath(artifactId)}/presence?${q}`);
    },
    whereNow: (userId) => request<WhereNow>(ctx, 'presence', 'GET', userPath(userId) + '/presence'),
    getPrivacy: (userId) => request<Privacy>(ctx, 'privacy', 'GET', userPath(userId) + '/privacy'),
    setPrivacy: (userId, settings: PrivacySettings) => request<Privacy>(ctx, 'privacy', 'PUT', userPath(userId) + '/privacy', settings),
  };
}
