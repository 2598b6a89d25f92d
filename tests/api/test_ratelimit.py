"""Failed authentications are limited per client address (429 with Retry-After)."""
import pytest

from tests.api.conftest import USERS_AUTH, assert_error
from tests.conftest import FakeClock as Clock
from vmpooler.api.ratelimit import AuthFailureLimiter


def test_limiter_sliding_window():
    clock = Clock()
    limiter = AuthFailureLimiter(3, 60, clock=clock)
    for _ in range(3):
        assert limiter.retry_after("a") is None
        limiter.failed("a")
        clock.now += 10
    assert limiter.retry_after("a") == 30 and limiter.retry_after("b") is None
    clock.now += 30
    assert limiter.retry_after("a") is None
    limiter.failed("a")  # the window slides: the failures at 1010, 1020 and now
    assert limiter.retry_after("a") == 10


def test_limiter_disabled_and_sweep():
    limiter = AuthFailureLimiter(1, 60, enabled=False)
    limiter.failed("a")
    assert limiter.retry_after("a") is None
    clock = Clock()
    limiter = AuthFailureLimiter(1, 60, clock=clock)
    limiter.SWEEP_AT = 2
    limiter.failed("a"), limiter.failed("b")
    clock.now += 61
    limiter.failed("c")
    assert set(limiter._failures) == {"c"}


@pytest.fixture
def limited(start_api):
    api = start_api(settings={"auth_failures_per_minute": 3}, auth=USERS_AUTH)
    api.state.limiter.clock = Clock()
    return api


def test_bad_tokens_lead_to_429_even_for_a_good_token(limited):
    api = limited
    good = api.token()
    api.add()
    for _ in range(3):
        assert_error(api.post("/api/v1/vm/debian-7-i386", token="bad"), 401)
    response = api.post("/api/v1/vm/debian-7-i386", token=good)
    body = assert_error(response, 429)
    assert int(response.headers["retry-after"]) == 60 and body["retry_after"] == 60
    assert_error(api.post("/api/v1/token", user="jdoe"), 429)  # Basic too
    assert_error(api.get(f"/api/v1/token/{good}"), 429)
    # requests that authenticate nothing are not limited
    assert api.get("/api/v1/status").status == 200
    assert api.post("/api/v1/vm/debian-7-i386").status == 200
    api.state.limiter.clock.now += 61
    api.add()
    assert api.post("/api/v1/vm/debian-7-i386", token=good).status == 200


def test_bad_passwords_and_unknown_tokens_count(limited):
    api = limited
    assert_error(api.post("/api/v1/token", user="jdoe", password="nope"), 401)
    assert_error(api.get("/api/v1/token/" + "a" * 32), 404)
    assert_error(api.get("/api/v1/token/" + "b" * 32), 404)
    assert_error(api.post("/api/v1/token", user="jdoe"), 429)


def test_successes_are_not_counted(limited):
    api = limited
    token = api.token()
    for _ in range(10):
        assert api.get(f"/api/v1/token/{token}").status == 200
        assert api.post("/api/v1/token", user="jdoe").status == 200


def test_disabled(start_api):
    api = start_api(settings={"auth_failures_per_minute": 1, "rate_limiting_enabled": False}, auth=USERS_AUTH)
    for _ in range(5):
        assert_error(api.post("/api/v1/token", user="jdoe", password="nope"), 401)
