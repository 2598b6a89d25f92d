"""Errors are JSON 4xx (503 when the database cannot serve), whatever the input; a fuzz test."""
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.conftest import USERS_AUTH, assert_error
from vmpooler.db import stats as stat_store
from vmpooler.db import vms as vm_store
from vmpooler.db.database import StoreUnavailable


@pytest.mark.parametrize("method, path", [("GET", "/index.html"), ("GET", "/api/v1"), ("POST", "/api/v1/nope"),
                                          ("DELETE", "/api/v4/vm"), ("GET", "/api/v1/vm/a/b/c/d"),
                                          ("FOO", "/nope"), ("GET", "/dashboard/a/b"), ("GET", "/lib/dashboard.js"),
                                          ("GET", "/config")])
def test_unknown_routes_are_json_404(api, method, path):
    response = api.request(method, path)
    assert response.status == 404 and response.json() == {"ok": False}
    assert response.headers["content-type"] == "application/json"


@pytest.mark.parametrize("method, path", [("PATCH", "/api/v1/vm"), ("DELETE", "/api/v1/status"),
                                          ("PUT", "/api/v1/vm/x/disk/8"), ("FOO", "/api/v1/vm")])
def test_unsupported_methods_are_json_405(api, method, path):
    assert_error(api.request(method, path), 405)


def test_unversioned_aliases_and_trailing_slash(auth_api):
    api = auth_api
    assert api.get("/vm").json() == api.get("/api/v1/vm/").json()
    token = api.post("/token", user="jdoe").json()["token"]
    name = api.checkout()
    for method, path in [("GET", "/status"), ("GET", "/summary"), ("GET", "/summary/boot"), ("GET", "/token"),
                         ("GET", f"/token/{token}"), ("GET", f"/vm/{name}"), ("PUT", f"/vm/{name}"),
                         ("POST", f"/vm/{name}/snapshot"), ("POST", f"/vm/{name}/disk/8")]:
        response = api.request(method, path, body="{}" if method == "PUT" else None, token=token, user="jdoe")
        assert response.status in (200, 202), (method, path, response.text)
    assert api.request("DELETE", f"/vm/{name}", token=token).status == 200
    for path in ("/poolstat", "/totalrunning"):  # no unversioned alias in the original
        assert api.get(path).status == 404


def test_body_over_max_body_size_is_413(start_api):
    api = start_api(settings={"max_body_size": 1000})
    name = api.add()
    assert_error(api.post("/api/v1/vm", json.dumps({"debian-7-i386": 1, "x": "y" * 2000})), 413)
    assert_error(api.get("/api/v1/status", body="x" * 1001), 413)
    assert api.get(f"/api/v1/vm/{name}").json()[name]["state"] == "ready"


def test_database_unavailable_is_503(api, monkeypatch):
    def unavailable(*args):
        raise StoreUnavailable("the database is locked by another process")

    monkeypatch.setattr(vm_store, "latest_with_extras", unavailable)
    body = assert_error(api.get("/api/v1/vm/somevm"), 503)
    assert "locked" in body["error"]


def test_unexpected_error_is_json_without_traceback(api, monkeypatch, caplog):
    monkeypatch.setattr(stat_store, "pool_counts", lambda db, now: 1 / 0)
    response = api.get("/api/v1/totalrunning")
    assert response.status == 500 and response.json() == {"ok": False, "error": "internal error"}
    assert "Traceback" not in response.text and "ZeroDivision" not in response.text


# --- fuzz ---------------------------------------------------------------------------------
PATHS = ["/api/v1/vm", "/api/v1/vm/{x}", "/api/v1/vm/{x}/snapshot", "/api/v1/vm/{x}/snapshot/{x}",
         "/api/v1/vm/{x}/disk/{x}", "/api/v1/token", "/api/v1/token/{x}", "/api/v1/status?view={x}",
         "/api/v1/summary?from={x}&to={x}", "/api/v1/summary/{x}/{x}", "/api/v1/poolstat?pool={x}", "/{x}",
         "/vm/{x}", "/api/v1/{x}"]
NASTY = ["", "..", "../../etc/passwd", "%2e%2e%2f", "' OR 1=1 --", "\"; DROP TABLE vms; --", "%00", "%ff%fe",
         "debian-7-i386", "debian-7-i386+debian-7-i386", "a" * 300, "%E2%98%83", "2015-13-01", "0", "-1",
         "99999999999999999999", "vm.company.com", "%", "+", "null"]
segment = st.one_of(st.sampled_from(NASTY), st.text(alphabet="abc019-_.%+~'\";", max_size=20))


