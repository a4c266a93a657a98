/** RFC 9457 problem details as sent by presence-svc. */
export interface ProblemDetails {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  errors?: unknown;
  [key: string]: unknown;
}

export type PresenceOperation =
  | 'token'
  | 'heartbeat'
  | 'leave'
  | 'views'
  | 'presence'
  | 'events'
  | 'seen'
  | 'stats'
  | 'timeline'
  | 'privacy';

export class PresenceError extends Error {
  /** HTTP status; 0 for network errors and getToken failures. */
  readonly status: number;
  readonly operation: PresenceOperation;
  readonly problem: ProblemDetails | null;
  /** Retry-After in ms when the server sent one. */
  readonly retryAfterMs: number | null;
  /**
   * True when the SDK retries it by itself: no answer (network), a getToken() failure, 408, 429, 5xx
   * (the presence loop for as long as it runs, the reads client up to `maxAttempts`).
   */
  readonly transient: boolean;

  constructor(
    message: string,
    init: {
      status: number;
      operation: PresenceOperation;
      problem?: ProblemDetails | null;
      retryAfterMs?: number | null;
      transient: boolean;
      cause?: unknown;
    },
  ) {
    super(message);
    this.name = 'PresenceError';
    this.status = init.status;
    this.operation = init.operation;
    this.problem = init.problem ?? null;
    this.retryAfterMs = init.retryAfterMs ?? null;
    this.transient = init.transient;
    if (init.cause !== undefined) (this as { cause?: unknown }).cause = init.cause;
  }
}

/** Parses a Retry-After header (delta-seconds or HTTP date) into ms; null if absent/invalid. */
export function parseRetryAfter(value: string | null, now: number = Date.now()): number | null {
  if (value == null) return null;
  const trimmed = value.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(parseFloat(trimmed) * 1000);
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return null; // also for an empty value
  return Math.max(0, date - now);
}

/** 408 too: the server gave up waiting for the request, which a retry sends again (every retried call is idempotent). */
export function isTransientStatus(status: number): boolean {
  return status === 0 || status === 408 || status === 429 || status >= 500;
}

export async function errorFromResponse(operation: PresenceOperation, res: Response): Promise<PresenceError> {
  let problem: ProblemDetails | null = null;
  try {
    const text = await res.text();
    if (text) {
      const parsed: unknown = JSON.parse(text);
      if (parsed && typeof parsed === 'object') problem = parsed as ProblemDetails;
    }
  } catch {
    // not JSON: keep problem null
  }
  const title = problem?.title || res.statusText || 'HTTP error';
  const detail = problem?.detail ? `: ${problem.detail}` : '';
  return new PresenceError(`${operation} failed with ${res.status} ${title}${detail}`, {
    status: res.status,
    operation,
    problem,
    retryAfterMs: parseRetryAfter(res.headers.get('Retry-After')),
    transient: isTransientStatus(res.status),
  });
}
