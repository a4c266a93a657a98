import { createContext } from './context.js';
import { createHeartbeat } from './heartbeat.js';
import { request } from './http.js';
import { createLifecycle } from './lifecycle.js';
import { createLive } from './live.js';
import { fetchPage, whereNow } from './queries.js';
import type { PresenceError } from './errors.js';
import type {
  LatestVersion,
  Presence,
  PresenceListener,
  PresenceOptions,
  PresenceState,
  Privacy,
  PrivacySettings,
  TimelineQuery,
  TimelineResponse,
} from './types.js';
import { createViews } from './views.js';

export { EMPTY_SNAPSHOT } from './snapshot.js';

const privacyPath = (userId: string) => `/v1/users/${encodeURIComponent(userId)}/privacy`;

/**
 * Creates a presence instance for one artifact in this tab: heartbeats, view counting,
 * leave on page close, and a live list of who is online (SSE, falling back to polling).
 */
export function createPresence(options: PresenceOptions): Presence {
  if (!options || typeof options.getToken !== 'function') throw new TypeError('createPresence: getToken() is required');
  if (!options.artifactId) throw new TypeError('createPresence: artifactId is required');

  const ctx = createContext(options);
  // The lifecycle stops the other modules, which report fatal errors back to it.
  const fail = (err: PresenceError) => lifecycle.fail_(err);
  const hb = createHeartbeat(ctx, fail);
  const views = createViews(ctx, fail);
  const lifecycle = createLifecycle(ctx, hb, views, createLive(ctx, fail));

  const presence: Presence = {
    get online() {
      return ctx.snapshot_.online;
    },
    get sessions() {
      return ctx.snapshot_.sessions;
    },
    get users() {
      return ctx.snapshot_.users;
    },
    get error() {
      return ctx.snapshot_.error;
    },
    get status() {
      return ctx.snapshot_.status;
    },
    get sessionId() {
      return ctx.sessionId_;
    },
    get artifactId() {
      return ctx.artifactId_;
    },
    get versionId() {
      return ctx.versionId_;
    },
    get state() {
      return ctx.state_;
    },
    getSnapshot: () => ctx.snapshot_,
    subscribe(listener: PresenceListener) {
      ctx.listeners_.add(listener);
      return () => {
        ctx.listeners_.delete(listener);
      };
    },
    start: lifecycle.start_,
    setState(next: PresenceState | undefined) {
      if (ctx.stopped_) return;
      ctx.state_ = next;
      hb.now_();
    },
    setVersion(next: string) {
      if (ctx.stopped_) return;
      if (typeof next !== 'string' || next === '') throw new TypeError('setVersion: versionId must be a non-empty string');
      ctx.versionId_ = next;
      hb.now_();
      views.record_();
    },
    latest: () =>
      request<LatestVersion>(ctx, 'seen', 'GET', ctx.artifactPath_ + '/latest').catch((e: PresenceError) => {
        if (e.status === 404) return null;
        throw e;
      }),
    unseen: (userId: string, ids: readonly string[]) =>
      request<{ artifacts: LatestVersion[] }>(
        ctx,
        'seen',
        'GET',
        `/v1/users/${encodeURIComponent(userId)}/unseen?` + ids.map((a) => 'artifactId=' + encodeURIComponent(a)).join('&'),
      ).then((r) => r.artifacts),
    timeline(query: TimelineQuery = {}) {
      const q = new URLSearchParams();
      for (const k of ['since', 'until', 'step'] as const) {
        const v = query[k];
        if (v != null) q.set(k, v instanceof Date ? v.toISOString() : v);
      }
      const path = `/v1/artifacts/${encodeURIComponent(ctx.artifactId_)}/timeline?${q}`;
      return request<TimelineResponse>(ctx, 'timeline', 'GET', path);
    },
    leave: lifecycle.leave_,
    destroy: lifecycle.destroy_,
    fetchPresence: (o) => fetchPage(ctx, o),
    whereNow: (userId) => whereNow(ctx, userId),
    getPrivacy: (userId: string) => request<Privacy>(ctx, 'privacy', 'GET', privacyPath(userId)),
    setPrivacy: (userId: string, settings: PrivacySettings) =>
      request<Privacy>(ctx, 'privacy', 'PUT', privacyPath(userId), settings),
  };

  if (options.autoStart !== false) lifecycle.start_();
  return presence;
}
