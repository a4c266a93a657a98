import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { PresenceError, createPresence, type Presence } from '../src/index.js';
import { json, makeEnv, problem } from './helpers.js';

let current: Presence | null = null;
afterEach(() => {
  current?.destroy();
  current = null;
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
    current = createPresence(env.options({ live: 'off' }));
    const set = await current.setPrivacy('a:b', { presence: 'hidden' });
    assert.deepEqual(set, { userId: 'a:b', viewHistory: 'visible', presence: 'hidden', updatedAt: '2026-11-30T03:00:00.000Z' });
    const put = env.server.to('/privacy').find((c) => c.method === 'PUT')!;
    assert.equal(put.path, '/v1/users/a%3Ab/privacy');
    assert.deepEqual(put.body, { presence: 'hidden' });
    assert.equal(put.headers['authorization'], 'Bearer t1');
    assert.deepEqual(await current.getPrivacy('a:b'), set);
  });

  test('a refused change rejects with a PresenceError naming the field', async () => {
    const env = makeEnv();
    env.server.handler = (call) =>
      call.path.endsWith('/privacy')
        ? json(400, { type: 'about:blank', title: 'Bad Request', status: 400, detail: 'bad', errors: [{ field: 'presence', message: 'x' }] })
        : undefined;
    current = createPresence(env.options({ live: 'off' }));
    const err = await current.setPrivacy('u1', { presence: 'gone' as 'hidden' }).then(
      () => null,
      (e: unknown) => e,
    );
    assert.ok(err instanceof PresenceError);
    assert.equal(err.status, 400);
    assert.equal(err.operation, 'privacy');
    assert.equal((err.problem as { errors?: { field: string }[] }).errors?.[0]?.field, 'presence');
    env.server.handler = (call) => (call.path.endsWith('/privacy') ? problem(403, 'Forbidden') : undefined);
    await assert.rejects(current.getPrivacy('u2'), (e: unknown) => e instanceof PresenceError && e.status === 403);
  });
});
