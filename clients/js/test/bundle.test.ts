/*
 * The minified bundle, dist/presence.min.js, as shipped: its build shortens internal property
 * names (esbuild --mangle-props=_$), which the other tests (tsc output of the sources) never see.
 * `npm test` builds the bundle first (`npm run bundle`).
 */
import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import * as source from '../src/index.js';
import { BASE, flush, makeEnv } from './helpers.js';

// dist-test/test/bundle.test.js -> dist/presence.min.js
const bundleUrl = new URL('../../dist/presence.min.js', import.meta.url);
const bundle = (await import(bundleUrl.href)) as typeof source;

let current: source.Presence | null = null;
afterEach(() => {
  current?.destroy();
  current = null;
});

describe('dist/presence.min.js', () => {
  test('exports what the sources export, with the public property names', () => {
    assert.deepEqual(Object.keys(bundle).sort(), Object.keys(source).sort());
    assert.deepEqual(bundle.EMPTY_SNAPSHOT, source.EMPTY_SNAPSHOT);
    const env = makeEnv();
    const fromBundle = bundle.createPresence(env.options({ autoStart: false }));
    const fromSource = source.createPresence(env.options({ autoStart: false }));
    assert.deepEqual(Object.keys(fromBundle).sort(), Object.keys(fromSource).sort());
    const err = new bundle.PresenceError('x', { status: 503, operation: 'heartbeat', transient: true });
    assert.deepEqual(Object.keys(err).sort(), ['name', 'operation', 'problem', 'retryAfterMs', 'status', 'transient']);
    fromBundle.destroy();
    fromSource.destroy();
  });

  test('heartbeat, view, polling, state, hidden tab and leave', async () => {
    const env = makeEnv();
    const seen: source.PresenceSnapshot[] = [];
    current = bundle.createPresence(env.options({ versionId: 'v1', state: { typing: false }, live: 'poll' }));
    current.subscribe((s) => seen.push(s));
    await flush();

    const hbs = env.server.heartbeats;
    assert.equal(hbs.length, 1);
    assert.equal(hbs[0]!.url, `${BASE}/v1/heartbeat`);
    assert.equal(hbs[0]!.headers['authorization'], 'Bearer t1');
    assert.deepEqual(hbs[0]!.body, {
      artifactId: 'art-1',
      versionId: 'v1',
      sessionId: current.sessionId,
      state: { typing: false },
      status: 'active',
    });
    assert.match(current.sessionId, source.SESSION_ID_PATTERN);
    assert.equal(env.storage.getItem(source.DEFAULT_SESSION_KEY), current.sessionId);
    assert.deepEqual(env.server.to('/v1/views')[0]!.body, { artifactId: 'art-1', versionId: 'v1', sessionId: current.sessionId });
    assert.equal(env.server.to('/presence')[0]!.url, `${BASE}/v1/artifacts/art-1/presence?limit=100`);
    assert.deepEqual(
      { ...current.getSnapshot(), users: current.users.map((u) => u.userId) },
      {
        online: 2,
        sessions: 3,
        users: ['u1', 'u2'],
        views: 7,
        uniqueViewers: 3,
        status: 'active',
        transport: 'polling',
        mode: 'exact',
        error: null,
      },
    );
    assert.ok(seen.length > 0 && seen.at(-1) === current.getSnapshot(), 'listeners get each snapshot');

    // the next heartbeat follows the server's intervalS (10 s, jitter 0.5 -> +0 %)
    await env.clock.advance(10_000);
    assert.equal(env.server.heartbeats.length, 2);
    current.setState({ typing: true });
    await flush();
    assert.deepEqual(env.server.heartbeats[2]!.body.state, { typing: true });

    env.document.setVisibility('hidden');
    assert.equal(current.status, 'hidden');
    await flush();
    assert.equal(env.server.heartbeats[3]!.body.status, 'away', 'away at once');
    await env.clock.advance(60_000);
    assert.equal(env.server.heartbeats.length, 5, 'then once a minute while hidden');
    env.document.setVisibility('visible');
    await flush();
    assert.equal(env.server.heartbeats.length, 6);
    assert.equal(env.server.heartbeats[5]!.body.status, 'active');
    assert.equal(current.status, 'active');

    assert.deepEqual(await current.leave(), { online: 0, sessions: 0 });
    assert.deepEqual(env.server.to('/v1/leave')[0]!.body, { artifactId: 'art-1', sessionId: current.sessionId });
    assert.equal(current.status, 'stopped');
    assert.equal(env.document.listenerCount() + env.window.listenerCount(), 0, 'page listeners removed');
  });

  test('event stream, pagehide beacon, and errors', async () => {
    const env = makeEnv();
    current = bundle.createPresence(env.options());
    await flush();
    const es = env.eventSources[0]!;
    assert.equal(es.url, `${BASE}/v1/artifacts/art-1/events?access_token=t1`);
    es.open();
    es.emit('sync', { online: 1, sessions: 1, users: [{ userId: 'u1', sessions: 1 }] });
    es.emit('join', { userId: 'u2', name: 'Bob' });
    assert.equal(current.getSnapshot().transport, 'events');
    assert.deepEqual(current.users.map((u) => u.userId), ['u1', 'u2']);
    assert.equal(current.online, 2);

    env.window.dispatch('pagehide', { persisted: false });
    assert.equal(env.beacons.length, 1);
    assert.deepEqual(JSON.parse(await env.beacons[0]!.data.text()), {
      artifactId: 'art-1',
      sessionId: current.sessionId,
      grace: true,
      token: 't1',
    });
    assert.ok(es.closed, 'the stream closes on pagehide');

    // a fatal error (403 on a heartbeat) is reported and stops the instance
    env.server.handler = (call) =>
      call.path === '/v1/heartbeat' ? new Response('{"title":"Forbidden"}', { status: 403 }) : undefined;
    env.window.dispatch('pageshow', { persisted: true });
    await flush();
    assert.equal(current.status, 'stopped');
    assert.ok(current.error instanceof bundle.PresenceError);
    assert.equal(current.error.status, 403);
    assert.equal(current.error.operation, 'heartbeat');
    assert.equal(env.errors.at(-1), current.error, 'onError got it');
  });
});
