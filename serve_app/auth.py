"""API keys: who may call what.

Keys come from the environment of the process that builds the graph, `ROUTERLLM_API_KEYS` (user keys) and
`ROUTERLLM_ADMIN_KEYS` (admin keys, which are also user keys), as comma lists, and from the file of hashed keys the
config's `auth.keys_file` names. Only their SHA-256 digests are kept, and only digests travel to the ingress
replicas; a presented key is hashed and compared with every digest with `hmac.compare_digest`, without stopping at
the first match, so the time taken says nothing about which key came close.

The rules (`Gate`): `/v1/*` needs a user key as `Authorization: Bearer <key>`; `/admin/*`, learner control and the
full expert specs need an admin key; `/healthz` and the console's files stay open. 401 for no key or an unknown one,
403 for a user key on an admin route, in OpenAI's error shape. With no key set at all the graph runs open: every
caller is the anonymous admin (the runner says so, and refuses a non-loopback address).

Other modules identify the caller of a request with `caller_of(request)`: `Caller.id` is a short, non-secret
fingerprint of the key (`key_` + 12 hex), the same on every replica and across restarts, or None in an open graph.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field

from serve_app.config import AuthSettings
from serve_app.errors import APIError

logger = logging.getLogger("routerllm.ingress")

USER_KEYS_ENV = "ROUTERLLM_API_KEYS"
ADMIN_KEYS_ENV = "ROUTERLLM_ADMIN_KEYS"
ROLES = ("user", "admin")
_DIGEST = re.compile(r"^(sha256:)?([0-9a-f]{64})$")


class AuthConfigError(ValueError):
    """A key from the environment or the keys file cannot be used (too short, malformed, unknown role)."""


def key_digest(key: str) -> str:
    """The SHA-256 hex digest a key is held as (what `printf %s KEY | sha256sum` prints)."""
    return hashlib.sha256(key.encode()).hexdigest()


def fingerprint(digest: str) -> str:
    """A short, non-secret name for the key with this digest: how the logs, the outcome store and budgets know
    a caller. Derived from the digest with a label, so it is not a prefix of what the keys file holds."""
    return "key_" + hashlib.sha256(b"routerllm-caller\0" + bytes.fromhex(digest)).hexdigest()[:12]


@dataclass(frozen=True)
class Caller:
    """Who made a request: `id` the key's fingerprint (None in an open graph), `admin` whether it may administer."""

    id: str | None
    admin: bool

    @property
    def anonymous(self) -> bool:
        """True in an open graph (no keys set): nobody is told apart."""
        return self.id is None


OPEN_CALLER = Caller(id=None, admin=True)


class KeyRing(BaseModel):
    """The digests of the user and admin keys; what the ingress replicas are given (never the keys)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user: frozenset[str] = Field(default_factory=frozenset, description="SHA-256 hex digests of user keys.")
    admin: frozenset[str] = Field(default_factory=frozenset, description="SHA-256 hex digests of admin keys.")

    @property
    def open(self) -> bool:
        """No key at all: the graph runs open."""
        return not self.user and not self.admin

    def describe(self) -> str:
        """One line for the start log."""
        if self.open:
            return (
                f"no API keys set (${USER_KEYS_ENV}, ${ADMIN_KEYS_ENV}): the graph runs OPEN, anyone who reaches it "
                "may chat, score answers and roll policies back"
            )
        return f"API keys required: {len(self.user)} user and {len(self.admin)} admin key(s), held hashed"

    def identify(self, authorization: str | None) -> Caller:
        """The caller an `Authorization` header names; APIError 401 when it names none we know."""
        if self.open:
            return OPEN_CALLER
        if not authorization:
            raise unauthorized(
                "missing API key: send it as the header 'Authorization: Bearer <key>'", "missing_api_key"
            )
        scheme, _, key = authorization.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise unauthorized("the Authorization header must be 'Bearer <key>'", "invalid_api_key")
        digest = key_digest(key)
        is_admin = _member(digest, self.admin)
        is_user = _member(digest, self.user)
        if not (is_admin or is_user):
            raise unauthorized("incorrect API key provided", "invalid_api_key")
        return Caller(id=fingerprint(digest), admin=is_admin)


def _member(digest: str, digests: frozenset[str]) -> bool:
    """Whether `digest` is in `digests`, comparing with every one in constant time (no early exit)."""
    found = False
    for known in digests:
        found |= hmac.compare_digest(digest, known)
    return found


def unauthorized(message: str, code: str) -> APIError:
    """401 in OpenAI's shape (type invalid_request_error, as OpenAI answers a bad key)."""
    return APIError(401, message, "invalid_request_error", None, code)


