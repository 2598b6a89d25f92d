"""GET /vm and checkout: POST /vm (JSON) and POST /vm/<pool>[+<pool>...]."""
import concurrent.futures

import pytest

from tests.api.conftest import ALIAS_POOLS, USERS_AUTH, assert_error, states, vm_row
from vmpooler.auth import token_hash


def test_list_pools_without_aliases(start_api):
    api = start_api(pools=ALIAS_POOLS)
    response = api.get("/api/v1/vm")
    assert response.status == 200 and response.headers["content-type"] == "application/json"
    assert response.json() == ["debian-7-i386", "debian-7-x86_64", "centos-6-x86_64"]


def test_checkout_one(api):
    name = api.add()
    response = api.post("/api/v1/vm/debian-7-i386")
    assert response.status == 200
    assert response.json() == {"ok": True, "debian-7-i386": {"hostname": name}, "domain": "company.com"}
    assert vm_row(api, name).state == "running"
    assert api.wakes == ["refill"]  # a fill, not a whole pass


def test_checkout_several_by_path(api):
    a1, a2, b = api.add(), api.add(), api.add("debian-7-x86_64")
    body = api.post("/api/v1/vm/debian-7-i386+debian-7-i386+debian-7-x86_64").json()
    assert sorted(body["debian-7-i386"]["hostname"]) == sorted([a1, a2])
    assert body["debian-7-x86_64"] == {"hostname": b}
    assert set(states(api, [a1, a2, b]).values()) == {"running"}


def test_checkout_json_batch(api):
    a1, a2, b = api.add(), api.add(), api.add("debian-7-x86_64")
    response = api.post("/api/v1/vm", {"debian-7-i386": "2", "debian-7-x86_64": 1})
    body = response.json()
    assert response.status == 200 and body["ok"] is True and body["domain"] == "company.com"
    assert sorted(body["debian-7-i386"]["hostname"]) == sorted([a1, a2])
    assert body["debian-7-x86_64"]["hostname"] == b


def test_no_domain_key_without_domain(start_api):
    api = start_api()
    api.add()
    assert "domain" not in api.post("/api/v1/vm/debian-7-i386").json()


def test_alias_spanning_pools_is_keyed_by_requested_name(start_api):
    api = start_api(pools=ALIAS_POOLS)
    a, b = api.add("debian-7-i386"), api.add("debian-7-x86_64")
    body = api.post("/api/v1/vm/linux+linux").json()
    assert set(body) == {"ok", "linux"}
    assert sorted(body["linux"]["hostname"]) == sorted([a, b])
    c = api.add("centos-6-x86_64")
    assert api.post("/api/v1/vm", {"centos": 1}).json() == {"ok": True, "centos": {"hostname": c}}


def test_shortfall_rolls_back_everything(api):
    a = api.add()
    response = api.post("/api/v1/vm/debian-7-i386+debian-7-x86_64")
    assert_error(response, 503)
    assert vm_row(api, a).state == "ready" and vm_row(api, a).checkout_at is None
    assert_error(api.post("/api/v1/vm", {"debian-7-i386": 1, "debian-7-x86_64": "1"}), 503)
    assert_error(api.post("/api/v1/vm", {"debian-7-i386": 2}), 503)
    assert vm_row(api, a).state == "ready"
    assert not api.wakes


def test_unknown_pool_is_404_and_takes_nothing(api):
    a = api.add()
    assert_error(api.post("/api/v1/vm/debian-7-i386+nope"), 404)
    assert_error(api.post("/api/v1/vm", {"debian-7-i386": 1, "nope": 1}), 404)
    assert_error(api.post("/api/v1/vm/debian-7-i386++debian-7-i386"), 404)
    assert vm_row(api, a).state == "ready"


@pytest.mark.parametrize("count", ["0", 0, {}])
def test_zero_or_nothing_is_a_noop(api, count):
    a = api.add()
    body = {} if count == {} else {"debian-7-i386": count}
    assert api.post("/api/v1/vm", body).json() == {"ok": True, "domain": "company.com"}
    assert vm_row(api, a).state == "ready"


