import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { StrictMode, createElement } from 'react';
import TestRenderer, { act } from 'react-test-renderer';
import { usePresence, type UsePresenceOptions, type UsePresenceResult } from '../src/react.js';
import { flush, makeEnv, type Env } from './helpers.js';

(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;

function hookOptions(env: Env, extra: Partial<UsePresenceOptions> = {}): UsePresenceOptions {
  const { artifactId: _ignored, ...rest } = env.options();
  return { ...rest, ...extra };
}

function setup() {
  const results: UsePresenceResult[] = [];
  function Probe(props: { artifactId: string | null; options: UsePresenceOptions }) {
    results.push(usePresence(props.artifactId, props.options));
    return null;
  }
  const element = (artifactId: string | null, options: UsePresenceOptions) => createElement(Probe, { artifactId, options });
  return { results, element, last: () => results[results.length - 1]! };
}

async function settle(): Promise<void> {
  await act(async () => {
    await flush();
  });
}

describe('usePresence (React)', () => {
  test('exposes live state, follows versionId/state/artifactId changes and cleans up on unmount', async () => {
    const env = makeEnv();
    const { element, last } = setup();
    let renderer!: TestRenderer.ReactTestRenderer;
    act(() => {
      renderer = TestRenderer.create(element('art-1', hookOptions(env, { versionId: 'v1' })));
    });
    await settle();
    assert.equal(env.server.heartbeats.length, 1);
    assert.equal(last().online, 1);
    assert.equal(last().status, 'active');
    assert.match(last().sessionId ?? '', /^[A-Za-z0-9_-]{8,64}$/);
    assert.equal(env.server.to('/v1/views').length, 1);

    await act(async () => {
      env.eventSources[0]!.emit('sync', { online: 2, sessions: 2, users: [{ userId: 'u1' }, { userId: 'u2' }] });
    });
    assert.equal(last().online, 2);
    assert.deepEqual(last().users.map((u) => u.userId), ['u1', 'u2']);
    assert.equal(last().mode, 'exact');
    await act(async () => {
      env.eventSources[0]!.emit('sync', { online: 900, sessions: 901, users: [{ userId: 'u1' }], mode: 'interval' });
      env.eventSources[0]!.emit('interval', { online: 901, sessions: 902, joined: [{ userId: 'u9' }], left: [], more: false });
    });
    assert.equal(last().mode, 'interval');
    assert.equal(last().online, 901);
    assert.deepEqual(last().users.map((u) => u.userId), ['u1', 'u9']);
    await act(async () => {
      env.eventSources[0]!.emit('sync', { online: 2, sessions: 2, users: [{ userId: 'u1' }, { userId: 'u2' }] });
    });

    // a re-render with new option objects but the same values sends nothing
    act(() => renderer.update(element('art-1', hookOptions(env, { versionId: 'v1' }))));
    await settle();
    assert.equal(env.server.heartbeats.length, 1);

    act(() => renderer.update(element('art-1', hookOptions(env, { versionId: 'v2' }))));
    await settle();
    assert.equal(env.server.heartbeats.length, 2);
    assert.equal(env.server.heartbeats[1]!.body.versionId, 'v2');
    assert.deepEqual(env.server.to('/v1/views').map((c) => c.body.versionId), ['v1', 'v2']);

    act(() => renderer.update(element('art-1', hookOptions(env, { versionId: 'v2', state: { typing: true } }))));
    await settle();
    assert.equal(env.server.heartbeats.length, 3);
    assert.deepEqual(env.server.heartbeats[2]!.body.state, { typing: true });
    act(() => renderer.update(element('art-1', hookOptions(env, { versionId: 'v2', state: { typing: true } }))));
    await settle();
    assert.equal(env.server.heartbeats.length, 3, 'equal state object: no heartbeat');

    const setState = last().setState;
    await act(async () => {
      last().setState({ typing: false });
      await flush();
    });
    assert.equal(env.server.heartbeats.length, 4);
    assert.equal(last().setState, setState, 'actions are stable');

    act(() => renderer.update(element('art-2', hookOptions(env))));
    await settle();
    const leaves = env.server.to('/v1/leave');
    assert.equal(leaves.length, 1);
    assert.deepEqual(leaves[0]!.body, { artifactId: 'art-1', sessionId: last().sessionId, grace: true });
    assert.equal(env.server.heartbeats.at(-1)!.body.artifactId, 'art-2');
    assert.ok(env.eventSources[0]!.closed);
    assert.equal(last().online, 1, 'state of the new artifact');
    assert.deepEqual(last().users, [], 'no users of the old artifact');

    act(() => renderer.unmount());
    await settle();
    assert.equal(env.server.to('/v1/leave').length, 2);
    assert.equal(env.server.to('/v1/leave')[1]!.body.artifactId, 'art-2');
    const n = env.server.calls.length;
    await env.clock.advance(120_000);
    assert.equal(env.server.calls.length, n, 'nothing after unmount');
  });

  test('StrictMode double mount sends no leave and keeps one live instance', async () => {
    const env = makeEnv();
    const { element, last } = setup();
    let renderer!: TestRenderer.ReactTestRenderer;
    act(() => {
      renderer = TestRenderer.create(createElement(StrictMode, null, element('art-1', hookOptions(env))));
    });
    await settle();
    assert.equal(env.server.to('/v1/leave').length, 0);
    assert.equal(last().status, 'active');
    const live = env.eventSources.filter((es) => !es.closed);
    assert.equal(live.length, 1);
    act(() => renderer.unmount());
    await settle();
    assert.equal(env.server.to('/v1/leave').length, 1);
  });

  test('a falsy artifactId stays idle; errors surface in `error`', async () => {
    const env = makeEnv();
    env.tokens = ['bad'];
    const { element, last } = setup();
    let renderer!: TestRenderer.ReactTestRenderer;
    act(() => {
      renderer = TestRenderer.create(element(null, hookOptions(env)));
    });
    await settle();
    assert.equal(env.server.calls.length, 0);
    assert.equal(last().sessionId, null);
    act(() => renderer.update(element('art-1', hookOptions(env))));
    await settle();
    assert.equal(last().error?.status, 401);
    assert.equal(last().status, 'stopped');
    assert.equal(env.errors.length, 1, 'onError from the options is called');
    act(() => renderer.unmount());
  });
});
