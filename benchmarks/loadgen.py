"""A closed-loop HTTP/1.1 keep-alive load generator in pure Python.

Worker processes (forked, so they compete with the server like any client would) each drive a
share of the clients over raw sockets with one selector loop: no thread per client, no HTTP
library on the hot path. A *script* is a generator function ``script(client_index, **params)``
that yields requests ``(method, path, body, tag)`` (or ``("SLEEP", seconds)``) and receives
``(status, body)``; whatever it returns is handed back to the caller. Every run is bounded by
count (the script ends) and by time (``duration``), so it always stops by itself.
"""
from __future__ import annotations

import dataclasses
import http.client
import multiprocessing
import selectors
import socket
import threading
import time
from typing import Callable, Optional

HOST = "127.0.0.1"
#: a response that takes longer than this aborts the run (the server is stuck)
STUCK_SECONDS = 30.0


@dataclasses.dataclass
class LoadResult:
    requests: int  # completed after the warm-up
    seconds: float  # from the end of the warm-up to the last completion
    latencies: dict  # tag -> sorted list of seconds
    statuses: dict  # (tag, status) -> count
    returned: list  # what each client's script returned, by client index
    #: CPU seconds the server process used meanwhile, when the caller measured it (scenarios.burst)
    cpu_seconds: Optional[float] = None

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def count(self, tag=None, status=None) -> int:
        return sum(n for (t, s), n in self.statuses.items()
                   if (tag is None or t == tag) and (status is None or s == status))

    def percentile(self, q: float, tag=None) -> float:
        """The q-th percentile latency in ms (nearest rank), over one tag or all."""
        values = self.latencies.get(tag) if tag is not None else sorted(
            v for vs in self.latencies.values() for v in vs)
        if not values:
            return float("nan")
        index = min(len(values) - 1, max(0, int(round(q / 100.0 * len(values) + 0.5)) - 1))
        return values[index] * 1000.0


