"""The /ondemandvm routes: the original's bodies, codes and keys, with auth on and off.

No manager runs here: ``fill`` does what the manager does (records the request's VMs, boots them
and hands them over) through the real state layer.
"""
import concurrent.futures
import threading
import uuid

import pytest

from tests.api.conftest import ALIAS_POOLS, assert_error, vm_row
from vmpooler.db import ondemand as requests_db
from vmpooler.db import vms as vm_store
from vmpooler.db.database import utcnow
from vmpooler.manager.ondemand import ttl_failure

OD = "/api/v1/ondemandvm"


def fill(api, request_id, boot=None):
    """Clone and boot every VM ``request_id`` asks for (``boot``: how many, default all), then
    hand it over when all are ready; the names of the VMs made."""
    request = requests_db.find(api.db, request_id)
    wanted = [(api.config.pools_by_name[w.pool], f"od{uuid.uuid4().hex[:10]}", w.id)
              for w in request.wants for _ in range(w.count)]
    created = requests_db.add_vms(api.db, request, wanted, utcnow(), 0)
    for vm in created[:len(created) if boot is None else boot]:
        vm_store.cloned(api.db, vm, utcnow(), ready=True)
    request = requests_db.find(api.db, request_id)
    if request.filled():
        assert requests_db.hand_over(api.db, request, utcnow(), api.config.settings.vm_lifetime,
                                     api.config.settings.vm_lifetime_auth)
    return [vm.name for vm in created]


def test_post_without_request_id_answers_201_with_a_uuid_and_the_domain(api):
    response = api.post(OD, {"debian-7-i386": "1"})
    assert response.status == 201 and response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["ok", "request_id", "domain"] and body["ok"] is True and body["domain"] == "company.com"
    assert uuid.UUID(body["request_id"]).version == 4
    assert api.wakes  # the manager is asked to start at once


def test_pending_request_answers_202_with_ready_and_pending_counts_as_strings(api):
    request_id = api.post(OD, {"debian-7-i386": 2, "debian-7-x86_64": "1"}).json()["request_id"]
    response = api.get(f"{OD}/{request_id}")
    assert response.status == 202
    assert response.json() == {"ok": True, "request_id": request_id, "ready": False,
                               "debian-7-i386": {"ready": "0", "pending": "2"},
                               "debian-7-x86_64": {"ready": "0", "pending": "1"}}
    fill(api, request_id, boot=1)  # one VM ready, the others still booting
    body = api.get(f"{OD}/{request_id}").json()
    ready = [int(body[name]["ready"]) for name in ("debian-7-i386", "debian-7-x86_64")]
    assert sum(ready) == 1 and body["ready"] is False


def test_filled_request_answers_200_with_hostname_lists_and_the_vms_are_running(api):
    request_id = api.post(f"{OD}/debian-7-i386+debian-7-i386+debian-7-x86_64").json()["request_id"]
    names = fill(api, request_id)
    response = api.get(f"{OD}/{request_id}")
    assert response.status == 200
    body = response.json()
    assert list(body)[:3] == ["ok", "request_id", "ready"] and body["ready"] is True
    assert body["domain"] == "company.com"
    assert len(body["debian-7-i386"]["hostname"]) == 2 and len(body["debian-7-x86_64"]["hostname"]) == 1
    assert sorted(body["debian-7-i386"]["hostname"] + body["debian-7-x86_64"]["hostname"]) == sorted(names)
    for name in names:
        row = vm_row(api, name)
        assert row.state == "running" and row.checkout_at and row.expires_at and row.token_hash is None


def test_a_single_vm_is_still_a_list(api):
    request_id = api.post(OD, {"debian-7-i386": 1}).json()["request_id"]
    fill(api, request_id)
    assert isinstance(api.get(f"{OD}/{request_id}").json()["debian-7-i386"]["hostname"], list)


def test_alias_request_is_answered_under_the_alias(start_api):
    api = start_api(pools=ALIAS_POOLS)
    request_id = api.post(OD, {"linux": 3, "request_id": "by-alias"}).json()["request_id"]
    assert request_id == "by-alias"
    request = requests_db.find(api.db, request_id)
    assert {w.requested for w in request.wants} == {"linux"}
    assert {w.pool for w in request.wants} <= {"debian-7-i386", "debian-7-x86_64"}
    assert sum(w.count for w in request.wants) == 3
    fill(api, request_id)
    body = api.get(f"{OD}/{request_id}").json()
    assert set(body) == {"ok", "request_id", "ready", "linux"} and len(body["linux"]["hostname"]) == 3


