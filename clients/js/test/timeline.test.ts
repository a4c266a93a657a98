import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PresenceError, createPresence } from '../src/index.js';
import { flush, json, makeEnv, problem } from './helpers.js';

test('timeline() reads the artifact timeline with the range and step, as the service answers it', async () => {
  const env = makeEnv();
  const answer = {
    artifactId: 'art-1',
    step: '1h',
    points: [{ t: '2026-01-01T10:00:00.000Z', online: 3, sessions: 4 }],
    peak: { online: 3, at: '2026-01-01T10:00:00.000Z' },
  };
  env.server.handler = (call) => (call.path.endsWith('/timeline') ? json(200, answer) : undefined);
  const p = createPresence(env.options({ live: 'off', autoStart: false }));
  const got = await p.timeline({ since: new Date(Date.UTC(2026, 0, 1, 10)), until: '2026-01-01T11:00:00Z', step: '1h' });
  assert.deepEqual(got, answer);
  const [call] = env.server.to('/timeline');
  const url = new URL(call!.url);
  assert.equal(url.pathname, '/v1/artifacts/art-1/timeline');
  assert.equal(url.searchParams.get('since'), '2026-01-01T10:00:00.000Z');
  assert.equal(url.searchParams.get('until'), '2026-01-01T11:00:00Z');
  assert.equal(url.searchParams.get('step'), '1h');
  assert.equal(call!.headers['authorization'], 'Bearer t1');
  p.destroy();
});

test('timeline() rejects with the problem of a refused range', async () => {
  const env = makeEnv();
  env.server.handler = (call) => (call.path.endsWith('/timeline') ? problem(400, 'Bad Request') : undefined);
  const p = createPresence(env.options({ live: 'off', autoStart: false }));
  await assert.rejects(p.timeline(), (err: unknown) => {
    assert.ok(err instanceof PresenceError);
    assert.equal(err.status, 400);
    assert.equal(err.operation, 'timeline');
    return true;
  });
  await flush();
  p.destroy();
});
