"""The pool's domain in every v1 answer (checkout, GET /vm/<host>, on-demand) and on the
dashboard: a pool with a DNS setup answers with its domain, the others with :config: domain; a
checkout across pools of different domains writes each hostname's own FQDN. On SQLite and
PostgreSQL (the ``db`` fixture)."""
import pytest

from tests.api.conftest import vm_row
from tests.api.test_ondemand import fill

OD = "/api/v1/ondemandvm"
POOLS = [{"name": "lab-pool", "template": "t", "size": 3, "dns_plugin": "lab"},
         {"name": "lab-too", "template": "t", "size": 3, "dns_plugin": "lab"},
         {"name": "plain-pool", "template": "t", "size": 3}]


@pytest.fixture
def api(start_api):
    return start_api(pools=POOLS, settings={"domain": "default.test"},
                     dns_configs={":lab:": {"dns_class": "dynamic-dns", "domain": "lab.example.com"}})


def test_checkout_answers_the_pools_domain(api):
    name = api.add("lab-pool")
    assert api.post("/api/v1/vm/lab-pool").json() == {"ok": True, "lab-pool": {"hostname": name},
                                                      "domain": "lab.example.com"}
    plain = api.add("plain-pool")
    assert api.post("/api/v1/vm", {"plain-pool": 1}).json() == {"ok": True, "plain-pool": {"hostname": plain},
                                                                "domain": "default.test"}
    one, two = api.add("lab-pool"), api.add("lab-too")  # two pools, one domain: short names as ever
    assert api.post("/api/v1/vm/lab-pool+lab-too").json() == {
        "ok": True, "lab-pool": {"hostname": one}, "lab-too": {"hostname": two}, "domain": "lab.example.com"}


def test_a_checkout_across_domains_names_each_vm_with_its_own(api):
    lab, plain = api.add("lab-pool"), api.add("plain-pool")
    assert api.post("/api/v1/vm/lab-pool+plain-pool").json() == {
        "ok": True, "lab-pool": {"hostname": f"{lab}.lab.example.com"},
        "plain-pool": {"hostname": f"{plain}.default.test"}}


def test_get_vm_shows_the_pools_domain_and_takes_any_pools_fqdn(api):
    lab, plain = api.add("lab-pool"), api.add("plain-pool")
    assert api.get(f"/api/v1/vm/{lab}.lab.example.com").json()[lab]["domain"] == "lab.example.com"
    assert api.get(f"/api/v1/vm/{plain}").json()[plain]["domain"] == "default.test"
    assert api.get(f"/api/v1/vm/{plain}.default.test").json()[plain]["domain"] == "default.test"
    assert api.get(f"/api/v1/vm/{lab}.elsewhere.test").status == 404  # no domain of ours: not its name


def test_ondemand_answers_carry_the_pools_domain(api):
    created = api.post(f"{OD}/lab-pool+lab-too")
    assert created.status == 201 and created.json()["domain"] == "lab.example.com"
    fill(api, created.json()["request_id"])
    assert api.get(f"{OD}/{created.json()['request_id']}").json()["domain"] == "lab.example.com"
    mixed = api.post(OD, {"lab-pool": 1, "plain-pool": 1}).json()
    assert "domain" not in mixed
    names = fill(api, mixed["request_id"])
    body = api.get(f"{OD}/{mixed['request_id']}").json()
    assert "domain" not in body
    expected = {f"{name}.{'lab.example.com' if vm_row(api, name).pool == 'lab-pool' else 'default.test'}"
                for name in names}
    assert set(body["lab-pool"]["hostname"] + body["plain-pool"]["hostname"]) == expected


def test_the_dashboard_shows_each_pools_domain(api):
    body = api.get("/dashboard/stats/vmpooler/pool").json()
    assert {name: entry.get("domain") for name, entry in body.items()} == {
        "lab-pool": "lab.example.com", "lab-too": "lab.example.com", "plain-pool": "default.test"}
