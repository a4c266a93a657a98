import type { Context } from './context.js';
import { PresenceError, errorFromResponse, type PresenceOperation } from './errors.js';

const BASE_BACKOFF_MS = 1_000;
/**
 * The longest Retry-After waited out (a presence loop then tries again; the reads client rejects at
 * once instead, its `maxRetryAfterMs`). It also keeps a wait below setTimeout's 2^31 - 1 ms, past
 * which a timer fires at once.
 */
export const MAX_RETRY_AFTER_MS = 60_000;

/** What `request` needs of a context: a presence instance's, or the small one of `createReads` (reads.ts). */
export type HttpContext = Pick<Context, 'baseUrl_' | 'fetch_' | 'token_' | 'tokenPromise_' | 'stopped_'> & {
  readonly options_: Pick<Context['options_'], 'getToken'>;
};

/** A transient error for a failure without an HTTP answer (network, getToken()); `what` starts the message. */
function transientError(err: unknown, operation: PresenceOperation, what: string = operation): PresenceError {
  const message = err instanceof Error ? err.message : String(err);
  return new PresenceError(`${what} failed: ${message}`, { status: 0, operation, transient: true, cause: err });
}

export function toPresenceError(err: unknown, operation: PresenceOperation): PresenceError {
  return err instanceof PresenceError ? err : transientError(err, operation);
}

/** `ms` ± 10 %, so that tabs opened together do not stay in step. */
export function jitter(ctx: Context, ms: number): number {
  return ms * (0.9 + 0.2 * ctx.random_());
}

/** What `backoff` reads: a presence instance's context, or the reads client's (reads.ts). */
export type BackoffContext = Pick<Context, 'maxBackoffMs_' | 'random_'>;

/**
 * Exponential backoff with jitter, `attempt` from 1, capped at maxBackoffMs; a Retry-After is
 * waited out even past that cap (coming back sooner meets another 429), up to `longest`.
 * The Python SDK's rule (presence_svc/client/retry.py), so both SDKs come back alike.
 */
export function backoff(ctx: BackoffContext, attempt: number, retryAfterMs: number | null, longest = MAX_RETRY_AFTER_MS): number {
  const exp = Math.min(ctx.maxBackoffMs_, BASE_BACKOFF_MS * 2 ** Math.min(attempt - 1, 20));
  const delay = exp / 2 + (ctx.random_() * exp) / 2;
  return retryAfterMs == null
    ? delay
    : Math.max(delay, Math.min(longest, retryAfterMs + ctx.random_() * Math.min(1_000, retryAfterMs * 0.1)));
}

/** One getToken() call at a time, shared by the requests waiting for it. */
function fetchToken(ctx: HttpContext): Promise<string> {
  if (!ctx.tokenPromise_) {
    const p = Promise.resolve()
      .then(() => ctx.options_.getToken())
      .then((t) => {
        if (typeof t !== 'string' || t === '') throw new Error('getToken() returned no token');
        ctx.token_ = t;
        return t;
      })
      .catch((err: unknown) => {
        throw transientError(err, 'token', 'getToken()');
      })
      .finally(() => {
        if (ctx.tokenPromise_ === p) ctx.tokenPromise_ = null;
      });
    ctx.tokenPromise_ = p;
  }
  return ctx.tokenPromise_;
}

/** The token getToken() last returned (ctx.token_), or the one it is about to return. */
export function currentToken(ctx: HttpContext): Promise<string> {
  return ctx.token_ != null ? Promise.resolve(ctx.token_) : fetchToken(ctx);
}

/** A fresh token, unless another request already replaced the one that was rejected. */
export function freshTokenAfter(ctx: HttpContext, rejected: string): Promise<string> {
  return ctx.token_ != null && ctx.token_ !== rejected ? Promise.resolve(ctx.token_) : fetchToken(ctx);
}

/**
 * A JSON request with the bearer token, retried once with a fresh token after a 401.
 * Rejects with a PresenceError (problem+json details when the service sent them).
 */
export async function request<T>(
  ctx: HttpContext,
  operation: PresenceOperation,
  method: 'GET' | 'POST' | 'PUT',
  path: string,
  body?: unknown,
  keepalive = false,
): Promise<T> {
  const send = async (t: string): Promise<Response> => {
    const headers: Record<string, string> = { Authorization: `Bearer ${t}`, Accept: 'application/json' };
    const init: RequestInit = { method, headers, keepalive };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    try {
      return await ctx.fetch_(ctx.baseUrl_ + path, init);
    } catch (err) {
      throw toPresenceError(err, operation);
    }
  };
  let used = await currentToken(ctx);
  if (ctx.stopped_ && operation !== 'leave') throw new PresenceError('stopped', { status: 0, operation, transient: false });
  let res = await send(used);
  if (res.status === 401) {
    used = await freshTokenAfter(ctx, used);
    res = await send(used);
  }
  if (!res.ok) throw await errorFromResponse(operation, res);
  // 204, or a body that is not JSON: an empty answer
  return res.json().catch(() => ({})) as Promise<T>;
}
