"""What each benchmark scenario sends, built once as raw HTTP/1.1 request bytes.

Ids look like production ones (many users, many artifacts, one tab per user, a small
state), and every request carries a token signed with the configured secret for its user.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

import msgspec

from presence_svc.auth import Scope, TokenCodec

__all__ = [
    "SCENARIOS",
    "TIMELINE_ARTIFACTS",
    "TIMELINE_MINUTES",
    "Population",
    "Scenario",
    "Tokens",
    "artifact_id",
    "build_scenario",
    "profile_requests",
    "scenario_seed",
    "session_id",
    "user_id",
]

_JSON = msgspec.json.Encoder()
BATCH = 1000
"""Artifacts per ``online-batch`` request."""
ROAMERS = 400
"""Users the ``where-now`` scenario asks about (users 0..399), each online on ``ROAMING``
artifacts: enough that each asks at most some 25 times a second at 10 000 requests a
second, under the default per-user read limit (50/s), as many users polling would."""
ROAMING = 50
AUDIENCE_ARTIFACTS = 4
"""Artifacts the ``seen-check`` scenario asks about (artifacts 0..3, latest version ``v1``),
each viewed by ``AUDIENCE_VIEWERS`` users; an audience of ``BATCH`` ids is half viewers."""
AUDIENCE_VIEWERS = 500
TIMELINE_ARTIFACTS = 20
"""Artifacts (0..19) whose 7-day timeline the ``timeline`` scenario reads: each has a change
in every minute (``timeline_history``), the most a timeline can hold."""
TIMELINE_MINUTES = 10_080
"""Minutes one ``timeline`` read asks for: 7 days, the 10 080 points a read may have at
most. Each read names both ends (``until`` the end of the minute the run was built in), so
it makes exactly that many points however long the run takes."""


def artifact_id(i: int) -> str:
    return f"doc-{i:07d}"


def user_id(i: int) -> str:
    return f"user-{i:07d}"


def session_id(i: int) -> str:
    """An SDK-form session id (32 hex digits, as the browser SDK makes), unique per i."""
    return f"{(i * 0x9E3779B97F4A7C15) & (2**96 - 1):024x}{i:08x}"


@dataclass(frozen=True, slots=True)
class Population:
    """Who the benchmark pretends to be: ``users`` users with one tab each, spread over
    ``artifacts`` artifacts (user i is on artifact i mod artifacts)."""

    users: int = 10_000
    artifacts: int = 1_000
    seed: int = 1

    def artifact_of(self, user: int) -> int:
        return user % self.artifacts


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    requests: list[bytes]
    expect_status: int = 200


def _request(method: str, path: str, token: str, body: bytes | None = None, *extra: str) -> bytes:
    head = [f"{method} {path} HTTP/1.1", "Host: bench", f"Authorization: Bearer {token}", *extra]
    if body is not None:
        head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + (body or b"")


class Tokens:
    """One token per user for the whole run, as a tab keeps its token for its lifetime
    (an hour: some 240 heartbeats). The unmeasured seeding round therefore warms the
    server's token cache as every tab's first heartbeat does, and the measured part sees
    what a server in production sees, not a first verification per request."""

    def __init__(self, codec: TokenCodec, ttl_s: int = 3600) -> None:
        self.codec = codec
        self.ttl_s = ttl_s
        self._users: dict[int, str] = {}
        # Admin, not dashboard: one reader sending thousands of batch reads a second is over
        # any per-user rate limit; admin tokens are never limited.
        self.reader = codec.issue("bench-board", scope=Scope.ADMIN, ttl_s=ttl_s)
        self.admin = codec.issue("bench-admin", scope=Scope.ADMIN, ttl_s=ttl_s)

    def user(self, n: int) -> str:
        token = self._users.get(n)
        if token is None:
            token = self._users[n] = self.codec.issue(user_id(n), ttl_s=self.ttl_s)
        return token


class _Builder:
    def __init__(self, tokens: Tokens, population: Population) -> None:
        self.population = population
        self.rng = random.Random(population.seed)
        self.token = tokens.user
        self.reader = tokens.reader
        self.admin = tokens.admin

    def users(self, count: int) -> list[int]:
        """``count`` users in a shuffled round: each user's tab once per cycle."""
        order = list(range(self.population.users))
        self.rng.shuffle(order)
        return [order[i % len(order)] for i in range(count)]

    def heartbeat(self, user: int, engaged_ms: int = 0, artifact: str | None = None) -> bytes:
        body: dict[str, object] = {
            "artifactId": artifact or artifact_id(self.population.artifact_of(user)),
            "versionId": "v1",
            "sessionId": session_id(user),
            "state": {"page": user % 7, "mode": "view"},
        }
        if engaged_ms:
            body["engagedMs"] = engaged_ms
        return _request("POST", "/v1/heartbeat", self.token(user), _JSON.encode(body))

    def own_view(self, user: int) -> bytes:
        """A view of v1 of the user's own artifact (what a tab records on open)."""
        body = {
            "artifactId": artifact_id(self.population.artifact_of(user)),
            "versionId": "v1",
            "sessionId": session_id(user),
        }
        return _request("POST", "/v1/views", self.token(user), _JSON.encode(body))

    def view(self, user: int) -> bytes:
        body = {
            "artifactId": artifact_id(self.rng.randrange(self.population.artifacts)),
            "versionId": f"v{self.rng.randrange(3)}",
            "sessionId": session_id(user),
        }
        return _request("POST", "/v1/views", self.token(user), _JSON.encode(body))

    def online_one(self, user: int) -> bytes:
        artifact = artifact_id(self.population.artifact_of(user))
        return _request("GET", f"/v1/artifacts/{artifact}/online", self.token(user))

    def online_batch(self) -> bytes:
        ids = self.rng.sample(
            range(self.population.artifacts), min(BATCH, self.population.artifacts)
        )
        query = urlencode([("artifactId", artifact_id(i)) for i in ids])
        return _request("GET", f"/v1/online?{query}", self.reader)

    def roaming_heartbeat(self, user: int, k: int) -> bytes:
        """User ``user``'s ``k``-th extra tab, on another artifact (where-now seeding)."""
        artifacts = self.population.artifacts
        body = {
            "artifactId": artifact_id((self.population.artifact_of(user) + 7 * k) % artifacts),
            "versionId": "v1",
            "sessionId": session_id(self.population.users * k + user),
        }
        return _request("POST", "/v1/heartbeat", self.token(user), _JSON.encode(body))

    def latest(self, artifact: int) -> bytes:
        body = _JSON.encode({"versionId": "v1"})
        path = f"/v1/artifacts/{artifact_id(artifact)}/latest"
        return _request("PUT", path, self.reader, body)

    def view_of(self, user: int, artifact: int) -> bytes:
        body = {"artifactId": artifact_id(artifact), "versionId": "v1"}
        return _request("POST", "/v1/views", self.token(user), _JSON.encode(body))

    def seen_check(self) -> bytes:
        """1 000 user ids of whom half viewed the artifact's latest version (the default
        version: the answer includes looking it up)."""
        artifact = self.rng.randrange(AUDIENCE_ARTIFACTS)
        pool = 2 * AUDIENCE_ARTIFACTS * AUDIENCE_VIEWERS
        ids = self.rng.sample(range(pool), min(BATCH, pool))
        body = _JSON.encode({"userIds": [user_id(i) for i in ids]})
        path = f"/v1/artifacts/{artifact_id(artifact)}/seen/check"
        return _request("POST", path, self.reader, body)

    def leave(self, user: int) -> bytes:
        body = {
            "artifactId": artifact_id(self.population.artifact_of(user)),
            "sessionId": session_id(user),
        }
        return _request("POST", "/v1/leave", self.token(user), _JSON.encode(body))

    def timeline(self, i: int, since: str, until: str, *extra: str) -> bytes:
        artifact = artifact_id(i % min(TIMELINE_ARTIFACTS, self.population.artifacts))
        query = urlencode({"since": since, "until": until, "step": "1m"})
        path = f"/v1/artifacts/{artifact}/timeline?{query}"
        return _request("GET", path, self.reader, None, *extra)

    def where_now(self, user: int) -> bytes:
        return _request("GET", f"/v1/users/{user_id(user)}/presence", self.token(user))

    def presence(self, user: int, limit: int = 100) -> bytes:
        artifact = artifact_id(self.population.artifact_of(user))
        path = f"/v1/artifacts/{artifact}/presence?limit={limit}"
        return _request("GET", path, self.token(user))


