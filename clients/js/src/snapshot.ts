import type { Context } from './context.js';
import type { PresenceError, PresenceOperation } from './errors.js';
import type { PresenceSnapshot, PresenceUser } from './types.js';

/** A live event's or a presence page's parsed JSON; fields are checked before use. */
export type EventData = Record<string, any>;

/** Initial snapshot, also used by the React hook before an instance exists. */
export const EMPTY_SNAPSHOT: PresenceSnapshot = Object.freeze({
  online: 0,
  sessions: 0,
  users: Object.freeze([]),
  views: null,
  uniqueViewers: null,
  status: 'connecting',
  transport: 'off',
  mode: 'exact',
  error: null,
});

/** A count from the server, or `fallback` if it is not a usable number. */
export function count(value: unknown, fallback: number): number {
  return Number.isFinite(value) && (value as number) >= 0 ? (value as number) : fallback; // isFinite: a number only
}

/** The online and sessions counts of a heartbeat answer, presence page or event; unusable ones are kept. */
export function counts(ctx: Context, data: EventData): Pick<PresenceSnapshot, 'online' | 'sessions'> {
  const snapshot = ctx.snapshot_;
  return { online: count(data.online, snapshot.online), sessions: count(data.sessions, snapshot.sessions) };
}

/** Replaces the snapshot and notifies the listeners, only if the patch changes something. */
export function update(ctx: Context, patch: Partial<PresenceSnapshot>): void {
  const keys = Object.keys(patch) as (keyof PresenceSnapshot)[];
  if (!keys.some((key) => patch[key] !== ctx.snapshot_[key])) return;
  const snapshot = (ctx.snapshot_ = Object.freeze({ ...ctx.snapshot_, ...patch }));
  for (const listener of [...ctx.listeners_]) {
    try {
      listener(snapshot);
    } catch (err) {
      // a broken listener must not break presence
      ctx.setTimeout_(() => {
        throw err;
      }, 0);
    }
  }
}

/** Clears the error once `operation` (or anything after a getToken failure) succeeded. */
export function clearError(ctx: Context, operation: PresenceOperation): void {
  const err = ctx.snapshot_.error;
  if (err && (err.operation === operation || err.operation === 'token')) update(ctx, { error: null });
}

/** Passes an error to the app's onError, once per error. */
export function report(ctx: Context, err: PresenceError): void {
  if (err === ctx.reported_) return;
  ctx.reported_ = err;
  try {
    ctx.options_.onError?.(err);
  } catch {
    // ignore errors thrown by the app's handler
  }
}

/**
 * Returns `apply(type, data)`, which updates the snapshot from a live event or, as 'sync',
 * from a presence page. The users are kept by id so events update them in place.
 */
export function eventApplier(ctx: Context): (type: string, data: EventData) => void {
  let usersById = new Map<string, PresenceUser>();

  function publish(extra: Partial<PresenceSnapshot> = {}): void {
    update(ctx, { ...extra, users: Object.freeze([...usersById.values()]) });
  }

  /** Adds or replaces the rows of a sync's `users` or an interval's `joined`. */
  function put(rows: unknown): void {
    if (Array.isArray(rows)) for (const u of rows) if (u && typeof u.userId === 'string') usersById.set(u.userId, { ...u });
  }

  return (type, data) => {
    const snapshot = ctx.snapshot_;
    switch (type) {
      case 'sync':
        usersById = new Map();
        put(data.users);
        publish({ ...counts(ctx, data), mode: data.mode === 'interval' ? 'interval' : 'exact' });
        return;
      case 'interval':
        // A large room: the counts now and who came and went since the last interval.
        put(data.joined);
        if (Array.isArray(data.left)) for (const u of data.left) usersById.delete(u?.userId);
        publish(counts(ctx, data));
        return;
      case 'join': {
        if (typeof data.userId !== 'string') return;
        const prev = usersById.get(data.userId);
        const row: PresenceUser = { ...prev, ...data } as PresenceUser;
        if (row.sessions == null) row.sessions = 1;
        usersById.set(data.userId, row);
        // `count` events are authoritative; this keeps the numbers right until one arrives.
        publish(prev ? {} : { online: snapshot.online + 1, sessions: snapshot.sessions + count(row.sessions, 1) });
        return;
      }
      case 'leave': {
        if (typeof data.userId !== 'string') return;
        const prev = usersById.get(data.userId);
        if (!prev) return;
        usersById.delete(data.userId);
        publish({
          online: Math.max(0, snapshot.online - 1),
          sessions: Math.max(0, snapshot.sessions - count(prev.sessions, 1)),
        });
        return;
      }
      case 'state': {
        if (typeof data.userId !== 'string') return;
        const prev = usersById.get(data.userId);
        if (!prev) return; // unknown user (beyond the page limit): the next sync brings it
        usersById.set(data.userId, { ...prev, ...data }); // versionId, state and status
        publish();
        return;
      }
      case 'sessions': {
        // An online user opened or closed one of several tabs; `count` brings the totals.
        if (typeof data.userId !== 'string') return;
        const prev = usersById.get(data.userId);
        if (!prev) return;
        usersById.set(data.userId, { ...prev, sessions: count(data.sessions, prev.sessions ?? 1) });
        publish();
        return;
      }
      case 'count':
        update(ctx, counts(ctx, data));
        return;
    }
  };
}