class _Client:
    def __init__(self, sock, script):
        self.sock, self.script = sock, script
        self.buffer = bytearray()
        self.tag, self.sent_at, self.wake_at = None, 0.0, None
        self.result, self.done = None, False

    def advance(self, answer):
        """Feed the last answer to the script and send what it asks next (or finish)."""
        try:
            step = self.script.send(answer)
        except StopIteration as stop:
            self.result, self.done = stop.value, True
            return
        if step[0] == "SLEEP":
            self.wake_at = time.monotonic() + step[1]
            return
        method, path, body, self.tag = step
        body = body or b""
        head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\n"
        if body or method in ("POST", "PUT"):
            head += f"Content-Length: {len(body)}\r\nContent-Type: application/json\r\n"
        self.sent_at = time.monotonic()
        self.sock.sendall(head.encode() + b"\r\n" + body)

    def response(self):
        """(status, body) once a whole response is buffered, else None."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        length = 0
        for line in head[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding":
                raise RuntimeError("chunked responses are not supported by the load generator")
        if len(self.buffer) < end + 4 + length:
            return None
        body = bytes(self.buffer[end + 4:end + 4 + length])
        del self.buffer[:end + 4 + length]
        return int(head[0].split(" ", 2)[1]), body


def _worker(port, script, params, indexes, start, duration, warmup, queue):
    try:
        queue.put(("ok", _drive(port, script, params, indexes, start, duration, warmup)))
    except BaseException as error:  # reported to the caller, which raises it
        queue.put(("error", f"{type(error).__name__}: {error}"))


def _drive(port, script, params, indexes, start, duration, warmup):
    selector = selectors.DefaultSelector()
    clients = []
    ports = list(port) if isinstance(port, (list, tuple)) else [port]
    for index in indexes:
        # with several ports (several server processes), client i talks to port i mod n: a balancer's round robin
        sock = socket.create_connection((HOST, ports[index % len(ports)]), timeout=STUCK_SECONDS)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client = _Client(sock, script(index, **params))
        clients.append(client)
        selector.register(sock, selectors.EVENT_READ, client)
    start.wait(STUCK_SECONDS)
    began = time.monotonic()
    measured_from, deadline = began + warmup, began + warmup + duration
    latencies, statuses, requests, last = {}, {}, 0, measured_from
    for client in clients:  # start each script: it sends its first request
        client.advance(None)
    while True:
        now = time.monotonic()
        live = [c for c in clients if not c.done]
        if not live:
            break
        sleeping = [c for c in live if c.wake_at is not None]
        timeout = max(0.0, min(c.wake_at for c in sleeping) - now) if sleeping else 1.0
        if now > deadline + STUCK_SECONDS:
            raise RuntimeError("the server stopped answering")
        for key, _mask in selector.select(timeout):
            client = key.data
            chunk = client.sock.recv(262144)
            if not chunk:
                raise RuntimeError("the server closed a keep-alive connection")
            client.buffer += chunk
            answer = client.response()
            if answer is None:
                continue
            done_at = time.monotonic()
            if done_at >= measured_from:
                requests += 1
                last = done_at
                latencies.setdefault(client.tag, []).append(done_at - client.sent_at)
                statuses[(client.tag, answer[0])] = statuses.get((client.tag, answer[0]), 0) + 1
            if done_at >= deadline:
                client.script.close()
                client.done = True
            else:
                client.advance(answer)
        now = time.monotonic()
        for client in sleeping:
            if not client.done and client.wake_at <= now:
                client.wake_at = None
                if now >= deadline:
                    client.script.close()
                    client.done = True
                else:
                    client.advance(("SLEPT", b""))
    for client in clients:
        client.sock.close()
    return {"requests": requests, "from": measured_from, "last": last, "latencies": latencies,
            "statuses": statuses, "returned": {i: c.result for i, c in zip(indexes, clients)}}


def run(port, script: Callable, clients: int, duration: float, warmup: float = 0.0,
        processes: int = 2, **params) -> LoadResult:
    """Run ``clients`` copies of ``script`` against 127.0.0.1:``port`` (an int, or a list of ports
    the clients are spread over) from ``processes`` worker processes, for at most ``warmup + duration`` seconds (less when every script ends)."""
    context = multiprocessing.get_context("fork")
    processes = max(1, min(processes, clients))
    start, queue = context.Event(), context.Queue()
    shares = [list(range(clients))[p::processes] for p in range(processes)]
    workers = [context.Process(target=_worker, args=(port, script, params, share, start, duration, warmup, queue),
                               daemon=True) for share in shares]
    for worker in workers:
        worker.start()
    time.sleep(0.05)
    start.set()
    outcomes = [queue.get(timeout=warmup + duration + 2 * STUCK_SECONDS) for _ in workers]
    for worker in workers:
        worker.join(5)
    errors = [detail for kind, detail in outcomes if kind == "error"]
    if errors:
        raise RuntimeError("load generator: " + "; ".join(errors))
    return _merged([detail for _kind, detail in outcomes], clients)


def _merged(parts: list, clients: int) -> LoadResult:
    """One LoadResult from the parts (dicts of ``_drive``'s shape) that drove the clients."""
    latencies, statuses, returned = {}, {}, [None] * clients
    for part in parts:
        for tag, values in part["latencies"].items():
            latencies.setdefault(tag, []).extend(values)
        for key, n in part["statuses"].items():
            statuses[key] = statuses.get(key, 0) + n
        for index, value in part["returned"].items():
            returned[index] = value
    for values in latencies.values():
        values.sort()
    began = min(part["from"] for part in parts)
    ended = max(part["last"] for part in parts)
    return LoadResult(sum(p["requests"] for p in parts), max(ended - began, 1e-9), latencies, statuses, returned)


# --- the second generator: http.client in threads --------------------------------------------
def run_threads(port: int, script: Callable, clients: int, duration: float, warmup: float = 0.0,
                processes: int = 0, **params) -> LoadResult:
    """The same scripts and result as ``run``, but each client is a thread with its own keep-alive
    ``http.client.HTTPConnection``, in this process: what most Python CI scripts do. Its own
    overhead (the GIL, http.client's parsing) is part of what it measures, so a figure that moves
    between the two generators depends on the client. ``processes`` is accepted and ignored."""
    start = threading.Barrier(clients + 1, timeout=STUCK_SECONDS)
    parts, errors = [None] * clients, []

    def client(index):
        try:
            parts[index] = _drive_http(port, script(index, **params), index, start, duration, warmup)
        except BaseException as error:  # reported to the caller, which raises it
            errors.append(f"{type(error).__name__}: {error}")
            start.abort()
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    try:
        start.wait()
    except threading.BrokenBarrierError:
        pass
    for thread in threads:
        thread.join(warmup + duration + 2 * STUCK_SECONDS)
    if errors or any(part is None for part in parts):
        raise RuntimeError("load generator (threads): " + ("; ".join(errors) or "a client did not finish"))
    return _merged(parts, clients)


def _drive_http(port, steps, index, start, duration, warmup) -> dict:
    conn = http.client.HTTPConnection(HOST, port, timeout=STUCK_SECONDS)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    start.wait()
    began = time.monotonic()
    measured_from, deadline = began + warmup, began + warmup + duration
    latencies, statuses, requests, last, answer, result = {}, {}, 0, measured_from, None, None
    try:
        while True:
            try:
                step = steps.send(answer)
            except StopIteration as stop:
                result = stop.value
                break
            if step[0] == "SLEEP":
                time.sleep(step[1])
                answer = ("SLEPT", b"")
            else:
                method, path, body, tag = step
                headers = {"Content-Type": "application/json"} if body or method in ("POST", "PUT") else {}
                sent_at = time.monotonic()
                conn.request(method, path, body=body or (b"" if headers else None), headers=headers)
                response = conn.getresponse()
                answer = (response.status, response.read())
                done_at = time.monotonic()
                if done_at >= measured_from:
                    requests, last = requests + 1, done_at
                    latencies.setdefault(tag, []).append(done_at - sent_at)
                    statuses[(tag, answer[0])] = statuses.get((tag, answer[0]), 0) + 1
            if time.monotonic() >= deadline:
                steps.close()
                break
    finally:
        conn.close()
    return {"requests": requests, "from": measured_from, "last": last, "latencies": latencies,
            "statuses": statuses, "returned": {index: result}}


# --- scripts ---------------------------------------------------------------------------------
def repeat(index, paths, method="GET", tag=None):
    """Request ``paths`` in turn (each client starting at its own offset), until time is up."""
    position = index * 7919
    while True:
        yield method, paths[position % len(paths)], None, tag or method
        position += 1
