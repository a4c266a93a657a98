import type { Context } from './context.js';
import type { PresenceError } from './errors.js';
import { canBeat } from './heartbeat.js';
import { backoff, request, toPresenceError } from './http.js';
import { clearError, count, report, update } from './snapshot.js';
import type { TimerHandle, ViewResponse } from './types.js';

const MAX_VIEW_ATTEMPTS = 5;

export interface Views {
  /** Records one view of the current version (once per version, while visible). */
  record_(): void;
  /** Cancels a pending retry. */
  stop_(): void;
}

export function createViews(ctx: Context, fail: (err: PresenceError) => void): Views {
  let viewedVersion: string | undefined;
  // Only the latest retry is cancelled: an older one finds its version outdated and does nothing.
  let timer: TimerHandle | null = null;

  async function send(v: string, attempt: number): Promise<void> {
    try {
      const data = await request<Partial<ViewResponse>>(ctx, 'views', 'POST', '/v1/views', {
        artifactId: ctx.artifactId_,
        versionId: v,
        sessionId: ctx.sessionId_,
      });
      if (ctx.stopped_ || v !== ctx.versionId_) return;
      const snapshot = ctx.snapshot_;
      update(ctx, {
        views: count(data.views, snapshot.views ?? 0),
        uniqueViewers: count(data.uniqueViewers, snapshot.uniqueViewers ?? 0),
      });
      clearError(ctx, 'views');
    } catch (e) {
      if (ctx.stopped_) return;
      const err = toPresenceError(e, 'views');
      if (err.transient) {
        if (err.operation === 'token') report(ctx, err);
        if (attempt < MAX_VIEW_ATTEMPTS) {
          timer = ctx.setTimeout_(() => {
            timer = null;
            if (!ctx.stopped_ && v === ctx.versionId_) void send(v, attempt + 1);
          }, backoff(ctx, attempt, err.retryAfterMs));
        }
        return;
      }
      if (err.status === 401) return fail(err);
      report(ctx, err);
      update(ctx, { error: err });
    }
  }

  return {
    record_() {
      const v = ctx.versionId_;
      if (!ctx.recordViews_ || !v || viewedVersion === v || !canBeat(ctx)) return;
      viewedVersion = v;
      timer = ctx.clearTimer_(timer);
      void send(v, 1);
    },
    stop_() {
      timer = ctx.clearTimer_(timer);
    },
  };
}
