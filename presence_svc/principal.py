"""Who a verified token says the caller is, and what each scope may do.

The claims are read by name (``ClaimRules``), so an identity provider's tokens work as
they are: Auth0's space-separated ``scope`` string, Keycloak's nested
``realm_access.roles`` list, Clerk's ``sub``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from presence_svc.errors import Forbidden, Unauthorized
from presence_svc.schemas import ID_PATTERN

__all__ = ["ClaimRules", "Principal", "Scope", "principal_from_claims"]

_ID = re.compile(ID_PATTERN)


class Scope(StrEnum):
    CLIENT = "client"
    DASHBOARD = "dashboard"
    PUBLISHER = "publisher"
    """A dashboard's reads, plus marking an artifact's latest version (an app's backend)."""
    ADMIN = "admin"


_RANK = {Scope.CLIENT: 0, Scope.DASHBOARD: 1, Scope.PUBLISHER: 2, Scope.ADMIN: 3}
_WORDS = {
    **{str(scope): scope for scope in Scope},
    **{f"presence:{scope}": scope for scope in Scope},
}
"""The scope words a token may carry: ``admin`` or, namespaced among an IdP's others,
``presence:admin``."""
_NAMESPACED = {word: scope for word, scope in _WORDS.items() if word.startswith("presence:")}
"""The words an identity provider's token may carry: only namespaced ones, so an IdP role
that happens to be called ``admin`` grants nothing here."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as their verified token says."""

    user_id: str
    scope: Scope
    artifacts: frozenset[str] | None
    """Artifacts the token is good for; None means any."""

    def _artifact_allowed(self, artifact_id: str) -> bool:
        return self.artifacts is None or artifact_id in self.artifacts

    def require_write(self, artifact_id: str) -> None:
        """Heartbeat, leave, record a view: a client on its artifacts, or an admin."""
        if self.scope is Scope.DASHBOARD or self.scope is Scope.PUBLISHER:
            raise Forbidden(f"a {self.scope} token cannot write presence or views")
        if not self._artifact_allowed(artifact_id):
            raise Forbidden(f"this token is not valid for artifact {artifact_id!r}")

    def require_presence_read(self, artifact_ids: Iterable[str]) -> None:
        """Online counts, presence lists, events: clients on their artifacts, dashboards."""
        if self.scope is not Scope.CLIENT:
            return
        denied = [a for a in artifact_ids if not self._artifact_allowed(a)]
        if denied:
            raise Forbidden(f"this token is not valid for artifact {denied[0]!r}")

    def require_dashboard(self) -> None:
        """Stats, viewers, ledger: every read, for dashboards and admins."""
        if self.scope is Scope.CLIENT:
            raise Forbidden("this needs a dashboard token")

    def require_user_read(self, user_id: str) -> None:
        """A user's own data, or any user's for dashboards and admins."""
        if self.scope is Scope.CLIENT and user_id != self.user_id:
            raise Forbidden("a client token can only read its own user's data")

    def require_publish(self, artifact_id: str) -> None:
        """Mark an artifact's latest version: a publisher or an admin, on its artifacts."""
        if self.scope is not Scope.PUBLISHER and self.scope is not Scope.ADMIN:
            raise Forbidden("this needs a publisher or admin token")
        if not self._artifact_allowed(artifact_id):
            raise Forbidden(f"this token is not valid for artifact {artifact_id!r}")

    def require_admin(self) -> None:
        if self.scope is not Scope.ADMIN:
            raise Forbidden("this needs an admin token")


@dataclass(frozen=True, slots=True)
class ClaimRules:
    """The names of the claims that carry the user, the scope and the artifacts. A name
    is looked up as a whole first, then as a dotted path into nested objects, so both
    Auth0's ``https://example.com/artifacts`` and Keycloak's ``realm_access.roles`` work."""

    user: str = "sub"
    scope: str = "scope"
    artifacts: str = "artifacts"


def claim(claims: dict[str, object], name: str) -> object:
    """The claim ``name`` (whole, else a dotted path); None when absent."""
    if name in claims:
        return claims[name]
    found: object = claims
    for part in name.split("."):
        if not isinstance(found, dict) or part not in found:
            return None
        found = found[part]
    return found


def _words(value: object, what: str) -> list[str]:
    """A space-separated string or a list of strings, as words."""
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise Unauthorized(f"the token's {what} claim must be a string or a list of strings")


def _scope(value: object, name: str, words: dict[str, Scope]) -> Scope:
    """The highest presence scope among the claim's words; none of them: client."""
    if value is None:
        return Scope.CLIENT
    found = [words[w] for w in _words(value, name) if w in words]
    return max(found, key=_RANK.__getitem__, default=Scope.CLIENT)


def _user_id(value: object, name: str) -> str:
    # Auth0's subjects are "connection|id"; '|' is not an id character, ':' is.
    user_id = value.replace("|", ":") if isinstance(value, str) else None
    if user_id is None or not _ID.match(user_id):
        raise Unauthorized(f"the token's {name} is not a valid user id")
    return user_id


def principal_from_claims(
    claims: dict[str, object], rules: ClaimRules, *, from_idp: bool = False
) -> Principal:
    """The caller a verified token's claims name; 401 for claims of the wrong shape. A
    token of an identity provider (``from_idp``) grants a scope only by its namespaced
    word (``presence:admin``), never by a bare ``admin`` among the IdP's own roles."""
    user_id = _user_id(claim(claims, rules.user), rules.user)
    words = _NAMESPACED if from_idp else _WORDS
    scope = _scope(claim(claims, rules.scope), rules.scope, words)
    raw_artifacts = claim(claims, rules.artifacts)
    artifacts = None
    if raw_artifacts is not None:
        artifacts = frozenset(_words(raw_artifacts, rules.artifacts))
    return Principal(user_id=user_id, scope=scope, artifacts=artifacts)
