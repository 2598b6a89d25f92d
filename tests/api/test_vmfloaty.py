"""vmfloaty (0.9.x / 1.x) works unchanged with ``url:`` at /api/v1, /api/v2 or /api/v3 (3.x users'
setting): its requests replayed as it sends them.

From puppetlabs/vmfloaty lib/vmfloaty/{pooler,auth,http,utils}.rb: Faraday with the url_encoded
middleware on ``url`` (e.g. https://vmpooler.example.com/api/v1). Relative paths ('vm',
"vm/#{os_string}", 'token') resolve under /api/v1; '/status' and '/summary' are absolute, so they
hit the unversioned aliases. A PUT body is JSON text that url_encoded labels
application/x-www-form-urlencoded; POSTs have no body. Answers are read with JSON.parse and
``res_body['ok']``; ``retrieve`` raises AuthError on a 401.
"""
import os
import re
import urllib.parse

import pytest
import yaml

from tests.api.conftest import PASSWORD, USERS_AUTH

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


class Floaty:
    """The requests of vmfloaty's Pooler and Auth classes, with its checks of the answers."""

    def __init__(self, client, base="/api/v1"):
        self.client, self.base = client, base

    def list(self, os_filter=None):  # Pooler.list: conn.get 'vm'
        hosts = self.client.get(f"{self.base}/vm").json()
        return [h for h in hosts if os_filter is None or os_filter in h]

    def retrieve(self, os_types, token=None, ondemand=False):
        """Pooler.retrieve: conn.post "vm/a+a+b", or with --ondemand (1.x) "ondemandvm/a+a+b"."""
        os_string = "+".join(os for os, num in os_types.items() for _ in range(num))
        headers = dict(FORM, **({"X-AUTH-TOKEN": token} if token else {}))
        path = "ondemandvm" if ondemand else "vm"
        response = self.client.post(f"{self.base}/{path}/{os_string}", body="", headers=headers)
        body = response.json()
        if body["ok"]:
            return body
        raise RuntimeError(f"HTTP {response.status}: {body}")

    def check_ondemandvm(self, request_id):  # Pooler.check_ondemandvm: a GET without the token
        response = self.client.get(f"{self.base}/ondemandvm/{request_id}")
        body = response.json()
        if response.status == 200:
            return body
        if response.status == 404:
            raise RuntimeError("HTTP 404: The request cannot be found, or an unknown error occurred")
        return False

    def wait_for_request(self, request_id, timeout=30, pause=0.05):
        """Pooler.wait_for_request: poll until 200 (vmfloaty sleeps 5 s between polls)."""
        import time
        start = time.monotonic()
        while self.check_ondemandvm(request_id) is False:
            if time.monotonic() - start > timeout:
                return False
            time.sleep(pause)
        return self.check_ondemandvm(request_id)

    @staticmethod
    def standardize_hostnames(body):  # Utils.standardize_hostnames (1.6.0 skips request_id and ready)
        body = dict(body)
        assert body.pop("ok")
        domain = body.pop("domain", None)
        body = {k: v for k, v in body.items() if k not in ("request_id", "ready")}
        return {os: [f"{h}.{domain}" if domain else h for h in (v["hostname"] if isinstance(v["hostname"], list)
                                                                 else [v["hostname"]])] for os, v in body.items()}

    def query(self, hostname):  # Pooler.query: conn.get "vm/#{hostname}"
        return self.client.get(f"{self.base}/vm/{hostname}").json()

    def modify(self, hostname, token, modify_hash):  # Pooler.modify: conn.put, body modify_hash.to_json
        import json
        return self.client.put(f"{self.base}/vm/{hostname}", body=json.dumps(modify_hash),
                               headers=dict(FORM, **{"X-AUTH-TOKEN": token})).json()

    def _post(self, path, token):
        return self.client.post(f"{self.base}/{path}", body="", headers=dict(FORM, **{"X-AUTH-TOKEN": token})).json()

    def disk(self, hostname, token, size):  # Pooler.disk: conn.post "vm/#{hostname}/disk/#{disk}"
        return self._post(f"vm/{hostname}/disk/{size}", token)

    def snapshot(self, hostname, token):  # Pooler.snapshot
        return self._post(f"vm/{hostname}/snapshot", token)

    def revert(self, hostname, token, sha):  # Pooler.revert
        return self._post(f"vm/{hostname}/snapshot/{sha}", token)

    def delete(self, hosts, token):  # Pooler.delete: conn.delete "vm/#{host}" for each
        return {h: self.client.delete(f"{self.base}/vm/{h}", headers={"X-AUTH-TOKEN": token}).json() for h in hosts}

    def status(self):  # Pooler.status: conn.get '/status' (absolute)
        return self.client.get("/status").json()

    def summary(self):  # Pooler.summary: conn.get '/summary' (absolute)
        return self.client.get("/summary").json()

    def get_token(self, user, password):  # Auth.get_token: conn.post 'token' with basic auth
        body = self.client.post(f"{self.base}/token", body="", user=user, password=password).json()
        if body["ok"]:
            return body["token"]
        raise RuntimeError(body)

    def token_status(self, token):  # Auth.token_status: conn.get "token/#{token}"
        body = self.client.get(f"{self.base}/token/{token}").json()
        if body["ok"]:
            return body
        raise RuntimeError(body)

    def delete_token(self, user, password, token):  # Auth.delete_token
        body = self.client.delete(f"{self.base}/token/{token}", user=user, password=password).json()
        if body["ok"]:
            return body
        raise RuntimeError(body)

    def list_active(self, token):  # Pooler.list_active
        status = self.token_status(token)
        return status[token]["vms"]["running"] if status[token].get("vms") else []


