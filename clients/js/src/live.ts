import type { Context } from './context.js';
import type { PresenceError } from './errors.js';
import { backoff, currentToken, freshTokenAfter, jitter, request, toPresenceError } from './http.js';
import { clearError, eventApplier, report, update, type EventData } from './snapshot.js';
import type { EventSourceLike, PresencePage, TimerHandle } from './types.js';

const EVENT_TYPES = ['sync', 'join', 'leave', 'state', 'sessions', 'count', 'interval'] as const;
const ES_CLOSED = 2;

/** Live updates of the users list: an EventSource, falling back to polling the presence page. */
export interface Live {
  start_(): void;
  /** Tab hidden: no polling (an open event stream stays open). */
  hide_(): void;
  /** Tab visible again: poll at once when polling. */
  show_(): void;
  /** Back from pagehide: poll at once, or reconnect the event stream with a clean slate. */
  resume_(): void;
  /** Closes the event stream and stops polling. */
  stop_(): void;
}

export function createLive(ctx: Context, fail: (err: PresenceError) => void): Live {
  const apply = eventApplier(ctx);

  let es: EventSourceLike | null = null;
  let esTimer: TimerHandle | null = null;
  let esFailures = 0;
  let esGaveUp = false;

  let pollTimer: TimerHandle | null = null;
  let pollInFlight = false;
  let pollFailures = 0;

  function canLive(): boolean {
    return ctx.started_ && !ctx.stopped_ && !ctx.pageHidden_;
  }

  function start(): void {
    if (ctx.live_ === 'off') return; // the transport stays 'off'
    if (ctx.live_ === 'poll' || !ctx.EventSource_ || esGaveUp) return startPolling();
    void connectEvents(null);
  }

  /* ------------------------------------------------------------ EventSource */

  function closeEvents(): void {
    esTimer = ctx.clearTimer_(esTimer);
    if (es) {
      const source = es;
      es = null;
      try {
        source.close();
      } catch {
        // ignore
      }
    }
  }

  async function connectEvents(rejectedToken: string | null): Promise<void> {
    const EventSourceCtor = ctx.EventSource_;
    if (!canLive() || es || !EventSourceCtor) return;
    update(ctx, { transport: 'connecting' });
    let t: string;
    try {
      t = rejectedToken != null ? await freshTokenAfter(ctx, rejectedToken) : await currentToken(ctx);
    } catch (e) {
      const err = toPresenceError(e, 'events');
      report(ctx, err);
      return eventsFailed(null, err);
    }
    if (!canLive() || es || esGaveUp) return;
    let source: EventSourceLike;
    try {
      source = new EventSourceCtor(`${ctx.baseUrl_}${ctx.artifactPath_}/events?access_token=${encodeURIComponent(t)}`);
    } catch {
      esGaveUp = true;
      return startPolling();
    }
    es = source;
    const onEvent = (ev: MessageEvent) => {
      if (es !== source) return;
      let data: unknown;
      try {
        data = JSON.parse(String(ev.data));
      } catch {
        return;
      }
      if (!data || typeof data !== 'object') return;
      // Any event proves the stream works: a resumed stream (Last-Event-ID) gets no sync.
      esFailures = 0;
      update(ctx, { transport: 'events' });
      clearError(ctx, 'events');
      apply(ev.type, data as EventData);
    };
    for (const type of EVENT_TYPES) source.addEventListener(type, onEvent);
    source.addEventListener('error', () => {
      if (es !== source) return;
      eventsFailed(source, null, t);
    });
  }

  function eventsFailed(source: EventSourceLike | null, err: PresenceError | null, usedToken: string | null = null): void {
    esFailures++;
    if (err) update(ctx, { error: err });
    if (esFailures >= ctx.maxEventSourceFailures_) {
      closeEvents();
      esGaveUp = true;
      return startPolling();
    }
    update(ctx, { transport: 'connecting' });
    if (source && source.readyState !== ES_CLOSED) return; // the browser reconnects by itself (sends Last-Event-ID)
    // Closed for good (non-200 answer such as an expired token, or creation failed): reconnect ourselves.
    closeEvents();
    esTimer = ctx.setTimeout_(() => {
      esTimer = null;
      void connectEvents(usedToken);
    }, backoff(ctx, esFailures, null));
  }

  /* ------------------------------------------------------------ polling */

  function canPoll(): boolean {
    return canLive() && !ctx.hidden_ && ctx.snapshot_.transport === 'polling';
  }

  function startPolling(): void {
    update(ctx, { transport: 'polling' });
    pollNow();
  }

  function pollNow(): void {
    pollTimer = ctx.clearTimer_(pollTimer);
    void poll();
  }

  async function poll(): Promise<void> {
    if (!canPoll() || pollInFlight) return;
    pollInFlight = true;
    let next: number | null = null;
    try {
      const page = await request<Partial<PresencePage>>(
        ctx,
        'presence',
        'GET',
        `${ctx.artifactPath_}/presence?limit=${ctx.usersLimit_}`,
      );
      if (ctx.stopped_) return;
      pollFailures = 0;
      apply('sync', page as EventData);
      clearError(ctx, 'presence');
      next = jitter(ctx, ctx.intervalMs_);
    } catch (e) {
      if (ctx.stopped_) return;
      const err = toPresenceError(e, 'presence');
      if (err.transient) {
        pollFailures++;
        if (err.operation === 'token') report(ctx, err);
        update(ctx, { error: err });
        next = backoff(ctx, pollFailures, err.retryAfterMs);
      } else if (err.status === 401) {
        return fail(err);
      } else {
        report(ctx, err);
        update(ctx, { error: err, transport: 'off' });
      }
    } finally {
      pollInFlight = false;
    }
    if (next != null && canPoll()) {
      pollTimer = ctx.clearTimer_(pollTimer);
      pollTimer = ctx.setTimeout_(() => {
        pollTimer = null;
        void poll();
      }, next);
    }
  }

  return {
    start_: start,
    hide_() {
      pollTimer = ctx.clearTimer_(pollTimer);
    },
    show_: pollNow, // which polls only when polling
    resume_() {
      esFailures = 0;
      if (ctx.snapshot_.transport === 'polling') pollNow();
      else start();
    },
    stop_() {
      pollTimer = ctx.clearTimer_(pollTimer);
      closeEvents();
    },
  };
}