def _heartbeat(b: _Builder) -> list[bytes]:
    return [b.heartbeat(u) for u in b.users(b.population.users)]


def _heartbeat_engaged(b: _Builder) -> list[bytes]:
    """``heartbeat`` with ``engagedMs`` (a tab someone looks at: 15 s per heartbeat),
    credited to the viewer (each user viewed v1 of their artifact and reported once,
    unmeasured, first)."""
    return [b.heartbeat(u, engaged_ms=15_000) for u in b.users(b.population.users)]


def _own_views(b: _Builder) -> list[bytes]:
    return [b.own_view(u) for u in range(b.population.users)]


def _engaged_seed(b: _Builder) -> list[bytes]:
    """Each user's view of v1, then one report of engaged time: a session's first report
    (which starts its accumulator from the view) comes once per session, not once per
    measurement, so the scenario measures the reports that follow it."""
    reports = [b.heartbeat(u, engaged_ms=1_000) for u in range(b.population.users)]
    return _own_views(b) + reports


def _views(b: _Builder) -> list[bytes]:
    return [b.view(u) for u in b.users(min(b.population.users, 20_000))]


def _online_batch(b: _Builder) -> list[bytes]:
    return [b.online_batch() for _ in range(64)]


def _presence_list(b: _Builder) -> list[bytes]:
    return [b.presence(u) for u in b.users(min(b.population.users, 5_000))]


