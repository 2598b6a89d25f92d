"""Bounded connections (issue 18 item 6), against a real server process: idle and slow clients
are cut off, connections past max_connections are refused with a 503, and at the file-descriptor
limit (a low ``ulimit -n`` set in the child) the service keeps answering the connections it has and
logs the condition once, not once per failed accept."""
import http.client
import json
import socket
import threading
import time

import pytest

from tests.reliability.harness import ServerProcess, pools_full, wait_until

POOLS = [{"name": "a", "template": "t", "size": 1}]
#: seconds within which a cut-off is expected (the timeouts are 1 s; Tornado's default is an hour)
CUT_WITHIN = 8


@pytest.fixture
def make_server(tmp_path):
    servers = []

    def make(settings, **options):
        workdir = tmp_path / f"server{len(servers)}"
        workdir.mkdir()
        server = ServerProcess(workdir, POOLS, settings=settings, **options)
        servers.append(server.start())
        wait_until(lambda: pools_full(server.client, POOLS), 10, "the pool to fill")
        return server

    yield make
    for server in servers:
        assert server.stop() == 0
        assert "Traceback" not in server.log(), server.log()[-3000:]


def connect(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=CUT_WITHIN)


def seconds_until_closed(sock, trickle: bytes = b"", every: float = 0.2) -> float:
    """Wait for the server to close ``sock`` (EOF or reset), sending ``trickle`` every ``every``
    seconds meanwhile (a slowloris); fails after CUT_WITHIN seconds."""
    started = time.monotonic()
    sock.settimeout(every)
    while time.monotonic() - started < CUT_WITHIN:
        try:
            if sock.recv(65536) == b"":
                return time.monotonic() - started
        except socket.timeout:
            pass
        except ConnectionError:
            return time.monotonic() - started
        if trickle:
            try:
                sock.sendall(trickle)
            except (BrokenPipeError, ConnectionError):
                return time.monotonic() - started
    raise AssertionError(f"the server kept the connection open for {CUT_WITHIN}s")


def answers(server) -> bool:
    return server.client.get("/api/v1/vm", timeout=5).status == 200


def test_idle_and_slow_clients_are_cut_off(make_server):
    server = make_server({"http_idle_timeout": 1, "http_body_timeout": 1})
    idle = connect(server)
    after_answer = connect(server)
    after_answer.sendall(b"GET /api/v1/vm HTTP/1.1\r\nHost: x\r\n\r\n")
    assert after_answer.recv(65536).startswith(b"HTTP/1.1 200")
    slow_head = connect(server)
    slow_head.sendall(b"GET /api/v1/vm HTTP/1.1\r\n")
    slow_body = connect(server)
    slow_body.sendall(b"PUT /api/v1/vm/x HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 100\r\n\r\n{\"tags\":")
    cut = {}
    threads = [threading.Thread(target=lambda name=name, sock=sock, trickle=trickle: cut.update(
        {name: seconds_until_closed(sock, trickle)}))
        for name, sock, trickle in (("idle", idle, b""), ("keep-alive after an answer", after_answer, b""),
                                    ("head sent a header a time", slow_head, b"X-Slow: 1\r\n"),
                                    ("body sent a byte a time", slow_body, b" "))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(CUT_WITHIN + 5)
    print({name: f"{seconds:.2f}s" for name, seconds in cut.items()})
    assert len(cut) == 4, cut  # each was closed by the server (else the thread failed)
    assert answers(server)  # the server went on serving everyone else


def raw_get(server) -> tuple:
    """One GET on a connection of its own, read to the server's close: (status, headers, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("GET", "/api/v1/vm")
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def test_connections_past_max_connections_are_refused_politely(make_server):
    server = make_server({"max_connections": 4, "http_idle_timeout": 30})
    held = []
    for _ in range(4):  # four keep-alive clients, each served once and staying connected
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request("GET", "/api/v1/vm")
        assert connection.getresponse().read()
        held.append(connection)
    for _ in range(3):
        status, headers, body = raw_get(server)
        assert status == 503 and headers["retry-after"] == "1" and headers["connection"] == "close"
        assert json.loads(body) == {"ok": False, "error": "too many connections; try again later"}
    for connection in held:  # the connections it has are served as before
        connection.request("GET", "/api/v1/vm")
        response = connection.getresponse()
        assert response.status == 200 and response.read()
    held.pop().close()
    wait_until(lambda: raw_get(server)[0] == 200, 5, "a free slot to be used")
    for connection in held:
        connection.close()
    # the log is written by a thread of its own (logs.py): wait for the line, then count
    wait_until(lambda: "connections refused (503)" in server.log(), 5, "the refusals to be logged")
    refusals = [line for line in server.log().splitlines() if "connections refused (503)" in line]
    assert len(refusals) == 1, refusals  # three refusals, one line (a minute's worth)
    assert "max_connections is 4" in refusals[0]


def test_at_the_file_descriptor_limit_the_open_connections_are_served_and_it_is_logged_once(make_server):
    # max_connections above what the descriptors allow, so that accept() itself runs out
    server = make_server({"max_connections": 10000, "http_idle_timeout": 30, "reconcile_interval": 3600},
                         fd_limit=64)
    print(f"the server uses {server.open_fds()} of its 64 file descriptors when idle")
    kept = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    kept.request("GET", "/api/v1/vm")
    assert kept.getresponse().read()
    size_before = server.log_path.stat().st_size
    flood = []
    try:
        for _ in range(100):  # the kernel completes these handshakes; the server can accept only some
            flood.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
        wait_until(lambda: "out of file descriptors" in server.log(), 5, "the condition to be logged")
        started = time.monotonic()
        while time.monotonic() - started < 2:  # two seconds at the limit: ~20 paused accept rounds
            kept.request("GET", "/api/v1/vm")
            response = kept.getresponse()
            assert response.status == 200 and response.read()
            time.sleep(0.1)
        log = server.log()
        lines = [line for line in log.splitlines() if "out of file descriptors" in line]
        assert len(lines) == 1, lines
        assert "open connections still served" in lines[0] and "Too many open files" in lines[0]
        grown = server.log_path.stat().st_size - size_before
        assert grown < 64 * 1024, f"the log grew {grown} bytes in 2 s at the limit"
        assert "Traceback" not in log
    finally:
        for sock in flood:
            sock.close()
    kept.close()
    wait_until(lambda: answers(server), 10, "new connections to be accepted again")
