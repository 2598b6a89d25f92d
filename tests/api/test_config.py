"""Run-time pool configuration over HTTP: GET /config, POST /config/poolsize|pooltemplate|
clonetarget, DELETE /config/poolsize|pooltemplate/<pool>, POST /poolreset; the original's codes
and keys, with auth off and on, with :auth: admins, and with experimental_features off."""
import pytest

from tests.api.conftest import USERS_AUTH, assert_error
from vmpooler.db import overrides
from vmpooler.db.models import pool_drains

POOLS = [
    {"name": "pool1", "size": 5, "template": "templates/pool1", "clone_target": "default_cluster",
     "alias": ["poolone"]},
    {"name": "pool2", "size": 10, "template": "templates/pool2"},
]
ON = {"experimental_features": True}


@pytest.fixture
def cfg_api(start_api):
    return start_api(pools=POOLS, settings=ON)


@pytest.fixture
def auth_cfg_api(start_api):
    return start_api(pools=POOLS, settings=ON, auth={**USERS_AUTH, "admins": ["jdoe"]})


def drains(api):
    with api.db.read() as conn:
        return {row.pool: row.reason for row in conn.execute(pool_drains.select())}


def configuration(api):
    response = api.get("/api/v1/config")
    assert response.status == 200 and response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["status"] == {"ok": True}
    return {pool["name"]: pool for pool in body["pool_configuration"]}


def test_get_config_is_the_pools_as_configured_with_template_ready(cfg_api):
    response = cfg_api.get("/api/v1/config")
    assert response.json() == {"pool_configuration": [{**POOLS[0], "template_ready": True},
                                                      {**POOLS[1], "template_ready": True}],
                               "status": {"ok": True}}


def test_poolsize_201_when_changed_200_when_not(cfg_api):
    response = cfg_api.post("/api/v1/config/poolsize", {"pool1": "2"})
    assert (response.status, response.json()) == (201, {"ok": True})
    assert cfg_api.wakes
    assert configuration(cfg_api)["pool1"]["size"] == 2
    assert cfg_api.post("/api/v1/config/poolsize", {"pool1": 2}).status == 200  # already 2
    assert cfg_api.post("/api/v1/config/poolsize", {"pool1": "2", "pool2": "2"}).status == 201
    assert cfg_api.post("/api/v1/config/poolsize", {"pool1": "0"}).status == 201  # shrink to 0
    assert configuration(cfg_api)["pool1"]["size"] == 0 and configuration(cfg_api)["pool2"]["size"] == 2
    assert drains(cfg_api) == {}  # a size change needs no drain
    # every reader agrees: /status and /poolstat show the effective size
    assert cfg_api.get("/api/v1/status").json()["pools"]["pool2"]["max"] == 2
    assert cfg_api.get("/api/v1/status").json()["capacity"]["total"] == 2
    assert cfg_api.get("/api/v1/poolstat?pool=poolone,pool2").json()["pools"] == {
        "pool1": {"max": 0, "alias": ["poolone"], "ready": 0}, "pool2": {"max": 2, "ready": 0}}


@pytest.mark.parametrize("body, refused", [
    ({"pool10": "2"}, ["pool10"]), ({"pool1": "four"}, ["pool1"]), ({"pool1": "-1"}, ["pool1"]),
    ({"pool1": 2.5}, ["pool1"]), ({"pool1": True}, ["pool1"]), ({"pool1": "99999"}, ["pool1"]),
    ({"pool1": "2", "poolone": "2"}, ["poolone"]),  # an alias is not a pool (the original: a 500)
])
def test_poolsize_refusals_list_not_configured_and_change_nothing(cfg_api, body, refused):
    error = assert_error(cfg_api.post("/api/v1/config/poolsize", body), 400)
    assert error["not_configured"] == refused
    assert configuration(cfg_api)["pool1"]["size"] == 5 and overrides.events(cfg_api.db) == []


def test_pooltemplate_changes_and_requests_a_drain(cfg_api):
    assert cfg_api.post("/api/v1/config/pooltemplate", {"pool1": "templates/pool1"}).status == 200
    assert drains(cfg_api) == {}
    response = cfg_api.post("/api/v1/config/pooltemplate", {"pool1": "templates/new_template"})
    assert (response.status, response.json()) == (201, {"ok": True})
    pool1 = configuration(cfg_api)["pool1"]
    assert pool1["template"] == "templates/new_template" and pool1["template_ready"] is False
    assert "templates/pool1" in drains(cfg_api)["pool1"]
    assert cfg_api.get("/api/v1/status").status == 200