def _presence_page10(b: _Builder) -> list[bytes]:
    """Pages of 10 users: the same rows whatever the room size, so a large room and a room
    of 10 compare what the room's size costs, not the length of the answer."""
    return [b.presence(u, limit=10) for u in b.users(min(b.population.users, 5_000))]


def _online_one(b: _Builder) -> list[bytes]:
    """``GET /v1/artifacts/{id}/online`` of the user's artifact: the where-now yardstick."""
    return [b.online_one(u) for u in b.users(min(b.population.users, 5_000))]


def _seen_check(b: _Builder) -> list[bytes]:
    """``POST /v1/artifacts/{id}/seen/check`` of 1 000 ids: compare with ``online-batch``."""
    return [b.seen_check() for _ in range(64)]


def _seen_check_seed(b: _Builder) -> list[bytes]:
    """The latest version of the audience artifacts, and their viewers' views of it."""
    artifacts = min(AUDIENCE_ARTIFACTS, b.population.artifacts)
    viewers = [
        b.view_of(u, u % artifacts)
        for u in range(min(b.population.users, artifacts * AUDIENCE_VIEWERS))
    ]
    return [b.latest(a) for a in range(artifacts)] + viewers


def _roamers(b: _Builder) -> int:
    return min(ROAMERS, b.population.users)


def _where_now(b: _Builder) -> list[bytes]:
    """``GET /v1/users/{id}/presence`` of users online on ``ROAMING`` artifacts each."""
    roamers = _roamers(b)
    return [b.where_now(b.rng.randrange(roamers)) for _ in range(5_000)]


def _where_now_seed(b: _Builder) -> list[bytes]:
    roaming = min(ROAMING, b.population.artifacts)
    return [b.roaming_heartbeat(u, k) for u in range(_roamers(b)) for k in range(1, roaming)]


def _hidden(b: _Builder) -> range:
    """The ``heartbeat-hidden`` scenario's users: as many as the population, numbered after
    it, on artifacts of their own (``hid-…``, spread as the others): seeded before every
    scenario, they change no other scenario's rooms."""
    return range(b.population.users, 2 * b.population.users)


def _hidden_heartbeat(b: _Builder, n: int) -> bytes:
    return b.heartbeat(n, artifact=f"hid-{b.population.artifact_of(n):07d}")


def _heartbeat_hidden(b: _Builder) -> list[bytes]:
    """The ``heartbeat`` round by users whose presence is hidden (invisible): the cost of
    the hidden flag on the hot path, against ``heartbeat`` in the same run."""
    first = b.population.users
    return [_hidden_heartbeat(b, first + u) for u in b.users(b.population.users)]


