"""Snapshot, revert and disk: queued tasks answered with 202."""
import re

import pytest
from sqlalchemy import select, update

from tests.api.conftest import assert_error
from vmpooler.db.models import tasks
from vmpooler.model import DONE

SNAPSHOT = re.compile(r"^[a-y][a-z0-9]{31}$")


def queued(api):
    with api.db.read() as conn:
        return [(row.kind, row.arg, row.state) for row in conn.execute(select(tasks).order_by(tasks.c.id))]


def finish_all(api):
    with api.db.write() as conn:
        conn.execute(update(tasks).values(state=DONE))


def test_snapshot_then_revert(api):
    name = api.checkout()
    response = api.post(f"/api/v1/vm/{name}/snapshot")
    assert response.status == 202
    snapshot = response.json()[name]["snapshot"]
    assert response.json() == {"ok": True, name: {"snapshot": snapshot}} and SNAPSHOT.match(snapshot)
    assert queued(api) == [("snapshot", snapshot, "queued")]
    assert "snapshots" not in api.get(f"/api/v1/vm/{name}").json()[name]
    assert_error(api.post(f"/api/v1/vm/{name}/snapshot/{snapshot}"), 404)  # not taken yet
    finish_all(api)
    assert api.get(f"/api/v1/vm/{name}").json()[name]["snapshots"] == [snapshot]
    api.wakes.clear()
    response = api.post(f"/api/v1/vm/{name}.company.com/snapshot/{snapshot}")
    assert response.status == 202 and response.json() == {"ok": True} and api.wakes
    assert queued(api)[-1] == ("revert", snapshot, "queued")
    assert_error(api.post(f"/api/v1/vm/{name}/snapshot/otherone"), 404)


def test_disk(api):
    name = api.checkout()
    response = api.post(f"/api/v1/vm/{name}/disk/8")
    assert response.status == 202 and response.json() == {"ok": True, name: {"disk": "+8gb"}}
    assert queued(api) == [("disk", "8", "queued")]
    finish_all(api)
    assert api.get(f"/api/v1/vm/{name}").json()[name]["disk"] == ["+8gb"]


@pytest.mark.parametrize("size", ["0", "2049", "abc", "8gb", "-1", "99999999999"])
def test_bad_disk_size(api, size):
    name = api.checkout()
    assert_error(api.post(f"/api/v1/vm/{name}/disk/{size}"), 400)
    assert queued(api) == []


@pytest.mark.parametrize("path", ["/snapshot", "/snapshot/abc", "/disk/8"])
def test_unknown_vm_is_404(api, path):
    assert_error(api.post(f"/api/v1/vm/nosuchvm{path}"), 404)


def test_tasks_need_a_token_under_auth(auth_api):
    api = auth_api
    name = api.checkout()
    for path in ("/snapshot", "/disk/8", "/snapshot/abc"):
        assert_error(api.post(f"/api/v1/vm/{name}{path}"), 401)
        assert_error(api.post(f"/api/v1/vm/nosuchvm{path}"), 401)  # 401 before the lookup
        assert_error(api.post(f"/api/v1/vm/{name}{path}", token="bad"), 401)
    token = api.token()
    assert api.post(f"/api/v1/vm/{name}/snapshot", token=token).status == 202
    assert api.post(f"/api/v1/vm/{name}/disk/8", token=token).status == 202
    assert_error(api.post("/api/v1/vm/nosuchvm/disk/8", token=token), 404)


def test_tasks_respect_ownership(auth_api):
    api = auth_api
    mine, theirs = api.token("jdoe"), api.token("other")
    name = api.checkout(token=mine)
    assert_error(api.post(f"/api/v1/vm/{name}/snapshot", token=theirs), 403)
    assert_error(api.post(f"/api/v1/vm/{name}/disk/8", token=theirs), 403)
    assert queued(api) == []
    assert api.post(f"/api/v1/vm/{name}/snapshot", token=mine).status == 202