@pytest.mark.parametrize("count", ["-3", -1, "abc", "1000000000", 101, 2.5, True, None, [1], {"a": 1}, "", "1e3"])
def test_bad_counts_are_400_and_change_nothing(api, count):
    a = api.add()
    body = assert_error(api.post("/api/v1/vm", {"debian-7-i386": count}), 400)
    assert "count" in body["error"]
    assert vm_row(api, a).state == "ready"


def test_too_many_vms_in_one_request(api):
    assert_error(api.post("/api/v1/vm", {"debian-7-i386": 60, "debian-7-x86_64": 60}), 400)
    assert_error(api.post("/api/v1/vm/" + "+".join(["debian-7-i386"] * 101)), 400)


@pytest.mark.parametrize("body", ["", "   ", "{", "[1]", '"x"', "1", "null", "{\"a\": NaN}", "\xff\xfe"])
def test_bad_bodies_are_400(api, body):
    a = api.add()
    assert_error(api.post("/api/v1/vm", body.encode("latin-1")), 400)
    assert vm_row(api, a).state == "ready"


def test_token_on_checkout_records_owner_and_lifetime(auth_api):
    api = auth_api
    token = api.token()
    name = api.add()
    assert api.post("/api/v1/vm/debian-7-i386", token=token).status == 200
    row = vm_row(api, name)
    assert row.token_hash == token_hash(token) and row.token_user == "jdoe" and row.lifetime == 48
    assert api.get(f"/api/v1/vm/{name}").json()[name]["lifetime"] == 48
    assert api.get(f"/api/v1/token/{token}").json()[token]["vms"] == {"running": [name]}


def test_checkout_without_token_under_auth_is_open(auth_api):
    name = auth_api.add()
    assert auth_api.post("/api/v1/vm/debian-7-i386").status == 200
    row = vm_row(auth_api, name)
    assert row.token_hash is None and row.lifetime is None


def test_invalid_token_on_checkout_is_401(auth_api):
    name = auth_api.add()
    assert_error(auth_api.post("/api/v1/vm/debian-7-i386", token="x" * 32), 401)
    assert_error(auth_api.post("/api/v1/vm", {"debian-7-i386": 1}, token=""), 401)
    assert vm_row(auth_api, name).state == "ready"


def test_token_header_ignored_without_auth(api):
    api.add()
    assert api.post("/api/v1/vm/debian-7-i386", token="whatever").status == 200


def test_concurrent_clients_each_vm_handed_out_once(api):
    names = {api.add() for _ in range(20)}
    with concurrent.futures.ThreadPoolExecutor(40) as pool:
        answers = list(pool.map(lambda _: api.post("/api/v1/vm/debian-7-i386"), range(40)))
    ok = [a.json()["debian-7-i386"]["hostname"] for a in answers if a.status == 200]
    assert sorted(a.status for a in answers) == [200] * 20 + [503] * 20
    assert len(ok) == len(set(ok)) == 20 and set(ok) == names
    assert set(states(api, names).values()) == {"running"}


def test_concurrent_multi_vm_requests_are_all_or_nothing(api):
    names = {api.add() for _ in range(11)}
    with concurrent.futures.ThreadPoolExecutor(15) as pool:
        answers = list(pool.map(lambda _: api.post("/api/v1/vm", {"debian-7-i386": 2}), range(15)))
    taken = [h for a in answers if a.status == 200 for h in a.json()["debian-7-i386"]["hostname"]]
    assert sum(a.status == 200 for a in answers) == 5 and all(a.status in (200, 503) for a in answers)
    assert len(taken) == len(set(taken)) == 10
    assert sorted(states(api, names).values()) == ["ready"] + ["running"] * 10


def test_auth_users_fixture_is_valid():
    assert USERS_AUTH["users"]["jdoe"].startswith("$2b$")