def _heartbeat_hidden_seed(b: _Builder) -> list[bytes]:
    """Each hidden user's setting (an admin's PUT), then one heartbeat each, as the plain
    round's users get one first."""
    body = _JSON.encode({"presence": "hidden"})
    settings = [
        _request("PUT", f"/v1/users/{user_id(n)}/privacy", b.admin, body) for n in _hidden(b)
    ]
    return settings + [_hidden_heartbeat(b, n) for n in _hidden(b)]


def _mixed(b: _Builder) -> list[bytes]:
    """95% heartbeats, 4% online polls of one artifact, 1% views: the traffic of open tabs."""
    out = []
    for i, user in enumerate(b.users(max(b.population.users, 10_000))):
        slot = i % 100
        if slot < 95:
            out.append(b.heartbeat(user))
        elif slot < 99:
            out.append(b.online_one(user))
        else:
            out.append(b.view(user))
    return out


def _churn(b: _Builder) -> list[bytes]:
    """Every user's tab leaves, then every one joins again (shuffled, the same order): each
    request changes the counts, so each writes the artifact's timeline."""
    order = b.users(b.population.users)
    return [b.leave(u) for u in order] + [b.heartbeat(u) for u in order]


def _timeline(b: _Builder, *extra: str) -> list[bytes]:
    """``GET /v1/artifacts/{id}/timeline`` of the last ``TIMELINE_MINUTES`` (7 days) at
    ``1m``, up to the end of the current minute: exactly ``TIMELINE_MINUTES`` points (the
    service takes a later ``until`` as now while the minute runs)."""
    end_ms = (int(time.time() * 1000) // 60_000 + 1) * 60_000
    since_ms = end_ms - TIMELINE_MINUTES * 60_000
    since, until = (
        datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for ms in (since_ms, end_ms)
    )
    return [b.timeline(i, since, until, *extra) for i in range(TIMELINE_ARTIFACTS * 10)]


def _timeline_gzip(b: _Builder) -> list[bytes]:
    """``timeline`` as a browser asks it, accepting gzip."""
    return _timeline(b, "Accept-Encoding: gzip, deflate")


SCENARIOS: dict[str, Callable[[_Builder], list[bytes]]] = {
    "heartbeat": _heartbeat,
    "heartbeat-engaged": _heartbeat_engaged,
    "views": _views,
    "online-batch": _online_batch,
    "presence-list": _presence_list,
    "presence-page10": _presence_page10,
    "mixed": _mixed,
    "online-one": _online_one,
    "where-now": _where_now,
    "seen-check": _seen_check,
    "churn": _churn,
    "timeline": _timeline,
    "timeline-gzip": _timeline_gzip,
    "heartbeat-hidden": _heartbeat_hidden,
}
SEEDS: dict[str, Callable[[_Builder], list[bytes]]] = {
    "where-now": _where_now_seed,
    "seen-check": _seen_check_seed,
    "heartbeat-engaged": _engaged_seed,
    "heartbeat-hidden": _heartbeat_hidden_seed,
}
"""Unmeasured requests a scenario needs first, besides every user's one heartbeat."""


def build_scenario(name: str, tokens: Tokens, population: Population) -> Scenario:
    builder = _Builder(tokens, population)
    return Scenario(name=name, requests=SCENARIOS[name](builder))


def seed_requests(tokens: Tokens, population: Population) -> list[bytes]:
    """One heartbeat per user: the sessions the read scenarios find (not measured)."""
    builder = _Builder(tokens, population)
    return [builder.heartbeat(u) for u in range(population.users)]


def scenario_seed(name: str, tokens: Tokens, population: Population) -> list[bytes]:
    """What ``name`` needs stored before it is measured (often nothing)."""
    seed = SEEDS.get(name)
    return seed(_Builder(tokens, population)) if seed else []


def profile_requests(tokens: Tokens, population: Population) -> list[bytes]:
    """A profile (name and avatar) per user in the users directory (not measured), so
    presence lists join names, as in production, rather than find none."""
    out = []
    for n in range(population.users):
        body = {"name": f"User {n}", "avatarUrl": f"https://avatars.example.com/{n}.png"}
        out.append(_request("PUT", f"/v1/users/{user_id(n)}", tokens.admin, _JSON.encode(body)))
    return out