def forbidden(message: str) -> APIError:
    """403: a known key that may not do this."""
    return APIError(403, message, "permission_error", None, "admin_key_required")


def _env_keys(value: str | None, min_chars: int, variable: str) -> set[str]:
    keys = {k.strip() for k in (value or "").split(",") if k.strip()}
    short = [k for k in keys if len(k) < min_chars]
    if short:
        raise AuthConfigError(
            f"${variable} has {len(short)} key(s) shorter than {min_chars} characters; use long random keys "
            "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )
    return {key_digest(k) for k in keys}


def read_keys_file(path: str | Path) -> dict[str, set[str]]:
    """{"user": digests, "admin": digests} from a file of lines `<role> <sha256 hex>` (blank lines, # comments)."""
    found: dict[str, set[str]] = {role: set() for role in ROLES}
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as e:
        raise AuthConfigError(f"cannot read the keys file {path}: {e.strerror or e}") from e
    for number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        parts = text.split()
        match = _DIGEST.match(parts[1].lower()) if len(parts) == 2 else None
        if parts[0] not in ROLES or match is None:
            raise AuthConfigError(
                f"{path}:{number}: expected '<user|admin> <sha256 hex digest>' (64 hex digits), got {text[:80]!r}"
            )
        found[parts[0]].add(match.group(2))
    return found


def load_key_ring(settings: AuthSettings, env: Mapping[str, str] | None = None) -> KeyRing:
    """The key ring of this process's environment and the config's keys file; AuthConfigError when unusable."""
    env = os.environ if env is None else env
    user = _env_keys(env.get(USER_KEYS_ENV), settings.min_key_chars, USER_KEYS_ENV)
    admin = _env_keys(env.get(ADMIN_KEYS_ENV), settings.min_key_chars, ADMIN_KEYS_ENV)
    if settings.keys_file:
        from_file = read_keys_file(settings.keys_file)
        user |= from_file["user"]
        admin |= from_file["admin"]
    return KeyRing(user=frozenset(user - admin), admin=frozenset(admin))


class Gate:
    """The ingress's checks, one call at the top of each endpoint; the caller is kept on the request."""

    def __init__(self, keys: KeyRing):
        self.keys = keys

    def user(self, request: Request) -> Caller:
        """Any known key (an admin key too); 401 otherwise."""
        caller = self.keys.identify(request.headers.get("authorization"))
        request.state.caller = caller
        return caller

    def admin(self, request: Request) -> Caller:
        """An admin key; 401 for no or an unknown key, 403 for a user key."""
        caller = self.user(request)
        if not caller.admin:
            raise forbidden(f"{request.url.path} needs an admin key (${ADMIN_KEYS_ENV}); this is a user key")
        return caller


def caller_of(request: Request) -> Caller:
    """The caller the gate identified for this request (the endpoint must have passed the gate first)."""
    caller = getattr(request.state, "caller", None)
    if caller is None:
        raise RuntimeError("caller_of() before the gate: call Gate.user/admin at the top of the endpoint")
    return caller


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only (localhost, 127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def open_exposure(host: str) -> str | None:
    """Why a graph without keys must not listen on `host` (None on loopback)."""
    if is_loopback(host):
        return None
    return (
        f"refusing to listen on {host} without API keys: set {USER_KEYS_ENV} and {ADMIN_KEYS_ENV} (comma lists) or "
        "auth.keys_file in the config, or serve on 127.0.0.1"
    )


def refuse_open_exposure() -> None:
    """In an ingress replica of a graph without keys: fail its start when Serve listens beyond loopback (a
    `serve run` whose http_options.host is 0.0.0.0; the runner refuses that before it starts anything)."""
    try:
        from ray.serve.context import _get_global_client

        host = _get_global_client().http_config.host
    except Exception as e:  # noqa: BLE001 - a private Serve API: if it moves, warn rather than refuse to serve
        logger.warning("could not read Serve's HTTP host to check that an open graph stays on loopback: %r", e)
        return
    refusal = open_exposure(host)
    if refusal:
        raise RuntimeError(refusal)
