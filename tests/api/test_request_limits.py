"""Request rate limits (``rate_limiting_enabled`` + ``:rate_limits:``): 3.9.1's four classes, its
429 body and headers, without its two holes (a made-up token gets no fresh bucket; X-Forwarded-For
is believed only with behind_proxy); never /healthcheck or the metrics route; a valid credential is
never refused because another client at its address used the address's share up."""
import time
import uuid

import pytest

from tests.api.conftest import USERS_AUTH, assert_error
from tests.conftest import FakeClock, make_config
from vmpooler.api.ratelimit import classify
from vmpooler.config import ConfigError
from vmpooler.rate_limits import DEFAULTS, Limit, LimitClass

LIMITS = {":global_per_ip:": {":limit:": 3, ":period:": 60}, "authenticated": {"limit": 4, "period": 60},
          "vm_creation": {"limit": 2, "period": 30}, "vm_deletion": {"limit": 2, "period": 30}}


@pytest.fixture
def limited(start_api):
    def start(**settings):
        api = start_api(settings={"domain": "company.com", "rate_limiting_enabled": True, **settings},
                        auth=USERS_AUTH, rate_limits=LIMITS, prometheus={})
        api.clock = api.state.limiter.clock = FakeClock(now=1_000_000.0)
        return api
    return start


def exhaust(api, path="/api/v3/status", **kw):
    """Requests until the first 429 (at most 20); that answer."""
    for _ in range(20):
        response = api.get(path, **kw)
        if response.status == 429:
            return response
    raise AssertionError("never limited")


def test_the_429_body_and_headers(limited):
    api = limited()
    for _ in range(3):
        assert api.get("/api/v3/status").status == 200
    response = api.get("/api/v3/status")
    body = assert_error(response, 429)
    assert body == {"ok": False, "error": "Rate limit exceeded", "limit": 3, "period": 60, "retry_after": 60}
    headers = response.headers
    assert (headers["x-ratelimit-limit"], headers["x-ratelimit-remaining"], headers["retry-after"]) == ("3", "0", "60")
    assert abs(int(headers["x-ratelimit-reset"]) - (time.time() + 60)) <= 2  # epoch seconds
    api.clock.now += 45
    assert api.get("/api/v1/vm").json()["retry_after"] == 15  # one window for every prefix and route
    api.clock.now += 15
    assert api.get("/api/v1/vm").status == 200  # the window ended


def test_classes_are_counted_apart(limited):
    api = limited()
    assert exhaust(api).json()["limit"] == 3
    api.add(), api.add()
    for _ in range(2):  # checkouts have their own class (and limit)
        assert api.post("/api/v3/vm/debian-7-i386").status == 200
    body = assert_error(api.post("/api/v3/vm/debian-7-i386"), 429)
    assert (body["limit"], body["period"]) == (2, 30)
    assert_error(api.delete("/api/v3/vm/nosuch"), 404)
    assert_error(api.delete("/api/v1/vm/nosuch"), 404)
    assert assert_error(api.delete("/api/v2/vm/nosuch"), 429)["limit"] == 2


def test_unknown_paths_count_too(limited):
    api = limited()
    for _ in range(3):
        assert_error(api.get("/api/v3/nosuch"), 404, with_message=False)
    assert assert_error(api.delete("/nosuch/either"), 429)["limit"] == 3
    assert_error(api.get("/api/v3/status"), 429)


def test_healthcheck_and_metrics_are_never_limited(limited):
    api = limited()
    exhaust(api)
    for _ in range(10):
        assert api.get("/healthcheck").status == 200
        assert api.get("/prometheus").status == 200


def test_made_up_tokens_count_against_their_address(limited):
    """3.9.1 gave each X-AUTH-TOKEN value a fresh bucket: a new made-up token per request was
    never limited."""
    api = limited()
    assert exhaust(api, headers={}).status == 429
    assert_error(api.get("/api/v3/status", token=uuid.uuid4().hex), 429)
    assert_error(api.post("/api/v3/token", user="jdoe", password="wrong"), 429)


