import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { createPresence, type Presence } from '../src/index.js';
import { BASE, flush, makeEnv, problem } from './helpers.js';

let current: Presence | null = null;
afterEach(() => {
  current?.destroy();
  current = null;
});

const ann = { userId: 'u1', name: 'Ann', avatarUrl: 'https://a/1.png', versionId: 'v1', lastSeen: 't', sessions: 1, state: null };
const bob = { userId: 'u2', name: 'Bob', avatarUrl: null, versionId: 'v1', lastSeen: 't', sessions: 2, state: { typing: false } };

describe('live updates', () => {
  test('connects EventSource to the events endpoint with the token in the query', async () => {
    const env = makeEnv();
    current = createPresence(env.options({ artifactId: 'a/b c' }));
    await flush();
    assert.equal(env.eventSources.length, 1);
    assert.equal(env.eventSources[0]!.url, `${BASE}/v1/artifacts/a%2Fb%20c/events?access_token=t1`);
    assert.equal(current.getSnapshot().transport, 'connecting');
  });

  test('applies sync, join, state, sessions, count and leave events', async () => {
    const env = makeEnv();
    current = createPresence(env.options());
    await flush();
    const es = env.eventSources[0]!;
    const seen: number[] = [];
    current.subscribe((s) => seen.push(s.users.length));

    es.open();
    es.emit('sync', { online: 2, sessions: 3, users: [ann, bob] }, '1');
    assert.equal(current.getSnapshot().transport, 'events');
    assert.equal(current.online, 2);
    assert.equal(current.sessions, 3);
    assert.deepEqual(current.users.map((u) => u.userId), ['u1', 'u2']);

    es.emit('join', { userId: 'u3', name: 'Cy', avatarUrl: null, versionId: 'v2', state: null, lastSeen: 't2' }, '2');
    assert.deepEqual(current.users.map((u) => u.userId), ['u1', 'u2', 'u3']);
    assert.equal(current.users[2]!.name, 'Cy');
    assert.equal(current.online, 3, 'join bumps online until a count arrives');

    es.emit('state', { userId: 'u2', versionId: 'v3', state: { typing: true } }, '3');
    const u2 = current.users.find((u) => u.userId === 'u2')!;
    assert.equal(u2.versionId, 'v3');
    assert.deepEqual(u2.state, { typing: true });
    assert.equal(u2.name, 'Bob', 'other fields kept');

    es.emit('sessions', { userId: 'u3', sessions: 2 }, '3b');
    assert.equal(current.users.find((u) => u.userId === 'u3')!.sessions, 2, 'a second tab of u3');
    es.emit('sessions', { userId: 'nobody', sessions: 4 }, '3c');
    assert.equal(current.users.length, 3, 'unknown user ignored');

    es.emit('count', { online: 3, sessions: 5 }, '4');
    assert.equal(current.online, 3);
    assert.equal(current.sessions, 5);

    const before = current.users;
    es.emit('leave', { userId: 'u1', reason: 'timeout' }, '5');
    assert.deepEqual(current.users.map((u) => u.userId), ['u2', 'u3']);
    assert.notEqual(current.users, before, 'users is a new array on change');
    assert.equal(current.online, 2);

    es.emit('leave', { userId: 'nobody', reason: 'left' }, '6');
    assert.equal(current.online, 2, 'unknown leave ignored');
    es.emit('state', { userId: 'nobody', versionId: 'v9', state: null }, '7');
    assert.equal(current.users.length, 2);

    es.emit('sync', { online: 1, sessions: 1, users: [ann] }, '8');
    assert.deepEqual(current.users.map((u) => u.userId), ['u1'], 'a later sync replaces everything');
    assert.equal(current.online, 1);
    assert.ok(seen.length >= 5, 'listeners notified');

    es.dispatch('join', { data: 'not json' });
    assert.equal(current.users.length, 1, 'malformed data ignored');
  });

  test('a large room: the sync says interval mode and interval events patch the list and set the counts', async () => {
    const env = makeEnv();
    current = createPresence(env.options());
    await flush();
    const es = env.eventSources[0]!;
    es.open();
    es.emit('sync', { online: 2, sessions: 3, users: [ann, bob] }, '1');
    assert.equal(current.getSnapshot().mode, 'exact');

    es.emit('sync', { online: 20_000, sessions: 21_000, users: [ann, bob], mode: 'interval' }, 'e2-0');
    assert.equal(current.getSnapshot().mode, 'interval');
    assert.equal(current.online, 20_000);

    const cy = { userId: 'u3', name: 'Cy', avatarUrl: null, versionId: 'v2', lastSeen: 't3', sessions: 1, state: null };
    const bobAgain = { ...bob, state: { typing: true } };
    es.emit(
      'interval',
      { online: 20_001, sessions: 21_004, joined: [cy, bobAgain], left: [{ userId: 'u1', reason: 'timeout' }], more: true, namesJoined: true },
      'e2-1',
    );
    assert.deepEqual(current.users.map((u) => u.userId), ['u2', 'u3']);
    assert.deepEqual(current.users[0]!.state, { typing: true }, 'a listed user is replaced by the fresh row');
    assert.equal(current.online, 20_001, 'counts come from the interval, not from the lists');
    assert.equal(current.sessions, 21_004);

    es.emit('interval', { online: 19_999, sessions: 21_000, joined: [], left: [{ userId: 'nobody', reason: 'left' }], more: false }, 'e2-2');
    assert.equal(current.online, 19_999);
    assert.equal(current.users.length, 2, 'an unknown user leaving changes no row');
    es.emit('interval', { online: 'many', joined: 'x', left: [null] }, 'e2-3');
    assert.equal(current.online, 19_999, 'malformed fields ignored');

    es.emit('sync', { online: 300, sessions: 310, users: [ann], mode: 'exact' }, 'e3-0');
    assert.equal(current.getSnapshot().mode, 'exact', 'back to exact with the next sync');
    assert.deepEqual(current.users.map((u) => u.userId), ['u1']);
  });

  test('a state event carries the status of a user who went away', async () => {
    const env = makeEnv();
    current = createPresence(env.options());
    await flush();
    const es = env.eventSources[0]!;
    es.open();
    es.emit('sync', { online: 2, sessions: 3, users: [ann, bob] }, '1');
    es.emit('state', { userId: 'u1', versionId: 'v1', state: null, status: 'away' }, '2');
    assert.equal(current.users[0]!.status, 'away');
    assert.equal(current.users[0]!.name, 'Ann');
  });

  test('falls back to polling when EventSource keeps failing', async () => {
    const env = makeEnv();
    current = createPresence(env.options());
    await flush();
    // server answers non-200 each time: the browser closes the EventSource, the SDK reconnects
    env.eventSources[0]!.fail(true);
    await env.clock.advance(60_000);
    assert.equal(env.eventSources.length, 2);
    assert.ok(env.eventSources[0]!.closed);
    env.eventSources[1]!.fail(false); // network drop: the browser retries itself
    await env.clock.advance(60_000);
    assert.equal(env.eventSources.length, 2, 'no own reconnect while the browser retries');
    assert.equal(env.server.to('/presence').length, 0);
    env.eventSources[1]!.fail(true);
    await flush();
    assert.ok(env.eventSources[1]!.closed);
    assert.equal(current.getSnapshot().transport, 'polling');
    const polls = env.server.to('/presence');
    assert.equal(polls.length, 1, 'polls at once');
    assert.equal(polls[0]!.method, 'GET');
    assert.equal(polls[0]!.url, `${BASE}/v1/artifacts/art-1/presence?limit=100`);
    assert.equal(polls[0]!.headers['authorization'], 'Bearer t1');
    assert.equal(current.online, 2);
    assert.deepEqual(current.users.map((u) => u.userId), ['u1', 'u2']);

    await env.clock.advance(10_000);
    assert.equal(env.server.to('/presence').length, 2, 'then every intervalS');
    await env.clock.advance(600_000);
    assert.equal(env.eventSources.length, 2, 'stays on polling');
  });

  test('a sync between failures resets the failure count', async () => {
    const env = makeEnv();
    current = createPresence(env.options());
    await flush();
    const es = env.eventSources[0]!;
    for (let i = 0; i < 5; i++) {
      es.fail(false);
      es.open();
      es.emit('sync', { online: 1, sessions: 1, users: [ann] });
    }
    await env.clock.advance(60_000);
    assert.equal(current.getSnapshot().transport, 'events');
    assert.equal(env.server.to('/presence').length, 0);
  });

  test('a resumed stream (events after Last-Event-ID, no sync) counts as working', async () => {
    const env = makeEnv();
    current = createPresence(env.options());
    await flush();
    const es = env.eventSources[0]!;
    es.open();
    es.emit('sync', { online: 1, sessions: 1, users: [ann] }, '1');
    for (let i = 0; i < 5; i++) {
      es.fail(false); // the browser reconnects by itself and the server resumes
      es.open();
      es.emit('count', { online: 1, sessions: 1 });
    }
    assert.equal(current.getSnapshot().transport, 'events');
    await env.clock.advance(60_000);
    assert.equal(env.server.to('/presence').length, 0, 'never fell back to polling');
  });

  test('polls when EventSource is not available; pauses while hidden', async () => {
    const env = makeEnv();
    current = createPresence(env.options({ EventSource: null }));
    await flush();
    assert.equal(current.getSnapshot().transport, 'polling');
    assert.equal(env.server.to('/presence').length, 1);
    env.document.setVisibility('hidden');
    await env.clock.advance(100_000);
    assert.equal(env.server.to('/presence').length, 1);
    env.document.setVisibility('visible');
    await flush();
    assert.equal(env.server.to('/presence').length, 2);
  });

  test('polling backs off on 503 and honours Retry-After', async () => {
    const env = makeEnv();
    env.randomValue = 0;
    let failures = 1;
    env.server.handler = (call) =>
      call.path.endsWith('/presence') && failures-- > 0 ? problem(503, 'Unavailable', { 'Retry-After': '3' }) : undefined;
    current = createPresence(env.options({ live: 'poll' }));
    await env.clock.advance(2_999);
    assert.equal(env.server.to('/presence').length, 1);
    await env.clock.advance(1);
    assert.equal(env.server.to('/presence').length, 2);
    assert.equal(current.online, 2);
  });

  test("live: 'off' opens no EventSource and does not poll", async () => {
    const env = makeEnv();
    current = createPresence(env.options({ live: 'off' }));
    await env.clock.advance(60_000);
    assert.equal(env.eventSources.length, 0);
    assert.equal(env.server.to('/presence').length, 0);
  });
});

