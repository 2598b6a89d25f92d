"""GET, PUT and DELETE /vm/<hostname>."""
import datetime
import re

import pytest
from sqlalchemy import insert, update

from tests.api.conftest import assert_error, vm_row
from vmpooler.db import client_changes
from vmpooler.db import vms as vm_store
from vmpooler.db.database import utcnow
from vmpooler.db.models import tasks, vms
from vmpooler.model import DONE

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+00:00$")


def test_get_running_vm(api):
    name = api.checkout()
    response = api.get(f"/api/v1/vm/{name}")
    assert response.status == 200 and response.headers["content-type"] == "application/json"
    info = response.json()[name]
    assert list(info) == ["template", "lifetime", "running", "remaining", "start_time", "end_time", "state", "ip",
                          "domain"]
    assert info["template"] == "debian-7-i386" and info["lifetime"] == 24 and info["state"] == "running"
    assert 0 <= info["running"] < 0.1 and 23.9 < info["remaining"] <= 24
    assert RFC3339.match(info["start_time"]) and RFC3339.match(info["end_time"])
    start = datetime.datetime.fromisoformat(info["start_time"])
    assert datetime.datetime.fromisoformat(info["end_time"]) - start == datetime.timedelta(hours=24)
    assert info["domain"] == "company.com"


def test_get_by_fqdn_and_unknown(api):
    name = api.checkout()
    assert api.get(f"/api/v1/vm/{name}.company.com").json()["ok"] is True
    assert_error(api.get("/api/v1/vm/nosuchvm"), 404)
    assert_error(api.get(f"/api/v1/vm/{name}.other.com"), 404)
    assert_error(api.get("/api/v1/vm/" + "a" * 65), 400)
    assert_error(api.get("/api/v1/vm/bad%20name"), 400)


@pytest.mark.parametrize("state", ["pending", "ready"])
def test_get_pending_and_ready(api, state):
    name = api.add(state=state)
    info = api.get(f"/api/v1/vm/{name}").json()[name]
    assert info["state"] == state and "running" not in info and "remaining" not in info


def test_get_completed_destroyed_gone_and_data_ttl(start_api):
    api = start_api(settings={"data_ttl": 1})
    name = api.checkout()
    assert api.delete(f"/api/v1/vm/{name}").status == 200
    assert api.get(f"/api/v1/vm/{name}").json()[name]["state"] == "completed"
    vm_store.destroyed(api.db, vm_row(api, name), utcnow())
    info = api.get(f"/api/v1/vm/{name}").json()[name]
    assert info["state"] == "destroyed" and "running" in info and "remaining" not in info
    other = api.add()
    vm_store.gone(api.db, vm_row(api, other), "vanished", utcnow())
    assert api.get(f"/api/v1/vm/{other}").json()[other]["state"] == "destroyed"
    with api.db.write() as conn:
        conn.execute(update(vms).where(vms.c.name == name).values(destroyed_at=utcnow() - datetime.timedelta(hours=2)))
    assert_error(api.get(f"/api/v1/vm/{name}"), 404)


def test_get_shows_tags_snapshots_disks_only_when_done(api):
    name = api.checkout()
    vm = vm_row(api, name)
    now = utcnow()
    with api.db.write() as conn:
        for kind, arg, state in [("snapshot", "snapa", DONE), ("snapshot", "snapb", "queued"), ("disk", "8", DONE),
                                 ("disk", "16", DONE), ("revert", "snapa", DONE)]:
            conn.execute(insert(tasks).values(vm_id=vm.id, kind=kind, arg=arg, state=state, attempts=0,
                                              created_at=now))
    assert api.put(f"/api/v1/vm/{name}", {"tags": {"user": "jdoe"}}).status == 200
    info = api.get(f"/api/v1/vm/{name}").json()[name]
    assert info["tags"] == {"user": "jdoe"} and info["snapshots"] == ["snapa"] and info["disk"] == ["+8gb", "+16gb"]


