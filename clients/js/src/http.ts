import type { Context } from './context.js';
import { PresenceError, errorFromResponse, type PresenceOperation } from './errors.js';

const BASE_BACKOFF_MS = 1_000;

export function toPresenceError(err: unknown, operation: PresenceOperation): PresenceError {
  if (err instanceof PresenceError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new PresenceError(`${operation} failed: ${message}`, { status: 0, operation, transient: true, cause: err });
}

/** `ms` ± 10 %, so that tabs opened together do not stay in step. */
export function jitter(ctx: Context, ms: number): number {
  return ms * (0.9 + 0.2 * ctx.random_());
}

/** Exponential backoff with jitter; `attempt` starts at 1. Retry-After wins (up to the cap). */
export function backoff(ctx: Context, attempt: number, retryAfterMs: number | null): number {
  const exp = Math.min(ctx.maxBackoffMs_, BASE_BACKOFF_MS * 2 ** Math.min(attempt - 1, 20));
  let delay = exp / 2 + (ctx.random_() * exp) / 2;
  if (retryAfterMs != null) {
    delay = Math.max(delay, retryAfterMs + ctx.random_() * Math.min(1_000, retryAfterMs * 0.1));
  }
  return Math.min(delay, ctx.maxBackoffMs_);
}

export interface Http {
  /** The last token getToken() returned; null until one did. */
  readonly token_: string | null;
  currentToken_(): Promise<string>;
  /** A fresh token, unless another request already replaced the one that was rejected. */
  freshTokenAfter_(rejected: string): Promise<string>;
  /**
   * A JSON request with the bearer token, retried once with a fresh token after a 401.
   * Rejects with a PresenceError (problem+json details when the service sent them).
   */
  request_<T>(
    operation: PresenceOperation,
    method: 'GET' | 'POST',
    path: string,
    body?: unknown,
    keepalive?: boolean,
  ): Promise<T>;
}

export function createHttp(ctx: Context): Http {
  let token: string | null = null;
  let tokenPromise: Promise<string> | null = null;

  /** One getToken() call at a time, shared by the requests waiting for it. */
  function fetchToken(): Promise<string> {
    if (!tokenPromise) {
      const p = Promise.resolve()
        .then(() => ctx.options_.getToken())
        .then((t) => {
          if (typeof t !== 'string' || t === '') throw new Error('getToken() returned no token');
          token = t;
          return t;
        })
        .catch((err: unknown) => {
          throw new PresenceError(`getToken() failed: ${err instanceof Error ? err.message : String(err)}`, {
            status: 0,
            operation: 'token',
            transient: true,
            cause: err,
          });
        })
        .finally(() => {
          if (tokenPromise === p) tokenPromise = null;
        });
      tokenPromise = p;
    }
    return tokenPromise;
  }

  function currentToken(): Promise<string> {
    return token != null ? Promise.resolve(token) : fetchToken();
  }

  function freshTokenAfter(rejected: string): Promise<string> {
    return token != null && token !== rejected ? Promise.resolve(token) : fetchToken();
  }

  async function request<T>(
    operation: PresenceOperation,
    method: 'GET' | 'POST',
    path: string,
    body?: unknown,
    keepalive = false,
  ): Promise<T> {
    const send = async (t: string): Promise<Response> => {
      const headers: Record<string, string> = { Authorization: `Bearer ${t}`, Accept: 'application/json' };
      const init: RequestInit = { method, headers };
      if (body !== undefined) {
        headers['Content-Type'] = 'application/json';
        init.body = JSON.stringify(body);
      }
      if (keepalive) init.keepalive = true;
      try {
        return await ctx.fetch_(ctx.baseUrl_ + path, init);
      } catch (err) {
        throw toPresenceError(err, operation);
      }
    };
    let used = await currentToken();
    if (ctx.stopped_ && operation !== 'leave') throw new PresenceError('stopped', { status: 0, operation, transient: false });
    let res = await send(used);
    if (res.status === 401) {
      used = await freshTokenAfter(used);
      res = await send(used);
    }
    if (!res.ok) throw await errorFromResponse(operation, res);
    if (res.status === 204) return {} as T;
    try {
      return (await res.json()) as T;
    } catch {
      return {} as T;
    }
  }

  return {
    get token_() {
      return token;
    },
    currentToken_: currentToken,
    freshTokenAfter_: freshTokenAfter,
    request_: request,
  };
}
