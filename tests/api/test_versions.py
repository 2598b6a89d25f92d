"""/api/v1, /api/v2 and /api/v3 side by side, served by the same handlers on the same fixtures:
every route under every prefix, and where the versions differ (FQDN hostnames and ``fqdn`` in
v2/v3, no ``domain`` there, v3's 3.8.1 validation, v3's /full_config).

Each test takes ``base`` (tests/api/conftest.py) and runs once per prefix."""
import pytest
from sqlalchemy import update

from tests.api.conftest import USERS_AUTH, VERSIONS, assert_error
from tests.api.test_ondemand import fill
from tests.api.test_openapi import app_routes
from vmpooler.api.routes import ROUTES, V3_ROUTES
from vmpooler.db.models import tasks
from vmpooler.model import DONE

V1 = "/api/v1"


def fqdn(base, name, domain="company.com"):
    """A hostname as ``base`` shows it in checkout and on-demand answers."""
    return name if base == V1 else f"{name}.{domain}"


@pytest.fixture
def full(start_api):
    """Auth on (jdoe, other), experimental features on, domain company.com."""
    return start_api(settings={"domain": "company.com", "experimental_features": True}, auth=USERS_AUTH)


def test_every_route_is_served_under_every_prefix(api):
    served = {path for _method, path in app_routes(api.app)}
    for path, _handler, _aliased in ROUTES:
        assert {prefix + path for prefix in VERSIONS} <= served, path
    for path, _handler in V3_ROUTES:
        assert "/api/v3" + path in served and "/api/v1" + path not in served and "/api/v2" + path not in served


def test_checkout_body_and_path(api, base):
    a, b = api.add(), api.add("debian-7-x86_64")
    body = api.post(f"{base}/vm", {"debian-7-i386": 1, "debian-7-x86_64": "1"}).json()
    assert body["ok"] is True
    assert body["debian-7-i386"] == {"hostname": fqdn(base, a)} and body["debian-7-x86_64"] == {"hostname": fqdn(base, b)}
    assert ("domain" in body) == (base == V1)
    c, d = api.add(), api.add()
    body = api.post(f"{base}/vm/debian-7-i386+debian-7-i386").json()
    assert sorted(body["debian-7-i386"]["hostname"]) == sorted([fqdn(base, c), fqdn(base, d)])
    assert body.get("domain") == ("company.com" if base == V1 else None)
    assert_error(api.post(f"{base}/vm/debian-7-i386"), 503)  # empty: as in every version


def test_checkout_without_a_domain_is_short_names_everywhere(start_api, base):
    api = start_api()
    name = api.add()
    assert api.post(f"{base}/vm/debian-7-i386").json() == {"ok": True, "debian-7-i386": {"hostname": name}}


def test_get_vm_shows_domain_in_v1_and_fqdn_in_v2_v3(api, base):
    name = api.checkout()
    info = api.get(f"{base}/vm/{name}").json()[name]
    if base == V1:
        assert info["domain"] == "company.com" and "fqdn" not in info
    else:
        assert info["fqdn"] == f"{name}.company.com" and "domain" not in info
        assert list(info)[-1] == "fqdn"
    # an FQDN in the path names the VM in every version; v2 and v3 cut any name at its first dot
    assert api.get(f"{base}/vm/{name}.company.com").json()[name]["state"] == "running"
    other = api.get(f"{base}/vm/{name}.elsewhere.org")
    assert other.status == (404 if base == V1 else 200)


def test_put_delete_and_tasks_on_one_vm(full, base):
    token = full.token()
    name = full.checkout(token=token)
    assert full.put(f"{base}/vm/{name}", {"lifetime": 12, "tags": {"user": "jdoe"}}, token=token).json() == {"ok": True}
    response = full.post(f"{base}/vm/{name}/disk/8", token=token)
    assert (response.status, response.json()) == (202, {"ok": True, name: {"disk": "+8gb"}})
    response = full.post(f"{base}/vm/{name}/snapshot", token=token)
    assert response.status == 202
    snapshot = response.json()[name]["snapshot"]
    with full.db.write() as conn:
        conn.execute(update(tasks).values(state=DONE))
    assert full.post(f"{base}/vm/{name}/snapshot/{snapshot}", token=token).json() == {"ok": True}
    assert_error(full.post(f"{base}/vm/{name}/snapshot/nosuch", token=token), 404)
    info = full.get(f"{base}/vm/{name}").json()[name]
    assert info["lifetime"] == 12 and info["tags"] == {"user": "jdoe"} and info["snapshots"] == [snapshot]
    assert full.delete(f"{base}/vm/{name}", token=token).json() == {"ok": True}
    # a second DELETE is 404 in every version (3.x answers 200: a removal that removed nothing)
    assert_error(full.delete(f"{base}/vm/{name}", token=token), 404)


def test_tokens(full, base):
    response = full.post(f"{base}/token", user="jdoe")
    assert response.status == 200
    token = response.json()["token"]
    name = full.checkout(token=token)
    body = full.get(f"{base}/token/{token}").json()
    assert body[token]["user"] == "jdoe" and body[token]["vms"]["running"] == [name]  # short names in v3 too
    assert list(full.get(f"{base}/token", user="jdoe").json()) == ["ok", token[:8]]  # listed by prefix
    assert full.delete(f"{base}/token/{token}", user="jdoe").json() == {"ok": True}
    assert_error(full.get(f"{base}/token/{token}"), 404)


