"""Hostile input against a real server process: traversal, SQL metacharacters, unicode and
oversized values in every path segment and query parameter of every route; huge and deeply nested
JSON; a token-guessing loop; and secrets in the logs. Never a 5xx, always a JSON answer, the
database intact, nothing secret written to the log or echoed back.

tests/api/ holds the API's own tests (and its route fuzzer when there is one); this file adds the
hostile values and the whole-process checks (logs, the real HTTP server's limits).
"""
import base64
import json
import re
import sqlite3
import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.conftest import PASSWORD, USERS_AUTH, assert_too_large
from tests.reliability.harness import ServerProcess, pools_full, wait_until
from vmpooler.api.routes import PREFIX, ROUTES, V3_ROUTES

POOLS = [{"name": "a", "template": "t", "size": 2}]
MAX_BODY = 8192
#: raw: already percent-encoded (sent as is); others are percent-encoded as UTF-8
HOSTILE = [
    "../../../../etc/passwd", "..", ".", "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "..%5c..%5cwindows", "%00", "a%00b",
    "' OR '1'='1", "a'; DROP TABLE vms; --", '" OR 1=1 --', "%25", "_", "*", "a%' --", "1 UNION SELECT token_hash FROM tokens",
    "ünïcødé", "名前", "😀", "\u202egnp.exe", "%ED%A0%80", "%FF%FE", "%C0%AE%C0%AE",
    "%0d%0aSet-Cookie:%20x=1", "<script>alert(1)</script>", "${jndi:ldap://127.0.0.1/x}", "{{7*7}}",
    " ", "+", "a+a+", "a+" * 150, "x" * 5000, "-1", "99999999999999999999", "1e308", "NaN", "0x10",
]
RAW = re.compile(r"%[0-9A-Fa-f]{2}")


def encoded(value):
    return value if RAW.search(value) else urllib.parse.quote(value, safe="")


def assert_clean_answer(response, what):
    """No 5xx (a 503 only when the pool is empty), JSON with ok false for errors."""
    assert response.status < 500 or (response.status == 503 and "ready VMs" in response.text), (what, response.status,
                                                                                                   response.text[:300])
    if response.text:
        assert response.headers.get("content-type") == "application/json", (what, response.headers)
        body = json.loads(response.text)
        if response.status >= 400:
            assert body["ok"] is False, (what, body)


def hold_vm(server) -> str:
    """Check a VM out of pool a, waiting for the (small) pool to refill if earlier tests emptied it."""
    def take():
        response = server.client.post("/api/v1/vm/a")
        return response.json()["a"]["hostname"] if response.status == 200 else None
    return wait_until(take, 20, "a ready VM in pool a")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    process = ServerProcess(tmp_path_factory.mktemp("hostile"), POOLS, log_level="DEBUG", auth=USERS_AUTH,
                            settings={"max_body_size": MAX_BODY, "auth_failure_limits_enabled": False,
                                      "request_logger": True}).start()
    wait_until(lambda: pools_full(process.client, POOLS), 20, "the pool to fill")
    yield process
    assert process.stop() == 0


