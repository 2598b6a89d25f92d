"""Every curl example of reference/api-v1.md, sent as curl sends it, answers in the documented shape.

curl -d sends ``Content-Type: application/x-www-form-urlencoded``; ``curl -d --url URL`` posts
the text "--url" as the body. The revert example reads ``curl X POST`` (a typo for -X POST).
"""
import re

from sqlalchemy import update

from tests.api.conftest import USERS_AUTH
from vmpooler.db.models import tasks
from vmpooler.model import DONE

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
TOKEN = re.compile(r"^[a-z0-9]{32}$")
RUBY_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} [+-]\d{4}$")


def test_token_examples(start_api):
    api = start_api(settings={"domain": "company.com"}, auth=USERS_AUTH)
    # POST /token
    created = api.post("/api/v1/token", user="jdoe").json()
    assert created["ok"] is True and TOKEN.match(created["token"]) and set(created) == {"ok", "token"}
    token = created["token"]
    # GET /token: { "ok": true, "<token>": { "created": "2015-04-28 19:17:47 -0700" } } (keyed by prefix here)
    listed = api.get("/api/v1/token", user="jdoe").json()
    assert listed["ok"] is True and RUBY_TIME.match(listed[token[:8]]["created"])
    # GET /token/<token>: user, created, last, vms.running
    names = [api.add(), api.add()]
    api.post("/api/v1/vm/debian-7-i386+debian-7-i386", token=token)
    info = api.get(f"/api/v1/token/{token}").json()
    assert info["ok"] is True and info[token]["user"] == "jdoe"
    assert RUBY_TIME.match(info[token]["created"]) and RUBY_TIME.match(info[token]["last"])
    assert sorted(info[token]["vms"]["running"]) == sorted(names)
    # DELETE /token/<token>
    assert api.delete(f"/api/v1/token/{token}", user="jdoe").json() == {"ok": True}


def test_vm_examples(api):
    # GET /vm
    assert api.get("/api/v1/vm").json() == ["debian-7-i386", "debian-7-x86_64"]
    # POST /vm with '{"debian-7-i386":"2","debian-7-x86_64":"1"}'
    i386 = [api.add(), api.add()]
    x86_64 = api.add("debian-7-x86_64")
    body = api.post("/api/v1/vm", '{"debian-7-i386":"2","debian-7-x86_64":"1"}', headers=FORM).json()
    assert body == {"ok": True, "debian-7-i386": {"hostname": body["debian-7-i386"]["hostname"]},
                    "debian-7-x86_64": {"hostname": x86_64}, "domain": "company.com"}
    assert sorted(body["debian-7-i386"]["hostname"]) == sorted(i386)
    # curl -d --url vmpooler.company.com/api/v1/vm/debian-7-i386
    one = api.add()
    assert api.post("/api/v1/vm/debian-7-i386", "--url", headers=FORM).json() == {
        "ok": True, "debian-7-i386": {"hostname": one}, "domain": "company.com"}
    # .../vm/debian-7-i386+debian-7-i386+debian-7-x86_64
    i386, x86_64 = [api.add(), api.add()], api.add("debian-7-x86_64")
    body = api.post("/api/v1/vm/debian-7-i386+debian-7-i386+debian-7-x86_64", "--url", headers=FORM).json()
    assert sorted(body["debian-7-i386"]["hostname"]) == sorted(i386)
    assert body["debian-7-x86_64"] == {"hostname": x86_64} and body["domain"] == "company.com"
    # PUT lifetime, PUT tags, then GET /vm/<hostname>
    assert api.put(f"/api/v1/vm/{one}", '{"lifetime":"2"}', headers=FORM).json() == {"ok": True}
    assert api.put(f"/api/v1/vm/{one}", '{"tags":{"department":"engineering","user":"jdoe"}}',
                   headers=FORM).json() == {"ok": True}
    info = api.get(f"/api/v1/vm/{one}").json()
    assert info["ok"] is True
    vm = info[one]
    assert vm["template"] == "debian-7-i386" and vm["lifetime"] == 2 and isinstance(vm["running"], float)
    assert vm["state"] == "running" and vm["tags"] == {"department": "engineering", "user": "jdoe"}
    assert vm["domain"] == "company.com"
    # DELETE /vm/<hostname>
    assert api.delete(f"/api/v1/vm/{one}").json() == {"ok": True}


def test_snapshot_examples(start_api):
    api = start_api(settings={"domain": "delivery.puppetlabs.net"}, auth=USERS_AUTH)
    token = api.token()
    name = api.checkout("debian-7-x86_64", token=token)
    response = api.request("POST", f"/api/v1/vm/{name}/snapshot", headers={"X-AUTH-TOKEN": token})
    assert response.status == 202
    snapshot = response.json()[name]["snapshot"]
    assert response.json() == {"ok": True, name: {"snapshot": snapshot}} and len(snapshot) == 32
    with api.db.write() as conn:  # the manager took the snapshot
        conn.execute(update(tasks).values(state=DONE))
    vm = api.get(f"/api/v1/vm/{name}").json()[name]
    assert vm["snapshots"] == [snapshot] and vm["domain"] == "delivery.puppetlabs.net"
    assert {"template", "lifetime", "running", "state"} <= set(vm) and vm["lifetime"] == 24
    response = api.request("POST", f"/api/v1/vm/{name}/snapshot/{snapshot}", headers={"X-AUTH-TOKEN": token})
    assert response.status == 202 and response.json() == {"ok": True}


def test_status_examples(api):
    for _ in range(3):
        api.add("debian-7-x86_64")
    api.add(state="pending")
    body = api.get("/api/v1/status").json()
    assert body["capacity"] == {"current": 3, "total": 8, "percent": 37.5}
    assert set(body["clone"]) == {"duration", "count"} and set(body["clone"]["duration"]) == {
        "average", "min", "max", "total"} and set(body["clone"]["count"]) == {"total"}
    assert set(body["queue"]) == {"pending", "cloning", "booting", "ready", "running", "completed", "total"}
    # one empty pool: "status": { "ok": false, "message": "Found 1 empty pools.", "empty": [...] }
    assert {k: body["status"][k] for k in ("ok", "message", "empty")} == {
        "ok": False, "message": "Found 1 empty pools.", "empty": ["debian-7-i386"]}
    api.add()
    assert body["status"]["ok"] is False
    status = api.get("/api/v1/status").json()["status"]
    assert status["ok"] is True and status["message"] == "Battle station fully armed and operational."


def test_summary_examples(api):
    keys = {"average", "min", "max", "total"}
    body = api.get("/api/v1/summary").json()
    for kind in ("boot", "clone"):
        assert set(body[kind]["duration"]) >= keys and set(body[kind]["count"]) >= keys
    assert isinstance(body["tag"], dict) and len(body["daily"]) == 1
    day = body["daily"][0]
    assert set(day) == {"date", "boot", "clone", "tag"} and set(day["boot"]["count"]) >= {"total"}
    # curl -G -d 'from=2015-03-10' -d 'to=2015-03-11'
    body = api.get("/api/v1/summary?from=2015-03-10&to=2015-03-11").json()
    assert [d["date"] for d in body["daily"]] == ["2015-03-10", "2015-03-11"]
    assert body["daily"][0]["boot"] == {"duration": {"average": 0, "min": 0, "max": 0, "total": 0},
                                        "count": {"total": 0}}
    assert body["daily"][0]["tag"] == {}