def test_lifetime_zero_never_expires(start_api):
    api = start_api(settings={"vm_lifetime": 0})
    name = api.checkout()
    info = api.get(f"/api/v1/vm/{name}").json()[name]
    assert info["lifetime"] == 0 and "end_time" not in info and "remaining" not in info


# --- PUT ----------------------------------------------------------------------------------
def test_put_lifetime_uses_effective_lifetime(api):
    name = api.checkout()
    assert api.put(f"/api/v1/vm/{name}", {"lifetime": "2"}).json() == {"ok": True}
    info = api.get(f"/api/v1/vm/{name}").json()[name]
    assert info["lifetime"] == 2 and 1.9 < info["remaining"] <= 2
    start, end = (datetime.datetime.fromisoformat(info[k]) for k in ("start_time", "end_time"))
    assert end - start == datetime.timedelta(hours=2)
    assert vm_row(api, name).expires_at == vm_row(api, name).checkout_at + datetime.timedelta(hours=2)


def test_put_tags_with_filter_and_empty_values(start_api):
    api = start_api(tagfilter={"url": r"(.*)\/"})
    name = api.checkout()
    body = {"tags": {"department": "engineering", "url": "foo.com/x.html", "empty": "", "none": None, "n": 3}}
    assert api.put(f"/api/v1/vm/{name}", body).status == 200
    tags = api.get(f"/api/v1/vm/{name}").json()[name]["tags"]
    assert tags == {"department": "engineering", "url": "foo.com", "n": "3"}


@pytest.mark.parametrize("body, message", [
    ({"lifetime": -1}, "positive whole number of hours"),
    ({"lifetime": "abc"}, "positive whole number of hours"),
    ({"lifetime": 0}, "positive whole number of hours"),
    ({"lifetime": 2.5}, "positive whole number of hours"),
    ({"lifetime": "2.5"}, "positive whole number of hours"),
    ({"lifetime": 10}, "configured maximum of 10"),
    ({"tags": "x"}, "something other than a hash"),
    ({"tags": {"user": "x", "nope": "y"}}, "unsuppored tags"),
    ({"tags": {"user": {"a": 1}}}, "must be a string"),
    ({"tags": {"user": "x" * 2000}}, "longer than"),
    ({"colour": "red"}, "Unknown argument"),
])
def test_put_failures(start_api, body, message):
    api = start_api(settings={"max_lifetime_upper_limit": 10, "allowed_tags": ["user", "department"]})
    name = api.checkout()
    answer = assert_error(api.put(f"/api/v1/vm/{name}", body), 400)
    assert any(message in failure for failure in answer["failure"])


def test_put_lists_every_failure_and_applies_nothing(start_api):
    api = start_api(settings={"max_lifetime_upper_limit": 10, "allowed_tags": ["user"]})
    name = api.checkout()
    body = {"lifetime": 10, "tags": {"user": "ok", "bad": "x"}, "extra": 1}
    answer = assert_error(api.put(f"/api/v1/vm/{name}", body), 400)
    assert len(answer["failure"]) == 3
    assert api.put(f"/api/v1/vm/{name}", {"lifetime": 9, "tags": {"user": "ok"}}).status == 200
    assert_error(api.put(f"/api/v1/vm/{name}", {"lifetime": 3, "tags": {"nope": "x"}}), 400)
    info = api.get(f"/api/v1/vm/{name}").json()[name]
    assert info["lifetime"] == 9 and info["tags"] == {"user": "ok"}


def test_put_huge_lifetime_is_refused_without_limit(api):
    name = api.checkout()
    assert_error(api.put(f"/api/v1/vm/{name}", {"lifetime": 10 ** 8}), 400)
    assert_error(api.put(f"/api/v1/vm/{name}", {"lifetime": 10 ** 30}), 400)


