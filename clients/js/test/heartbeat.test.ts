import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { createPresence, type Presence } from '../src/index.js';
import { BASE, flush, json, makeEnv } from './helpers.js';

let current: Presence | null = null;
afterEach(() => {
  current?.destroy();
  current = null;
});

describe('heartbeats', () => {
  test('first heartbeat at once, with bearer token and JSON body', async () => {
    const env = makeEnv();
    current = createPresence(env.options({ versionId: 'v1', state: { typing: false }, live: 'off' }));
    await flush();
    const hbs = env.server.heartbeats;
    assert.equal(hbs.length, 1);
    assert.equal(hbs[0]!.at, 0);
    assert.equal(hbs[0]!.method, 'POST');
    assert.equal(hbs[0]!.url, `${BASE}/v1/heartbeat`);
    assert.equal(hbs[0]!.headers['authorization'], 'Bearer t1');
    assert.equal(hbs[0]!.headers['content-type'], 'application/json');
    assert.deepEqual(hbs[0]!.body, {
      artifactId: 'art-1',
      versionId: 'v1',
      sessionId: current.sessionId,
      state: { typing: false },
      status: 'active',
    });
    assert.equal(current.online, 1);
    assert.equal(current.sessions, 1);
    assert.equal(current.status, 'active');
  });

  test('next heartbeat after the server intervalS, lower jitter bound (-10%)', async () => {
    const env = makeEnv();
    env.server.intervalS = 10;
    env.randomValue = 0; // smallest jitter
    current = createPresence(env.options({ live: 'off' }));
    await env.clock.advance(8_999);
    assert.equal(env.server.heartbeats.length, 1);
    await env.clock.advance(1);
    assert.equal(env.server.heartbeats.length, 2);
    assert.equal(env.server.heartbeats[1]!.at, 9_000);
  });

  test('next heartbeat after the server intervalS, upper jitter bound (+10%)', async () => {
    const env = makeEnv();
    env.server.intervalS = 10;
    env.randomValue = 0.999999;
    current = createPresence(env.options({ live: 'off' }));
    await env.clock.advance(10_999);
    assert.equal(env.server.heartbeats.length, 1);
    await env.clock.advance(1);
    assert.equal(env.server.heartbeats.length, 2);
  });

  test('gaps stay within intervalS +-10% with real randomness, and follow a new intervalS', async () => {
    const env = makeEnv();
    env.server.intervalS = 20;
    current = createPresence(env.options({ live: 'off', random: Math.random }));
    await env.clock.advance(30 * 22_000);
    const at = env.server.heartbeats.map((c) => c.at);
    assert.ok(at.length >= 25, `only ${at.length} heartbeats`);
    const gaps = at.slice(1).map((t, i) => t - at[i]!);
    for (const gap of gaps) assert.ok(gap >= 18_000 && gap <= 22_000, `gap ${gap}`);
    assert.ok(new Set(gaps).size > 1, 'gaps are jittered');

    env.server.intervalS = 5;
    const before = env.server.heartbeats.length;
    await env.clock.advance(60_000);
    const late = env.server.heartbeats.slice(before + 1).map((c) => c.at);
    for (let i = 1; i < late.length; i++) {
      const gap = late[i]! - late[i - 1]!;
      assert.ok(gap >= 4_500 && gap <= 5_500, `gap ${gap}`);
    }
  });

  test('uses 15 s by default when the server gives no intervalS', async () => {
    const env = makeEnv();
    env.server.handler = (call) =>
      call.path === '/v1/heartbeat' ? json(200, { online: 1, sessions: 1 }) : undefined;
    current = createPresence(env.options({ live: 'off' }));
    await env.clock.advance(14_999);
    assert.equal(env.server.heartbeats.length, 1);
    await env.clock.advance(1);
    assert.equal(env.server.heartbeats.length, 2);
  });

  test('hidden tab says away at once, then heartbeats once a minute; visible says active and resumes', async () => {
    const env = makeEnv();
    current = createPresence(env.options({ live: 'off' }));
    await env.clock.advance(1_000);
    assert.equal(env.server.heartbeats.length, 1);

    env.document.setVisibility('hidden');
    assert.equal(current.status, 'hidden');
    await flush();
    assert.deepEqual(
      env.server.heartbeats.map((c) => [c.at, c.body.status]),
      [
        [0, 'active'],
        [1_000, 'away'],
      ],
    );
    await env.clock.advance(120_000);
    const away = env.server.heartbeats.slice(1);
    assert.deepEqual(
      away.map((c) => [c.at, c.body.status]),
      [
        [1_000, 'away'],
        [61_000, 'away'],
        [121_000, 'away'],
      ],
      'every 60 s while hidden (not every intervalS = 10 s)',
    );
    assert.equal(current.status, 'hidden');

    env.document.setVisibility('visible');
    await flush();
    assert.equal(env.server.heartbeats.length, 5);
    assert.deepEqual([env.server.heartbeats[4]!.at, env.server.heartbeats[4]!.body.status], [121_000, 'active']);
    assert.equal(current.status, 'active');
    await env.clock.advance(10_000);
    assert.equal(env.server.heartbeats.length, 6, 'schedule resumed at intervalS');
  });

  test('idle for idleAfterS says away; input says active again at once', async () => {
    const env = makeEnv();
    current = createPresence(env.options({ live: 'off', idleAfterS: 30 }));
    await env.clock.advance(25_000);
    env.window.dispatch('pointermove'); // input: idle again only 30 s from here
    await env.clock.advance(29_000);
    assert.ok(env.server.heartbeats.every((c) => c.body.status === 'active'));
    await env.clock.advance(1_000);
    const idle = env.server.heartbeats.at(-1)!;
    assert.deepEqual([idle.at, idle.body.status], [55_000, 'away']);
    await env.clock.advance(59_000);
    assert.equal(env.server.heartbeats.at(-1), idle, 'no heartbeat sooner than a minute while away');
    await env.clock.advance(1_000);
    assert.deepEqual(env.server.heartbeats.at(-1)!.body.status, 'away');

    env.window.dispatch('keydown');
    await flush();
    const back = env.server.heartbeats.at(-1)!;
    assert.deepEqual([back.at, back.body.status], [115_000, 'active']);
    await env.clock.advance(10_000);
    assert.deepEqual(env.server.heartbeats.at(-1)!.body.status, 'active');
    assert.equal(env.server.heartbeats.at(-1)!.at, 125_000, 'back to intervalS');

    current.destroy();
    current = null;
    assert.equal(env.window.listenerCount(), 0, 'input listeners removed');
  });

  test('without a window (no input to see) the tab never goes idle', async () => {
    const env = makeEnv();
    current = createPresence(env.options({ live: 'off', idleAfterS: 30, window: null }));
    await env.clock.advance(600_000);
    assert.ok(env.server.heartbeats.length > 50);
    assert.ok(env.server.heartbeats.every((c) => c.body.status === 'active'));
  });

  test('idleAfterS: 0 never goes idle', async () => {
    const env = makeEnv();
    current = createPresence(env.options({ live: 'off', idleAfterS: 0 }));
    await env.clock.advance(3_600_000);
    assert.ok(env.server.heartbeats.length > 300);
    assert.ok(env.server.heartbeats.every((c) => c.body.status === 'active'));
  });

  test('a tab that starts hidden sends nothing until it becomes visible', async () => {
    const env = makeEnv();
    env.document.visibilityState = 'hidden';
    current = createPresence(env.options({ live: 'off', versionId: 'v1' }));
    await env.clock.advance(60_000);
    assert.equal(env.server.calls.length, 0);
    env.document.setVisibility('visible');
    await flush();
    assert.equal(env.server.heartbeats.length, 1);
    assert.equal(env.server.to('/v1/views').length, 1);
  });

  test('setState sends an immediate heartbeat with the new state and reschedules', async () => {
    const env = makeEnv();
    current = createPresence(env.options({ live: 'off' }));
    await env.clock.advance(3_000);
    current.setState({ typing: true });
    await flush();
    assert.equal(env.server.heartbeats.length, 2);
    assert.equal(env.server.heartbeats[1]!.at, 3_000);
    assert.deepEqual(env.server.heartbeats[1]!.body.state, { typing: true });
    await env.clock.advance(9_999);
    assert.equal(env.server.heartbeats.length, 2, 'timer restarted from the state heartbeat');
    await env.clock.advance(1);
    assert.equal(env.server.heartbeats.length, 3);
  });

  test('setState while a heartbeat is in flight sends the new state right after it', async () => {
    const env = makeEnv();
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    env.server.handler = async (call) => {
      if (call.path === '/v1/heartbeat' && env.server.heartbeats.length === 1) await gate;
      return undefined;
    };
    current = createPresence(env.options({ live: 'off' }));
    await flush();
    current.setState({ step: 1 });
    current.setState({ step: 2 });
    await flush();
    assert.equal(env.server.heartbeats.length, 1, 'no parallel heartbeat');
    release();
    await flush();
    assert.equal(env.server.heartbeats.length, 2);
    assert.deepEqual(env.server.heartbeats[1]!.body.state, { step: 2 });
  });

  test('subscribe gets every change and unsubscribe stops it', async () => {
    const env = makeEnv();
    current = createPresence(env.options({ live: 'off', autoStart: false }));
    const seen: number[] = [];
    const unsubscribe = current.subscribe((s) => seen.push(s.online));
    const first = current.getSnapshot();
    assert.equal(current.getSnapshot(), first, 'stable snapshot while nothing changes');
    current.start();
    await flush();
    assert.ok(seen.includes(1));
    assert.notEqual(current.getSnapshot(), first);
    unsubscribe();
    const count = seen.length;
    env.server.online = 5;
    await env.clock.advance(11_000);
    assert.equal(current.online, 5);
    assert.equal(seen.length, count);
  });
});

describe('injected globals', () => {
  // Browsers throw "Illegal invocation" when e.g. window.fetch is called with another `this`.
  test('injected functions are called without a `this`', async () => {
    const env = makeEnv();
    const receivers = new Set<unknown>();
    const fetch = env.server.fetch;
    const { setTimeout, clearTimeout } = env.clock;
    current = createPresence(
      env.options({
        live: 'poll',
        versionId: 'v1',
        sessionStorage: null,
        fetch(this: unknown, input, init) {
          receivers.add(this);
          return fetch(input, init);
        },
        setTimeout(this: unknown, fn, ms) {
          receivers.add(this);
          return setTimeout(fn, ms);
        },
        clearTimeout(this: unknown, handle) {
          receivers.add(this);
          clearTimeout(handle);
        },
        random(this: unknown) {
          receivers.add(this);
          return 0.5;
        },
        generateSessionId(this: unknown) {
          receivers.add(this);
          return 'abcdefgh12345678';
        },
      }),
    );
    await env.clock.advance(30_000);
    current.setState({ typing: true });
    await env.clock.advance(1_000);
    assert.ok(env.server.heartbeats.length >= 3);
    assert.deepEqual(Array.from(receivers), [undefined]);
  });
});
