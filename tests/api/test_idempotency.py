"""Idempotency-Key on POST /vm, POST /vm/<pools> and POST /ondemandvm: a retry with the same key
and the same request gets the same answer and takes nothing more; another request under the key
is a 422; keys are kept per token for idempotency_key_ttl hours, in the database."""
import concurrent.futures
import datetime
import time

from sqlalchemy import func, select

from tests.api.conftest import USERS_AUTH, assert_error, vm_row
from vmpooler.db import idempotency
from vmpooler.db.database import utcnow
from vmpooler.db.models import idempotency_keys, ondemand_requests, vms
from vmpooler.model import READY, RUNNING

POOL, OTHER = "debian-7-i386", "debian-7-x86_64"


def key(value):
    return {"Idempotency-Key": f'"{value}"'}


def running(api) -> list:
    with api.db.read() as conn:
        return [row.name for row in conn.execute(select(vms.c.name).where(vms.c.state == RUNNING))]


def seed(api, count, pool=POOL):
    return [api.add(pool) for _ in range(count)]


def refused(response, status, needle):
    assert_error(response, status)
    assert needle in response.json()["error"]


def test_a_retried_path_checkout_gets_the_same_answer_and_takes_nothing_more(api):
    seed(api, 4)
    first = api.post(f"/api/v1/vm/{POOL}+{POOL}", headers=key("k-path"))
    again = api.post(f"/api/v1/vm/{POOL}+{POOL}", headers=key("k-path"))
    assert first.status == again.status == 200
    assert again.json() == first.json() and len(first.json()[POOL]["hostname"]) == 2
    assert "idempotent-replayed" not in first.headers and again.headers["idempotent-replayed"] == "true"
    assert sorted(running(api)) == sorted(first.json()[POOL]["hostname"])


def test_a_retried_json_checkout_gets_the_same_answer_and_another_body_is_422(api):
    seed(api, 3)
    seed(api, 2, OTHER)
    body = {POOL: 1, OTHER: "1"}
    first = api.post("/api/v1/vm", body, headers=key("k-json"))
    assert first.status == 200
    assert api.post("/api/v1/vm", body, headers=key("k-json")).json() == first.json()
    refused_answer = api.post("/api/v1/vm", {POOL: 2}, headers=key("k-json"))
    refused(refused_answer, 422, "used for another request")
    # the same key on another path is another request too
    refused(api.post(f"/api/v1/vm/{POOL}", headers=key("k-json")), 422, "used for another request")
    assert len(running(api)) == 2
    # without the key a request is a new checkout, as ever
    assert api.post("/api/v1/vm", body).status == 200 and len(running(api)) == 4


def test_a_failed_checkout_is_not_remembered(api):
    assert api.post(f"/api/v1/vm/{POOL}", headers=key("k-empty")).status == 503
    name = seed(api, 1)[0]
    retried = api.post(f"/api/v1/vm/{POOL}", headers=key("k-empty"))
    assert retried.status == 200 and retried.json()[POOL]["hostname"] == name


def test_concurrent_requests_with_one_key_take_vms_once(api):
    seed(api, 10)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: api.post(f"/api/v1/vm/{POOL}", headers=key("k-race")), range(8)))
    assert {answer.status for answer in answers} == {200}
    assert len({answer.json()[POOL]["hostname"] for answer in answers}) == 1
    assert len(running(api)) == 1
    with api.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(idempotency_keys)).scalar() == 1


def test_keys_are_per_token(start_api):
    api = start_api(settings={"vm_lifetime_auth": 48}, auth=USERS_AUTH)
    seed(api, 3)
    mine, theirs = api.token("jdoe"), api.token("other")
    one = api.post(f"/api/v1/vm/{POOL}", headers=key("shared"), token=mine).json()[POOL]["hostname"]
    two = api.post(f"/api/v1/vm/{POOL}", headers=key("shared"), token=theirs).json()[POOL]["hostname"]
    anonymous = api.post(f"/api/v1/vm/{POOL}", headers=key("shared")).json()[POOL]["hostname"]
    assert len({one, two, anonymous}) == 3
    assert api.post(f"/api/v1/vm/{POOL}", headers=key("shared"), token=mine).json()[POOL]["hostname"] == one


def test_a_key_is_forgotten_after_idempotency_key_ttl(start_api):
    api = start_api(settings={"idempotency_key_ttl": 0.0001})  # 0.36 s
    seed(api, 2)
    first = api.post(f"/api/v1/vm/{POOL}", headers=key("k-ttl")).json()[POOL]["hostname"]
    time.sleep(0.5)
    second = api.post(f"/api/v1/vm/{POOL}", headers=key("k-ttl")).json()[POOL]["hostname"]
    assert first != second and len(running(api)) == 2


def test_malformed_keys_are_400_and_take_nothing(api):
    seed(api, 1)
    for value in ('"', '""', '"' + "x" * 256 + '"', "two words"):
        refused(api.post(f"/api/v1/vm/{POOL}", headers={"Idempotency-Key": value}), 400, "Idempotency-Key")
    assert not running(api)
    assert api.post(f"/api/v1/vm/{POOL}", headers={"Idempotency-Key": "bare-token-123"}).status == 200


def test_a_retried_ondemand_request_gets_the_same_request_id(api):
    body = {POOL: 1}
    first = api.post("/api/v1/ondemandvm", body, headers=key("k-od"))
    again = api.post("/api/v1/ondemandvm", body, headers=key("k-od"))
    assert first.status == again.status == 201 and again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    refused(api.post("/api/v1/ondemandvm", {POOL: 2}, headers=key("k-od")), 422, "another request")
    with api.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(ondemand_requests)).scalar() == 1


def test_purge_removes_only_expired_keys(db):
    now = utcnow()
    with db.write() as conn:
        for name, kept in (("old", -1), ("fresh", 3600)):
            idempotency.remember(conn, idempotency.Key("", name, "f", datetime.timedelta(seconds=kept)), 200, {}, now)
    assert idempotency.purge(db, now) == 1
    with db.read() as conn:
        assert [row.key for row in conn.execute(select(idempotency_keys))] == ["fresh"]


def test_ready_vms_are_untouched_by_a_replay(api):
    names = seed(api, 2)
    api.post(f"/api/v1/vm/{POOL}", headers=key("k-untouched"))
    api.post(f"/api/v1/vm/{POOL}", headers=key("k-untouched"))
    assert sorted(vm_row(api, name).state for name in names) == [READY, RUNNING]
