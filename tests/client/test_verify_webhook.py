"""The Python SDK's verify_webhook: the Standard Webhooks example, rotation, refusals."""

from __future__ import annotations

import pytest

from presence_svc.client import WebhookVerificationError, verify_webhook
from presence_svc.webhooks.signing import new_secret, signature_header

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
BODY = b'{"test": 2432232314}'
HEADERS = {
    "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
    "webhook-timestamp": "1614265330",
    "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
}


def test_the_specification_example_verifies_and_the_service_signs_it_alike() -> None:
    assert verify_webhook(BODY, HEADERS, SECRET, now=1614265330) == {"test": 2432232314}
    header = signature_header([SECRET], HEADERS["webhook-id"], 1614265330, BODY)
    assert header == HEADERS["webhook-signature"]


def test_during_a_rotation_either_secret_verifies() -> None:
    old, new = new_secret(), new_secret()
    header = signature_header([new, old], "ev_1", 1614265330, BODY)
    headers = {**HEADERS, "webhook-id": "ev_1", "webhook-signature": header}
    for secret in (old, new, [new_secret(), old]):
        verify_webhook(BODY, headers, secret, now=1614265330)


@pytest.mark.parametrize(
    ("body", "headers", "secret", "now", "why"),
    [
        (b'{"test": 1}', HEADERS, SECRET, 1614265330, "no signature"),
        (BODY, HEADERS, new_secret(), 1614265330, "no signature"),
        (BODY, HEADERS, SECRET, 1614265330 + 301, "too far"),
        (BODY, {"webhook-id": "x"}, SECRET, 1614265330, "missing header webhook-timestamp"),
        (BODY, {**HEADERS, "webhook-timestamp": "soon"}, SECRET, 1614265330, "not a number"),
    ],
    # ids of their own: a random secret in an id differs between xdist's workers
    ids=["other-body", "other-secret", "too-late", "no-timestamp", "bad-timestamp"],
)
def test_what_is_not_authentic_is_refused(
    body: bytes, headers: dict[str, str], secret: str, now: float, why: str
) -> None:
    with pytest.raises(WebhookVerificationError, match=why):
        verify_webhook(body, headers, secret, now=now)