def schema(server):
    with sqlite3.connect(server.database_path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return sorted(connection.execute("SELECT type, name FROM sqlite_master"))


@pytest.mark.parametrize("prefix", [PREFIX, "/api/v3"])  # v3 checks input its own way (3.8.1's)
def test_hostile_values_in_every_path_segment_and_query_parameter(server, prefix):
    before = schema(server)
    token = server.client.post("/api/v1/token", user="jdoe").json()["token"]
    sent = 0
    for path, _handler, _aliased in ROUTES + ([(p, h, False) for p, h in V3_ROUTES] if prefix != PREFIX else []):
        for value in HOSTILE:
            target = prefix + re.sub(r"\{\w+\}", lambda _m: encoded(value), path)
            for method in ("GET", "POST", "PUT", "DELETE"):
                body = "{}" if method in ("POST", "PUT") else None
                response = server.client.request(method, target, body=body, token=token)
                assert_clean_answer(response, f"{method} {target[:120]}")
                sent += 1
    for value in HOSTILE:
        quoted = encoded(value)
        for query in (f"view={quoted}", f"from={quoted}&to={quoted}", f"{quoted}={quoted}", quoted):
            for path in ("/status", "/summary", "/summary/tag", "/summary/boot/a", "/poolstat", "/totalrunning",
                         "/vm", "/vm/a"):
                response = server.client.get(f"{prefix}{path}?{query}")
                assert_clean_answer(response, f"GET {path}?{query[:100]}")
                sent += 1
    assert sent > 1000
    assert schema(server) == before
    assert server.client.get("/api/v1/status").status == 200


def test_bodies_over_max_body_size_are_refused_with_413(server):
    for body in ("x" * (MAX_BODY + 1), json.dumps({"a": 1, "pad": "y" * MAX_BODY})):
        for method, path in (("POST", "/api/v1/vm"), ("PUT", "/api/v1/vm/nobody"), ("POST", "/api/v1/token")):
            response = server.client.request(method, path, body=body)
            assert response.status == 413, (method, path, response.status)
            assert_clean_answer(response, path)
    # The same, sent in chunks (no Content-Length up front).
    assert_too_large(server.client, iter([b"{" + b" " * 4096] * 4))


def test_a_body_over_the_http_servers_own_cap_is_a_413_too(server):
    """2 MiB, over Tornado's former cap (4 x max_body_size, at least 1 MiB), which reset the
    connection: the server reads and drops the body, answers 413 JSON and carries on."""
    assert_too_large(server.client, b"{" + b" " * (2 << 20))


def deeply_nested(depth, opener="[", closer="]"):
    return opener * depth + "1" + closer * depth


@pytest.mark.parametrize("prefix", [PREFIX, "/api/v3"])
def test_deeply_nested_and_odd_json_is_a_400(server, prefix):
    held = hold_vm(server)
    bodies = [deeply_nested(3000), deeply_nested(900, '{"a":', "}"), '{"tags": ' + deeply_nested(2000) + "}",
              '{"tags": {"x": ' + deeply_nested(500, '{"y":', "}") + "}}", '{"lifetime": NaN}',
              '{"lifetime": Infinity}', '{"lifetime": 1e999}', '{"a": 1, "a": 2}', "\ufeff{}", '"\\ud800"',
              '{"\\ud800": 1}', "[" * 10, "\x00", "{" + '"k":1,' * 1300 + '"k":1}']
    for body in bodies:
        for method, path in (("PUT", f"{prefix}/vm/{held}"), ("POST", f"{prefix}/vm")):
            response = server.client.request(method, path, body=body.encode("utf-8", "surrogatepass"))
            assert_clean_answer(response, f"{method} {body[:60]!r}")
    assert server.client.get(f"/api/v1/vm/{held}").status == 200


@pytest.mark.parametrize("body", ['{"tags": {"\\ud800": "x"}}', '{"tags": {"x": "\\udfff\\ud800"}}'])
def test_lone_surrogates_in_tags_are_a_400(server, body):
    held = hold_vm(server)
    response = server.client.put(f"/api/v1/vm/{held}", body=body)
    assert response.status == 400, (response.status, response.text)
    assert_clean_answer(response, body)


def test_unicode_tags_round_trip(server):
    held = hold_vm(server)
    tags = {"名前": "😀 ünïcødé", "quote'\"": "'; DROP TABLE vm_tags; --", "\u202e": "rtl"}
    assert server.client.put(f"/api/v1/vm/{held}", {"tags": tags}).status == 200
    assert server.client.get(f"/api/v1/vm/{held}").json()[held]["tags"] == tags


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20)


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.dictionaries(st.sampled_from(["tags", "lifetime", "a", "pool", "名前"]) | st.text(max_size=8),
                            json_values, max_size=4))
def test_arbitrary_json_bodies_never_break_a_route(server, body):
    text = json.dumps(body)
    for method, path in (("PUT", "/api/v1/vm/nosuchvm"), ("POST", "/api/v1/vm"), ("POST", "/api/v1/vm/a/snapshot"),
                         ("POST", "/api/v1/token"), ("POST", "/api/v3/vm"), ("PUT", "/api/v3/vm/nosuchvm")):
        assert_clean_answer(server.client.request(method, path, body=text), f"{method} {path} {text[:80]}")


