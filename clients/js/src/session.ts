import type { StorageLike } from './types.js';

export const SESSION_ID_PATTERN = /^[A-Za-z0-9_-]{8,64}$/;
export const DEFAULT_SESSION_KEY = 'presence-svc:session';

/**
 * 32 hex chars from crypto.getRandomValues (every browser, secure context or not; node 20+;
 * workers). No fallback: where there is no WebCrypto, pass `generateSessionId`.
 */
export function randomSessionId(): string {
  let out = '';
  for (const b of crypto.getRandomValues(new Uint8Array(16))) out += (b + 256).toString(16).slice(1);
  return out;
}

/**
 * Returns this tab's session id: the one stored in sessionStorage (survives reloads,
 * a new tab starts empty) or a fresh one, which is then stored. Storage failures
 * (privacy modes, sandboxed iframes) degrade to a per-instance id.
 */
export function loadSessionId(
  storage: StorageLike | null | undefined,
  key: string,
  generate: () => string,
): string {
  try {
    const stored = storage?.getItem(key);
    if (stored && SESSION_ID_PATTERN.test(stored)) return stored;
  } catch {
    // storage not accessible
  }
  return storeSessionId(storage, key, generate());
}

export function storeSessionId(storage: StorageLike | null | undefined, key: string, id: string): string {
  if (!SESSION_ID_PATTERN.test(id)) throw new Error(`invalid session id ${JSON.stringify(id)}`);
  try {
    storage?.setItem(key, id);
  } catch {
    // storage full or not accessible: keep the id in memory only
  }
  return id;
}
