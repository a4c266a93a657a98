import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { PresenceError, createPresence, parseRetryAfter, type Presence } from '../src/index.js';
import { flush, makeEnv, problem } from './helpers.js';

let current: Presence | null = null;
afterEach(() => {
  current?.destroy();
  current = null;
});

describe('errors and recovery', () => {
  test('401: getToken() is called once more and the request retried with the new token', async () => {
    const env = makeEnv();
    env.tokens = ['expired', 't1'];
    current = createPresence(env.options({ live: 'off' }));
    await flush();
    const hbs = env.server.heartbeats;
    assert.deepEqual(
      hbs.map((c) => c.headers['authorization']),
      ['Bearer expired', 'Bearer t1'],
    );
    assert.equal(env.tokenCalls, 2);
    assert.equal(env.errors.length, 0);
    assert.equal(current.status, 'active');
    await env.clock.advance(10_000);
    assert.equal(env.server.heartbeats.at(-1)!.headers['authorization'], 'Bearer t1', 'fresh token is kept');
    assert.equal(env.tokenCalls, 2);
  });

  test('401 twice: reported once via onError and everything stops', async () => {
    const env = makeEnv();
    env.tokens = ['bad1', 'bad2', 'bad3'];
    current = createPresence(env.options());
    await env.clock.advance(1_000);
    assert.equal(env.tokenCalls, 2, 'exactly one refresh');
    assert.equal(env.server.heartbeats.length, 2);
    assert.equal(env.errors.length, 1);
    const err = env.errors[0] as PresenceError;
    assert.ok(err instanceof PresenceError);
    assert.equal(err.status, 401);
    assert.equal(err.operation, 'heartbeat');
    assert.equal(err.problem?.title, 'Unauthorized');
    assert.equal(current.status, 'stopped');
    assert.equal(current.error, err);
    const requests = env.server.calls.length;
    await env.clock.advance(300_000);
    assert.equal(env.server.calls.length, requests, 'no request after stopping');
    assert.deepEqual(env.clock.pending(), []);
  });

  test('503 with Retry-After: 2 waits at least 2 s, then recovers by itself', async () => {
    const env = makeEnv();
    env.randomValue = 0;
    let failures = 1;
    env.server.handler = (call) => {
      if (call.path === '/v1/heartbeat' && failures > 0) {
        failures--;
        return problem(503, 'Service Unavailable', { 'Retry-After': '2' });
      }
      return undefined;
    };
    current = createPresence(env.options({ live: 'off' }));
    await flush();
    assert.equal(current.status, 'retrying');
    assert.equal(current.error?.status, 503);
    assert.equal(current.error?.retryAfterMs, 2_000);
    assert.equal(env.errors.length, 0, 'transient errors are not reported');
    await env.clock.advance(1_999);
    assert.equal(env.server.heartbeats.length, 1, 'no retry before Retry-After');
    await env.clock.advance(1);
    assert.equal(env.server.heartbeats.length, 2);
    assert.ok(env.server.heartbeats[1]!.at >= 2_000);
    assert.equal(current.status, 'active');
    assert.equal(current.error, null);
    await env.clock.advance(10_000 * 0.9);
    assert.equal(env.server.heartbeats.length, 3, 'normal schedule again');
  });

  test('Retry-After gets jitter on top, never below it', async () => {
    const env = makeEnv();
    env.randomValue = 0.999;
    let failures = 1;
    env.server.handler = (call) => {
      if (call.path === '/v1/heartbeat' && failures-- > 0) return problem(503, 'Unavailable', { 'Retry-After': '2' });
      return undefined;
    };
    current = createPresence(env.options({ live: 'off' }));
    await env.clock.advance(2_000);
    assert.equal(env.server.heartbeats.length, 1);
    await env.clock.advance(200);
    assert.equal(env.server.heartbeats.length, 2);
  });

  test('429 with Retry-After: heartbeats wait it out each time, nothing is reported, then recover', async () => {
    const env = makeEnv();
    env.randomValue = 0;
    let limited = 2;
    env.server.handler = (call) => {
      if (call.path === '/v1/heartbeat' && limited > 0) {
        limited--;
        return problem(429, 'Too Many Requests', { 'Retry-After': '7', RateLimit: 'limit=60, remaining=0, reset=7' });
      }
      return undefined;
    };
    current = createPresence(env.options({ live: 'off' }));
    await flush();
    assert.equal(current.status, 'retrying');
    assert.equal(current.error?.status, 429);
    assert.equal(current.error?.retryAfterMs, 7_000);
    assert.equal(current.error?.transient, true);
    // the first retry would come after ~1 s without Retry-After, the second after ~2 s
    await env.clock.advance(6_999);
    assert.equal(env.server.heartbeats.length, 1, 'no retry before Retry-After');
    await env.clock.advance(1);
    assert.equal(env.server.heartbeats.length, 2);
    await env.clock.advance(6_999);
    assert.equal(env.server.heartbeats.length, 2, 'the second 429 is waited out too');
    await env.clock.advance(1);
    assert.equal(env.server.heartbeats.length, 3);
    assert.deepEqual(
      env.server.heartbeats.map((c) => c.at),
      [0, 7_000, 14_000],
    );
    assert.equal(current.status, 'active');
    assert.equal(current.error, null);
    assert.equal(env.errors.length, 0, 'a rate limit is not reported to onError');
    await env.clock.advance(10_000 * 0.9);
    assert.equal(env.server.heartbeats.length, 4, 'normal schedule again');
  });

  test('a Retry-After past maxBackoffMs is waited out; one past 60 s (or past what a timer can hold) waits 60 s', async () => {
    const env = makeEnv();
    env.randomValue = 0;
    const waits = ['45', String(30 * 86_400)]; // 45 s, then 30 days (> 2^31 - 1 ms: a timer would fire at once)
    env.server.handler = (call) => {
      const wait = call.path === '/v1/heartbeat' ? waits.shift() : undefined;
      return wait ? problem(429, 'Too Many Requests', { 'Retry-After': wait }) : undefined;
    };
    current = createPresence(env.options({ live: 'off', maxBackoffMs: 5_000 }));
    await env.clock.advance(44_999);
    assert.equal(env.server.heartbeats.length, 1, 'no retry before Retry-After, past maxBackoffMs');
    await env.clock.advance(1);
    assert.equal(env.server.heartbeats.length, 2);
    await env.clock.advance(59_999);
    assert.equal(env.server.heartbeats.length, 2, 'a huge Retry-After is no retry at once');
    await env.clock.advance(1);
    assert.deepEqual(
      env.server.heartbeats.map((c) => c.at),
      [0, 45_000, 105_000],
    );
    assert.equal(current.status, 'active');
    assert.equal(env.errors.length, 0);
  });

  test('429 with Retry-After: a view is recorded once the wait is over', async () => {
    const env = makeEnv();
    env.randomValue = 0;
    let limited = 1;
    env.server.handler = (call) =>
      call.path === '/v1/views' && limited-- > 0 ? problem(429, 'Too Many Requests', { 'Retry-After': '4' }) : undefined;
    current = createPresence(env.options({ versionId: 'v1', live: 'off' }));
    await env.clock.advance(3_999);
    assert.equal(env.server.to('/v1/views').length, 1, 'no retry before Retry-After');
    await env.clock.advance(1);
    const views = env.server.to('/v1/views');
    assert.equal(views.length, 2);
    assert.equal(views[1]!.at, 4_000);
    assert.equal(current.getSnapshot().views, 7);
    assert.equal(env.errors.length, 0);
    await env.clock.advance(60_000);
    assert.equal(env.server.to('/v1/views').length, 2, 'counted once');
  });

  test('429 with Retry-After: polling waits it out', async () => {
    const env = makeEnv();
    env.randomValue = 0;
    let limited = 1;
    env.server.handler = (call) =>
      call.path.endsWith('/presence') && limited-- > 0 ? problem(429, 'Too Many Requests', { 'Retry-After': '6' }) : undefined;
    current = createPresence(env.options({ live: 'poll' }));
    await env.clock.advance(5_999);
    assert.equal(env.server.to('/presence').length, 1, 'no poll before Retry-After');
    await env.clock.advance(1);
    assert.equal(env.server.to('/presence').length, 2);
    assert.equal(current.online, 2);
    assert.equal(env.errors.length, 0);
  });

  test('network errors back off exponentially, capped at ~30 s, then recover', async () => {
    const env = makeEnv();
    env.randomValue = 0.999999; // upper end of the jitter
    let down = true;
    const server = env.server.fetch;
    current = createPresence(
      env.options({
        live: 'off',
        fetch: (input, init) => (down ? (server(input, init), Promise.reject(new TypeError('Failed to fetch'))) : server(input, init)),
      }),
    );
    await env.clock.advance(200_000);
    const at = env.server.heartbeats.map((c) => c.at);
    const gaps = at.slice(1).map((t, i) => Math.round(t - at[i]!));
    assert.deepEqual(gaps.slice(0, 6), [1_000, 2_000, 4_000, 8_000, 16_000, 30_000]);
    assert.ok(gaps.slice(5).every((g) => g === 30_000), `capped: ${gaps}`);
    assert.equal(current.status, 'retrying');
    assert.equal(current.error?.status, 0);
    assert.equal(env.errors.length, 0);
    down = false;
    await env.clock.advance(30_000);
    assert.equal(current.status, 'active');
    const n = env.server.heartbeats.length;
    await env.clock.advance(11_000);
    assert.equal(env.server.heartbeats.length, n + 1, 'back to intervalS');
  });

  test('409: reported, a new session id is taken once and heartbeats go on', async () => {
    const env = makeEnv();
    let conflicts = 1;
    env.server.handler = (call) =>
      call.path === '/v1/heartbeat' && conflicts-- > 0 ? problem(409, 'Session owned by another user') : undefined;
    current = createPresence(env.options({ live: 'off' }));
    const oldId = current.sessionId;
    await env.clock.advance(0);
    assert.equal(env.errors.length, 1);
    assert.equal(env.errors[0].status, 409);
    const hbs = env.server.heartbeats;
    assert.equal(hbs.length, 2);
    assert.equal(hbs[0]!.body.sessionId, oldId);
    assert.notEqual(hbs[1]!.body.sessionId, oldId);
    assert.equal(current.sessionId, hbs[1]!.body.sessionId);
    assert.equal(env.storage.getItem('presence-svc:session'), current.sessionId);
    assert.equal(current.status, 'active');
  });

  test('403 is reported and stops heartbeats', async () => {
    const env = makeEnv();
    env.server.handler = (call) => (call.path === '/v1/heartbeat' ? problem(403, 'Forbidden') : undefined);
    current = createPresence(env.options({ live: 'off' }));
    await env.clock.advance(60_000);
    assert.equal(env.server.heartbeats.length, 1);
    assert.equal(env.errors.length, 1);
    assert.equal(env.errors[0].status, 403);
    assert.equal(current.status, 'stopped');
  });

  test('getToken() failures are reported and retried with backoff', async () => {
    const env = makeEnv();
    let fail = true;
    current = createPresence(
      env.options({
        versionId: 'v1',
        getToken: async () => {
          if (fail) throw new Error('login required');
          return 't1';
        },
      }),
    );
    await flush();
    assert.equal(env.errors.length, 1, 'one report for the failure shared by heartbeat, view and events');
    assert.equal(env.errors[0].operation, 'token');
    assert.equal(env.server.calls.length, 0);
    assert.equal(env.eventSources.length, 0);
    fail = false;
    await env.clock.advance(1_000);
    assert.equal(env.server.heartbeats.length, 1);
    assert.equal(env.server.to('/v1/views').length, 1);
    assert.equal(env.eventSources.length, 1);
    assert.equal(current.status, 'active');
  });

  test('parseRetryAfter handles seconds, dates and garbage', () => {
    assert.equal(parseRetryAfter('2'), 2_000);
    assert.equal(parseRetryAfter(' 0 '), 0);
    assert.equal(parseRetryAfter(null), null);
    assert.equal(parseRetryAfter('soon'), null);
    assert.equal(parseRetryAfter(''), null);
    assert.equal(parseRetryAfter('  '), null);
    const now = Date.parse('2024-01-01T00:00:00Z');
    assert.equal(parseRetryAfter('Mon, 01 Jan 2024 00:00:05 GMT', now), 5_000);
  });
});