def test_a_valid_token_or_password_is_not_refused_for_what_others_at_its_address_did(limited):
    api = limited()
    token = api.token()  # one request of the address's three
    exhaust(api, token="made-up")
    for _ in range(4):  # the token's own class and bucket
        assert api.get("/api/v3/status", token=token).status == 200
    assert assert_error(api.get("/api/v3/status", token=token), 429)["limit"] == 4
    assert api.post("/api/v3/token", user="other").status == 200  # a valid password: its own bucket too
    api.add()
    assert api.post("/api/v3/vm/debian-7-i386", token=token).status == 200


def test_x_forwarded_for_is_believed_only_behind_a_proxy(limited):
    api = limited()
    for n in range(3):
        assert api.get("/api/v3/status", headers={"X-Forwarded-For": f"10.0.0.{n}"}).status == 200
    assert_error(api.get("/api/v3/status", headers={"X-Forwarded-For": "10.9.9.9"}), 429)
    proxied = limited(behind_proxy=True)
    for n in range(6):
        assert proxied.get("/api/v3/status", headers={"X-Forwarded-For": f"10.0.0.{n}"}).status == 200
    exhaust(proxied, headers={"X-Forwarded-For": "10.1.1.1"})
    assert proxied.get("/api/v3/status", headers={"X-Forwarded-For": "10.1.1.2"}).status == 200


def test_off_by_default(start_api):
    api = start_api(rate_limits={"global_per_ip": {"limit": 1, "period": 60}})
    assert api.state.limiter is None
    for _ in range(5):
        assert api.get("/api/v3/status").status == 200


def test_classify():
    assert classify("POST", "/api/v3/vm", False) is LimitClass.VM_CREATION
    assert classify("POST", "/vm/a/disk/3", True) is LimitClass.VM_CREATION
    assert classify("DELETE", "/api/v1/vm/x", True) is LimitClass.VM_DELETION
    assert classify("POST", "/api/v3/ondemandvm", True) is LimitClass.AUTHENTICATED
    assert classify("GET", "/api/v3/vm/x", False) is LimitClass.GLOBAL_PER_IP


def test_configuration():
    config = make_config(rate_limits=LIMITS)
    assert config.rate_limits[LimitClass.GLOBAL_PER_IP] == Limit(3, 60)
    assert config.rate_limits[LimitClass.VM_CREATION] == Limit(2, 30)
    assert make_config().rate_limits == DEFAULTS
    partial = make_config(rate_limits={"vm_creation": {"limit": 5}, "nonsense": {"limit": 1}})
    assert partial.rate_limits[LimitClass.VM_CREATION] == Limit(5, 60)
    assert any("rate_limits.nonsense" in w for w in partial.warnings)
    with pytest.raises(ConfigError, match="rate_limits.vm_creation.limit"):
        make_config(rate_limits={"vm_creation": {"limit": 0}})
    with pytest.raises(ConfigError, match="rate_limits.authenticated"):
        make_config(rate_limits={"authenticated": 5})
    assert not any("rate_limits" in w or "rate_limiting" in w
                   for w in make_config(settings={"rate_limiting_enabled": True}, rate_limits=LIMITS).warnings)


def test_limiter_memory_is_bounded():
    from vmpooler.api.ratelimit import RateLimiter

    clock = FakeClock()
    limiter = RateLimiter(DEFAULTS, clock=clock)
    limiter.SWEEP_AT = 3
    for client in "abc":
        limiter.take(LimitClass.GLOBAL_PER_IP, client)
    clock.now += 61
    limiter.take(LimitClass.GLOBAL_PER_IP, "d")
    assert set(limiter._windows) == {(LimitClass.GLOBAL_PER_IP, "d")}  # ended windows are forgotten
    for client in "efg":
        limiter.take(LimitClass.GLOBAL_PER_IP, client)
    assert len(limiter._windows) == 3  # none ended: the oldest go