@pytest.mark.parametrize("body, refused", [
    ({"pool1": "template1"}, ["pool1"]), ({"pool1": "/template1"}, ["pool1"]), ({"pool1": "template1/"}, ["pool1"]),
    ({"pool1": "templates/new", "pool3": "templates/x"}, ["pool3"]), ({"pool1": 7}, ["pool1"]),
])
def test_pooltemplate_refusals_list_bad_templates(cfg_api, body, refused):
    assert assert_error(cfg_api.post("/api/v1/config/pooltemplate", body), 400)["bad_templates"] == refused
    assert configuration(cfg_api)["pool1"]["template"] == "templates/pool1" and drains(cfg_api) == {}


def test_clonetarget_changes_and_drains(cfg_api):
    assert cfg_api.post("/api/v1/config/clonetarget", {"pool1": "default_cluster"}).status == 200
    assert cfg_api.post("/api/v1/config/clonetarget", {"pool1": "default_cluster", "pool2": "cluster2"}).status == 201
    assert configuration(cfg_api)["pool2"]["clone_target"] == "cluster2"
    assert set(drains(cfg_api)) == {"pool2"}
    error = assert_error(cfg_api.post("/api/v1/config/clonetarget", {"pool10": "cluster1"}), 400)
    assert error["bad_templates"] == ["pool10"]
    assert assert_error(cfg_api.post("/api/v1/config/clonetarget", {"pool1": ""}), 400)["bad_templates"] == ["pool1"]


def test_delete_poolsize_undoes_the_override_with_the_1_3_bodies(cfg_api):
    response = cfg_api.delete("/api/v1/config/poolsize/pool1")
    assert (response.status, response.json()) == (200, {"ok": True, "pool_size_before_reset": 5,
                                                        "pool_size_before_overrides": 5})
    cfg_api.post("/api/v1/config/poolsize", {"pool1": "2"})
    response = cfg_api.delete("/api/v1/config/poolsize/pool1")
    assert (response.status, response.json()) == (201, {"ok": True, "pool_size_before_reset": 2,
                                                        "pool_size_before_overrides": 5})
    assert configuration(cfg_api)["pool1"]["size"] == 5
    assert_error(cfg_api.delete("/api/v1/config/poolsize/nope"), 404)


def test_delete_pooltemplate_restores_and_drains(cfg_api):
    cfg_api.post("/api/v1/config/pooltemplate", {"pool1": "templates/x"})
    with cfg_api.db.write() as conn:
        conn.execute(pool_drains.delete())  # as if the manager had drained it
    response = cfg_api.delete("/api/v1/config/pooltemplate/pool1")
    assert (response.status, response.json()) == (201, {"ok": True, "template_before_reset": "templates/x",
                                                        "template_before_overrides": "templates/pool1"})
    assert configuration(cfg_api)["pool1"]["template"] == "templates/pool1" and "pool1" in drains(cfg_api)
    assert cfg_api.delete("/api/v1/config/pooltemplate/pool1").status == 200
    assert_error(cfg_api.delete("/api/v1/config/pooltemplate/poolone"), 404)


def test_poolreset(cfg_api):
    response = cfg_api.post("/api/v1/poolreset", {"pool1": "1", "pool2": "1"})
    assert (response.status, response.json()) == (201, {"ok": True})
    assert set(drains(cfg_api)) == {"pool1", "pool2"} and cfg_api.wakes
    error = assert_error(cfg_api.post("/api/v1/poolreset", {"pool1": "1", "pool3": "1"}), 400)
    assert error["bad_pools"] == ["pool3"]
    for body in ('{"pool1":"1}', ""):
        error = assert_error(cfg_api.post("/api/v1/poolreset", body), 400)
        assert error["message"] == "JSON payload could not be parsed"
    assert_error(cfg_api.post("/api/v1/poolreset", "null"), 400)