def test_vmfloaty_session(start_api, base):
    """The whole session with ``url:`` at each version (3.x users point vmfloaty 1.6.0 at /api/v3;
    its status and summary still reach the unversioned root)."""
    from sqlalchemy import update

    from vmpooler.db.models import tasks
    from vmpooler.model import DONE

    api = start_api(settings={"domain": "company.com"}, auth=USERS_AUTH)
    floaty = Floaty(api.client, base)
    # floaty token get / status
    token = floaty.get_token("jdoe", PASSWORD)
    assert floaty.list_active(token) == []
    # floaty list [filter]
    assert floaty.list() == ["debian-7-i386", "debian-7-x86_64"] and floaty.list("x86") == ["debian-7-x86_64"]
    # floaty get debian-7-i386=2 debian-7-x86_64
    a, b, c = api.add(), api.add(), api.add("debian-7-x86_64")
    hosts = Floaty.standardize_hostnames(floaty.retrieve({"debian-7-i386": 2, "debian-7-x86_64": 1}, token))
    assert sorted(hosts["debian-7-i386"]) == sorted([f"{a}.company.com", f"{b}.company.com"])
    assert hosts["debian-7-x86_64"] == [f"{c}.company.com"]
    assert sorted(floaty.list_active(token)) == sorted([a, b, c])
    # floaty query (pretty_print_hosts reads template, running, lifetime, tags, domain)
    host = floaty.query(a)[a]
    assert host["template"] == "debian-7-i386" and host["lifetime"] == 24
    if base == "/api/v1":
        assert host["domain"] == "company.com"
    else:  # 2.x and 3.x answer the FQDN instead (vmfloaty then prints the short name)
        assert host["fqdn"] == f"{a}.company.com" and "domain" not in host
    # floaty modify --lifetime 12 --tags '{"user":"jdoe"}'
    assert floaty.modify(a, token, {"lifetime": 12, "tags": {"user": "jdoe"}}) == {"ok": True}
    host = floaty.query(a)[a]
    assert host["lifetime"] == 12 and host["tags"] == {"user": "jdoe"}
    # floaty modify --disk 8 (Pooler.disk), snapshot, revert
    assert floaty.disk(a, token, 8) == {"ok": True, a: {"disk": "+8gb"}}
    sha = floaty.snapshot(a, token)[a]["snapshot"]
    with api.db.write() as conn:
        conn.execute(update(tasks).values(state=DONE))
    assert floaty.query(a)[a]["snapshots"] == [sha]
    assert floaty.revert(a, token, sha) == {"ok": True}
    # floaty status (pretty_print_status: status.message, pools[*].ready/max/pending as integers)
    status = floaty.status()
    assert isinstance(status["status"]["message"], str)
    for pool in status["pools"].values():
        assert all(isinstance(pool[k], int) for k in ("ready", "max", "pending"))
    # floaty summary
    assert {"boot", "clone", "tag", "daily"} <= set(floaty.summary())
    # floaty delete a,b,c
    assert floaty.delete([a, b, c], token) == {a: {"ok": True}, b: {"ok": True}, c: {"ok": True}}
    # floaty token delete
    assert floaty.delete_token("jdoe", PASSWORD, token) == {"ok": True}
    with pytest.raises(RuntimeError):
        floaty.token_status(token)


