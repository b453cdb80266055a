"""API keys (serve_app/auth.py): loading, hashing, the 401/403 rules and the caller fingerprint."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from serve_app.auth import (
    ADMIN_KEYS_ENV,
    OPEN_CALLER,
    USER_KEYS_ENV,
    AuthConfigError,
    Gate,
    KeyRing,
    caller_of,
    fingerprint,
    key_digest,
    load_key_ring,
    read_keys_file,
)
from serve_app.config import AuthSettings
from serve_app.errors import APIError

USER = "user-key-0123456789abcdef"
ADMIN = "admin-key-0123456789abcdef"


def ring() -> KeyRing:
    return load_key_ring(AuthSettings(), {USER_KEYS_ENV: f" {USER} ,", ADMIN_KEYS_ENV: ADMIN})


def request(path: str = "/v1/route", authorization: str | None = None) -> Request:
    headers = [(b"authorization", authorization.encode())] if authorization is not None else []
    return Request({"type": "http", "method": "POST", "path": path, "headers": headers, "query_string": b""})


def refusal(fn, *args) -> APIError:
    with pytest.raises(APIError) as err:
        fn(*args)
    return err.value


def test_keys_are_held_hashed_and_an_admin_key_is_not_also_listed_as_user():
    keys = ring()
    assert keys.user == {key_digest(USER)} and keys.admin == {key_digest(ADMIN)}
    assert USER not in keys.model_dump_json() and ADMIN not in keys.model_dump_json()
    assert not keys.open and "1 user and 1 admin" in keys.describe()
    both = load_key_ring(AuthSettings(), {USER_KEYS_ENV: ADMIN, ADMIN_KEYS_ENV: ADMIN})
    assert both.user == frozenset() and both.admin == {key_digest(ADMIN)}


def test_no_keys_is_an_open_graph_whose_callers_are_the_anonymous_admin():
    keys = load_key_ring(AuthSettings(), {})
    assert keys.open and "runs OPEN" in keys.describe()
    assert keys.identify(None) is OPEN_CALLER and OPEN_CALLER.admin and OPEN_CALLER.anonymous


def test_missing_malformed_and_unknown_keys_are_401():
    keys = ring()
    missing = refusal(keys.identify, None)
    assert (missing.status, missing.code) == (401, "missing_api_key") and "Bearer" in missing.message
    for header in ("Basic abc", "Bearer", "Bearer  ", USER):
        assert refusal(keys.identify, header).code == "invalid_api_key", header
    wrong = refusal(keys.identify, "Bearer " + USER + "x")
    assert (wrong.status, wrong.type, wrong.code) == (401, "invalid_request_error", "invalid_api_key")
    assert USER not in wrong.message


def test_a_known_key_gives_its_fingerprint_and_role():
    keys = ring()
    user, admin = keys.identify("Bearer " + USER), keys.identify("bearer " + ADMIN)
    assert not user.admin and admin.admin
    assert user.id == fingerprint(key_digest(USER)) and user.id.startswith("key_") and len(user.id) == 16
    assert user.id[4:] not in key_digest(USER)  # not a piece of the stored digest
    assert user.id != admin.id and keys.identify("Bearer " + USER) == user  # stable


def test_the_gate_keeps_the_caller_and_refuses_a_user_key_on_admin_routes():
    gate = Gate(ring())
    r = request("/admin/rollback", "Bearer " + USER)
    forbidden = refusal(gate.admin, r)
    assert (forbidden.status, forbidden.code) == (403, "admin_key_required") and "/admin/rollback" in forbidden.message
    assert caller_of(r).id == fingerprint(key_digest(USER))  # identified before refused
    assert gate.admin(request("/admin/rollback", "Bearer " + ADMIN)).admin
    assert refusal(gate.user, request()).status == 401
    with pytest.raises(RuntimeError, match="before the gate"):
        caller_of(request())


def test_short_keys_are_refused_at_start():
    with pytest.raises(AuthConfigError, match=f"{USER_KEYS_ENV} has 1 key"):
        load_key_ring(AuthSettings(), {USER_KEYS_ENV: f"{USER},short"})
    assert not load_key_ring(AuthSettings(min_key_chars=4), {ADMIN_KEYS_ENV: "four"}).open


def test_a_keys_file_of_digests(tmp_path):
    path = tmp_path / "keys.txt"
    path.write_text(f"# operators\nadmin sha256:{key_digest(ADMIN)}\n\nuser {key_digest(USER).upper()}  # alice\n")
    keys = load_key_ring(AuthSettings(keys_file=str(path)), {})
    assert keys.identify("Bearer " + ADMIN).admin and not keys.identify("Bearer " + USER).admin


@pytest.mark.parametrize(
    "line",
    ["owner " + "a" * 64, "user " + "a" * 63, "user " + "g" * 64, "user", "user " + "a" * 64 + " extra"],
)
def test_a_bad_keys_file_line_names_its_line(tmp_path, line):
    path = tmp_path / "keys.txt"
    path.write_text(f"admin {'b' * 64}\n{line}\n")
    with pytest.raises(AuthConfigError, match=r"keys.txt:2: expected '<user\|admin> <sha256 hex digest>'"):
        read_keys_file(path)


def test_a_missing_keys_file_is_a_clear_error(tmp_path):
    with pytest.raises(AuthConfigError, match="cannot read the keys file"):
        load_key_ring(AuthSettings(keys_file=str(tmp_path / "nope")), {})
