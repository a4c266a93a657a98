import type { Context } from './context.js';
import type { PresenceError } from './errors.js';
import { engaged, type Heartbeat } from './heartbeat.js';
import { toPresenceError } from './http.js';
import type { Live } from './live.js';
import { report, update } from './snapshot.js';
import type { LeaveResponse, TimerHandle } from './types.js';
import type { Views } from './views.js';

/**
 * The running instances in this tab. A destroyed instance skips its leave when another one for the
 * same session (baseUrl, artifact, session id) is running (React StrictMode remounts, two components).
 */
const running = new Set<Context>();

/** Start, stop, and the page's visibility and pagehide/pageshow driving the other modules. */
export interface Lifecycle {
  start_(): void;
  leave_(): Promise<LeaveResponse | null>;
  destroy_(): void;
  /** Reports a fatal error and stops. */
  fail_(err: PresenceError): void;
}

/** Input that shows someone is at the tab. */
const INPUT = ['pointerdown', 'pointermove', 'keydown', 'wheel', 'scroll', 'touchstart'];

export function createLifecycle(ctx: Context, hb: Heartbeat, views: Views, live: Live): Lifecycle {
  let idleTimer: TimerHandle | null = null;

  function isHidden(): boolean {
    return ctx.document_?.visibilityState === 'hidden';
  }

  /** Input (or the tab shown): idle again in idleMs_; back from idle, a heartbeat says active. */
  function onInput(): void {
    engaged(ctx);
    ctx.inputAt_ = ctx.engagedFrom_;
    idleTimer = ctx.clearTimer_(idleTimer);
    if (ctx.idleMs_ > 0 && ctx.window_) {
      // (no window: no input to see, so never idle)
      idleTimer = ctx.setTimeout_(() => {
        ctx.idle_ = true;
        if (!ctx.hidden_) hb.now_(); // a hidden tab already said away
      }, ctx.idleMs_);
    }
    if (ctx.idle_ && !ctx.hidden_) {
      ctx.idle_ = false;
      hb.now_();
    }
  }

  function onVisibilityChange(): void {
    if (ctx.stopped_) return;
    const hidden = isHidden();
    if (hidden === ctx.hidden_) return;
    engaged(ctx);
    ctx.hidden_ = hidden;
    if (hidden) {
      hb.now_(); // away, then every minute or so
      live.hide_();
      update(ctx, { status: 'hidden' });
      return;
    }
    update(ctx, { status: hb.joined_ ? 'active' : 'connecting' });
    ctx.idle_ = false;
    onInput();
    hb.now_();
    views.record_();
    live.show_();
  }

  /** The window gains or loses the focus (another window or app): engaged time counts only while focused. */
  function onFocus(e: { type: string }): void {
    engaged(ctx);
    ctx.focused_ = e.type === 'focus';
  }

  function onPageHide(): void {
    if (!ctx.started_ || ctx.stopped_ || ctx.pageHidden_) return;
    ctx.pageHidden_ = true;
    live.stop_();
    hb.pageHide_();
  }

  function onPageShow(): void {
    // Back from the back/forward cache: the grace leave is cancelled by this heartbeat if quick enough.
    if (ctx.stopped_ || !ctx.pageHidden_) return;
    ctx.pageHidden_ = false;
    ctx.hidden_ = isHidden();
    ctx.engagedFrom_ = ctx.now_(); // the time in the back/forward cache is not engaged
    hb.now_();
    live.resume_();
  }

  function listen(add: boolean): void {
    const method = add ? 'addEventListener' : 'removeEventListener';
    ctx.document_?.[method]('visibilitychange', onVisibilityChange);
    ctx.window_?.[method]('pagehide', onPageHide);
    ctx.window_?.[method]('pageshow', onPageShow);
    for (const type of INPUT) ctx.window_?.[method](type, onInput);
    ctx.window_?.[method]('focus', onFocus);
    ctx.window_?.[method]('blur', onFocus);
  }

  function halt(error: PresenceError | null): void {
    ctx.stopped_ = true;
    running.delete(ctx);
    hb.pause_();
    idleTimer = ctx.clearTimer_(idleTimer);
    views.stop_();
    live.stop_();
    if (ctx.started_) listen(false);
    update(ctx, { status: 'stopped', transport: 'off', error: error ?? ctx.snapshot_.error });
  }

  return {
    start_() {
      if (ctx.started_ || ctx.stopped_) return;
      ctx.started_ = true;
      running.add(ctx);
      listen(true);
      ctx.hidden_ = isHidden();
      ctx.focused_ = ctx.document_?.hasFocus?.() ?? true;
      ctx.engagedFrom_ = ctx.now_();
      if (ctx.hidden_) update(ctx, { status: 'hidden' });
      onInput();
      hb.now_(); // at once (deferred to the first visibility if the tab starts hidden)
      views.record_();
      live.start_();
    },

    async leave_() {
      if (ctx.stopped_) return null;
      const wasStarted = ctx.started_ && !ctx.pageHidden_;
      halt(null);
      if (!wasStarted) return null;
      try {
        return await hb.leave_();
      } catch (e) {
        const err = toPresenceError(e, 'leave');
        if (!err.transient || err.operation === 'token') report(ctx, err);
        update(ctx, { error: err });
        return null;
      }
    },

    destroy_() {
      if (ctx.stopped_) return;
      const present = ctx.started_ && !ctx.pageHidden_ && hb.present_();
      halt(null);
      ctx.listeners_.clear();
      // (a stopped instance's session id no longer changes)
      const sameSession = (other: Context) =>
        other.sessionId_ === ctx.sessionId_ && other.artifactId_ === ctx.artifactId_ && other.baseUrl_ === ctx.baseUrl_;
      if (present) hb.leaveLater_(() => [...running].some(sameSession));
    },

    fail_(err) {
      report(ctx, err);
      halt(err);
    },
  };
}