def test_vmfloaty_bad_token_is_401(start_api, base):
    api = start_api(auth=USERS_AUTH)
    api.add()
    response = api.client.post(f"{base}/vm/debian-7-i386", body="", headers=dict(FORM, **{"X-AUTH-TOKEN": "x"}))
    assert response.status == 401 and response.json()["ok"] is False  # retrieve raises AuthError


def test_vmfloaty_without_auth(api, base):
    """A pooler without auth: floaty get/delete still send the token header; it is ignored."""
    floaty = Floaty(api.client, base)
    name = api.add()
    body = floaty.retrieve({"debian-7-i386": 1}, token="anything")
    assert Floaty.standardize_hostnames(body) == {"debian-7-i386": [f"{name}.company.com"]}
    assert floaty.delete([name], "anything") == {name: {"ok": True}}


@pytest.mark.parametrize("base", ["/api/v1", "/api/v3"])
def test_vmfloaty_ondemand_get(tmp_path, base):
    """floaty get debian-7-i386=2 debian-7-x86_64 --ondemand against the whole service (manager
    included): POST ondemandvm/a+a+b with the token, then polls GET ondemandvm/<id> without it
    until 200, then prints the hostnames with the domain."""
    from tests.reliability.harness import service_config
    from tests.service import InProcessService

    config = service_config(tmp_path, [{"name": "debian-7-i386", "template": "t", "size": 0},
                                       {"name": "debian-7-x86_64", "template": "t", "size": 0}],
                            settings={"domain": "company.com"}, dummy={"boot_max_time": 0.5}, auth=USERS_AUTH)
    service = InProcessService(config)
    try:
        floaty = Floaty(service.client, base)
        token = floaty.get_token("jdoe", PASSWORD)
        with pytest.raises(RuntimeError, match="HTTP 401"):
            floaty.retrieve({"debian-7-i386": 1}, None, ondemand=True)
        response = floaty.retrieve({"debian-7-i386": 2, "debian-7-x86_64": 1}, token, ondemand=True)
        assert set(response) == ({"ok", "request_id", "domain"} if base == "/api/v1" else {"ok", "request_id"})
        assert floaty.check_ondemandvm(response["request_id"]) is False  # 202 while pending
        answer = floaty.wait_for_request(response["request_id"])
        hosts = Floaty.standardize_hostnames(answer)
        assert set(hosts) == {"debian-7-i386", "debian-7-x86_64"}
        assert len(hosts["debian-7-i386"]) == 2 and len(hosts["debian-7-x86_64"]) == 1
        assert all(h.endswith(".company.com") for names in hosts.values() for h in names)
        short = [h.split(".")[0] for names in hosts.values() for h in names]
        assert sorted(floaty.list_active(token)) == sorted(short)  # floaty list --active
        assert floaty.delete(short, token) == {h: {"ok": True} for h in short}
        with pytest.raises(RuntimeError, match="HTTP 404"):
            floaty.check_ondemandvm("no-such-request")
    finally:
        service.stop()


def test_the_documented_vmfloaty_file_points_at_the_api(api):
    """docs/api.md's ~/.vmfloaty.yml: vmfloaty resolves its relative paths ('vm', 'token') under
    ``url``, so the documented url must be the service's /api/v1."""
    text = open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "api.md"), encoding="utf-8").read()
    dotfile = yaml.safe_load(re.search(r"```yaml\n# ~/\.vmfloaty\.yml\n(.*?)```", text, re.S).group(1))
    url = urllib.parse.urlsplit(dotfile["url"])
    assert (url.scheme, url.port, url.path) == ("http", 4567, "/api/v1")  # the default port of serve
    api.add()
    assert Floaty(api.client, base=url.path).list() == ["debian-7-i386", "debian-7-x86_64"]
