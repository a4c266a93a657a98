/*
 * `@presence-svc/client/reads` (src/reads.ts): the reads and settings outside a tab's presence
 * loop, against the scripted service of helpers.ts (which checks the bearer token: t1 only).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as core from '../src/index.js';
import { PresenceError, createReads, type Reads, type ReadsOptions, type TimelineResponse } from '../src/reads.js';
import { BASE, json, makeEnv, problem, type Env } from './helpers.js';

function reads(env: Env): Reads {
  return createReads({ baseUrl: BASE + '/', getToken: env.options().getToken, fetch: env.server.fetch });
}

const latest = { artifactId: 'doc 1', versionId: 'v4', setAt: '2026-11-30T03:20:11.204Z' };

describe('the reads entry point', () => {
  test('the presence object no longer carries the reads; the same PresenceError class is used', () => {
    const env = makeEnv();
    const p = core.createPresence(env.options({ autoStart: false }));
    for (const k of ['latest', 'unseen', 'seen', 'seenCheck', 'stats', 'viewers', 'timeline', 'getPrivacy', 'setPrivacy', 'whereNow', 'fetchPresence']) {
      assert.equal(k in p, false, k);
    }
    p.destroy();
    assert.equal(PresenceError, core.PresenceError);
    assert.throws(() => createReads({} as never), TypeError);
  });

  test('a 401 gets one fresh token, shared by the reads, and the request is sent again', async () => {
    const env = makeEnv();
    env.tokens = ['old', 't1'];
    const r = reads(env);
    env.server.handler = (call) => (call.path.endsWith('/latest') && call.headers['authorization'] === 'Bearer t1' ? json(200, latest) : undefined);
    assert.deepEqual(await r.latest('doc 1'), latest);
    assert.deepEqual(
      env.server.calls.map((c) => c.headers['authorization']),
      ['Bearer old', 'Bearer t1'],
    );
    await r.whereNow('u1');
    assert.equal(env.tokenCalls, 2);
    assert.equal(env.server.calls.at(-1)!.url, `${BASE}/v1/users/u1/presence`);
  });
});

describe('answers without a JSON body', () => {
  test('a 204, or a 200 that is not JSON, resolves as an empty answer (fields absent), not an error', async () => {
    const env = makeEnv();
    const r = reads(env);
    env.server.handler = () => new Response(null, { status: 204 });
    assert.deepEqual(await r.getPrivacy('u1'), {});
    env.server.handler = () => new Response('<html>ok</html>', { status: 200, headers: { 'Content-Type': 'text/html' } });
    assert.deepEqual(await r.whereNow('u1'), {});
  });
});

describe('latest version and unseen artifacts', () => {
  test('latest() reads an artifact latest version, null when none is set', async () => {
    const env = makeEnv();
    let set = false;
    env.server.handler = (call) =>
      call.path.endsWith('/latest') ? (set ? json(200, latest) : problem(404, 'no latest version')) : undefined;
    const r = reads(env);
    assert.equal(await r.latest('doc 1'), null);
    set = true;
    assert.deepEqual(await r.latest('doc 1'), latest);
    assert.equal(env.server.to('/latest')[0]!.path, '/v1/artifacts/doc%201/latest');
  });

  test('latest() rejects on a refusal other than 404', async () => {
    const env = makeEnv();
    env.server.handler = (call) => (call.path.endsWith('/latest') ? problem(403, 'Forbidden') : undefined);
    await assert.rejects(reads(env).latest('doc-1'), (e: unknown) => e instanceof PresenceError && e.status === 403 && e.operation === 'seen');
  });

  test('unseen() asks for every artifact id at once and returns the list', async () => {
    const env = makeEnv();
    env.server.handler = (call) => (call.path.endsWith('/unseen') ? json(200, { artifacts: [latest] }) : undefined);
    assert.deepEqual(await reads(env).unseen('u:1', ['doc 1', 'doc-2']), [latest]);
    const call = env.server.to('/unseen')[0]!;
    assert.equal(call.path, '/v1/users/u%3A1/unseen');
    assert.deepEqual(new URL(call.url).searchParams.getAll('artifactId'), ['doc 1', 'doc-2']);
  });

  test('a refusal rejects with a PresenceError of the seen operation', async () => {
    const env = makeEnv();
    env.server.handler = (call) => (call.path.endsWith('/unseen') ? problem(403, 'another user') : undefined);
    await assert.rejects(reads(env).unseen('u2', ['doc-1']), (e: unknown) => {
      assert.ok(e instanceof PresenceError);
      assert.equal(e.status, 403);
      assert.equal(e.operation, 'seen');
      return true;
    });
  });
});

describe('timeline', () => {
  test('timeline() reads the artifact timeline with the range and step, as the service answers it', async () => {
    const env = makeEnv();
    const answer = {
      artifactId: 'art 1',
      step: '1h',
      points: [{ t: '2026-01-01T10:00:00.000Z', online: 3, sessions: 4 }],
      peak: { online: 3, at: '2026-01-01T10:00:00.000Z' },
    };
    env.server.handler = (call) => (call.path.endsWith('/timeline') ? json(200, answer) : undefined);
    const got = await reads(env).timeline('art 1', { since: new Date(Date.UTC(2026, 0, 1, 10)), until: '2026-01-01T11:00:00Z', step: '1h' });
    assert.deepEqual(got, answer);
    const [call] = env.server.to('/timeline');
    const url = new URL(call!.url);
    assert.equal(url.pathname, '/v1/artifacts/art%201/timeline');
    assert.equal(url.searchParams.get('since'), '2026-01-01T10:00:00.000Z');
    assert.equal(url.searchParams.get('until'), '2026-01-01T11:00:00Z');
    assert.equal(url.searchParams.get('step'), '1h');
    assert.equal(call!.headers['authorization'], 'Bearer t1');
  });

  test('timeline() rejects with the problem of a refused range', async () => {
    const env = makeEnv();
    env.server.handler = (call) => (call.path.endsWith('/timeline') ? problem(400, 'Bad Request') : undefined);
    await assert.rejects(reads(env).timeline('art-1'), (err: unknown) => {
      assert.ok(err instanceof PresenceError);
      assert.equal(err.status, 400);
      assert.equal(err.operation, 'timeline');
      assert.deepEqual([...new URL(env.server.to('/timeline')[0]!.url).searchParams], []); // the service's defaults
      return true;
    });
  });
});

describe('privacy settings', () => {
  test('setPrivacy PUTs only the given fields; getPrivacy reads them back', async () => {
    const env = makeEnv();
    let stored = { userId: 'a:b', viewHistory: 'visible', presence: 'visible', updatedAt: null as string | null };
    env.server.handler = (call) => {
      if (!call.path.endsWith('/privacy')) return undefined;
      if (call.method === 'PUT') stored = { ...stored, ...call.body, updatedAt: '2026-11-30T03:00:00.000Z' };
      return json(200, stored);
    };
    const r = reads(env);
    const set = await r.setPrivacy('a:b', { presence: 'hidden' });
    assert.deepEqual(set, { userId: 'a:b', viewHistory: 'visible', presence: 'hidden', updatedAt: '2026-11-30T03:00:00.000Z' });
    const put = env.server.to('/privacy').find((c) => c.method === 'PUT')!;
    assert.equal(put.path, '/v1/users/a%3Ab/privacy');
    assert.deepEqual(put.body, { presence: 'hidden' });
    assert.equal(put.headers['authorization'], 'Bearer t1');
    assert.equal(put.headers['content-type'], 'application/json');
    assert.deepEqual(await r.getPrivacy('a:b'), set);
  });

  test('a refused change rejects with a PresenceError naming the field', async () => {
    const env = makeEnv();
    env.server.handler = (call) =>
      call.path.endsWith('/privacy')
        ? json(400, { type: 'about:blank', title: 'Bad Request', status: 400, detail: 'bad', errors: [{ field: 'presence', message: 'x' }] })
        : undefined;
    const r = reads(env);
    const err = await r.setPrivacy('u1', { presence: 'gone' as 'hidden' }).then(
      () => null,
      (e: unknown) => e,
    );
    assert.ok(err instanceof PresenceError);
    assert.equal(err.status, 400);
    assert.equal(err.operation, 'privacy');
    assert.equal((err.problem as { errors?: { field: string }[] }).errors?.[0]?.field, 'presence');
    env.server.handler = (call) => (call.path.endsWith('/privacy') ? problem(403, 'Forbidden') : undefined);
    await assert.rejects(r.getPrivacy('u2'), (e: unknown) => e instanceof PresenceError && e.status === 403);
  });
});

const stats = {
  artifactId: 'doc 1',
  views: 3,
  uniqueViewers: 2,
  lastViewedAt: '2026-11-29T21:36:11.463Z',
  engagedMs: 42_000,
  versions: [
    {
      versionId: 'v3',
      views: 3,
      uniqueViewers: 2,
      lastViewedAt: '2026-11-29T21:36:11.463Z',
      engagedMs: 42_000,
      readers: 1,
      histogram: [{ fromS: 0, viewers: 1 }, { fromS: 30, viewers: 1 }],
    },
  ],
};
const viewer = {
  userId: 'alice',
  name: 'Alice',
  avatarUrl: null,
  views: 1,
  firstViewedAt: '2026-11-30T03:21:02.118Z',
  lastViewedAt: '2026-11-30T03:21:02.118Z',
  engagedMs: 41_250,
};

describe('stats, viewers and who has seen a version', () => {
  test('stats() reads GET .../stats and returns the answer', async () => {
    const env = makeEnv();
    env.server.handler = (call) => (call.path.endsWith('/stats') ? json(200, stats) : undefined);
    assert.deepEqual(await reads(env).stats('doc 1'), stats);
    const call = env.server.calls.at(-1)!;
    assert.equal(call.method, 'GET');
    assert.equal(call.url, `${BASE}/v1/artifacts/doc%201/stats`);
    assert.equal(call.headers['authorization'], 'Bearer t1');
  });

  test('viewers() pages a version viewers with limit and cursor; a refusal is a stats PresenceError', async () => {
    const env = makeEnv();
    const page = { viewers: [viewer], nextCursor: 'c2', namesJoined: true, hiddenViewers: 1 };
    env.server.handler = (call) => (call.path.endsWith('/viewers') ? json(200, page) : undefined);
    const r = reads(env);
    assert.deepEqual(await r.viewers('doc 1', 'v/3'), page);
    let url = new URL(env.server.calls.at(-1)!.url);
    assert.equal(url.pathname, '/v1/artifacts/doc%201/versions/v%2F3/viewers');
    assert.deepEqual(Object.fromEntries(url.searchParams), { limit: '100' });
    await r.viewers('doc 1', 'v3', { limit: 5, cursor: page.nextCursor });
    url = new URL(env.server.calls.at(-1)!.url);
    assert.deepEqual(Object.fromEntries(url.searchParams), { limit: '5', cursor: 'c2' });
    env.server.handler = () => problem(403, 'Forbidden');
    await assert.rejects(r.viewers('doc 1', 'v3'), (e: unknown) => e instanceof PresenceError && e.status === 403 && e.operation === 'stats');
  });

  test('seen() reads the counts and a page of who has seen the latest version, or versionId', async () => {
    const env = makeEnv();
    const page = {
      artifactId: 'doc 1',
      versionId: 'v4',
      seen: 2,
      read: 1,
      hiddenViewers: 0,
      viewers: [{ ...viewer, read: true }],
      nextCursor: null,
      namesJoined: true,
    };
    env.server.handler = (call) => (call.path.endsWith('/seen') ? json(200, page) : undefined);
    const r = reads(env);
    assert.deepEqual(await r.seen('doc 1'), page);
    let url = new URL(env.server.calls.at(-1)!.url);
    assert.equal(url.pathname, '/v1/artifacts/doc%201/seen');
    assert.deepEqual(Object.fromEntries(url.searchParams), { limit: '100' });
    await r.seen('doc 1', { versionId: 'v3', limit: 10, cursor: 'k1' });
    url = new URL(env.server.calls.at(-1)!.url);
    assert.deepEqual(Object.fromEntries(url.searchParams), { limit: '10', versionId: 'v3', cursor: 'k1' });
    env.server.handler = () => problem(404, 'no latest version');
    await assert.rejects(r.seen('doc 1'), (e: unknown) => e instanceof PresenceError && e.status === 404 && e.operation === 'seen');
  });

  test('seenCheck() POSTs the audience (and versionId) as JSON and returns the lists', async () => {
    const env = makeEnv();
    const answer = { versionId: 'v4', seen: ['alice', 'bob'], read: ['alice'], notSeen: ['carol'], hiddenViewers: 0 };
    env.server.handler = (call) => (call.path.endsWith('/seen/check') ? json(200, answer) : undefined);
    const r = reads(env);
    assert.deepEqual(await r.seenCheck('doc 1', ['alice', 'bob', 'carol']), answer);
    await r.seenCheck('doc 1', ['alice'], { versionId: 'v3' });
    const [first, second] = env.server.to('/seen/check');
    assert.equal(first!.method, 'POST');
    assert.equal(first!.url, `${BASE}/v1/artifacts/doc%201/seen/check`);
    assert.equal(first!.headers['content-type'], 'application/json');
    assert.equal(first!.headers['authorization'], 'Bearer t1');
    assert.deepEqual(first!.body, { userIds: ['alice', 'bob', 'carol'] });
    assert.deepEqual(second!.body, { userIds: ['alice'], versionId: 'v3' });
  });
});

const where = {
  userId: 'u 1',
  online: [{ artifactId: 'doc-1', versionId: 'v3', status: 'away', lastSeen: '2026-11-29T21:36:11.420Z', sessions: 2 }],
  recent: [{ artifactId: 'doc-7', lastSeen: '2026-11-29T20:02:40.031Z', reason: 'left' }],
};

describe('where a user is, and pages of an artifact presence list', () => {
  test('whereNow asks GET /v1/users/{userId}/presence with the token and returns the answer', async () => {
    const env = makeEnv();
    env.server.handler = (call) => (call.path.startsWith('/v1/users/') ? json(200, where) : undefined);
    const found = await reads(env).whereNow('u 1');
    const call = env.server.calls.at(-1)!;
    assert.equal(call.method, 'GET');
    assert.equal(call.url, `${BASE}/v1/users/u%201/presence`);
    assert.equal(call.headers['authorization'], 'Bearer t1');
    assert.deepEqual(found, where);
  });

  test('whereNow of another user refused (403) rejects with a PresenceError naming the status', async () => {
    const env = makeEnv();
    env.server.handler = (call) => (call.path.startsWith('/v1/users/') ? problem(403, 'Forbidden') : undefined);
    await assert.rejects(reads(env).whereNow('someone-else'), (err: unknown) => {
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
    const r = reads(env);
    const page = await r.fetchPresence('doc 1', { includeRecent: true, recentLimit: 1, limit: 25 });
    let url = new URL(env.server.calls.at(-1)!.url);
    assert.equal(url.pathname, '/v1/artifacts/doc%201/presence');
    assert.deepEqual(Object.fromEntries(url.searchParams), { limit: '25', include: 'recent', recentLimit: '1' });
    assert.deepEqual(page.recent, recent);
    assert.equal(page.recentNextCursor, 'rc2');

    await r.fetchPresence('doc 1', { includeRecent: true, includeSessions: true, recentCursor: page.recentNextCursor!, limit: 5, cursor: 'c1' });
    url = new URL(env.server.calls.at(-1)!.url);
    assert.deepEqual(Object.fromEntries(url.searchParams), { limit: '5', include: 'sessions,recent', cursor: 'c1', recentCursor: 'rc2' });
  });

  test('fetchPresence without options asks for one plain page of 100', async () => {
    const env = makeEnv();
    const page = await reads(env).fetchPresence('art-1');
    const url = new URL(env.server.calls.at(-1)!.url);
    assert.deepEqual(Object.fromEntries(url.searchParams), { limit: '100' });
    assert.deepEqual(page.users.map((u) => u.userId), ['u1', 'u2']);
    assert.equal(page.recent, undefined);
  });
});

/** The reads of `env` on its fake clock, with `extra` options. */
function retryingReads(env: Env, extra: Partial<ReadsOptions> = {}): Reads {
  const o = env.options();
  return createReads({
    baseUrl: BASE,
    getToken: o.getToken,
    fetch: env.server.fetch,
    setTimeout: env.clock.setTimeout,
    clearTimeout: env.clock.clearTimeout,
    random: () => env.randomValue,
    ...extra,
  });
}

