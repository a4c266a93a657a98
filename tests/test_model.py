"""A model-based test: Hypothesis drives random heartbeats, leaves (with and without grace),
timeouts, views and erasures against the real service (``presence-svc serve``, a real
process over real HTTP, on a real redis-server) and checks, after every step, the online
counts, the presence lists, the view stats and the ledger against a small Python model.

Time is Redis's: every script reads the clock with ``TIME`` (``lua/lib/now.lua``) and the
debounce windows are Redis expiries. This test's redis-server runs under libfaketime, its
clock read from an offset file the test moves forward in whole units of ``UNIT_S``; the
online timeout is 1.5 units and the debounce 2.5 units, so the real seconds that pass while
an example runs never change which side of a window a step falls on as long as they stay
under half a unit: 500 s, more than the test's whole timeout, however slow the machine.
A grace leave (``GRACE_S``, at most 30 s: the service's limit) is the one window shorter
than an example can take on a loaded machine: the model moves the clock past it (as
``time_passes`` does) before a request could meet its end in real time.
"""

from __future__ import annotations

import glob
import http.client
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from presence_svc.auth import Scope, TokenCodec
from presence_svc.redis.embedded import EmbeddedRedis
from tests.children import dies_with_us
from tests.conftest import SECRET, free_port

UNIT_S = 1000
TIMEOUT_UNITS = 1.5
DEBOUNCE_UNITS = 2.5
GRACE_S = 30  # the most the service allows; ended by the next step that moves the clock
GRACE_SAFE_S = GRACE_S / 3
"""How long after a grace leave (real time) requests may go on at the same model time; the
next one moves the clock first. Only a single request of over 20 s could meet the end."""
USERS = ("u0", "u1", "u2")
ARTIFACTS = ("a0", "a1")
VERSIONS = ("v1", "v2")
EXPLORE = int(os.environ.get("PRESENCE_MODEL_EXAMPLES", "0"))
"""Set, a longer hunt: that many random examples (the suite runs a fixed, derandomized 20)."""


def _libfaketime() -> str:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    if not found:
        pytest.fail("libfaketime is not installed (scripts/test-deps.sh installs it)")
    return found[0]


@dataclass
class Service:
    url: str
    clock_file: Path
    offset_s: int = 0

    def advance(self, units: int) -> None:
        """Moves Redis's clock forward (libfaketime reads the file on every clock call)."""
        self.offset_s += units * UNIT_S
        self.clock_file.write_text(f"+{self.offset_s}\n")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("model")
    clock_file = root / "clock"
    clock_file.write_text("+0\n")
    faked = {
        "LD_PRELOAD": _libfaketime(),
        "FAKETIME_TIMESTAMP_FILE": str(clock_file),
        "FAKETIME_NO_CACHE": "1",
        "DONT_FAKE_MONOTONIC": "1",
    }
    saved = {k: os.environ.get(k) for k in faked}
    os.environ.update(faked)  # for the redis-server child only
    redis = EmbeddedRedis(root / "redis")
    try:
        redis_url = redis.start()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    port = free_port()
    env = {
        **os.environ,
        "PRESENCE_REDIS_URL": redis_url,
        "PRESENCE_DATA_DIR": str(root / "data"),
        "PRESENCE_JWT_SECRET": SECRET,
        "PRESENCE_ONLINE_TIMEOUT_S": str(TIMEOUT_UNITS * UNIT_S),
        "PRESENCE_AWAY_TIMEOUT_S": str(6 * UNIT_S),  # unused (every beat is active); >= online
        "PRESENCE_RETENTION_S": str(10_000 * UNIT_S),
        "PRESENCE_VIEW_DEBOUNCE_S": str(DEBOUNCE_UNITS * UNIT_S),
        "PRESENCE_LEAVE_GRACE_S": str(GRACE_S),
        "PRESENCE_PARTITIONS": "4",
        "PRESENCE_LOG_LEVEL": "warning",
        # The model checks every count and list after each step, far past a user's read
        # limit; rate limits have tests of their own.
        "PRESENCE_RATE_LIMITS": "off",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "presence_svc", "serve", "--worker", "--port", str(port)],
        env=env,
        stdin=subprocess.DEVNULL,
        preexec_fn=dies_with_us(),
    )
    url = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, "serve exited"
            # Closed whatever the answer: a 503 while the service gets ready (a slow
            # machine polls in that phase) left the socket open, and its ResourceWarning
            # failed the test's setup.
            conn = http.client.HTTPConnection(url, timeout=5)
            try:
                conn.request("GET", "/readyz")
                ready = conn.getresponse().status == 200
            except OSError:
                ready = False
            finally:
                conn.close()
            if ready:
                break
            assert time.monotonic() < deadline, "serve never became ready"
            time.sleep(0.1)
        yield Service(url, clock_file)
    finally:
        server.terminate()
        server.wait(30)
        redis.stop()


