"""Tokens from identity providers: RS256, ES256 and EdDSA, shaped as Auth0, Clerk and
Keycloak issue them, verified with public keys from a JWKS or PEM file, through real HTTP."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from presence_svc.settings import ConfigError, Settings
from tests.conftest import AppClient, MakeClient

BODY = {"artifactId": "doc-1", "sessionId": "tab-aaaa1"}
AUTH0_ISS = "https://acme.eu.auth0.com/"
AUTH0_AUD = "https://presence.example.com"
AUTH0_NS = "https://presence.example.com/"
KEYCLOAK_ISS = "https://sso.example.com/realms/acme"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _jwk(key: PrivateKey, kid: str, alg: str) -> dict[str, Any]:
    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        jwk = ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
    return {**jwk, "kid": kid, "alg": alg, "use": "sig"}


def _write_jwks(path: Path, keys: Sequence[dict[str, Any]]) -> Path:
    """Replaced atomically, as a JWKS refresher (curl -o tmp && mv) would."""
    temp = path.with_suffix(".tmp")
    temp.write_text(json.dumps({"keys": list(keys)}))
    os.replace(temp, path)
    return path


def _pem(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _sign(key: PrivateKey, alg: str, claims: dict[str, Any], kid: str | None) -> str:
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _auth0_claims(scope: str, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": AUTH0_ISS,
        "sub": "auth0|65f1c2d3e4b5a6978897a6b5",
        "aud": [AUTH0_AUD, "https://acme.eu.auth0.com/userinfo"],
        "iat": now,
        "exp": now + 600,
        "azp": "Xk3pQ9s0AbCdEfGh",
        "scope": scope,
        **extra,
    }


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture
async def auth0(make_client: MakeClient, rsa_key: rsa.RSAPrivateKey, tmp_path: Path) -> AppClient:
    """A service set up for an Auth0 tenant: its JWKS, audience, issuer and a namespaced
    artifacts claim."""
    jwks = _write_jwks(tmp_path / "jwks.json", [_jwk(rsa_key, "auth0-key-1", "RS256")])
    return await make_client(
        jwt_public_keys=jwks,
        jwt_audience=(AUTH0_AUD,),
        jwt_issuer=AUTH0_ISS,
        jwt_artifacts_claim=f"{AUTH0_NS}artifacts",
    )


async def test_an_auth0_rs256_token_is_accepted(
    auth0: AppClient, rsa_key: rsa.RSAPrivateKey
) -> None:
    claims = _auth0_claims("openid profile presence:client", **{f"{AUTH0_NS}artifacts": ["doc-1"]})
    headers = _bearer(_sign(rsa_key, "RS256", claims, "auth0-key-1"))
    response = await auth0.post("/v1/heartbeat", json=BODY, headers=headers)
    assert response.status == 200, await response.text()
    page = await (await auth0.get("/v1/artifacts/doc-1/presence", headers=headers)).json()
    assert [u["userId"] for u in page["users"]] == ["auth0:65f1c2d3e4b5a6978897a6b5"]
    other = {**BODY, "artifactId": "doc-2"}  # outside the namespaced artifacts claim
    assert (await auth0.post("/v1/heartbeat", json=other, headers=headers)).status == 403
    dashboard = _bearer(
        _sign(rsa_key, "RS256", _auth0_claims("openid presence:dashboard"), "auth0-key-1")
    )
    assert (await auth0.get("/v1/artifacts/doc-1/stats", headers=dashboard)).status == 200
    assert (await auth0.post("/v1/heartbeat", json=BODY, headers=dashboard)).status == 403


async def test_a_clerk_es256_token_is_accepted_with_a_pem_key(
    make_client: MakeClient, ec_key: ec.EllipticCurvePrivateKey, tmp_path: Path
) -> None:
    pem = tmp_path / "clerk.pem"
    pem.write_bytes(_pem(ec_key))
    client = await make_client(jwt_public_keys=pem)
    now = int(time.time())
    claims = {
        "azp": "https://app.example.com",
        "exp": now + 60,
        "iat": now,
        "iss": "https://clerk.acme.example.com",
        "nbf": now - 10,
        "sid": "sess_2abcDEF123",
        "sub": "user_2NNEqL2nrIRdJ194ndJqAHwEfxC",
    }
    # One PEM key: a token without kid uses it; Clerk's own kid is unknown here.
    response = await client.post(
        "/v1/heartbeat", json=BODY, headers=_bearer(_sign(ec_key, "ES256", claims, None))
    )
    assert response.status == 200, await response.text()
    page = await (
        await client.get(
            "/v1/artifacts/doc-1/presence", headers=_bearer(_sign(ec_key, "ES256", claims, None))
        )
    ).json()
    assert page["users"][0]["userId"] == "user_2NNEqL2nrIRdJ194ndJqAHwEfxC"
    # The PEM key's kid is its RFC 7638 thumbprint.
    jwk = ECAlgorithm.to_jwk(ec_key.public_key(), as_dict=True)
    members = json.dumps(
        {k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"), sort_keys=True
    )
    kid = _b64(hashlib.sha256(members.encode()).digest())
    token = _sign(ec_key, "ES256", claims, kid)
    assert (await client.post("/v1/heartbeat", json=BODY, headers=_bearer(token))).status == 200
    token = _sign(ec_key, "ES256", claims, "ins_2abc")
    response = await client.post("/v1/heartbeat", json=BODY, headers=_bearer(token))
    assert response.status == 401
    assert "kid 'ins_2abc'" in (await response.json())["detail"]


async def test_a_keycloak_eddsa_token_with_realm_roles_is_accepted(
    make_client: MakeClient, ed_key: ed25519.Ed25519PrivateKey, tmp_path: Path
) -> None:
    jwks = _write_jwks(tmp_path / "certs.json", [_jwk(ed_key, "kc-ed-1", "EdDSA")])
    client = await make_client(
        jwt_public_keys=jwks,
        jwt_audience=("presence",),
        jwt_issuer=KEYCLOAK_ISS,
        jwt_scope_claim="realm_access.roles",
    )
    now = int(time.time())

    def token(roles: list[str]) -> dict[str, str]:
        claims = {
            "exp": now + 300,
            "iat": now,
            "jti": "onrtac:1c1b7b9e",
            "iss": KEYCLOAK_ISS,
            "aud": "presence",
            "sub": "f0c8b3de-3a59-4c2e-9d34-2b7e7d9a1c11",
            "typ": "Bearer",
            "azp": "presence-web",
            "realm_access": {"roles": roles},
            "scope": "openid email profile",
            "preferred_username": "alice",
        }
        return _bearer(_sign(ed_key, "EdDSA", claims, "kc-ed-1"))

    admin = token(["offline_access", "uma_authorization", "presence:admin"])
    response = await client.put("/v1/users/alice", json={"name": "Alice"}, headers=admin)
    assert response.status == 200, await response.text()
    client_only = token(["offline_access", "root"])  # no presence role: a client
    realm_admin = token(["offline_access", "admin"])  # the realm's admin role: not ours
    assert (await client.put("/v1/users/a", json={"name": "A"}, headers=realm_admin)).status == 403
    assert (await client.put("/v1/users/a", json={"name": "A"}, headers=client_only)).status == 403
    assert (await client.post("/v1/heartbeat", json=BODY, headers=client_only)).status == 200
    # publishing a latest version: the namespaced role only, never a bare "publisher"
    latest = {"versionId": "v2"}
    publisher = token(["offline_access", "presence:publisher"])
    realm_publisher = token(["offline_access", "publisher"])
    path = "/v1/artifacts/doc-1/latest"
    assert (await client.put(path, json=latest, headers=publisher)).status == 200
    assert (await client.put(path, json=latest, headers=realm_publisher)).status == 403


def _hs256_with(secret: bytes, claims: dict[str, Any], kid: str) -> str:
    """HS256 "signed" with ``secret`` by hand (PyJWT refuses a PEM as an HMAC secret)."""
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = _b64(json.dumps(claims).encode())
    mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(mac)}"


async def test_tokens_that_fail_are_401_naming_why(
    auth0: AppClient, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    good = _auth0_claims("openid")
    now = int(time.time())
    other_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    none_head = _b64(json.dumps({"alg": "none", "kid": "auth0-key-1"}).encode())
    cases = {
        "unknown kid": (_sign(rsa_key, "RS256", good, "auth0-key-9"), "kid 'auth0-key-9'"),
        "HS256 with the public key as secret": (
            _hs256_with(_pem(rsa_key), good, "auth0-key-1"),
            "signature",
        ),
        "alg none": (f"{none_head}.{_b64(json.dumps(good).encode())}.", "alg 'none'"),
        "alg not the key's": (_sign(ec_key, "ES256", good, "auth0-key-1"), "which signs RS256"),
        "another key's signature": (_sign(other_rsa, "RS256", good, "auth0-key-1"), "signature"),
        "expired beyond the leeway": (
            _sign(rsa_key, "RS256", {**good, "exp": now - 60}, "auth0-key-1"),
            "expired",
        ),
        "not valid yet": (
            _sign(rsa_key, "RS256", {**good, "nbf": now + 120}, "auth0-key-1"),
            "not valid yet",
        ),
        "wrong audience": (
            _sign(rsa_key, "RS256", {**good, "aud": "https://other.example.com"}, "auth0-key-1"),
            f"aud is not {AUTH0_AUD}",
        ),
        "no audience": (
            _sign(rsa_key, "RS256", {k: v for k, v in good.items() if k != "aud"}, "auth0-key-1"),
            "no aud claim",
        ),
        "wrong issuer": (
            _sign(rsa_key, "RS256", {**good, "iss": "https://evil.auth0.com/"}, "auth0-key-1"),
            f"iss is not {AUTH0_ISS}",
        ),
        "RS512 without kid, against the one key, pinned to RS256": (
            _sign(rsa_key, "RS512", good, None),
            "which signs RS256",
        ),
    }
    for name, (token, expected) in cases.items():
        response = await auth0.post("/v1/heartbeat", json=BODY, headers=_bearer(token))
        assert response.status == 401, name
        assert response.content_type == "application/problem+json", name
        detail = (await response.json())["detail"]
        assert expected in detail, (name, detail)
    within_leeway = _sign(rsa_key, "RS256", {**good, "exp": now - 10}, "auth0-key-1")
    response = await auth0.post("/v1/heartbeat", json=BODY, headers=_bearer(within_leeway))
    assert response.status == 200


async def test_rotation_two_keys_then_one(
    make_client: MakeClient,
    rsa_key: rsa.RSAPrivateKey,
    ec_key: ec.EllipticCurvePrivateKey,
    tmp_path: Path,
) -> None:
    old, new = _jwk(rsa_key, "2025-11", "RS256"), _jwk(ec_key, "2026-11", "ES256")
    jwks = _write_jwks(tmp_path / "jwks.json", [old, new])
    client = await make_client(jwt_public_keys=jwks)
    claims = {"sub": "alice", "exp": int(time.time()) + 600}
    by_old = _bearer(_sign(rsa_key, "RS256", claims, "2025-11"))
    by_new = _bearer(_sign(ec_key, "ES256", claims, "2026-11"))
    assert (await client.post("/v1/heartbeat", json=BODY, headers=by_old)).status == 200
    assert (await client.post("/v1/heartbeat", json=BODY, headers=by_new)).status == 200

    _write_jwks(jwks, [new])  # the old key is retired
    deadline = time.monotonic() + 10
    while (status := (await client.post("/v1/heartbeat", json=BODY, headers=by_old)).status) == 200:
        assert time.monotonic() < deadline, "the removed key's (cached) token still works"
        await asyncio.sleep(0.1)
    assert status == 401
    assert (await client.post("/v1/heartbeat", json=BODY, headers=by_new)).status == 200

    jwks.write_text("{not json")  # a broken rewrite keeps the last good keys
    await asyncio.sleep(1.2)
    assert (await client.post("/v1/heartbeat", json=BODY, headers=by_new)).status == 200


async def test_hs256_tokens_keep_working_beside_public_keys(
    make_client: MakeClient, rsa_key: rsa.RSAPrivateKey, tmp_path: Path, auth: Any
) -> None:
    jwks = _write_jwks(tmp_path / "jwks.json", [_jwk(rsa_key, "k1", "RS256")])
    client = await make_client(jwt_public_keys=jwks)
    assert (await client.post("/v1/heartbeat", json=BODY, headers=auth("alice"))).status == 200
    rs = _sign(rsa_key, "RS256", {"sub": "bob", "exp": int(time.time()) + 60}, "k1")
    assert (
        await client.post(
            "/v1/heartbeat", json=BODY | {"sessionId": "tab-bbbb2"}, headers=_bearer(rs)
        )
    ).status == 200


async def test_rs256_without_public_keys_is_refused(
    client: AppClient, rsa_key: rsa.RSAPrivateKey
) -> None:
    token = _sign(rsa_key, "RS256", {"sub": "alice", "exp": int(time.time()) + 60}, "k1")
    response = await client.post("/v1/heartbeat", json=BODY, headers=_bearer(token))
    assert response.status == 401
    assert "PRESENCE_JWT_PUBLIC_KEYS" in (await response.json())["detail"]


def test_unusable_key_files_stop_the_start(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    private = tmp_path / "private.pem"
    private.write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    oct_key = _write_jwks(tmp_path / "oct.json", [{"kty": "oct", "k": "c2VjcmV0", "kid": "x"}])
    small = tmp_path / "small.pem"
    small.write_bytes(_pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)))
    cases = {
        private: "private key",
        oct_key: "symmetric",
        small: "at least 2048 bits",
        tmp_path / "missing.json": "No such file",
        tmp_path: "directory",
    }
    for path, expected in cases.items():
        with pytest.raises(ConfigError, match="PRESENCE_JWT_PUBLIC_KEYS") as info:
            Settings.from_env({"PRESENCE_JWT_PUBLIC_KEYS": str(path)})
        assert expected in str(info.value), (path, str(info.value))
    with pytest.raises(ConfigError, match="PRESENCE_JWT_SCOPE_CLAIM"):
        Settings.from_env({"PRESENCE_JWT_SCOPE_CLAIM": "realm_access..roles"})
    with pytest.raises(ConfigError, match="PRESENCE_JWT_LEEWAY_S"):
        Settings.from_env({"PRESENCE_JWT_LEEWAY_S": "-1"})


async def test_a_header_whose_alg_is_no_string_is_a_401(
    make_client: MakeClient, rsa_key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    """Anyone can send a token with any header: an ``alg`` that is a list, an object or a
    number is a 401 naming it, never a 500."""
    for keys in (None, _write_jwks(tmp_path / "jwks.json", [_jwk(rsa_key, "k1", "RS256")])):
        client = await make_client(jwt_public_keys=keys)
        payload = _b64(json.dumps({"sub": "alice", "exp": int(time.time()) + 60}).encode())
        for alg in (["HS256"], {"RS256": 1}, 256, None):
            head = _b64(json.dumps({"alg": alg, "kid": "k1"}).encode())
            token = f"{head}.{payload}.{_b64(b'x' * 32)}"
            response = await client.post("/v1/heartbeat", json=BODY, headers=_bearer(token))
            assert response.status == 401, (alg, await response.text())
            assert "alg" in (await response.json())["detail"]


_BROKEN_JWKS = {
    "an RSA key without its exponent": {"kty": "RSA", "n": _b64(b"\x01" * 256), "kid": "b"},
    "an EC key with short coordinates": {
        "kty": "EC",
        "crv": "P-256",
        "x": _b64(b"\x01"),
        "y": _b64(b"\x01"),
        "kid": "b",
    },
    "an RSA key marked HS256": {"kty": "RSA", "alg": "HS256", "n": "AQAB", "e": "AQAB"},
    "an RSA key marked none": {"kty": "RSA", "alg": "none", "n": "AQAB", "e": "AQAB"},
    "an X25519 key for signing": {"kty": "OKP", "crv": "X25519", "x": _b64(b"\x01" * 32)},
}


def test_a_jwks_with_a_malformed_key_stops_the_start_naming_it(tmp_path: Path) -> None:
    for name, jwk in _BROKEN_JWKS.items():
        path = _write_jwks(tmp_path / "jwks.json", [jwk])
        with pytest.raises(ConfigError, match="PRESENCE_JWT_PUBLIC_KEYS") as info:
            Settings.from_env({"PRESENCE_JWT_PUBLIC_KEYS": str(path)})
        assert "keys[0]" in str(info.value), (name, str(info.value))


def test_a_pem_key_of_no_jwt_algorithm_stops_the_start_naming_it(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import dsa, x25519

    for key in (dsa.generate_private_key(2048), x25519.X25519PrivateKey.generate()):
        path = tmp_path / "key.pem"
        path.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        with pytest.raises(ConfigError, match="signs no JWT algorithm"):
            Settings.from_env({"PRESENCE_JWT_PUBLIC_KEYS": str(path)})


def _not_reloaded(caplog: pytest.LogCaptureFixture) -> int:
    """How many times a rewritten key file was read and refused (each look logs it)."""
    return sum(r.getMessage().startswith("public keys not reloaded") for r in caplog.records)


async def test_a_rewrite_with_a_malformed_key_keeps_the_last_good_keys(
    make_client: MakeClient,
    rsa_key: rsa.RSAPrivateKey,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The documented promise: a key file that no longer loads keeps the previous keys, for
    every way a key can be malformed (not only broken JSON), and no request fails for it."""
    good = _jwk(rsa_key, "k1", "RS256")
    jwks = _write_jwks(tmp_path / "jwks.json", [good])
    client = await make_client(jwt_public_keys=jwks)
    token = _bearer(_sign(rsa_key, "RS256", {"sub": "alice", "exp": int(time.time()) + 600}, "k1"))
    assert (await client.post("/v1/heartbeat", json=BODY, headers=token)).status == 200
    for name, jwk in _BROKEN_JWKS.items():
        _write_jwks(jwks, [good, jwk])
        looked = _not_reloaded(caplog)
        deadline = time.monotonic() + 10  # the file is looked at once a second
        while _not_reloaded(caplog) == looked:  # until this very file was read and refused
            assert time.monotonic() < deadline, f"{name}: the rewrite was never looked at"
            response = await client.post("/v1/heartbeat", json=BODY, headers=token)
            assert response.status == 200, (name, await response.text())
            await asyncio.sleep(0.05)
        response = await client.post("/v1/heartbeat", json=BODY, headers=token)
        assert response.status == 200, (name, await response.text())


