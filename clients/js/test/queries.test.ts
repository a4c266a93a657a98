import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { createPresence, PresenceError, type Presence } from '../src/index.js';
import { BASE, flush, json, makeEnv, problem } from './helpers.js';

let current: Presence | null = null;
afterEach(() => {
  current?.destroy();
  current = null;
});

const where = {
  userId: 'u 1',
  online: [{ artifactId: 'doc-1', versionId: 'v3', status: 'away', lastSeen: '2026-11-29T21:36:11.420Z', sessions: 2 }],
  recent: [{ artifactId: 'doc-7', lastSeen: '2026-11-29T20:02:40.031Z', reason: 'left' }],
};

describe('queries beside the live list', () => {
  test('whereNow asks GET /v1/users/{userId}/presence with the token and returns the answer', async () => {
    const env = makeEnv();
    env.server.handler = (call) => (call.path.startsWith('/v1/users/') ? json(200, where) : undefined);
    current = createPresence(env.options({ live: 'off' }));
    await flush();
    const found = await current.whereNow('u 1');
    const call = env.server.calls.at(-1)!;
    assert.equal(call.method, 'GET');
    assert.equal(call.url, `${BASE}/v1/users/u%201/presence`);
    assert.equal(call.headers['authorization'], 'Bearer t1');
    assert.deepEqual(found, where);
    assert.equal(found.online[0]!.status, 'away');
    assert.equal(found.recent[0]!.reason, 'left');
  });

  test('whereNow of another user refused (403) rejects with a PresenceError naming the status', async () => {
    const env = makeEnv();
    env.server.handler = (call) => (call.path.startsWith('/v1/users/') ? problem(403, 'Forbidden') : undefined);
    current = createPresence(env.options({ live: 'off' }));
    await flush();
    await assert.rejects(current.whereNow('someone-else'), (err: unknown) => {
      assert.ok(err instanceof PresenceError);
      assert.equal(err.status, 403);
      assert.equal(err.operation, 'presence');
      return true;
    });
  });

  test('fetchPresence with includeRecent pages the recent users with their own cursor', async () => {
    const env = makeEnv();
    const recent = [{ userId: 'u9', name: null, avatarUrl: null, lastSeen: '2026-11-29T21:30:02.118Z', reason: 'timeout' }];
    env.server.handler = (call) =>
      call.path.endsWith('/presence') && call.url.includes('include=')
        ? json(200, { online: 0, sessions: 0, active: 0, away: 0, users: [], nextCursor: null, namesJoined: true, recent, recentNextCursor: 'rc2' })
        : undefined;
    current = createPresence(env.options({ artifactId: 'doc 1', live: 'off', usersLimit: 25 }));
    await flush();
    const page = await current.fetchPresence({ includeRecent: true, recentLimit: 1 });
    let url = new URL(env.server.calls.at(-1)!.url);
    assert.equal(url.pathname, '/v1/artifacts/doc%201/presence');
    assert.deepEqual(Object.fromEntries(url.searchParams), { limit: '25', include: 'recent', recentLimit: '1' });
    assert.deepEqual(page.recent, recent);
    assert.equal(page.recentNextCursor, 'rc2');

    await current.fetchPresence({ includeRecent: true, includeSessions: true, recentCursor: page.recentNextCursor!, limit: 5, cursor: 'c1' });
    url = new URL(env.server.calls.at(-1)!.url);
    assert.deepEqual(Object.fromEntries(url.searchParams), {
      limit: '5',
      include: 'sessions,recent',
      cursor: 'c1',
      recentCursor: 'rc2',
    });
  });

  test('fetchPresence without options asks for one plain page of usersLimit', async () => {
    const env = makeEnv();
    current = createPresence(env.options({ live: 'off' }));
    await flush();
    const page = await current.fetchPresence();
    const url = new URL(env.server.calls.at(-1)!.url);
    assert.deepEqual(Object.fromEntries(url.searchParams), { limit: '100' });
    assert.deepEqual(page.users.map((u) => u.userId), ['u1', 'u2']);
    assert.equal(page.recent, undefined);
  });
});
