"""Every oversized body is answered 413 with a JSON body over a real socket, however it is too
large: a Content-Length that lies, a real body, one far over any cap, a chunked one. The
connection is answered, not reset, and the server carries on."""
import http.client
import json
import socket
import threading
import time

import pytest

from tests.api.conftest import assert_error, assert_too_large
from vmpooler.api import bodylimit

LIMIT = 1000


@pytest.fixture
def api(start_api):
    return start_api(settings={"max_body_size": LIMIT})


def read_answer(sock, timeout=10.0) -> bytes:
    """Bytes from ``sock`` until one whole answer (headers and Content-Length bytes) has arrived."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside the answer"
        body += chunk
    return head + b"\r\n\r\n" + body


def assert_413(answer: bytes) -> dict:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"content-type: application/json" in head.lower()
    data = json.loads(body)
    assert data["ok"] is False and str(LIMIT) in data["error"]
    return data


def raw(api) -> socket.socket:
    return socket.create_connection(("127.0.0.1", api.client.port), timeout=10)


def test_a_content_length_that_lies_is_answered_at_once(api):
    with raw(api) as sock:
        sock.sendall(b"POST /api/v1/vm HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000000000000\r\n\r\n{}")
        assert_413(read_answer(sock))
    assert api.get("/api/v1/status").status == 200


def test_a_lying_content_length_is_waited_for_only_so_long(api, monkeypatch):
    monkeypatch.setattr(bodylimit, "DRAIN_SECONDS", 0.5)
    with raw(api) as sock:
        sock.sendall(b"PUT /api/v1/vm/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n{}")
        assert_413(read_answer(sock))
        started = time.monotonic()
        assert sock.recv(100) == b""  # then the server closes the connection
        assert time.monotonic() - started < 5


def test_an_expect_100_continue_gets_the_413_instead_of_continue(api):
    with raw(api) as sock:
        sock.sendall(b"POST /api/v1/vm HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n")
        answer = read_answer(sock)
        assert_413(answer)
        assert b"100" not in answer.split(b"\r\n")[0]


def test_a_real_body_over_the_limit_leaves_the_connection_usable(api):
    connection = http.client.HTTPConnection("127.0.0.1", api.client.port, timeout=10)
    try:
        for path, body in (("/api/v1/vm", json.dumps({"debian-7-i386": 1, "pad": "x" * LIMIT})),
                           ("/api/v1/nothing/here", "y" * (LIMIT + 1))):
            connection.request("POST", path, body=body)
            response = connection.getresponse()
            assert response.status == 413 and json.loads(response.read())["ok"] is False
        connection.request("GET", "/api/v1/status")  # the same connection: the body was read to its end
        assert connection.getresponse().status == 200
    finally:
        connection.close()


def test_a_body_far_over_any_cap_is_answered_not_reset(api):
    """4 MiB: far over Tornado's former cap (4 x max_body_size, at least 1 MiB), which reset the
    connection; the server reads and drops it, so the client finishes sending and reads the 413."""
    assert str(LIMIT) in assert_too_large(api.client, b"{" + b" " * (4 << 20), timeout=20)["error"]


def test_a_chunked_body_over_the_limit(api):
    assert str(LIMIT) in assert_too_large(api.client, iter([b"{" + b" " * 400] * 5))["error"]


def test_a_chunk_that_declares_a_huge_size_is_413(api):
    with raw(api) as sock:
        sock.sendall(b"POST /api/v1/vm HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"ffffffffff\r\n" + b"x" * (LIMIT + 10))
        assert_413(read_answer(sock))


def test_bodies_within_the_limit_reach_the_handler(api):
    api.add()
    connection = http.client.HTTPConnection("127.0.0.1", api.client.port, timeout=10)
    try:
        body = json.dumps({"debian-7-i386": 1}).encode()
        connection.request("POST", "/api/v1/vm", body=iter([body[:5], body[5:]]), encode_chunked=True)
        response = connection.getresponse()
        assert response.status == 200 and json.loads(response.read())["ok"] is True
    finally:
        connection.close()
    assert_error(api.post("/api/v1/vm", "x" * LIMIT), 400)  # exactly the limit: parsed (and not JSON)


def test_beyond_the_drain_bound_the_connection_is_closed_and_the_server_carries_on(api, monkeypatch):
    monkeypatch.setattr(bodylimit, "DRAIN_BYTES", 64 << 10)
    sock = raw(api)
    closed = threading.Event()

    def send():
        try:
            sock.sendall(b"POST /api/v1/vm HTTP/1.1\r\nHost: x\r\nContent-Length: 104857600\r\n\r\n")
            for _ in range(400):  # 400 x 256 KiB: the server closes long before
                sock.sendall(b" " * (256 << 10))
        except OSError:
            closed.set()

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    sender.join(30)
    sock.close()
    assert closed.is_set()
    assert api.get("/api/v1/status").status == 200