/** A promise's outcome, readable while the clock moves (no unhandled rejection meanwhile). */
function watch<T>(p: Promise<T>): { done: boolean; value?: T; error?: unknown } {
  const out: { done: boolean; value?: T; error?: unknown } = { done: false };
  p.then(
    (value) => Object.assign(out, { done: true, value }),
    (error: unknown) => Object.assign(out, { done: true, error }),
  );
  return out;
}

describe('transient failures are retried by the reads client itself', () => {
  test('429 with Retry-After in seconds: no retry before it, then the answer', async () => {
    const env = makeEnv();
    let limited = 1;
    env.server.handler = (call) =>
      call.path.startsWith('/v1/users/') && limited-- > 0 ? problem(429, 'Too Many Requests', { 'Retry-After': '7' }) : json(200, where);
    const got = watch(retryingReads(env).whereNow('u 1'));
    await env.clock.advance(6_999);
    assert.equal(got.done, false);
    assert.equal(env.server.calls.length, 1, 'no retry before Retry-After');
    await env.clock.advance(1_000); // Retry-After plus up to 10 % jitter (random 0.5: 350 ms)
    assert.deepEqual(got.value, where);
    assert.deepEqual(env.server.calls.map((c) => c.at), [0, 7_350]);
  });

  test('429 with Retry-After as an HTTP date: waited out as well', async () => {
    const env = makeEnv();
    let limited = 1;
    env.server.handler = (call) =>
      call.path.endsWith('/timeline') && limited-- > 0
        ? problem(429, 'Too Many Requests', { 'Retry-After': new Date(Date.now() + 6_000).toUTCString() })
        : json(200, { artifactId: 'a', step: '1m', points: [], peak: null });
    const got = watch(retryingReads(env).timeline('a'));
    await env.clock.advance(4_900); // the date has a 1 s resolution: at least 5 s from now
    assert.equal(env.server.calls.length, 1, 'no retry before the date');
    await env.clock.advance(3_000);
    assert.equal(env.server.calls.length, 2);
    assert.equal(got.done && got.error, undefined);
    assert.equal((got.value as TimelineResponse).artifactId, 'a');
  });

  test('503 without Retry-After: exponential backoff with jitter (1 s, 2 s ... each half jittered)', async () => {
    const env = makeEnv();
    let down = 2;
    env.server.handler = (call) => (call.path.endsWith('/latest') && down-- > 0 ? problem(503, 'Service Unavailable') : json(200, latest));
    const got = watch(retryingReads(env).latest('doc 1'));
    await env.clock.advance(10_000);
    assert.deepEqual(got.value, latest);
    // random 0.5: 500 + 250 ms, then 1000 + 500 ms
    assert.deepEqual(env.server.calls.map((c) => c.at), [0, 750, 2_250]);
  });

  test('a network error (no answer) is retried; so is a 503 on PUT privacy (idempotent)', async () => {
    const env = makeEnv();
    let failures = 2;
    const stored = { userId: 'u1', viewHistory: 'visible', presence: 'hidden', updatedAt: '2026-11-30T03:00:00.000Z' };
    const fetch: typeof env.server.fetch = async (input, init) => {
      if (failures === 2) {
        failures--;
        throw new TypeError('fetch failed');
      }
      if (failures-- > 0) return problem(503, 'Service Unavailable', { 'Retry-After': '1' });
      return env.server.fetch(input, init);
    };
    env.server.handler = (call) => (call.path.endsWith('/privacy') ? json(200, stored) : undefined);
    const got = watch(retryingReads(env, { fetch }).setPrivacy('u1', { presence: 'hidden' }));
    await env.clock.advance(10_000);
    assert.deepEqual(got.value, stored);
    assert.deepEqual(env.server.calls.map((c) => [c.method, c.body]), [['PUT', { presence: 'hidden' }]]);
  });

  test('POST seen/check is a read: a 429 and a 503 are retried with the same body', async () => {
    const env = makeEnv();
    const answer = { versionId: 'v4', seen: [], read: [], notSeen: ['carol'], hiddenViewers: 0 };
    const refusals = [problem(429, 'Too Many Requests', { 'Retry-After': '3' }), problem(503, 'Service Unavailable')];
    env.server.handler = (call) => (call.path.endsWith('/seen/check') ? (refusals.shift() ?? json(200, answer)) : undefined);
    const got = watch(retryingReads(env).seenCheck('doc-1', ['carol'], { versionId: 'v4' }));
    await env.clock.advance(10_000);
    assert.deepEqual(got.value, answer);
    // Retry-After 3 s (+ 10 % of it, random 0.5: 150 ms), then the backoff's second step (1.5 s)
    assert.deepEqual(env.server.calls.map((c) => [c.method, c.at, c.body]), [
      ['POST', 0, { userIds: ['carol'], versionId: 'v4' }],
      ['POST', 3_150, { userIds: ['carol'], versionId: 'v4' }],
      ['POST', 4_650, { userIds: ['carol'], versionId: 'v4' }],
    ]);
  });

  test('retries exhausted: rejects with the last PresenceError after maxAttempts in all', async () => {
    const env = makeEnv();
    env.server.handler = (call) =>
      call.path.endsWith('/presence') ? problem(503, `down ${env.server.calls.length}`, { 'Retry-After': '20' }) : undefined;
    const got = watch(retryingReads(env, { maxAttempts: 3, maxBackoffMs: 2_000 }).fetchPresence('doc-1'));
    await env.clock.advance(40_999);
    assert.equal(got.done, false);
    await env.clock.advance(1);
    const err = got.error;
    assert.ok(err instanceof PresenceError);
    assert.equal(err.status, 503);
    assert.equal(err.operation, 'presence');
    assert.equal(err.retryAfterMs, 20_000);
    assert.match(err.message, /down 3$/);
    // a Retry-After beyond maxBackoffMs is waited out (plus its jitter, random 0.5: 500 ms):
    // coming back after the 2 s cap would only meet the refusal again
    assert.deepEqual(env.server.calls.map((c) => c.at), [0, 20_500, 41_000]);
    assert.deepEqual(env.clock.pending(), []);
  });

  test('a Retry-After beyond maxRetryAfterMs rejects at once, saying when to come back', async () => {
    const env = makeEnv();
    env.server.handler = () => problem(429, 'Too Many Requests', { 'Retry-After': '120' });
    const got = watch(retryingReads(env).stats('doc-1'));
    await env.clock.advance(0);
    assert.ok(got.error instanceof PresenceError);
    assert.equal(got.error.status, 429);
    assert.equal(got.error.retryAfterMs, 120_000);
    assert.equal(got.error.transient, true);
    assert.equal(env.server.calls.length, 1);
    assert.deepEqual(env.clock.pending(), [], 'no wait left behind');
    // with a longer bound it is waited out
    const patient = watch(retryingReads(env, { maxRetryAfterMs: 180_000, maxAttempts: 2 }).stats('doc-1'));
    await env.clock.advance(120_499);
    assert.equal(env.server.calls.length, 2, 'no retry before Retry-After');
    await env.clock.advance(1);
    assert.equal(env.server.calls.length, 3);
    assert.equal(env.server.calls[2]!.at, 120_500, 'Retry-After and its jitter (random 0.5: 500 ms)');
    assert.ok(patient.error instanceof PresenceError && patient.error.status === 429);
  });

  test('a maxRetryAfterMs past what setTimeout can wait is bounded there: a longer wait rejects', async () => {
    // setTimeout fires at once past 2^31 - 1 ms: such a wait would retry back to back
    const env = makeEnv();
    env.server.handler = () => problem(503, 'Service Unavailable', { 'Retry-After': '9000000' });
    const got = watch(retryingReads(env, { maxRetryAfterMs: Infinity }).stats('doc-1'));
    await env.clock.advance(0);
    assert.ok(got.error instanceof PresenceError);
    assert.equal(got.error.retryAfterMs, 9_000_000_000);
    assert.equal(env.server.calls.length, 1);
    assert.deepEqual(env.clock.pending(), [], 'no wait set');
  });

  test('the default is 5 attempts in all; maxAttempts 1 sends one request', async () => {
    const env = makeEnv();
    env.server.handler = () => problem(429, 'Too Many Requests', { 'Retry-After': '1' });
    const five = watch(retryingReads(env).getPrivacy('u1'));
    await env.clock.advance(60_000);
    assert.ok(five.error instanceof PresenceError && five.error.status === 429);
    assert.equal(env.server.calls.length, 5);
    const one = watch(retryingReads(env, { maxAttempts: 1 }).getPrivacy('u1'));
    await env.clock.advance(0);
    assert.ok(one.error instanceof PresenceError && one.error.status === 429);
    assert.equal(env.server.calls.length, 6);
  });

  test('a 4xx other than 408 and 429 is not retried', async () => {
    for (const status of [400, 403, 404, 409, 413]) {
      const env = makeEnv();
      env.server.handler = () => problem(status, 'No');
      const got = watch(retryingReads(env).unseen('u1', ['doc-1']));
      await env.clock.advance(60_000);
      assert.ok(got.error instanceof PresenceError && got.error.status === status, String(status));
      assert.equal(got.error.transient, false);
      assert.equal(env.server.calls.length, 1, String(status));
    }
  });

  test('what PresenceError.transient says is retried: a 408, and a getToken() failure', async () => {
    const env = makeEnv();
    let timeouts = 1;
    env.server.handler = (call) => (call.path.endsWith('/latest') && timeouts-- > 0 ? problem(408, 'Request Timeout') : json(200, latest));
    const got = watch(retryingReads(env).latest('doc 1'));
    await env.clock.advance(10_000);
    assert.deepEqual(got.value, latest);
    assert.deepEqual(env.server.calls.map((c) => c.at), [0, 750]);

    const offline = makeEnv();
    let asked = 0;
    const token = watch(
      retryingReads(offline, {
        getToken: () => {
          if (++asked < 3) throw new Error('token endpoint unreachable');
          return 't1';
        },
      }).whereNow('u1'),
    );
    await offline.clock.advance(60_000);
    assert.equal(asked, 3);
    assert.equal(token.error, undefined);
    assert.equal(offline.server.calls.length, 1);
    assert.equal(offline.server.calls[0]!.at, 2_250, 'backoff: 750 ms, then 1500 ms');

    // a getToken() that keeps failing: maxAttempts in all, then its error
    const out = makeEnv();
    const failing = watch(
      retryingReads(out, {
        maxAttempts: 2,
        getToken: () => {
          throw new Error('signed out');
        },
      }).whereNow('u1'),
    );
    await out.clock.advance(60_000);
    assert.ok(failing.error instanceof PresenceError);
    assert.equal(failing.error.operation, 'token');
    assert.equal(failing.error.transient, true);
    assert.equal(out.server.calls.length, 0);
  });

  test('signal: aborting ends the wait at once with the last error; fetch gets the signal', async () => {
    const env = makeEnv();
    const controller = new AbortController();
    const signals: (AbortSignal | null | undefined)[] = [];
    const fetch: typeof env.server.fetch = (input, init) => {
      signals.push(init?.signal);
      return env.server.fetch(input, init);
    };
    env.server.handler = () => problem(429, 'Too Many Requests', { 'Retry-After': '20' });
    const got = watch(retryingReads(env, { fetch, signal: controller.signal }).timeline('a'));
    await env.clock.advance(5_000);
    assert.equal(got.done, false);
    controller.abort();
    await env.clock.advance(0);
    assert.ok(got.error instanceof PresenceError && got.error.status === 429);
    assert.deepEqual(env.clock.pending(), [], 'no retry left behind');
    assert.deepEqual(signals, [controller.signal]);
    // an aborted client fails its next call without a retry
    const next = watch(retryingReads(env, { signal: controller.signal }).timeline('a'));
    await env.clock.advance(60_000);
    assert.ok(next.error instanceof PresenceError);
    assert.equal(env.server.calls.length, 2);
  });
});