CHANGES = [("POST", "/api/v1/config/poolsize", {"pool1": "3"}),
           ("POST", "/api/v1/config/pooltemplate", {"pool1": "templates/y"}),
           ("POST", "/api/v1/config/clonetarget", {"pool1": "c2"}),
           ("DELETE", "/api/v1/config/poolsize/pool1", None),
           ("DELETE", "/api/v1/config/pooltemplate/pool1", None),
           ("POST", "/api/v1/poolreset", {"pool1": "1"})]


@pytest.mark.parametrize("method, path, body", CHANGES)
def test_experimental_features_off_is_405_before_anything(start_api, method, path, body):
    api = start_api(pools=POOLS, auth=USERS_AUTH)  # 405 even without the token auth would need
    assert assert_error(api.request(method, path, body=body), 405)
    assert_error(start_api(pools=POOLS).request(method, path, body="{not json"), 405)
    assert overrides.events(api.db) == [] and drains(api) == {}


@pytest.mark.parametrize("method, path, body", CHANGES)
def test_with_auth_a_token_is_needed_and_admins_limit_who(auth_cfg_api, method, path, body):
    api = auth_cfg_api
    assert_error(api.request(method, path, body=body), 401)
    assert_error(api.request(method, path, body=body, token="not-a-token"), 401)
    error = assert_error(api.request(method, path, body=body, token=api.token("other")), 403)
    assert "admins" in error["error"]
    assert overrides.events(api.db) == [] and drains(api) == {}
    response = api.request(method, path, body=body, token=api.token("jdoe"))
    assert response.status in (200, 201), response.text


def test_without_admins_any_token_may_change(start_api):
    api = start_api(pools=POOLS, settings=ON, auth=USERS_AUTH)
    assert_error(api.post("/api/v1/config/poolsize", {"pool1": "3"}), 401)
    assert api.post("/api/v1/config/poolsize", {"pool1": "3"}, token=api.token("other")).status == 201


def test_changes_are_recorded_as_events_with_who_before_and_after(auth_cfg_api):
    api = auth_cfg_api
    token = api.token("jdoe")
    api.post("/api/v1/config/poolsize", {"pool1": "3"}, token=token)
    api.post("/api/v1/config/pooltemplate", {"pool1": "templates/z"}, token=token)
    api.delete("/api/v1/config/poolsize/pool1", token=token)
    api.post("/api/v1/poolreset", {"pool2": 1}, token=token)
    shown = [(e.pool, e.action, e.before, e.after, e.user, e.address) for e in overrides.events(api.db)]
    assert shown == [("pool1", "set size", "5", "3", "jdoe", "127.0.0.1"),
                     ("pool1", "set template", "templates/pool1", "templates/z", "jdoe", "127.0.0.1"),
                     ("pool1", "undo size", "3", "5", "jdoe", "127.0.0.1"),
                     ("pool2", "reset", None, None, "jdoe", "127.0.0.1")]


@pytest.mark.parametrize("body", ["", "{not json", "[1, 2]", '"pool1"', '{"pool1": "\\ud800"}'])
@pytest.mark.parametrize("path", ["/api/v1/config/poolsize", "/api/v1/config/pooltemplate",
                                  "/api/v1/config/clonetarget"])
def test_a_body_that_is_not_a_json_object_is_400_json(cfg_api, path, body):
    assert_error(cfg_api.post(path, body), 400)  # the original: a 500 HTML page


@pytest.mark.parametrize("path", ["/api/v1/config/poolsize", "/api/v1/config/pooltemplate",
                                  "/api/v1/config/clonetarget"])
def test_a_null_body_is_400(cfg_api, path):
    assert_error(cfg_api.post(path, "null"), 400)  # the original: 404


def test_empty_object_changes_nothing(cfg_api):
    assert cfg_api.post("/api/v1/config/poolsize", {}).status == 200


def test_admins_are_validated():
    from tests.conftest import make_config
    from vmpooler.config import ConfigError

    for admins, words in (([], "at least one"), ({"a": 1}, "list of strings")):
        with pytest.raises(ConfigError) as error:
            make_config(auth={**USERS_AUTH, "admins": admins})
        assert "auth.admins" in str(error.value) and words in str(error.value)
    assert make_config(auth={**USERS_AUTH, "admins": "jdoe"}).auth["admins"] == ("jdoe",)