@pytest.mark.parametrize("path", ["/vm", "/status", "/summary", "/summary/boot", "/summary/tag/user",
                                  "/poolstat?pool=debian-7-i386", "/totalrunning", "/config", "/openapi.json"])
def test_reads_answer_as_v1_does(api, base, path):
    api.checkout()
    mine, v1 = api.get(base + path), api.get(V1 + path)
    assert mine.status == v1.status == 200
    mine, v1 = mine.json(), v1.json()
    if path == "/status":  # times move between two requests
        for body in (mine, v1):
            body["status"].pop("uptime"), body["status"].pop("time", None)
        if base == "/api/v3":  # 3.8.1 added the on-demand requests waiting, first
            assert list(mine["queue"])[0] == "requested" and mine["queue"].pop("requested") == 0
    assert mine == v1


def test_v3_status_queue_counts_waiting_ondemand_requests(api):
    api.post("/api/v3/ondemandvm", {"debian-7-i386": 2})
    api.post("/api/v3/ondemandvm", {"debian-7-x86_64": 1})
    v3, v1 = api.get("/api/v3/status?view=queue").json()["queue"], api.get("/api/v1/status?view=queue").json()["queue"]
    assert v3["requested"] == 2 and "requested" not in v1
    assert v3["total"] == v1["total"] + 2  # as 3.8.1+ counts it


def test_ondemand(api, base):
    response = api.post(f"{base}/ondemandvm", {"debian-7-i386": 1, "debian-7-x86_64": 1})
    assert response.status == 201
    body = response.json()
    assert set(body) == ({"ok", "request_id", "domain"} if base == V1 else {"ok", "request_id"})
    request_id = body["request_id"]
    assert api.get(f"{base}/ondemandvm/{request_id}").status == 202
    names = fill(api, request_id)
    body = api.get(f"{base}/ondemandvm/{request_id}").json()
    hosts = body["debian-7-i386"]["hostname"] + body["debian-7-x86_64"]["hostname"]
    assert sorted(hosts) == sorted(fqdn(base, n) for n in names)
    assert ("domain" in body) == (base == V1)
    assert api.delete(f"{base}/ondemandvm/{request_id}").json() == {"ok": True}
    other = api.post(f"{base}/ondemandvm/debian-7-i386+debian-7-i386")
    assert other.status == 201


def test_run_time_configuration(full, base):
    token = full.token()
    assert full.post(f"{base}/config/poolsize", {"debian-7-i386": 2}, token=token).status == 201
    response = full.delete(f"{base}/config/poolsize/debian-7-i386", token=token)
    assert (response.status, response.json()) == (201, {"ok": True, "pool_size_before_reset": 2,
                                                       "pool_size_before_overrides": 5})
    assert full.delete(f"{base}/config/poolsize/debian-7-i386", token=token).status == 200  # nothing to undo
    assert full.post(f"{base}/config/pooltemplate", {"debian-7-i386": "t/x"}, token=token).status == 201
    response = full.delete(f"{base}/config/pooltemplate/debian-7-i386", token=token)
    assert (response.status, response.json()) == (201, {"ok": True, "template_before_reset": "t/x",
                                                       "template_before_overrides": "debian-7-i386"})
    assert full.delete(f"{base}/config/pooltemplate/debian-7-i386", token=token).status == 200
    assert_error(full.delete(f"{base}/config/pooltemplate/nope", token=token), 404)
    assert full.post(f"{base}/config/clonetarget", {"debian-7-i386": "cluster2"}, token=token).status == 201
    assert full.post(f"{base}/poolreset", {"debian-7-i386": 1}, token=token).status == 201
    assert_error(full.delete(f"{base}/config/poolsize/debian-7-i386"), 401)


def test_full_config_only_in_v3(api, base):
    response = api.get(f"{base}/full_config")
    if base != "/api/v3":
        assert_error(response, 404, with_message=False)
        return
    body = response.json()
    assert body["status"] == {"ok": True}
    config = body["full_config"]
    assert config["pool_names"] == ["debian-7-i386", "debian-7-x86_64"]
    assert config["config"]["domain"] == "company.com" and [p["name"] for p in config["pools"]] == config["pool_names"]


def test_v2_v3_use_each_pools_own_domain(start_api, base):
    """A pool with a DNS setup (dns_plugin) has its own domain: v2 and v3 write every hostname with
    its pool's domain; v1 keeps its shared top-level domain, or FQDNs when the domains differ."""
    api = start_api(pools=[{"name": "lab", "template": "t", "size": 3, "dns_plugin": "lab"},
                           {"name": "plain", "template": "t", "size": 3}], settings={"domain": "default.test"},
                    dns_configs={"lab": {"dns_class": "dynamic-dns", "domain": "lab.example.com"}})
    lab, plain = api.add("lab"), api.add("plain")
    body = api.post(f"{base}/vm/lab+plain").json()
    assert body == {"ok": True, "lab": {"hostname": f"{lab}.lab.example.com"},
                    "plain": {"hostname": f"{plain}.default.test"}}  # v1 too: the domains differ
    other = api.add("lab")
    body = api.post(f"{base}/vm/lab").json()
    assert body == ({"ok": True, "lab": {"hostname": other}, "domain": "lab.example.com"} if base == V1
                    else {"ok": True, "lab": {"hostname": f"{other}.lab.example.com"}})
    info = api.get(f"{base}/vm/{lab}").json()[lab]
    assert info.get("fqdn" if base != V1 else "domain") == (f"{lab}.lab.example.com" if base != V1
                                                              else "lab.example.com")
