import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { createPresence, PresenceError, type Presence } from '../src/index.js';
import { flush, json, makeEnv, problem } from './helpers.js';

let current: Presence | null = null;
afterEach(() => {
  current?.destroy();
  current = null;
});

const latest = { artifactId: 'doc 1', versionId: 'v4', setAt: '2026-11-30T03:20:11.204Z' };

describe('latest version and unseen artifacts', () => {
  test('latest() reads this artifact latest version, null when none is set', async () => {
    const env = makeEnv();
    let set = false;
    env.server.handler = (call) =>
      call.path.endsWith('/latest') ? (set ? json(200, latest) : problem(404, 'no latest version')) : undefined;
    current = createPresence(env.options({ artifactId: 'doc 1', live: 'off' }));
    await flush();
    assert.equal(await current.latest(), null);
    set = true;
    assert.deepEqual(await current.latest(), latest);
    assert.equal(env.server.to('/latest')[0]!.path, '/v1/artifacts/doc%201/latest');
  });

  test('unseen() asks for every artifact id at once and returns the list', async () => {
    const env = makeEnv();
    env.server.handler = (call) => (call.path.endsWith('/unseen') ? json(200, { artifacts: [latest] }) : undefined);
    current = createPresence(env.options({ live: 'off' }));
    await flush();
    assert.deepEqual(await current.unseen('u:1', ['doc 1', 'doc-2']), [latest]);
    const call = env.server.to('/unseen')[0]!;
    assert.equal(call.path, '/v1/users/u%3A1/unseen');
    assert.deepEqual(new URL(call.url).searchParams.getAll('artifactId'), ['doc 1', 'doc-2']);
  });

  test('a refusal rejects with a PresenceError of the seen operation', async () => {
    const env = makeEnv();
    env.server.handler = (call) => (call.path.endsWith('/unseen') ? problem(403, 'another user') : undefined);
    current = createPresence(env.options({ live: 'off' }));
    await flush();
    await assert.rejects(current.unseen('u2', ['doc-1']), (e: unknown) => {
      assert.ok(e instanceof PresenceError);
      assert.equal(e.status, 403);
      assert.equal(e.operation, 'seen');
      return true;
    });
  });
});
