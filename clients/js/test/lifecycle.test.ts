import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { DEFAULT_SESSION_KEY, SESSION_ID_PATTERN, createPresence, randomSessionId, type Presence } from '../src/index.js';
import { BASE, flush, makeEnv } from './helpers.js';

const created: Presence[] = [];
afterEach(() => {
  for (const p of created.splice(0)) p.destroy();
});
function track(p: Presence): Presence {
  created.push(p);
  return p;
}

describe('page lifecycle', () => {
  test('pagehide sends exactly one beacon leave with grace and the token in a text/plain body', async () => {
    const env = makeEnv();
    const p = track(createPresence(env.options({ live: 'off' })));
    await flush();
    env.window.dispatch('pagehide', { persisted: false });
    env.window.dispatch('pagehide', { persisted: false });
    await flush();
    assert.equal(env.beacons.length, 1);
    const beacon = env.beacons[0]!;
    assert.equal(beacon.url, `${BASE}/v1/leave`);
    assert.ok(beacon.data instanceof Blob);
    assert.match(beacon.data.type, /^text\/plain;charset=utf-8$/i);
    assert.deepEqual(JSON.parse(await beacon.data.text()), {
      artifactId: 'art-1',
      sessionId: p.sessionId,
      grace: true,
      token: 't1',
    });
    assert.equal(env.server.to('/v1/leave').length, 0, 'no fetch leave besides the beacon');
    await env.clock.advance(60_000);
    assert.equal(env.server.heartbeats.length, 1, 'no heartbeats after pagehide');
  });

  test('pagehide without sendBeacon falls back to a keepalive fetch with the same body', async () => {
    const env = makeEnv();
    const p = track(createPresence(env.options({ live: 'off', navigator: {} })));
    await flush();
    env.window.dispatch('pagehide');
    await flush();
    const leaves = env.server.to('/v1/leave');
    assert.equal(leaves.length, 1);
    assert.equal(leaves[0]!.keepalive, true);
    assert.equal(leaves[0]!.headers['authorization'], undefined);
    assert.deepEqual(leaves[0]!.body, { artifactId: 'art-1', sessionId: p.sessionId, grace: true, token: 't1' });
  });

  test('pageshow from the back/forward cache heartbeats at once and resumes', async () => {
    const env = makeEnv();
    track(createPresence(env.options({ live: 'off' })));
    await flush();
    env.window.dispatch('pagehide', { persisted: true });
    await env.clock.advance(30_000);
    assert.equal(env.server.heartbeats.length, 1);
    env.window.dispatch('pageshow', { persisted: true });
    await flush();
    assert.equal(env.server.heartbeats.length, 2);
    await env.clock.advance(10_000);
    assert.equal(env.server.heartbeats.length, 3);
    env.window.dispatch('pagehide', { persisted: false });
    assert.equal(env.beacons.length, 2, 'a later pagehide sends its own beacon');
  });

  test('session id is reused across a reload (same sessionStorage) and new in a new tab', async () => {
    const env = makeEnv();
    const first = createPresence(env.options({ live: 'off' }));
    await flush();
    const id = first.sessionId;
    assert.match(id, SESSION_ID_PATTERN);
    assert.equal(env.storage.getItem(DEFAULT_SESSION_KEY), id);
    // reload: the page goes away, a new instance starts with the same sessionStorage
    env.window.dispatch('pagehide');
    first.destroy();
    const reloaded = track(createPresence(env.options({ live: 'off' })));
    await flush();
    assert.equal(reloaded.sessionId, id);
    assert.equal(env.server.heartbeats.at(-1)!.body.sessionId, id);

    const otherTab = makeEnv();
    const fresh = track(createPresence(otherTab.options({ live: 'off' })));
    assert.notEqual(fresh.sessionId, id);
    assert.match(fresh.sessionId, SESSION_ID_PATTERN);
  });

  test('fresh session ids are 32 hex digits (leading zeros kept) and never repeat', () => {
    const ids = Array.from({ length: 500 }, randomSessionId);
    for (const id of ids) assert.match(id, /^[0-9a-f]{32}$/);
    assert.equal(new Set(ids).size, ids.length);
    // 8000 random bytes: about 500 are below 16, each written as two digits ("0a", never "a")
    assert.ok(ids.some((id) => /^0/.test(id)));
  });

  test('an invalid stored session id is replaced; a throwing sessionStorage still works', async () => {
    const env = makeEnv();
    env.storage.setItem(DEFAULT_SESSION_KEY, 'bad id!');
    const p = track(createPresence(env.options({ live: 'off' })));
    assert.match(p.sessionId, SESSION_ID_PATTERN);
    assert.equal(env.storage.getItem(DEFAULT_SESSION_KEY), p.sessionId);

    const broken = {
      getItem(): string | null {
        throw new Error('SecurityError');
      },
      setItem(): void {
        throw new Error('SecurityError');
      },
    };
    const q = track(createPresence(makeEnv().options({ live: 'off', sessionStorage: broken })));
    assert.match(q.sessionId, SESSION_ID_PATTERN);
  });

  test('leave() sends an explicit leave without grace and stops everything', async () => {
    const env = makeEnv();
    const p = track(createPresence(env.options()));
    await flush();
    const result = await p.leave();
    await flush();
    assert.deepEqual(result, { online: 0, sessions: 0 });
    const leaves = env.server.to('/v1/leave');
    assert.equal(leaves.length, 1);
    assert.deepEqual(leaves[0]!.body, { artifactId: 'art-1', sessionId: p.sessionId });
    assert.equal(leaves[0]!.headers['authorization'], 'Bearer t1');
    assert.equal(p.status, 'stopped');
    assert.ok(env.eventSources[0]!.closed, 'EventSource closed');
    assert.equal(env.window.listenerCount() + env.document.listenerCount(), 0, 'listeners removed');
    await env.clock.advance(120_000);
    assert.equal(env.server.heartbeats.length, 1);
    env.window.dispatch('pagehide');
    assert.equal(env.beacons.length, 0);
  });

  test('leave() waits for an in-flight heartbeat so it cannot be overtaken', async () => {
    const env = makeEnv();
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const order: string[] = [];
    env.server.handler = async (call) => {
      if (call.path === '/v1/heartbeat') await gate;
      order.push(call.path);
      return undefined;
    };
    const p = track(createPresence(env.options({ live: 'off' })));
    await flush();
    const leaving = p.leave();
    await flush();
    assert.equal(env.server.to('/v1/leave').length, 0);
    release();
    await leaving;
    assert.deepEqual(order, ['/v1/heartbeat', '/v1/leave']);
  });

  test('destroy() sends a grace leave, unless another instance still uses the session', async () => {
    const env = makeEnv();
    const a = createPresence(env.options({ live: 'off' }));
    await flush();
    // React StrictMode: unmount + immediate remount of the same artifact in the same tab
    a.destroy();
    const b = track(createPresence(env.options({ live: 'off' })));
    await flush();
    assert.equal(b.sessionId, a.sessionId);
    assert.equal(env.server.to('/v1/leave').length, 0, 'no leave while the session is still used');

    b.destroy();
    await flush();
    const leaves = env.server.to('/v1/leave');
    assert.equal(leaves.length, 1);
    assert.deepEqual(leaves[0]!.body, { artifactId: 'art-1', sessionId: b.sessionId, grace: true });
    assert.equal(leaves[0]!.keepalive, true);
    await env.clock.advance(60_000);
    assert.equal(env.server.heartbeats.length, 2);
  });

  test('destroy() skips the leave for an instance whose new session id (after a 409) is still used', async () => {
    const env = makeEnv();
    let conflicts = 1;
    env.server.handler = (call) =>
      call.path === '/v1/heartbeat' && conflicts-- > 0 ? new Response('{}', { status: 409 }) : undefined;
    const a = track(createPresence(env.options({ live: 'off' })));
    const firstId = a.sessionId;
    await flush();
    assert.notEqual(a.sessionId, firstId, 'a took a new session id');
    const b = createPresence(env.options({ live: 'off' }));
    await flush();
    assert.equal(b.sessionId, a.sessionId, 'b found it in sessionStorage');
    b.destroy();
    await flush();
    assert.equal(env.server.to('/v1/leave').length, 0, 'a still uses the session');
  });
});
