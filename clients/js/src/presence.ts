import { createContext } from './context.js';
import { createHeartbeat } from './heartbeat.js';
import { createHttp } from './http.js';
import { createLifecycle } from './lifecycle.js';
import { createLive } from './live.js';
import type { PresenceError } from './errors.js';
import type { Presence, PresenceListener, PresenceOptions, PresenceState } from './types.js';
import { createViews } from './views.js';

export { EMPTY_SNAPSHOT } from './snapshot.js';

/**
 * Creates a presence instance for one artifact in this tab: heartbeats, view counting,
 * leave on page close, and a live list of who is online (SSE, falling back to polling).
 */
export function createPresence(options: PresenceOptions): Presence {
  if (!options || typeof options.getToken !== 'function') throw new TypeError('createPresence: getToken() is required');
  if (!options.artifactId) throw new TypeError('createPresence: artifactId is required');

  const ctx = createContext(options);
  const http = createHttp(ctx);
  // The lifecycle stops the other modules, which report fatal errors back to it.
  const fail = (err: PresenceError) => lifecycle.fail(err);
  const hb = createHeartbeat(ctx, http, { fail, sessionChanged: () => lifecycle.sessionChanged() });
  const views = createViews(ctx, http, fail);
  const lifecycle = createLifecycle(ctx, hb, views, createLive(ctx, http, fail));

  const presence: Presence = {
    get online() {
      return ctx.snapshot.online;
    },
    get sessions() {
      return ctx.snapshot.sessions;
    },
    get users() {
      return ctx.snapshot.users;
    },
    get error() {
      return ctx.snapshot.error;
    },
    get status() {
      return ctx.snapshot.status;
    },
    get sessionId() {
      return ctx.sessionId;
    },
    get artifactId() {
      return ctx.artifactId;
    },
    get versionId() {
      return ctx.versionId;
    },
    get state() {
      return ctx.state;
    },
    getSnapshot: () => ctx.snapshot,
    subscribe(listener: PresenceListener) {
      ctx.listeners.add(listener);
      return () => {
        ctx.listeners.delete(listener);
      };
    },
    start: lifecycle.start,
    setState(next: PresenceState | undefined) {
      if (ctx.stopped) return;
      ctx.state = next;
      hb.now();
    },
    setVersion(next: string) {
      if (ctx.stopped) return;
      if (typeof next !== 'string' || next === '') throw new TypeError('setVersion: versionId must be a non-empty string');
      ctx.versionId = next;
      hb.now();
      views.record();
    },
    leave: lifecycle.leave,
    destroy: lifecycle.destroy,
  };

  if (options.autoStart !== false) lifecycle.start();
  return presence;
}