def test_token_guessing_is_slowed_down_and_never_succeeds(tmp_path):
    server = ServerProcess(tmp_path, POOLS, auth=USERS_AUTH, settings={
        "auth_failures_per_minute": 5, "auth_token_failures_per_minute": 10}).start()
    try:
        token = server.client.post("/api/v1/token", user="jdoe").json()["token"]
        token_answers, password_answers = [], []
        for guess_number in range(40):
            guess = f"{token[:-4]}{guess_number:04d}"
            kind = guess_number % 3
            if kind == 0:
                response = server.client.get(f"/api/v1/token/{guess}")
            elif kind == 1:
                response = server.client.post("/api/v1/vm/a", token=guess)
            else:
                response = server.client.get("/api/v1/token", user="jdoe", password=f"guess{guess_number}")
            (password_answers if kind == 2 else token_answers).append(response.status)
            assert response.status in (401, 404, 429), (guess_number, response.status, response.text)
            assert_clean_answer(response, guess)
            if response.status == 429:
                retry_after = int(response.headers["retry-after"])
                assert 0 < retry_after <= 60 and response.json()["retry_after"] == retry_after
        # wrong tokens (looked up or sent) share the coarse guard, passwords their own per-user limit
        assert set(token_answers[:10]) == {401, 404} and set(token_answers[10:]) == {429}
        assert password_answers[:5] == [401] * 5 and set(password_answers[5:]) == {429}
        # A blocked user is blocked even with the right password (no oracle); a valid token never is.
        assert server.client.get("/api/v1/token", user="jdoe").status == 429
        assert server.client.get(f"/api/v1/token/{token}").status == 200
        assert server.client.get("/api/v1/token", user="other").status == 404  # other users: no tokens yet
        assert server.client.get("/api/v1/status").status == 200
    finally:
        server.stop()


def test_passwords_and_tokens_never_reach_the_log_or_an_error_answer(tmp_path):
    server = ServerProcess(tmp_path, POOLS, log_level="DEBUG", auth=USERS_AUTH,
                           settings={"request_logger": True, "auth_failure_limits_enabled": False}).start()
    wrong_password, guessed = "Wr0ng-Passw0rd-ZZ", "guessedtokenguessedtokenguessed1"
    errors = []
    try:
        wait_until(lambda: pools_full(server.client, POOLS), 20, "the pool to fill")
        token = server.client.post("/api/v1/token", user="jdoe").json()["token"]
        other = server.client.post("/api/v1/token", user="other").json()["token"]
        held = server.client.post("/api/v1/vm/a", token=token).json()["a"]["hostname"]
        assert server.client.put(f"/api/v1/vm/{held}", {"lifetime": 3}, token=token).status == 200
        assert server.client.get(f"/api/v1/token/{token}").status == 200
        assert server.client.get(f"/api/v1/token/{token}/").status == 200
        assert server.client.get(f"/token/{token}").status == 200  # the unversioned alias
        errors.append(server.client.put(f"/api/v1/vm/{held}", {"lifetime": 3}, token=other))  # 403
        errors.append(server.client.get("/api/v1/token", user="jdoe", password=wrong_password))
        errors.append(server.client.get("/api/v1/token", user=wrong_password, password=PASSWORD))
        errors.append(server.client.post("/api/v1/vm/a", token=guessed))
        errors.append(server.client.get(f"/api/v1/token/{guessed}"))
        errors.append(server.client.delete(f"/api/v1/token/{guessed}", user="jdoe"))
        errors.append(server.client.delete(f"/api/v1/token/{token[:8]}", user="other"))  # not other's prefix
        assert server.client.delete(f"/api/v1/vm/{held}", token=token).status == 200
        assert server.client.delete(f"/api/v1/token/{token}", user="jdoe").status == 200
        assert server.client.delete(f"/api/v1/token/{other[:8]}", user="other").status == 200
    finally:
        assert server.stop() == 0
    log = server.log()
    credentials = [base64.b64encode(f"{user}:{password}".encode()).decode()
                   for user, password in (("jdoe", PASSWORD), ("jdoe", wrong_password), (wrong_password, PASSWORD))]
    for secret in [PASSWORD, wrong_password, token, other, guessed, token[8:], guessed[8:], *credentials]:
        assert secret not in log, f"{secret[:4]}... is in the server log"
        for response in errors:
            assert response.status >= 400 and secret not in response.text + json.dumps(response.headers), \
                (response.status, response.text)
    assert "DEBUG" in log and f"/api/v1/token/{token[:8]}..." in log  # the log was verbose, the token cut short