describe('views', () => {
  test('one view is recorded on start when a versionId is given', async () => {
    const env = makeEnv();
    current = createPresence(env.options({ versionId: 'v1', live: 'off' }));
    await env.clock.advance(60_000);
    const views = env.server.to('/v1/views');
    assert.equal(views.length, 1);
    assert.deepEqual(views[0]!.body, { artifactId: 'art-1', versionId: 'v1', sessionId: current.sessionId });
    assert.equal(views[0]!.headers['authorization'], 'Bearer t1');
    assert.equal(current.getSnapshot().views, 7);
    assert.equal(current.getSnapshot().uniqueViewers, 3);
    env.document.setVisibility('hidden');
    env.document.setVisibility('visible');
    await flush();
    assert.equal(env.server.to('/v1/views').length, 1, 'visibility changes do not count again');
  });

  test('no view without versionId, or with recordViews: false', async () => {
    const env = makeEnv();
    current = createPresence(env.options({ live: 'off' }));
    const other = createPresence(makeEnv().options({ live: 'off', versionId: 'v1', recordViews: false }));
    await flush();
    assert.equal(env.server.to('/v1/views').length, 0);
    other.destroy();
  });

  test('setVersion heartbeats at once and records a view of the new version', async () => {
    const env = makeEnv();
    current = createPresence(env.options({ versionId: 'v1', live: 'off' }));
    await env.clock.advance(2_000);
    current.setVersion('v2');
    await flush();
    assert.equal(current.versionId, 'v2');
    assert.equal(env.server.heartbeats.length, 2);
    assert.equal(env.server.heartbeats[1]!.body.versionId, 'v2');
    assert.deepEqual(env.server.to('/v1/views').map((c) => c.body.versionId), ['v1', 'v2']);
    current.setVersion('v2');
    await flush();
    assert.equal(env.server.to('/v1/views').length, 2, 'same version is not counted twice');
  });
});
