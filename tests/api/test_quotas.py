"""Per-user quotas (``:auth: quotas:``): checkouts and on-demand requests together, checked in
the taking transaction, off by default, validated in the configuration."""
import concurrent.futures
import threading

import pytest

from tests.api.conftest import USERS_AUTH, assert_error, states, vm_row
from tests.conftest import add_vm, make_config
from vmpooler.auth import tokens
from vmpooler.config import ConfigError
from vmpooler.db import checkout as checkout_store
from vmpooler.db import ondemand as requests_db
from vmpooler.db.database import utcnow
from vmpooler.db.quotas import QuotaExceeded

POOL = "debian-7-i386"


def quota_api(start_api, quotas, **settings):
    return start_api(settings={"domain": "company.com", **settings}, auth={**USERS_AUTH, "quotas": quotas})


def test_a_checkout_over_the_quota_is_403_and_takes_nothing(start_api):
    api = quota_api(start_api, {"default": 2})
    token = api.token("jdoe")
    names = [api.add(POOL) for _ in range(3)]
    assert api.post(f"/api/v1/vm/{POOL}+{POOL}", token=token).status == 200
    body = assert_error(api.post(f"/api/v1/vm/{POOL}", token=token), 403)
    assert "quota is 2" in body["error"] and body["quota"] == 2 and body["held"] == 2
    assert sorted(states(api, names).values()) == ["ready", "running", "running"]
    assert api.post(f"/api/v1/vm/{POOL}", token=api.token("other")).status == 200  # others have their own


def test_a_user_entry_overrides_the_default_and_a_second_token_counts_too(start_api):
    api = quota_api(start_api, {"default": 1, "jdoe": 3})
    first, second = api.token("jdoe"), api.token("jdoe")
    for _ in range(4):
        api.add(POOL)
    assert api.post(f"/api/v1/vm/{POOL}+{POOL}", token=first).status == 200
    assert api.post(f"/api/v1/vm/{POOL}", token=second).status == 200
    assert_error(api.post(f"/api/v1/vm/{POOL}", token=second), 403)
    other = api.token("other")
    assert api.post(f"/api/v1/vm/{POOL}", token=other).status == 200
    assert_error(api.post(f"/api/v1/vm/{POOL}", token=other), 403)


def test_deleting_a_vm_frees_its_place(start_api):
    api = quota_api(start_api, {"jdoe": 1})
    token = api.token("jdoe")
    name = api.checkout(POOL, token=token)
    api.add(POOL)
    assert_error(api.post(f"/api/v1/vm/{POOL}", token=token), 403)
    assert api.delete(f"/api/v1/vm/{name}", token=token).status == 200
    assert api.post(f"/api/v1/vm/{POOL}", token=token).status == 200


def test_checkouts_and_ondemand_requests_share_the_quota(start_api):
    api = quota_api(start_api, {"default": 3})
    token = api.token("jdoe")
    for _ in range(3):
        api.add(POOL)
    assert api.post("/api/v1/ondemandvm", {POOL: 2}, token=token).status == 201  # 2 held by the pending request
    assert_error(api.post(f"/api/v1/vm/{POOL}+{POOL}", token=token), 403)
    assert api.post(f"/api/v1/vm/{POOL}", token=token).status == 200
    body = assert_error(api.post("/api/v1/ondemandvm", {POOL: 1}, token=token), 403)
    assert "nothing was requested" in body["error"] and body["held"] == 3
    with api.db.read() as conn:
        from sqlalchemy import func, select

        from vmpooler.db.models import ondemand_requests
        assert conn.execute(select(func.count()).select_from(ondemand_requests)).scalar() == 1


def test_a_deleted_request_frees_its_places(start_api):
    api = quota_api(start_api, {"default": 2})
    token = api.token("jdoe")
    request_id = api.post("/api/v1/ondemandvm", {POOL: 2}, token=token).json()["request_id"]
    assert_error(api.post("/api/v1/ondemandvm", {POOL: 1}, token=token), 403)
    assert api.delete(f"/api/v1/ondemandvm/{request_id}", token=token).status == 200
    assert api.post("/api/v1/ondemandvm", {POOL: 2}, token=token).status == 201


def test_quotas_are_off_by_default_and_anonymous_checkouts_are_not_counted(start_api):
    api = start_api(auth=USERS_AUTH)
    token = api.token("jdoe")
    for _ in range(4):
        api.add(POOL)
    assert api.post(f"/api/v1/vm/{POOL}+{POOL}+{POOL}+{POOL}", token=token).status == 200
    limited = quota_api(start_api, {"default": 0})
    name = limited.checkout(POOL)  # no token: nobody to count it against
    assert vm_row(limited, name).state == "running"
    assert_error(limited.post(f"/api/v1/vm/{POOL}", token=limited.token("jdoe")), 403)


def test_concurrent_checkouts_of_one_user_never_pass_the_quota(db):
    """Several threads take VMs for one user at once, straight at the state layer: the user's
    token rows are locked in the taking transaction, so on PostgreSQL too only the quota's worth
    succeed."""
    config = make_config()
    pool = config.pools_by_name[POOL]
    for _ in range(8):
        add_vm(db, pool)
    tokens.issue(db, "jdoe", utcnow())
    owner = checkout_store.Owner("h" * 64, "jdoe")
    workers, limit = 8, 3
    barrier = threading.Barrier(workers)

    def take(_):
        barrier.wait(5)
        try:
            checkout_store.checkout(db, [checkout_store.Want(POOL, (POOL,), 1)], utcnow(), 24, owner, None, quota=limit)
            return "taken"
        except QuotaExceeded:
            return "refused"

    with concurrent.futures.ThreadPoolExecutor(workers) as executor:
        outcomes = list(executor.map(take, range(workers)))
    assert outcomes.count("taken") == limit and outcomes.count("refused") == workers - limit


def test_concurrent_requests_of_one_user_never_pass_the_quota(db):
    tokens.issue(db, "jdoe", utcnow())
    owner = checkout_store.Owner("h" * 64, "jdoe")
    workers = 6
    barrier = threading.Barrier(workers)

    def request(index):
        barrier.wait(5)
        try:
            requests_db.create(db, f"r{index}", [(POOL, POOL, 2)], utcnow(), owner, quota=5)
            return "created"
        except QuotaExceeded:
            return "refused"

    with concurrent.futures.ThreadPoolExecutor(workers) as executor:
        outcomes = list(executor.map(request, range(workers)))
    assert outcomes.count("created") == 2


@pytest.mark.parametrize("quotas, needle", [
    ([1, 2], "auth.quotas: must be a mapping"),
    ({"jdoe": -1}, "auth.quotas.jdoe: must be a whole number"),
    ({"default": "lots"}, "auth.quotas.default: must be a whole number"),
    ({"jdoe": True}, "auth.quotas.jdoe"),
])
def test_bad_quotas_stop_start_up_naming_the_key(quotas, needle):
    with pytest.raises(ConfigError) as caught:
        make_config(auth={**USERS_AUTH, "quotas": quotas})
    assert any(needle in problem for problem in caught.value.problems), caught.value.problems


def test_quota_lookup():
    config = make_config(auth={**USERS_AUTH, "quotas": {"default": 4, "jdoe": 0}})
    assert config.quota("jdoe") == 0 and config.quota("other") == 4 and config.quota(None) is None
    assert make_config(auth=USERS_AUTH).quota("jdoe") is None and make_config().quota("jdoe") is None
