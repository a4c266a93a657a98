import { createContext } from './context.js';
import { createHeartbeat } from './heartbeat.js';
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
    leave: lifecycle.leave_,
    destroy: lifecycle.destroy_,
  };

  if (options.autoStart !== false) lifecycle.start_();
  return presence;
}
