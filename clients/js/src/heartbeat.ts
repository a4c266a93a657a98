import type { Context } from './context.js';
import type { PresenceError } from './errors.js';
import { backoff, jitter, request, toPresenceError } from './http.js';
import { clearError, count, counts, report, update } from './snapshot.js';
import type { HeartbeatResponse, LeaveResponse, TimerHandle } from './types.js';

export const MIN_INTERVAL_MS = 1_000;
const MAX_INTERVAL_MS = 3_600_000;
/** Heartbeats of an away tab (hidden or idle): browsers throttle hidden tabs' timers to about this. */
const AWAY_INTERVAL_MS = 60_000;

/**
 * Engaged time up to now (the tab visible and focused, an input within engagedIdleMs_) added to what
 * is not sent yet; returns that (ms, at most a day: the most one report may carry; undefined for 0)
 * and, with `take`, starts over from 0.
 */
export function engaged(ctx: Context, take?: boolean): number | undefined {
  const t = ctx.now_();
  if (!ctx.hidden_ && ctx.focused_) {
    ctx.engagedMs_ += Math.max(0, Math.min(t, ctx.inputAt_ + ctx.engagedIdleMs_) - ctx.engagedFrom_);
  }
  ctx.engagedFrom_ = t;
  const ms = Math.min(Math.round(ctx.engagedMs_), 864e5);
  if (take) ctx.engagedMs_ = 0;
  return ms || undefined;
}

/** Views are recorded only while started, not stopped, and visible (heartbeats: see canSend). */
export function canBeat(ctx: Context): boolean {
  return ctx.started_ && !ctx.stopped_ && !ctx.hidden_ && !ctx.pageHidden_;
}

export interface Heartbeat {
  /** A heartbeat succeeded since start / the last pagehide. */
  readonly joined_: boolean;
  /** The server may count this tab as present: joined, or a heartbeat is in flight. */
  present_(): boolean;
  /** Sends a heartbeat now, or right after the one in flight (with the latest state). */
  now_(): void;
  /** Cancels the scheduled heartbeat; `now()` resumes. */
  pause_(): void;
  /**
   * On pagehide: pauses, forgets `joined`, and if `present()` was true, leaves (with grace) by a
   * beacon carrying the token, or a keepalive fetch.
   */
  pageHide_(): void;
  /** leave()'s leave, sent after the heartbeat in flight so that one cannot resurrect us. */
  leave_(): Promise<LeaveResponse>;
  /** destroy()'s leave (with grace), after the heartbeat in flight; skipped if `inUse()` by then. */
  leaveLater_(inUse: () => boolean): void;
}

