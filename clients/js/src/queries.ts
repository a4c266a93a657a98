import type { Context } from './context.js';
import { request } from './http.js';
import type { PageOptions, PresencePage, WhereNow } from './types.js';

const PASSED = ['cursor', 'recentLimit', 'recentCursor'] as const;

/** One page of the artifact's presence list, with the extras asked for (`include`). */
export function fetchPage(ctx: Context, o: PageOptions = {}): Promise<PresencePage> {
  const q = new URLSearchParams({ limit: String(o.limit ?? ctx.usersLimit_) });
  const include = [o.includeSessions && 'sessions', o.includeRecent && 'recent'].filter(Boolean);
  if (include.length) q.set('include', include.join(','));
  for (const k of PASSED) if (o[k] != null) q.set(k, String(o[k]));
  return request<PresencePage>(ctx, 'presence', 'GET', `${ctx.artifactPath_}/presence?${q}`);
}

/** Where a user is online now, and the artifacts they left recently. */
export function whereNow(ctx: Context, userId: string): Promise<WhereNow> {
  return request<WhereNow>(ctx, 'presence', 'GET', `/v1/users/${encodeURIComponent(userId)}/presence`);
}