def test_put_bodies(api):
    name = api.checkout()
    assert api.put(f"/api/v1/vm/{name}", {}).json() == {"ok": True}
    for body in ["not json", "[]", "", "[1,2]"]:
        assert_error(api.put(f"/api/v1/vm/{name}", body), 400)
    # an unknown VM is 404 even with a bad body (checked first, as the original)
    assert_error(api.put("/api/v1/vm/nosuchvm", "not json"), 404)


def test_put_auth(auth_api):
    api = auth_api
    name = api.checkout()
    assert_error(api.put(f"/api/v1/vm/{name}", {"lifetime": 2}), 401)
    assert api.put(f"/api/v1/vm/{name}", {"tags": {"a": "b"}}).status == 200  # tags only: open
    token = api.token()
    assert api.put(f"/api/v1/vm/{name}", {"lifetime": 2}, token=token).status == 200
    assert_error(api.put(f"/api/v1/vm/{name}", {"lifetime": 2}, token="nope"), 401)


def test_put_and_delete_ownership(auth_api):
    api = auth_api
    mine, theirs = api.token("jdoe"), api.token("other")
    name = api.checkout(token=mine)
    for request in (lambda **kw: api.put(f"/api/v1/vm/{name}", {"tags": {"a": "b"}}, **kw),
                    lambda **kw: api.delete(f"/api/v1/vm/{name}", **kw)):
        assert_error(request(), 401)
        assert_error(request(token=theirs), 403)
    assert api.put(f"/api/v1/vm/{name}", {"tags": {"a": "b"}}, token=mine).status == 200
    assert api.delete(f"/api/v1/vm/{name}", token=mine).status == 200


# --- DELETE -------------------------------------------------------------------------------
def test_delete_running_vm(api):
    name = api.checkout()
    api.wakes.clear()
    assert api.delete(f"/api/v1/vm/{name}.company.com").json() == {"ok": True}
    row = vm_row(api, name)
    assert row.state == "completed"
    assert api.wakes == [("destroy", row)]  # the manager destroys it now, the row as committed
    assert_error(api.delete(f"/api/v1/vm/{name}"), 404)


@pytest.mark.parametrize("state", ["pending", "ready"])
def test_delete_non_running_is_404(api, state):
    name = api.add(state=state)
    assert_error(api.delete(f"/api/v1/vm/{name}"), 404)
    assert vm_row(api, name).state == state
    assert_error(api.delete("/api/v1/vm/nosuchvm"), 404)


def test_delete_open_without_owner_under_auth(auth_api):
    name = auth_api.checkout()
    assert auth_api.delete(f"/api/v1/vm/{name}").status == 200


def test_modify_race_is_409(api, monkeypatch):
    name = api.checkout()
    monkeypatch.setattr(client_changes, "modify", lambda *a, **k: False)
    assert_error(api.put(f"/api/v1/vm/{name}", {"lifetime": 3}), 409)


def test_put_records_what_changed_in_the_event_log(api):
    """Lifetime and tag changes are VM row changes: each PUT leaves an event saying before -> after."""
    from tests.manager.helpers import events

    name = api.checkout()
    assert api.put(f"/api/v1/vm/{name}", {"lifetime": 48, "tags": {"user": "jdoe"}}).status == 200
    assert api.put(f"/api/v1/vm/{name}", {"tags": {"user": "asmith", "department": "qa"}}).status == 200
    assert api.put(f"/api/v1/vm/{name}", {"lifetime": 2}).status == 200
    first, second, third = [e for e in events(api.db, name) if e.from_state == e.to_state == "running"]
    start = vm_row(api, name).checkout_at
    at = {hours: f"{start + datetime.timedelta(hours=hours):%Y-%m-%d %H:%M:%S}" for hours in (24, 48, 2)}
    assert first.reason == f"lifetime (the default) -> 48h (expires {at[24]} -> {at[48]}); tag user: (none) -> 'jdoe'"
    assert second.reason == "tag user: 'jdoe' -> 'asmith'; tag department: (none) -> 'qa'"
    assert third.reason == f"lifetime 48h -> 2h (expires {at[48]} -> {at[2]})"
