"""The /token routes and the auth stores."""
import logging
import re
import threading

import pytest
from sqlalchemy import select, text

from tests.api.conftest import PASSWORD, USERS_AUTH, assert_error
from vmpooler.auth import DummyStore, UsersStore, build_auth_store, hash_password, token_hash
from vmpooler.db.models import tokens

RUBY_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} \+0000$")


def test_token_routes_are_404_without_auth(api):
    for method, path in [("GET", "/api/v1/token"), ("POST", "/api/v1/token"), ("GET", "/api/v1/token/abc"),
                         ("DELETE", "/api/v1/token/abc"), ("GET", "/token")]:
        response = api.request(method, path, user="jdoe")
        assert response.status == 404 and response.json() == {"ok": False}


def test_create_needs_valid_basic_auth(auth_api):
    assert_error(auth_api.post("/api/v1/token"), 401)
    assert_error(auth_api.post("/api/v1/token", user="jdoe", password="wrong"), 401)
    assert_error(auth_api.post("/api/v1/token", user="nobody"), 401)
    assert_error(auth_api.post("/api/v1/token", headers={"Authorization": "Basic %%%"}), 401)
    assert_error(auth_api.post("/api/v1/token", headers={"Authorization": "Bearer abc"}), 401)


def test_create_stores_only_a_hash(auth_api):
    response = auth_api.post("/api/v1/token", user="jdoe")
    assert response.status == 200
    token = response.json()["token"]
    assert set(response.json()) == {"ok", "token"} and re.fullmatch(r"[a-z0-9]{32}", token)
    with auth_api.db.read() as conn:
        row = conn.execute(select(tokens)).one()
        dump = "\n".join(str(r) for r in conn.execute(text("SELECT * FROM tokens")))
    assert row.token_hash == token_hash(token) and row.prefix == token[:8] and row.user == "jdoe"
    assert token not in dump


def test_list_by_prefix(auth_api):
    assert_error(auth_api.get("/api/v1/token", user="jdoe"), 404, with_message=False)  # no tokens yet
    first, second = auth_api.token(), auth_api.token()
    auth_api.token("other")
    body = auth_api.get("/api/v1/token", user="jdoe").json()
    assert set(body) == {"ok", first[:8], second[:8]}
    assert RUBY_TIME.match(body[first[:8]]["created"]) and body[first[:8]]["last"] == "never"
    auth_api.add()
    auth_api.post("/api/v1/vm/debian-7-i386", token=first)
    assert RUBY_TIME.match(auth_api.get("/api/v1/token", user="jdoe").json()[first[:8]]["last"])
    assert_error(auth_api.get("/api/v1/token"), 401)


def test_token_status(auth_api):
    token = auth_api.token()
    body = auth_api.get(f"/api/v1/token/{token}").json()  # no credentials needed
    assert body == {"ok": True, token: {"user": "jdoe", "created": body[token]["created"]}}
    name = auth_api.add()
    auth_api.post("/api/v1/vm/debian-7-i386", token=token)
    info = auth_api.get(f"/token/{token}").json()[token]
    assert RUBY_TIME.match(info["last"]) and info["vms"] == {"running": [name]}
    assert_error(auth_api.get("/api/v1/token/unknowntoken"), 404)


def test_delete_full_token_and_prefix(auth_api):
    first, second, others = auth_api.token(), auth_api.token(), auth_api.token("other")
    assert_error(auth_api.delete(f"/api/v1/token/{first}"), 401)
    assert auth_api.delete(f"/api/v1/token/{first}", user="jdoe").json() == {"ok": True}
    assert_error(auth_api.get(f"/api/v1/token/{first}"), 404)
    assert_error(auth_api.delete(f"/api/v1/token/{first}", user="jdoe"), 404)  # the original: 401
    assert_error(auth_api.delete(f"/api/v1/token/{others[:8]}", user="jdoe"), 404)  # not theirs
    assert auth_api.delete(f"/api/v1/token/{second[:8]}", user="jdoe").status == 200
    assert auth_api.delete(f"/api/v1/token/{others}", user="jdoe").status == 200  # the full token suffices
    assert_error(auth_api.delete("/api/v1/token/x", user="jdoe"), 404)


def test_a_deleted_token_no_longer_authenticates(auth_api):
    token = auth_api.token()
    auth_api.delete(f"/api/v1/token/{token}", user="jdoe")
    auth_api.add()
    assert_error(auth_api.post("/api/v1/vm/debian-7-i386", token=token), 401)


def test_dummy_store(start_api):
    api = start_api(auth={"provider": "dummy"})
    assert api.post("/api/v1/token", user="jdoe", password="jdoe2").status == 200
    assert_error(api.post("/api/v1/token", user="jdoe", password="jdoe"), 401)


def test_stores():
    users = UsersStore({"jdoe": hash_password("pw", rounds=4), "broken": "$2b$nothash"})
    assert users.authenticate("jdoe", "pw") and not users.authenticate("jdoe", "PW")
    assert not users.authenticate("nobody", "pw") and not users.authenticate("broken", "pw")
    assert not users.authenticate("jdoe", "x" * 100) and not users.authenticate("", "")
    assert DummyStore().authenticate("a", "b") and not DummyStore().authenticate("a", "a")
    with pytest.raises(ValueError):
        hash_password("x" * 73)


def test_build_auth_store():
    from tests.conftest import make_config

    assert build_auth_store(make_config()) is None
    assert isinstance(build_auth_store(make_config(auth=USERS_AUTH)), UsersStore)
    assert isinstance(build_auth_store(make_config(auth={"provider": "dummy"})), DummyStore)


def test_password_check_runs_off_the_ioloop(auth_api):
    threads = []
    store = auth_api.context.auth
    original = store.authenticate

    def recording(user, password):
        threads.append(threading.current_thread().name)
        return original(user, password)

    store.authenticate = recording
    assert auth_api.post("/api/v1/token", user="jdoe").status == 200
    assert threads and all("ThreadPoolExecutor" in name for name in threads)


def test_secrets_never_logged(start_api, caplog):
    api = start_api(settings={"request_logger": True}, auth=USERS_AUTH)
    with caplog.at_level(logging.DEBUG):
        token = api.token()
        api.get(f"/api/v1/token/{token}")
        api.delete(f"/api/v1/token/{token}", user="jdoe")
        api.post("/api/v1/token", user="jdoe", password="wrong-password")
        api.get("/api/v1/token/" + "z" * 32)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert f"/token/{token[:8]}" in logged  # requests are logged, cut short
    assert token not in logged and PASSWORD not in logged and "wrong-password" not in logged
    assert "z" * 32 not in logged
