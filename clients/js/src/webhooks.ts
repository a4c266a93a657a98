/*
 * Verifying a webhook delivery from presence-svc (Standard Webhooks), for the app's backend:
 * Node 18+, Deno, Bun and edge runtimes (WebCrypto only, no Node built-ins). A separate entry
 * point (`@presence-svc/client/webhooks`): the browser bundle does not carry it.
 */

export class WebhookVerificationError extends Error {
  override name = 'WebhookVerificationError';
}

/** An event as delivered: `{id, type, timestamp, data}`. */
export interface WebhookEvent {
  id: string;
  type: string;
  timestamp: string;
  data: Record<string, unknown>;
}

export interface VerifyOptions {
  /** Seconds a `webhook-timestamp` may be off from now (default 300). */
  toleranceS?: number;
  /** Now, in Unix seconds (for tests). */
  nowS?: number;
}

type HeaderSource = Headers | Record<string, string | string[] | undefined>;

function header(headers: HeaderSource, name: string): string {
  let value: string | string[] | null | undefined;
  if (typeof (headers as Headers).get === 'function') {
    value = (headers as Headers).get(name);
  } else {
    const record = headers as Record<string, string | string[] | undefined>;
    const key = Object.keys(record).find((k) => k.toLowerCase() === name);
    value = key === undefined ? undefined : record[key];
  }
  if (Array.isArray(value)) value = value.join(' ');
  if (!value) throw new WebhookVerificationError(`missing header ${name}`);
  return value;
}

function fromBase64(text: string): Uint8Array<ArrayBuffer> {
  let binary: string;
  try {
    binary = atob(text);
  } catch {
    throw new WebhookVerificationError('the secret is not whsec_<base64>');
  }
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

function toBase64(bytes: ArrayBuffer): string {
  return btoa(String.fromCharCode(...new Uint8Array(bytes)));
}

/** Equal strings in time independent of where they differ. */
function same(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

/**
 * The event, if one of `webhook-signature`'s signatures matches one of the secrets (several
 * during a rotation) and `webhook-timestamp` is within the tolerance; else throws
 * `WebhookVerificationError`. `body` is the raw body, before any JSON parsing.
 */
export async function verifyWebhook(
  body: string | Uint8Array,
  headers: HeaderSource,
  secret: string | string[],
  options: VerifyOptions = {},
): Promise<WebhookEvent> {
  const id = header(headers, 'webhook-id');
  const stamp = header(headers, 'webhook-timestamp');
  const given = header(headers, 'webhook-signature')
    .split(' ')
    .filter((s) => s.startsWith('v1,'))
    .map((s) => s.slice(3));
  const sent = Number(stamp);
  if (!/^\d+$/.test(stamp)) throw new WebhookVerificationError('webhook-timestamp is not a number');
  const now = options.nowS ?? Date.now() / 1000;
  if (Math.abs(now - sent) > (options.toleranceS ?? 300)) {
    throw new WebhookVerificationError('webhook-timestamp is too far from now');
  }
  const raw = typeof body === 'string' ? new TextEncoder().encode(body) : body;
  const prefix = new TextEncoder().encode(`${id}.${stamp}.`);
  const signed = new Uint8Array(prefix.length + raw.length);
  signed.set(prefix);
  signed.set(raw, prefix.length);
  for (const one of Array.isArray(secret) ? secret : [secret]) {
    const key = await crypto.subtle.importKey(
      'raw',
      fromBase64(one.startsWith('whsec_') ? one.slice(6) : one),
      { name: 'HMAC', hash: 'SHA-256' },
      false,
      ['sign'],
    );
    const expected = toBase64(await crypto.subtle.sign('HMAC', key, signed));
    if (given.some((g) => same(g, expected))) {
      return JSON.parse(new TextDecoder().decode(raw)) as WebhookEvent;
    }
  }
  throw new WebhookVerificationError('no signature matches');
}
