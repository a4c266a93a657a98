import type { Context } from './context.js';
import type { PresenceError } from './errors.js';
import type { Heartbeat } from './heartbeat.js';
import { toPresenceError } from './http.js';
import type { Live } from './live.js';
import { report, update } from './snapshot.js';
import type { LeaveResponse } from './types.js';
import type { Views } from './views.js';

/**
 * Running instances per (baseUrl, artifact, session) in this tab. A destroyed instance skips its
 * leave when another one for the same session is running (React StrictMode remounts, two components).
 */
const running = new Map<string, number>();

/** Start, stop, and the page's visibility and pagehide/pageshow driving the other modules. */
export interface Lifecycle {
  start(): void;
  leave(): Promise<LeaveResponse | null>;
  destroy(): void;
  /** Reports a fatal error and stops. */
  fail(err: PresenceError): void;
  /** Re-registers the instance under its new session id. */
  sessionChanged(): void;
}

export function createLifecycle(ctx: Context, hb: Heartbeat, views: Views, live: Live): Lifecycle {
  let runningKey: string | null = null;

  function isHidden(): boolean {
    return ctx.document?.visibilityState === 'hidden';
  }

  function onVisibilityChange(): void {
    if (ctx.stopped) return;
    const hidden = isHidden();
    if (hidden === ctx.hidden) return;
    ctx.hidden = hidden;
    if (hidden) {
      hb.pause();
      live.hide();
      update(ctx, { status: 'hidden' });
      return;
    }
    update(ctx, { status: hb.joined ? 'active' : 'connecting' });
    hb.now();
    views.record();
    live.show();
  }

  function onPageHide(): void {
    if (!ctx.started || ctx.stopped || ctx.pageHidden) return;
    ctx.pageHidden = true;
    const wasPresent = hb.pageHide();
    live.stop();
    if (wasPresent) hb.beaconLeave();
  }

  function onPageShow(): void {
    // Back from the back/forward cache: the grace leave is cancelled by this heartbeat if quick enough.
    if (ctx.stopped || !ctx.pageHidden) return;
    ctx.pageHidden = false;
    ctx.hidden = isHidden();
    hb.now();
    live.resume();
  }

  function listen(add: boolean): void {
    const method = add ? 'addEventListener' : 'removeEventListener';
    ctx.document?.[method]('visibilitychange', onVisibilityChange);
    ctx.window?.[method]('pagehide', onPageHide);
    ctx.window?.[method]('pageshow', onPageShow);
  }

  function register(): void {
    runningKey = `${ctx.baseUrl}\n${ctx.artifactId}\n${ctx.sessionId}`;
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
    ctx.stopped = true;
    unregister();
    hb.pause();
    views.stop();
    live.stop();
    if (ctx.started) listen(false);
    update(ctx, { status: 'stopped', transport: 'off', error: error ?? ctx.snapshot.error });
  }

  return {
    start() {
      if (ctx.started || ctx.stopped) return;
      ctx.started = true;
      register();
      listen(true);
      ctx.hidden = isHidden();
      if (ctx.hidden) update(ctx, { status: 'hidden' });
      hb.now(); // at once (deferred to the first visibility if the tab starts hidden)
      views.record();
      live.start();
    },

    async leave() {
      if (ctx.stopped) return null;
      const wasStarted = ctx.started && !ctx.pageHidden;
      halt(null);
      if (!wasStarted) return null;
      try {
        return await hb.leave();
      } catch (e) {
        const err = toPresenceError(e, 'leave');
        if (!err.transient || err.operation === 'token') report(ctx, err);
        update(ctx, { error: err });
        return null;
      }
    },

    destroy() {
      if (ctx.stopped) return;
      const present = ctx.started && !ctx.pageHidden && hb.present();
      const key = runningKey;
      halt(null);
      ctx.listeners.clear();
      if (present && key != null) hb.leaveLater(() => running.has(key));
    },

    fail(err) {
      report(ctx, err);
      halt(err);
    },

    sessionChanged() {
      unregister();
      register();
    },
  };
}