def test_reused_request_id_is_409_with_the_originals_body(api):
    assert api.post(OD, {"debian-7-i386": 1, "request_id": "1234"}).status == 201
    body = assert_error(api.post(OD, {"debian-7-i386": 1, "request_id": "1234"}), 409)
    assert body["request_id"] == "1234" and body["message"] == "request_id '1234' has already been created"
    assert len(requests_db.find(api.db, "1234").wants) == 1


def test_unknown_names_are_404_with_bad_templates(api):
    body = assert_error(api.post(OD, {"debian-7-i386": 1, "nope": 1}), 404)
    assert body["bad_templates"] == ["nope"]
    body = assert_error(api.post(f"{OD}/nope+debian-7-i386"), 404)
    assert body["bad_templates"] == ["nope"]


def test_more_than_the_maximum_is_403_with_the_originals_message(start_api):
    api = start_api(settings={"max_ondemand_instances_per_request": 3})
    body = assert_error(api.post(OD, {"debian-7-i386": "4"}), 403)
    assert body["message"] == "requested amount of instances exceeds the maximum 3"
    assert_error(api.post(f"{OD}/" + "+".join(["debian-7-i386"] * 4)), 403)
    assert api.post(OD, {"debian-7-i386": 3, "debian-7-x86_64": 3}).status == 201  # the cap is per name


@pytest.mark.parametrize("body, needle", [
    ('{"debian-7-i386": "1}', "not valid JSON"),
    ("", "empty"),
    ("[1]", "JSON object"),
])
def test_body_that_is_not_a_json_object_is_400_with_the_originals_message(api, body, needle):
    answer = assert_error(api.post(OD, body), 400)
    assert answer["message"] == "JSON payload could not be parsed" and needle in answer["error"]


@pytest.mark.parametrize("body", [{"debian-7-i386": "abc"}, {"debian-7-i386": -1}, {"debian-7-i386": 0},
                                  {"debian-7-i386": 1, "request_id": "has space"},
                                  {"debian-7-i386": 1, "request_id": 42}, {"debian-7-i386": 1, "request_id": "x" * 65}])
def test_bad_counts_and_request_ids_are_400_and_create_nothing(api, body):
    assert_error(api.post(OD, body), 400)
    from sqlalchemy import func, select

    from vmpooler.db.models import ondemand_requests
    with api.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(ondemand_requests)).scalar() == 0


def test_unknown_request_is_404_with_the_originals_message(api):
    for method in ("get", "delete"):
        body = assert_error(getattr(api, method)(f"{OD}/nope"), 404)
        assert body["message"] == "no request found for request_id 'nope'"


def test_failed_request_answers_200_with_the_ttl_message(api):
    request_id = api.post(OD, {"debian-7-i386": 1}).json()["request_id"]
    names = fill(api, request_id, boot=0)
    assert requests_db.fail(api.db, requests_db.find(api.db, request_id), ttl_failure(5), utcnow())
    response = api.get(f"{OD}/{request_id}")
    assert response.status == 200
    assert response.json() == {"ok": True, "request_id": request_id, "ready": False, "message":
                               "The request failed to provision instances within the configured "
                               "ondemand_request_ttl '5'"}
    assert vm_row(api, names[0]).state == "completed"


def test_delete_cancels_destroys_and_a_second_delete_says_already_deleted(api):
    request_id = api.post(OD, {"debian-7-i386": 2}).json()["request_id"]
    names = fill(api, request_id, boot=1)
    response = api.delete(f"{OD}/{request_id}")
    assert response.status == 200 and response.json() == {"ok": True}
    assert {vm_row(api, name).state for name in names} == {"completed"}
    assert api.get(f"{OD}/{request_id}").json() == {"ok": True, "request_id": request_id, "ready": False,
                                                     "message": "The request has been deleted"}
    again = api.delete(f"{OD}/{request_id}")
    assert again.status == 200 and again.json() == {"ok": True, "message": "the request has already been deleted"}
    assert requests_db.hand_over(api.db, requests_db.find(api.db, request_id), utcnow(), 24, None) is False


