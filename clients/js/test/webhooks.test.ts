import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, test } from 'node:test';
import { WebhookVerificationError, verifyWebhook } from '../src/webhooks.js';

// The Standard Webhooks specification's own example (what presence-svc's signer gives too).
const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const ID = 'msg_p5jXN8AQM9LWM0D4loKWxJek';
const STAMP = '1614265330';
const BODY = '{"test": 2432232314}';
const SIGNATURE = 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=';

function headers(signature: string, stamp = STAMP): Record<string, string> {
  return { 'Webhook-Id': ID, 'Webhook-Timestamp': stamp, 'Webhook-Signature': signature };
}

describe('verifyWebhook', () => {
  test('accepts the specification example, from a record or Headers', async () => {
    const event = await verifyWebhook(BODY, headers(SIGNATURE), SECRET, { nowS: 1614265330 });
    assert.deepEqual(event, { test: 2432232314 });
    const h = new Headers(headers(SIGNATURE));
    assert.deepEqual(await verifyWebhook(new TextEncoder().encode(BODY), h, [SECRET], { nowS: 1614265400 }), {
      test: 2432232314,
    });
  });

  test('accepts one matching signature of two (a rotation) and either secret', async () => {
    const other = 'whsec_' + Buffer.from('another key of enough bytes!').toString('base64');
    const key = Buffer.from(other.slice(6), 'base64');
    const second = 'v1,' + createHmac('sha256', key).update(`${ID}.${STAMP}.${BODY}`).digest('base64');
    const both = headers(`${SIGNATURE} ${second}`);
    await verifyWebhook(BODY, both, SECRET, { nowS: 1614265330 });
    await verifyWebhook(BODY, both, other, { nowS: 1614265330 });
  });

  test('refuses a changed body, a wrong secret, an old timestamp, a missing header', async () => {
    const now = { nowS: 1614265330 };
    const refused = async (p: Promise<unknown>, message: RegExp) =>
      assert.rejects(p, (e: unknown) => e instanceof WebhookVerificationError && message.test(e.message));
    await refused(verifyWebhook('{"test": 1}', headers(SIGNATURE), SECRET, now), /no signature/);
    await refused(verifyWebhook(BODY, headers(SIGNATURE), 'whsec_AAAAAAAA', now), /no signature/);
    await refused(verifyWebhook(BODY, headers(SIGNATURE), SECRET, { nowS: 1614265330 + 301 }), /too far/);
    await refused(verifyWebhook(BODY, { 'webhook-id': ID }, SECRET, now), /missing header webhook-timestamp/);
  });
});