@dataclass
class Session:
    user: str
    tab: int
    version: str | None = None
    state: dict[str, Any] | None = None
    last: int = 0
    """Model time (units) of the last heartbeat."""
    leaving_at: int | None = None
    """Model time of a grace leave not yet cancelled by a heartbeat."""
    rank: tuple[int, int] = (0, 0)
    """What makes the session its user's latest: a heartbeat's sequence, and below any
    heartbeat, a grace leave's (the leave backdates the session in Redis)."""


@dataclass
class VersionStats:
    views: int = 0
    viewers: Counter[str] = field(default_factory=Counter)


class PresenceModel(RuleBasedStateMachine):
    """The service as a few dictionaries."""

    examples = 0
    service: Service

    def __init__(self) -> None:
        super().__init__()
        PresenceModel.examples += 1
        # Fresh ids for every example: nothing of an earlier one is in the way.
        self.prefix = f"x{PresenceModel.examples}-{time.monotonic_ns() % 1_000_000}"
        self.conn = http.client.HTTPConnection(self.service.url, timeout=30)
        codec = TokenCodec(SECRET)
        self.tokens = {u: codec.issue(self._user(u), scope=Scope.CLIENT) for u in USERS}
        self.board = codec.issue("board", scope=Scope.DASHBOARD)
        self.admin = codec.issue("ops", scope=Scope.ADMIN)
        self.now = 0
        self.seq = 0
        self.sessions: dict[tuple[str, str], Session] = {}  # (artifact, session id)
        self.last_counted: dict[tuple[str, str, str], int] = {}  # (artifact, version, user)
        self.stats: dict[str, dict[str, VersionStats]] = {a: {} for a in ARTIFACTS}
        self.ledger: dict[str, Counter[tuple[str, str]]] = {a: Counter() for a in ARTIFACTS}
        self.erasures = 0
        self.ledger_checked = True
        self.grace_since: float | None = None
        """When (``time.monotonic()``) the first grace leave still pending was sent."""

    def teardown(self) -> None:
        self.conn.close()

    # -- ids and HTTP -----------------------------------------------------------------

    def _user(self, user: str) -> str:
        return f"{self.prefix}-{user}"

    def _artifact(self, artifact: str) -> str:
        return f"{self.prefix}-{artifact}"

    def _session(self, user: str, tab: int) -> str:
        return f"tab-{self.prefix}-{user}-{tab}"

    def call(self, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
        if self.grace_since is not None and time.monotonic() - self.grace_since > GRACE_SAFE_S:
            self.time_passes(1)  # before Redis's real-time clock could end a grace leave
        headers = {"Authorization": f"Bearer {token}"}
        payload = None
        if body is not None:
            payload = json.dumps(body)
            headers["Content-Type"] = "application/json"
        self.conn.request(method, path, body=payload, headers=headers)
        response = self.conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else None

    # -- the model's views of itself --------------------------------------------------

    def online(self, session: Session) -> bool:
        if self.now - session.last >= TIMEOUT_UNITS:
            return False
        return session.leaving_at is None or self.now == session.leaving_at

    def counts(self, artifact: str) -> dict[str, int]:
        live = [s for (a, _), s in self.sessions.items() if a == artifact and self.online(s)]
        online = len({s.user for s in live})  # every heartbeat here is active
        return {"online": online, "sessions": len(live), "active": online, "away": 0}

    def presence_rows(self, artifact: str) -> list[tuple[Any, ...]]:
        latest: dict[str, Session] = {}
        mine: Counter[str] = Counter()
        for (a, _), s in self.sessions.items():
            if a == artifact and self.online(s):
                mine[s.user] += 1
                if s.user not in latest or s.rank > latest[s.user].rank:
                    latest[s.user] = s
        return sorted(
            (self._user(u), s.version, json.dumps(s.state, sort_keys=True), mine[u])
            for u, s in latest.items()
        )

    # -- rules ------------------------------------------------------------------------

    def slots(self) -> st.SearchStrategy[tuple[str, str, int]]:
        """A session slot (user, artifact, tab): mostly one the model knows, so leaves and
        repeated heartbeats meet sessions in every state."""
        anything = st.tuples(st.sampled_from(USERS), st.sampled_from(ARTIFACTS), st.integers(0, 1))
        known = sorted((s.user, a, s.tab) for (a, _), s in self.sessions.items())
        return st.sampled_from(known) | anything if known else anything

    @rule(
        data=st.data(),
        version=st.none() | st.sampled_from(VERSIONS),
        state=st.none() | st.fixed_dictionaries({"page": st.integers(0, 2)}),
    )
    def heartbeat_known(self, data: st.DataObject, version: str | None, state: Any) -> None:
        """The same as ``heartbeat``, mostly on a known session (and twice as likely)."""
        user, artifact, tab = data.draw(self.slots())
        self.heartbeat(user, artifact, tab, version, state)

    @rule(
        user=st.sampled_from(USERS),
        artifact=st.sampled_from(ARTIFACTS),
        tab=st.integers(0, 1),
        version=st.none() | st.sampled_from(VERSIONS),
        state=st.none() | st.fixed_dictionaries({"page": st.integers(0, 2)}),
    )
    def heartbeat(
        self, user: str, artifact: str, tab: int, version: str | None, state: Any
    ) -> None:
        body: dict[str, Any] = {
            "artifactId": self._artifact(artifact),
            "sessionId": self._session(user, tab),
        }
        if version is not None:
            body["versionId"] = version
        if state is not None:
            body["state"] = state
        status, answer = self.call("POST", "/v1/heartbeat", self.tokens[user], body)
        assert status == 200, answer
        session = self.sessions.setdefault((artifact, self._session(user, tab)), Session(user, tab))
        session.version = version if version is not None else session.version
        session.state = state if state is not None else session.state
        session.last = self.now
        session.leaving_at = None
        self.seq += 1
        session.rank = (1, self.seq)
        assert answer["online"] == self.counts(artifact)["online"]
        assert answer["sessions"] == self.counts(artifact)["sessions"]

    @rule(data=st.data(), grace=st.booleans())
    def leave(self, data: st.DataObject, grace: bool) -> None:
        user, artifact, tab = data.draw(self.slots())
        sid = self._session(user, tab)
        body = {"artifactId": self._artifact(artifact), "sessionId": sid, "grace": grace}
        sent = time.monotonic()
        status, answer = self.call("POST", "/v1/leave", self.tokens[user], body)
        assert status == 200, answer
        session = self.sessions.get((artifact, sid))
        if session is not None:
            if grace and self.online(session):
                if session.leaving_at is None:
                    self.seq += 1
                    session.rank = (0, self.seq)
                session.leaving_at = self.now
                if self.grace_since is None:
                    self.grace_since = sent
            else:  # at once; an offline session's record goes too
                del self.sessions[(artifact, sid)]
        assert answer == self.counts(artifact)

    @rule(units=st.integers(1, 2))
    def time_passes(self, units: int) -> None:
        self.service.advance(units)
        self.now += units
        self.grace_since = None
        # a grace leave has ended: the session is gone for good, its record kept (stale)
        for session in self.sessions.values():
            if session.leaving_at is not None and self.now > session.leaving_at:
                session.last = min(session.last, self.now - 2)

    @rule(
        user=st.sampled_from(USERS),
        artifact=st.sampled_from(ARTIFACTS),
        version=st.sampled_from(VERSIONS),
    )
    def view(self, user: str, artifact: str, version: str) -> None:
        body = {"artifactId": self._artifact(artifact), "versionId": version}
        status, answer = self.call("POST", "/v1/views", self.tokens[user], body)
        assert status == 200, answer
        key = (artifact, version, user)
        counted = key not in self.last_counted or (
            self.now - self.last_counted[key] >= DEBOUNCE_UNITS
        )
        stats = self.stats[artifact].setdefault(version, VersionStats())
        if counted:
            self.last_counted[key] = self.now
            stats.views += 1
            stats.viewers[user] += 1
            self.ledger[artifact][(version, self._user(user))] += 1
            self.ledger_checked = False
        assert answer == {
            "counted": counted,
            "views": stats.views,
            "uniqueViewers": len(stats.viewers),
        }

    @rule(user=st.sampled_from(USERS))
    def erase(self, user: str) -> None:
        status, answer = self.call("DELETE", f"/v1/users/{self._user(user)}", self.admin)
        assert status == 204, answer
        for key in [k for k, s in self.sessions.items() if s.user == user]:
            del self.sessions[key]
        # Counts stay under a tombstone of this erasure; the records and debounce go.
        self.erasures += 1
        tombstone = f"~erased#{self.erasures}"
        for versions in self.stats.values():
            for stats in versions.values():
                if user in stats.viewers:
                    stats.viewers[tombstone] = stats.viewers.pop(user)
        for key in [k for k in self.last_counted if k[2] == user]:
            del self.last_counted[key]
        for rows in self.ledger.values():
            for version, who in [k for k in rows if k[1] == self._user(user)]:
                rows[(version, "~erased")] += rows.pop((version, who))
        self.ledger_checked = False

    # -- what is checked after every step ---------------------------------------------

    @invariant()
    def counts_match(self) -> None:
        query = urlencode([("artifactId", self._artifact(a)) for a in ARTIFACTS])
        status, answer = self.call("GET", f"/v1/online?{query}", self.board)
        assert status == 200, answer
        assert answer["counts"] == {self._artifact(a): self.counts(a) for a in ARTIFACTS}

    @invariant()
    def presence_lists_match(self) -> None:
        for artifact in ARTIFACTS:
            path = f"/v1/artifacts/{self._artifact(artifact)}/presence"
            status, answer = self.call("GET", path, self.board)
            assert status == 200, answer
            rows = sorted(
                (r["userId"], r["versionId"], json.dumps(r["state"], sort_keys=True), r["sessions"])
                for r in answer["users"]
            )
            assert rows == self.presence_rows(artifact), artifact
            counts = {k: answer[k] for k in ("online", "sessions", "active", "away")}
            assert counts == self.counts(artifact)

    @invariant()
    def stats_match(self) -> None:
        for artifact in ARTIFACTS:
            path = f"/v1/artifacts/{self._artifact(artifact)}/stats"
            status, answer = self.call("GET", path, self.board)
            assert status == 200, answer
            versions = self.stats[artifact]
            assert answer["views"] == sum(v.views for v in versions.values())
            everyone = {u for v in versions.values() for u in v.viewers}
            assert answer["uniqueViewers"] == len(everyone)
            assert {
                r["versionId"]: (r["views"], r["uniqueViewers"]) for r in answer["versions"]
            } == {name: (v.views, len(v.viewers)) for name, v in versions.items() if v.views}
            for name, stats in versions.items():
                path = f"/v1/artifacts/{self._artifact(artifact)}/versions/{name}/viewers"
                status, answer = self.call("GET", path, self.board)
                assert status == 200, answer
                assert {r["userId"]: r["views"] for r in answer["viewers"]} == {
                    self._user(u): n for u, n in stats.viewers.items() if not u.startswith("~")
                }

    @invariant()
    def ledger_matches_once_drained(self) -> None:
        if self.ledger_checked:
            return
        deadline = time.monotonic() + 30  # a poll: a loaded machine's drain is slow
        while True:
            found = {a: self._ledger(a) for a in ARTIFACTS}
            if found == self.ledger or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert found == self.ledger
        self.ledger_checked = True

    def _ledger(self, artifact: str) -> Counter[tuple[str, str]]:
        rows: Counter[tuple[str, str]] = Counter()
        cursor = None
        while True:
            query = {"artifactId": self._artifact(artifact), "limit": "500"}
            if cursor:
                query["cursor"] = cursor
            status, answer = self.call("GET", f"/v1/ledger?{urlencode(query)}", self.board)
            assert status == 200, answer
            rows.update(
                (r["versionId"], "~erased" if r["userId"].startswith("~erased-") else r["userId"])
                for r in answer["items"]
            )
            cursor = answer["nextCursor"]
            if not cursor:
                return rows


@pytest.mark.timeout(0 if EXPLORE else 300)
def test_the_service_behaves_as_the_model(service: Service) -> None:
    PresenceModel.service = service
    run_state_machine_as_test(
        PresenceModel,
        settings=settings(
            max_examples=EXPLORE or 20,
            stateful_step_count=50 if EXPLORE else 30,
            deadline=None,
            derandomize=not EXPLORE,
            phases=(Phase.generate,) if EXPLORE else tuple(Phase),
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