def test_delete_of_a_filled_request_completes_its_running_vms(api):
    request_id = api.post(OD, {"debian-7-i386": 1}).json()["request_id"]
    names = fill(api, request_id)
    assert vm_row(api, names[0]).state == "running"
    assert api.delete(f"{OD}/{request_id}").status == 200
    assert vm_row(api, names[0]).state == "completed"


def test_request_vms_are_never_checked_out_nor_counted_ready(api):
    request_id = api.post(OD, {"debian-7-i386": 2}).json()["request_id"]
    fill(api, request_id, boot=1)  # one of the two is ready, waiting for the other
    assert_error(api.post("/api/v1/vm/debian-7-i386"), 503)
    pool = api.get("/api/v1/status").json()["pools"]["debian-7-i386"]
    assert pool["ready"] == 0 and pool["pending"] == 2
    assert api.get("/api/v1/poolstat?pool=debian-7-i386").json()["pools"]["debian-7-i386"]["ready"] == 0


def test_auth_off_ignores_the_token_header(api):
    response = api.post(OD, {"debian-7-i386": 1}, token="not-a-token")
    assert response.status == 201
    assert api.delete(f"{OD}/{response.json()['request_id']}", token="whatever").status == 200


def test_auth_on_needs_a_token_which_owns_the_request_and_its_vms(auth_api):
    api = auth_api
    assert_error(api.post(OD, {"debian-7-i386": 1}), 401)
    assert_error(api.post(f"{OD}/debian-7-i386"), 401)
    assert_error(api.post(OD, {"debian-7-i386": 1}, token="bogus"), 401)
    mine, theirs = api.token("jdoe"), api.token("other")
    request_id = api.post(OD, {"debian-7-i386": 1}, token=mine).json()["request_id"]
    assert requests_db.find(api.db, request_id).row.token_user == "jdoe"
    names = fill(api, request_id)
    assert api.get(f"{OD}/{request_id}").status == 200  # GET is open, as the original (vmfloaty polls without)
    row = vm_row(api, names[0])
    assert row.token_user == "jdoe" and row.lifetime == 48  # vm_lifetime_auth, as a token checkout
    assert names[0] in api.get(f"/api/v1/token/{mine}").json()[mine]["vms"]["running"]
    assert_error(api.delete(f"/api/v1/vm/{names[0]}", token=theirs), 403)
    assert_error(api.delete(f"{OD}/{request_id}"), 401)
    assert_error(api.delete(f"{OD}/{request_id}", token=theirs), 403)
    assert vm_row(api, names[0]).state == "running"
    assert api.delete(f"{OD}/{request_id}", token=mine).status == 200


def test_two_simultaneous_posts_with_one_request_id_one_201_one_409(api):
    barrier = threading.Barrier(2)

    def post(_):
        barrier.wait(5)
        return api.post(OD, {"debian-7-i386": 1, "request_id": "same"}).status

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        assert sorted(pool.map(post, range(2))) == [201, 409]


def test_concurrent_creates_with_one_request_id_one_wins_by_the_unique_constraint(db):
    """Straight at the state layer from several threads (on PostgreSQL the transactions really
    overlap and the unique constraint is what refuses the second)."""
    workers = 6
    barrier = threading.Barrier(workers)

    def create(_):
        barrier.wait(5)
        try:
            requests_db.create(db, "shared", [("p", "p", 1)], utcnow())
            return "created"
        except requests_db.DuplicateRequest:
            return "duplicate"

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        outcomes = sorted(pool.map(create, range(workers)))
    assert outcomes == ["created"] + ["duplicate"] * (workers - 1)


def test_a_filled_request_cannot_fail_afterwards(api):
    """The original's race: a second VM of a request booting in the same pass re-checked the
    request after it was filled, found no score, and failed it. Here every change of a request
    is guarded by the state it was read in."""
    request_id = api.post(OD, {"debian-7-i386": 2}).json()["request_id"]
    names = fill(api, request_id, boot=0)
    stale = requests_db.find(api.db, request_id)  # read while pending, as a slow actor would
    for name in names:
        vm_store.became_ready(api.db, vm_row(api, name), utcnow())
    assert requests_db.hand_over(api.db, requests_db.find(api.db, request_id), utcnow(), 24, None)
    assert requests_db.fail(api.db, stale, ttl_failure(5), utcnow()) is False
    assert requests_db.hand_over(api.db, stale, utcnow(), 24, None) is False
    assert api.get(f"{OD}/{request_id}").json()["ready"] is True
    assert {vm_row(api, name).state for name in names} == {"running"}