async def test_a_longer_leeway_accepts_the_skew_it_names_and_no_more(
    make_client: MakeClient, rsa_key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    """``PRESENCE_JWT_LEEWAY_S=120``: an IdP whose clock runs 90 s off either way is
    accepted (the default 30 s refuses it), 150 s is not."""
    jwks = _write_jwks(tmp_path / "jwks.json", [_jwk(rsa_key, "k1", "RS256")])
    client = await make_client(jwt_public_keys=jwks, jwt_leeway_s=120)
    strict = await make_client(jwt_public_keys=jwks)  # the default leeway, 30 s
    now = int(time.time())

    def signed(**times: int) -> dict[str, str]:
        return _bearer(_sign(rsa_key, "RS256", {"sub": "alice", "exp": now + 600, **times}, "k1"))

    async def status(service: AppClient, headers: dict[str, str]) -> tuple[int, str]:
        response = await service.post("/v1/heartbeat", json=BODY, headers=headers)
        return response.status, (await response.json()).get("detail", "")

    for within in (signed(exp=now - 90), signed(nbf=now + 90), signed(iat=now + 90)):
        assert (await status(client, within))[0] == 200
        assert (await status(strict, within))[0] == 401
    code, detail = await status(client, signed(exp=now - 150))
    assert (code, "expired" in detail) == (401, True), detail
    code, detail = await status(client, signed(nbf=now + 150))
    assert (code, "not valid yet" in detail) == (401, True), detail


@pytest.mark.parametrize(
    ("claim_name", "claims"),
    [
        ("preferred_username", {"preferred_username": "alice"}),  # Keycloak
        (f"{AUTH0_NS}user_id", {f"{AUTH0_NS}user_id": "alice"}),  # a namespaced name, whole
        ("ext.user.id", {"ext": {"user": {"id": "alice"}}}),  # a dotted path into objects
    ],
    ids=["keycloak-username", "auth0-namespaced", "nested-path"],
)
async def test_the_user_id_comes_from_the_configured_claim(
    make_client: MakeClient,
    rsa_key: rsa.RSAPrivateKey,
    tmp_path: Path,
    claim_name: str,
    claims: dict[str, Any],
) -> None:
    """``PRESENCE_JWT_USER_CLAIM``: the user is that claim, not ``sub`` (which the IdP
    fills with its own opaque id); a token without it is a 401 naming the claim."""
    jwks = _write_jwks(tmp_path / "jwks.json", [_jwk(rsa_key, "k1", "RS256")])
    client = await make_client(jwt_public_keys=jwks, jwt_user_claim=claim_name)
    subject = "f0c8b3de-3a59-4c2e-9d34-2b7e7d9a1c11"
    now = int(time.time())
    base = {"sub": subject, "exp": now + 600, "iat": now}
    alice = _bearer(_sign(rsa_key, "RS256", {**base, **claims}, "k1"))
    assert (await client.post("/v1/heartbeat", json=BODY, headers=alice)).status == 200
    page = await (await client.get("/v1/artifacts/doc-1/presence", headers=alice)).json()
    assert [u["userId"] for u in page["users"]] == ["alice"]
    # Her own user's data is hers by that id, not by sub.
    assert (await client.get("/v1/users/alice/privacy", headers=alice)).status == 200
    assert (await client.get(f"/v1/users/{subject}/privacy", headers=alice)).status == 403
    without = _bearer(_sign(rsa_key, "RS256", base, "k1"))
    response = await client.post("/v1/heartbeat", json=BODY, headers=without)
    assert response.status == 401
    assert claim_name in (await response.json())["detail"]
