import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { createPresence, type Presence } from '../src/index.js';
import { makeEnv } from './helpers.js';

let current: Presence | null = null;
afterEach(() => {
  current?.destroy();
  current = null;
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
