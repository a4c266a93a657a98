import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { createPresence, type Presence } from '../src/index.js';
import { flush, makeEnv, problem, type Env } from './helpers.js';

let current: Presence | null = null;
afterEach(() => {
  current?.destroy();
  current = null;
});

/** [at, engagedMs] of every heartbeat so far (engagedMs absent: 0). */
function reports(env: Env): [number, number][] {
  return env.server.heartbeats.map((c) => [c.at, c.body.engagedMs ?? 0]);
}

describe('engaged time', () => {
  test('a visible, focused tab with input reports the time since the last heartbeat', async () => {
    const env = makeEnv(); // intervalS 10, jitter 0: heartbeats every 10 s
    current = createPresence(env.options({ live: 'off' }));
    await env.clock.advance(5_000);
    env.window.dispatch('pointermove');
    await env.clock.advance(15_000);
    assert.deepEqual(reports(env), [
      [0, 0],
      [10_000, 10_000],
      [20_000, 10_000],
    ]);
    assert.equal(env.server.heartbeats[0]!.body.engagedMs, undefined, 'nothing to send: no field');
  });

  test('hidden time does not count; the heartbeat on hiding carries what came before', async () => {
    const env = makeEnv();
    current = createPresence(env.options({ live: 'off' }));
    await env.clock.advance(4_000);
    env.document.setVisibility('hidden');
    await env.clock.advance(66_000);
    env.document.setVisibility('visible'); // showing the tab counts as input
    await env.clock.advance(10_000);
    assert.deepEqual(reports(env), [
      [0, 0],
      [4_000, 4_000],
      [64_000, 0],
      [70_000, 0],
      [80_000, 10_000],
    ]);
  });

  test('time without the focus (another window or app) does not count', async () => {
    const env = makeEnv();
    current = createPresence(env.options({ live: 'off' }));
    await env.clock.advance(3_000);
    env.window.dispatch('blur');
    await env.clock.advance(4_000);
    env.window.dispatch('focus');
    await env.clock.advance(3_000);
    assert.deepEqual(reports(env).at(-1), [10_000, 6_000]);
  });

  test('a page opened without the focus counts from its first focus', async () => {
    const env = makeEnv();
    const document = Object.assign(env.document, { hasFocus: () => false });
    current = createPresence(env.options({ live: 'off', document }));
    await env.clock.advance(6_000);
    env.window.dispatch('focus');
    await env.clock.advance(4_000);
    assert.deepEqual(reports(env).at(-1), [10_000, 4_000]);
  });

  test('without input for engagedIdleAfterS it stops counting until the next input', async () => {
    const env = makeEnv();
    current = createPresence(env.options({ live: 'off', engagedIdleAfterS: 5 }));
    await env.clock.advance(12_000); // the start counts as input: 0..5 s
    env.window.dispatch('keydown');
    await env.clock.advance(2_000);
    env.window.dispatch('scroll');
    await env.clock.advance(6_000); // 12..19 s: input at 12 and 14 s, idle from 19 s
    assert.deepEqual(reports(env), [
      [0, 0],
      [10_000, 5_000],
      [20_000, 7_000],
    ]);
  });

  test('idleAfterS (away) and engagedIdleAfterS (engaged time) are separate timers', async () => {
    // away after 5 s without input, engaged time counting for 60 s: the tab says away at
    // 5 s (then heartbeats once a minute) and engaged time runs on to 60 s
    let env = makeEnv();
    current = createPresence(env.options({ live: 'off', idleAfterS: 5, engagedIdleAfterS: 60 }));
    await env.clock.advance(70_000);
    const statuses = (e: Env) => e.server.heartbeats.map((c) => [c.at, c.body.status]);
    assert.deepEqual(statuses(env), [
      [0, 'active'],
      [5_000, 'away'],
      [65_000, 'away'],
    ]);
    assert.deepEqual(reports(env), [
      [0, 0],
      [5_000, 5_000],
      [65_000, 55_000],
    ]);
    current.destroy();
    // the other way round: engaged time stops at 5 s, the tab stays active
    env = makeEnv();
    current = createPresence(env.options({ live: 'off', idleAfterS: 300, engagedIdleAfterS: 5 }));
    await env.clock.advance(20_000);
    assert.ok(statuses(env).every(([, status]) => status === 'active'), 'never away');
    assert.deepEqual(reports(env), [
      [0, 0],
      [10_000, 5_000],
      [20_000, 0],
    ]);
  });

  test('the page-close beacon carries the time since the last heartbeat', async () => {
    const env = makeEnv();
    current = createPresence(env.options({ live: 'off' }));
    await env.clock.advance(13_500);
    env.window.dispatch('pagehide');
    await flush();
    assert.equal(env.beacons.length, 1);
    const body = JSON.parse(await env.beacons[0]!.data.text());
    assert.equal(body.engagedMs, 3_500);
    assert.equal(body.grace, true);
  });

  test('an explicit leave carries it too', async () => {
    const env = makeEnv();
    current = createPresence(env.options({ live: 'off' }));
    await env.clock.advance(2_500);
    await current.leave();
    assert.equal(env.server.to('/v1/leave')[0]!.body.engagedMs, 2_500);
  });

  test('a heartbeat that failed for a while sends its engaged time with the retry', async () => {
    const env = makeEnv();
    let refuse = true;
    env.server.handler = (call) => (refuse && call.path === '/v1/heartbeat' && call.at > 0 ? problem(503, 'down') : undefined);
    current = createPresence(env.options({ live: 'off' }));
    await env.clock.advance(10_000);
    refuse = false;
    await env.clock.advance(5_000);
    const sent = reports(env);
    assert.equal(sent[1]![1], 10_000, 'the refused one');
    const retried = sent.find(([at]) => at > 10_000)!;
    assert.equal(retried[1], retried[0], 'everything since the start, once');
  });
});