def nested(depth):
    return "[" * depth + "]" * depth


json_value = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) |
                          st.text(max_size=30), lambda inner: st.lists(inner, max_size=4) |
                          st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=20)
bodies = st.one_of(
    st.none(), st.binary(max_size=300), st.text(max_size=200).map(lambda t: t.encode("utf-8")),
    json_value.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(["debian-7-i386", "lifetime", "tags", "nope"]), json_value,
                    max_size=3).map(lambda v: json.dumps(v).encode()),
    st.integers(1, 40000).map(lambda d: nested(d).encode()),
    st.just(b'{"a":' * 5000 + b'1' + b'}' * 5000), st.just(b"x" * 70000),
    st.just(b'{"debian-7-i386": 1e999}'), st.just(b'{"lifetime": ' + b"9" * 5000 + b"}"))
headers = st.dictionaries(
    st.sampled_from(["X-AUTH-TOKEN", "Authorization", "Content-Type", "X-Forwarded-For", "Accept-Encoding"]),
    st.one_of(st.sampled_from(["Basic amRvZTpzM2NyZXQtcHc=", "Basic !!!", "Basic " + "A" * 500, "Bearer x",
                               "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "gzip",
                               "application/json"]),
              st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)), max_size=3)


@pytest.fixture(scope="module")
def fuzz_targets(tmp_path_factory):
    """Two servers (auth off and on) with a few VMs, shared by every fuzz example."""
    from tests.api.conftest import Api, Client, Server
    from tests.conftest import add_vm, make_config
    from vmpooler.api.routes import make_app
    from vmpooler.auth import build_auth_store
    from vmpooler.context import Context
    from vmpooler.db.database import Database

    db = Database(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'fuzz.db'}")
    db.upgrade()
    targets, servers = [], []
    for sections in ({}, {"auth": USERS_AUTH}):
        config = make_config(settings={"domain": "company.com", "auth_failure_limits_enabled": False}, **sections)
        for pool in config.pools:
            for state in ("ready", "running", "pending"):
                add_vm(db, pool, state)
        context = Context(config=config, db=db, auth=build_auth_store(config))
        app = make_app(context)
        servers.append(Server(app))
        targets.append(Api(Client(servers[-1].port), context, [], app))
    yield targets
    for server in servers:
        server.stop()
    db.dispose()


@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "FOO"]),
       path=st.sampled_from(PATHS), parts=st.lists(segment, min_size=2, max_size=2), body=bodies, headers=headers,
       which=st.integers(0, 1))
def test_fuzz_no_5xx_no_traceback(fuzz_targets, method, path, parts, body, headers, which):
    parts = [part.replace(" ", "%20") for part in parts]  # the one character http.client refuses
    path = path.replace("{x}", parts[0], 1).replace("{x}", parts[1])
    if body is not None and method in ("GET", "HEAD", "DELETE", "OPTIONS") and len(body) > 100:
        body = body[:100]
    response = fuzz_targets[which].client.request(method, path, body=body, headers=headers)
    # 503 is the documented answer of a checkout the pools cannot fill (the fuzz empties them)
    shortfall = response.status == 503 and "not enough ready VMs" in response.text
    assert response.status < 500 or shortfall, (method, path, response.status, response.text)
    assert "Traceback" not in response.text and "<html" not in response.text.lower()
    if response.status == 302:  # GET / (path "/{x}" with x empty): the redirect to the dashboard
        assert response.headers["location"] == "/dashboard/" and response.text == ""
    elif method != "HEAD":
        assert response.headers["content-type"] == "application/json"
        assert isinstance(response.json(), (dict, list))
        if response.status >= 400:
            assert response.json()["ok"] is False


@pytest.mark.parametrize("body", ["null", "[]", "3", '"x"', "true"])
def test_every_json_route_answers_a_body_that_is_not_an_object_with_400(start_api, body):
    """One rule for every route that reads a JSON body: only an object is one (the original
    answered ``null`` on the configuration routes with a 404)."""
    api = start_api(settings={"experimental_features": True})
    name = api.add()
    routes = [("POST", "/api/v1/vm"), ("PUT", f"/api/v1/vm/{name}"), ("POST", "/api/v1/ondemandvm"),
              ("POST", "/api/v1/config/poolsize"), ("POST", "/api/v1/config/pooltemplate"),
              ("POST", "/api/v1/config/clonetarget"), ("POST", "/api/v1/poolreset")]
    for method, path in routes:
        error = assert_error(api.request(method, path, body=body), 400)
        assert "JSON object" in error["error"], (method, path, error)