export function createHeartbeat(ctx: Context, fail: (err: PresenceError) => void): Heartbeat {
  let timer: TimerHandle | null = null;
  let inFlight: Promise<number | null> | null = null;
  let pending = false;
  let failures = 0;
  let joined = false;
  let rotatedSession = false;

  function schedule(ms: number): void {
    timer = ctx.clearTimer_(timer);
    timer = ctx.setTimeout_(() => {
      timer = null;
      beat();
    }, ms);
  }

  function now(): void {
    timer = ctx.clearTimer_(timer);
    beat();
  }

  /** A hidden tab heartbeats (as away) only once it joined: a tab opened in the background is not there. */
  function canSend(): boolean {
    return ctx.started_ && !ctx.stopped_ && !ctx.pageHidden_ && (joined || !ctx.hidden_);
  }

  function beat(): void {
    if (!canSend()) return;
    if (inFlight) {
      pending = true; // send again (with the latest state) once the current one is answered
      return;
    }
    pending = false;
    inFlight = send();
    void inFlight.then((next) => {
      inFlight = null; // this one: beat() sends no other while one is in flight
      if (!canSend()) return;
      if (pending) now();
      else if (next != null) schedule(next);
    });
  }

  /** Sends one heartbeat; resolves to the delay before the next one (null: none). Never rejects. */
  async function send(): Promise<number | null> {
    const away = ctx.hidden_ || ctx.idle_;
    const ms = engaged(ctx, true);
    try {
      const data = await request<Partial<HeartbeatResponse>>(ctx, 'heartbeat', 'POST', '/v1/heartbeat', {
        artifactId: ctx.artifactId_,
        versionId: ctx.versionId_,
        sessionId: ctx.sessionId_,
        state: ctx.state_,
        status: away ? 'away' : 'active',
        engagedMs: ms,
      });
      if (ctx.stopped_) return null;
      joined = true;
      failures = 0;
      const interval = count(data.intervalS, 0);
      if (interval) ctx.intervalMs_ = Math.min(MAX_INTERVAL_MS, Math.max(MIN_INTERVAL_MS, interval * 1000));
      update(ctx, {
        ...counts(ctx, data),
        status: ctx.hidden_ ? 'hidden' : 'active',
      });
      clearError(ctx, 'heartbeat');
      return jitter(ctx, away ? Math.max(AWAY_INTERVAL_MS, ctx.intervalMs_) : ctx.intervalMs_);
    } catch (e) {
      if (ctx.stopped_) return null;
      const err = toPresenceError(e, 'heartbeat');
      if (err.transient) {
        ctx.engagedMs_ += ms || 0; // sent with the retry
        failures++;
        if (err.operation === 'token') report(ctx, err);
        update(ctx, { status: ctx.hidden_ ? 'hidden' : 'retrying', error: err });
        return backoff(ctx, failures, err.retryAfterMs);
      }
      if (err.status === 409 && !rotatedSession) {
        // The stored session id belongs to another user (e.g. account switch in this tab): take a new one.
        rotatedSession = true;
        report(ctx, err);
        update(ctx, { error: err });
        ctx.sessionId_ = ctx.newSessionId_();
        return 0;
      }
      fail(err);
      return null;
    }
  }

  function present(): boolean {
    return joined || inFlight != null;
  }

  function beaconLeave(): void {
    const token = ctx.token_;
    if (token == null) return; // never authenticated: nothing to leave
    const url = `${ctx.baseUrl_}/v1/leave`;
    const payload = JSON.stringify({
      artifactId: ctx.artifactId_,
      sessionId: ctx.sessionId_,
      grace: true,
      token,
      engagedMs: engaged(ctx, true),
    });
    const type = 'text/plain;charset=UTF-8';
    const nav = ctx.navigator_;
    let queued = false;
    try {
      if (nav && typeof nav.sendBeacon === 'function' && typeof Blob === 'function') {
        queued = nav.sendBeacon(url, new Blob([payload], { type }));
      }
    } catch {
      // queued stays false
    }
    if (!queued) {
      // No beacon (or queue full): a keepalive fetch with the same CORS-simple body.
      try {
        void ctx
          .fetch_(url, { method: 'POST', body: payload, headers: { 'Content-Type': type }, keepalive: true })
          .catch(() => undefined);
      } catch {
        // nothing more we can do while the page goes away
      }
    }
  }

  return {
    get joined_() {
      return joined;
    },
    present_: present,
    now_: now,
    pause_() {
      timer = ctx.clearTimer_(timer);
    },
    pageHide_() {
      const wasPresent = present();
      joined = false;
      timer = ctx.clearTimer_(timer);
      if (wasPresent) beaconLeave();
    },
    leave_() {
      const send = () =>
        request<LeaveResponse>(ctx, 'leave', 'POST', '/v1/leave', {
          artifactId: ctx.artifactId_,
          sessionId: ctx.sessionId_,
          engagedMs: engaged(ctx, true),
        });
      return inFlight ? inFlight.then(send, send) : send();
    },
    leaveLater_(inUse) {
      const body = { artifactId: ctx.artifactId_, sessionId: ctx.sessionId_, grace: true, engagedMs: engaged(ctx, true) };
      const send = (): Promise<unknown> =>
        inUse() ? Promise.resolve() : request<LeaveResponse>(ctx, 'leave', 'POST', '/v1/leave', body, true);
      const after = inFlight ?? Promise.resolve(null);
      void after.then(send, send).catch(() => undefined);
    },
  };
}
