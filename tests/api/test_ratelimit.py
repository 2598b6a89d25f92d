"""Failed authentications are limited by what can be guessed: passwords per (address, user name),
wrong tokens only against a coarse per-address guard that never refuses a valid token."""
import datetime

import pytest
from sqlalchemy import update

from tests.api.conftest import PASSWORD, USERS_AUTH, assert_error
from tests.conftest import FakeClock as Clock
from vmpooler.api.auth import LAST_USED_RESOLUTION, FailureWindow
from vmpooler.auth import hash_password, token_hash
from vmpooler.db import tokens as token_store
from vmpooler.db.database import utcnow
from vmpooler.db.models import tokens

#: jdoe and asmith share an address (one CI host)
TWO_USERS = {"provider": "users", "users": {"jdoe": hash_password(PASSWORD, rounds=4),
                                             "asmith": hash_password(PASSWORD, rounds=4)}}


def test_window_slides():
    clock = Clock()
    window = FailureWindow(3, 60, clock=clock)
    for _ in range(3):
        assert window.retry_after("a") is None
        window.failed("a")
        clock.now += 10
    assert window.retry_after("a") == 30 and window.retry_after("b") is None
    clock.now += 30
    assert window.retry_after("a") is None
    window.failed("a")  # the window slides: the failures at 1010, 1020 and now
    assert window.retry_after("a") == 10


def test_window_disabled_and_bounded():
    window = FailureWindow(1, 60, enabled=False)
    window.failed("a")
    assert window.retry_after("a") is None
    clock = Clock()
    window = FailureWindow(1, 60, clock=clock)
    window.SWEEP_AT = 2
    window.failed("a"), window.failed("b")
    clock.now += 61
    window.failed("c")
    assert set(window._failures) == {"c"}  # expired keys are forgotten
    window.failed("d")
    window.failed("e")  # nothing expired: the oldest key goes, memory stays bounded
    assert set(window._failures) == {"d", "e"}


@pytest.fixture
def limited(start_api):
    """Passwords limited at 3 failures a minute, the token guard at 5."""
    api = start_api(settings={"auth_failures_per_minute": 3, "auth_token_failures_per_minute": 5}, auth=TWO_USERS)
    clock = Clock()
    api.state.credentials.passwords.clock = api.state.credentials.wrong_tokens.clock = clock
    api.clock = clock
    return api


def test_fifty_wrong_tokens_then_a_good_one_is_200(start_api):
    api = start_api(auth=USERS_AUTH)  # the default limits
    good = api.token()
    for _ in range(50):
        assert_error(api.post("/api/v1/vm/debian-7-i386", token="wrongtoken"), 401)
    api.add()
    assert api.post("/api/v1/vm/debian-7-i386", token=good).status == 200
    assert api.post("/api/v1/token", user="jdoe").status == 200  # passwords are not affected either


def test_past_the_token_guard_wrong_tokens_are_429_and_valid_ones_still_work(limited):
    api = limited
    good = api.token("jdoe")
    for _ in range(5):
        assert_error(api.post("/api/v1/vm/debian-7-i386", token="wrongtoken"), 401)
    response = api.post("/api/v1/vm/debian-7-i386", token="wrongtoken")
    body = assert_error(response, 429)
    assert int(response.headers["retry-after"]) == 60 and body["retry_after"] == 60
    assert_error(api.get("/api/v1/token/" + "a" * 32), 429)  # an unknown token looked up: the same guard
    api.add()
    assert api.post("/api/v1/vm/debian-7-i386", token=good).status == 200
    assert api.get(f"/api/v1/token/{good}").status == 200
    assert api.post("/api/v1/token", user="asmith").status == 200
    api.clock.now += 61
    assert_error(api.post("/api/v1/vm/debian-7-i386", token="wrongtoken"), 401)


def test_unknown_tokens_looked_up_count_against_the_guard(limited):
    api = limited
    for n in range(5):
        assert_error(api.get(f"/api/v1/token/{n}" + "a" * 31), 404)
    assert_error(api.post("/api/v1/vm/debian-7-i386", token="wrongtoken"), 429)


def test_wrong_passwords_limit_that_user_only(start_api):
    api = start_api(auth=TWO_USERS)  # the default: 10 a minute
    for _ in range(10):
        assert_error(api.post("/api/v1/token", user="jdoe", password="guess"), 401)
    response = api.post("/api/v1/token", user="jdoe", password="guess")  # the 11th
    body = assert_error(response, 429)
    assert "jdoe" not in body["error"] and 0 < int(response.headers["retry-after"]) <= 60
    assert_error(api.post("/api/v1/token", user="jdoe"), 429)  # the right password too: no oracle
    assert_error(api.get("/api/v1/token", user="JDoe"), 429)  # user names are compared case-blind
    assert api.post("/api/v1/token", user="asmith").status == 200
    assert api.get("/api/v1/token", user="asmith").status == 200
    api.add()
    assert api.post("/api/v1/vm/debian-7-i386").status == 200  # requests without credentials


def test_the_password_limit_lifts_after_a_minute(limited):
    api = limited
    for _ in range(3):
        assert_error(api.post("/api/v1/token", user="jdoe", password="guess"), 401)
    assert_error(api.delete("/api/v1/token/whatever", user="jdoe"), 429)  # every Basic route
    api.clock.now += 61
    assert api.post("/api/v1/token", user="jdoe").status == 200


def test_malformed_basic_headers_are_401_and_not_counted(limited):
    api = limited
    for _ in range(5):
        assert_error(api.post("/api/v1/token", headers={"Authorization": "Basic %%%"}), 401)
    assert api.post("/api/v1/token", user="jdoe").status == 200


def test_successes_are_not_counted(limited):
    api = limited
    token = api.token()
    for _ in range(10):
        assert api.get(f"/api/v1/token/{token}").status == 200
        assert api.post("/api/v1/token", user="jdoe").status == 200


def test_disabled(start_api):
    api = start_api(settings={"auth_failures_per_minute": 1, "auth_token_failures_per_minute": 1,
                              "auth_failure_limits_enabled": False}, auth=USERS_AUTH)
    for _ in range(5):
        assert_error(api.post("/api/v1/token", user="jdoe", password="nope"), 401)
        assert_error(api.post("/api/v1/vm/debian-7-i386", token="wrongtoken"), 401)


def _last_used(api, token):
    return token_store.by_hash(api.db, token_hash(token)).last_used_at


def test_a_token_use_is_written_at_most_once_per_resolution(start_api):
    api = start_api(auth=USERS_AUTH)
    token = api.token()
    assert _last_used(api, token) is None
    api.add()
    assert api.post("/api/v1/vm/debian-7-i386", token=token).status == 200
    first = _last_used(api, token)
    assert first is not None and utcnow() - first < LAST_USED_RESOLUTION
    earlier = first - datetime.timedelta(seconds=30)  # a use half an interval ago: no new write
    with api.db.write() as conn:
        conn.execute(update(tokens).values(last_used_at=earlier))
    api.add()
    assert api.post("/api/v1/vm/debian-7-i386", token=token).status == 200
    assert _last_used(api, token) == earlier
    stale = utcnow() - LAST_USED_RESOLUTION - datetime.timedelta(seconds=1)  # a full interval ago: written
    with api.db.write() as conn:
        conn.execute(update(tokens).values(last_used_at=stale))
    api.add()
    assert api.post("/api/v1/vm/debian-7-i386", token=token).status == 200
    assert _last_used(api, token) > stale + LAST_USED_RESOLUTION
