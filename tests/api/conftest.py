"""Shared fixtures of the API tests: a real server on a free port (its own IOLoop in a thread),
a plain HTTP client that can send anything, and seeded VMs; and checks used beyond tests/api/:
a Prometheus scrape read by prometheus_client's parser, an oversized body's 413."""
import asyncio
import base64
import concurrent.futures
import dataclasses
import http.client
import json
import threading

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from tornado.netutil import bind_sockets

from tests.conftest import add_vm, make_config
from vmpooler.api.routes import make_app
from vmpooler.auth import build_auth_store, hash_password
from vmpooler.context import Context
from vmpooler.metrics import build_metrics

PASSWORD = "s3cret-pw"
#: a users store with two users (cheap bcrypt rounds keep the tests fast)
USERS_AUTH = {"provider": "users", "users": {"jdoe": hash_password(PASSWORD, rounds=4),
                                              "other": hash_password(PASSWORD, rounds=4)}}


@dataclasses.dataclass
class Response:
    status: int
    headers: dict
    text: str

    def json(self):
        return json.loads(self.text)


class Client:
    def __init__(self, port: int):
        self.port = port

    def request(self, method, path, body=None, headers=None, token=None, user=None, password=PASSWORD,
                timeout=30) -> Response:
        headers = dict(headers or {})
        if token is not None:
            headers["X-AUTH-TOKEN"] = token
        if user is not None:
            headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers)
            answer = conn.getresponse()
            return Response(answer.status, {k.lower(): v for k, v in answer.getheaders()},
                            answer.read().decode("utf-8"))
        finally:
            conn.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)

    def put(self, path, body=None, **kw):
        return self.request("PUT", path, body=body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)


class Server:
    """The application served on 127.0.0.1:<free port> by an IOLoop in a thread."""

    def __init__(self, app):
        self.app, self.ready = app, threading.Event()
        self.thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)
        self.thread.start()
        self.ready.wait(10)

    async def _main(self):
        state = self.app.settings.get("vmpooler")  # X-Real-IP / X-Forwarded-For with behind_proxy, as app.py serves
        server = HTTPServer(self.app, xheaders=bool(state and state.context.config.settings.behind_proxy))
        sockets = bind_sockets(0, "127.0.0.1")
        self.port = sockets[0].getsockname()[1]
        server.add_sockets(sockets)
        self.loop, self.stopped = IOLoop.current(), asyncio.Event()
        self.ready.set()
        await self.stopped.wait()
        server.stop()
        await server.close_all_connections()

    def stop(self):
        self.loop.add_callback(self.stopped.set)
        self.thread.join(10)


@dataclasses.dataclass
class Api:
    """A running API: its client, context and database, and helpers to seed VMs."""

    client: Client
    context: Context
    wakes: list  # what the manager was asked for: "pass" (wake), "refill" or ("destroy", the VM's row)
    app: object

    @property
    def state(self):
        """The application's shared state (limiter, status cache)."""
        return self.app.settings["vmpooler"]

    @property
    def db(self):
        return self.context.db

    @property
    def config(self):
        return self.context.config

    def add(self, pool="debian-7-i386", state="ready", name=None):
        return add_vm(self.db, self.config.pools_by_name[pool], state, name)

    def checkout(self, pool="debian-7-i386", **kw):
        """Seed a ready VM and check it out through the API (``token=`` passes one); its name."""
        name = self.add(pool)
        assert self.client.post(f"/api/v1/vm/{pool}", **kw).status == 200
        return name

    def token(self, user="jdoe"):
        return self.client.post("/api/v1/token", user=user).json()["token"]

    def __getattr__(self, name):  # api.get(...), api.post(...) go to the client
        return getattr(self.client, name)


ALIAS_POOLS = [
    {"name": "debian-7-i386", "template": "debian-7-i386", "size": 5, "alias": ["debian", "linux"]},
    {"name": "debian-7-x86_64", "template": "debian-7-x86_64", "size": 3, "alias": ["linux"]},
    {"name": "centos-6-x86_64", "template": "centos-6-x86_64", "size": 2, "alias": "centos"},
]


@pytest.fixture
def start_api(db):
    """start_api(pools=None, settings=None, auth=None, **sections) -> Api (stopped after the test)."""
    servers, executors = [], []

    def start(pools=None, settings=None, auth=None, **sections):
        if auth is not None:
            sections["auth"] = auth
        config = make_config(pools, settings, **sections)
        executor = concurrent.futures.ThreadPoolExecutor(2)
        wakes = []
        context = Context(config=config, db=db, auth=build_auth_store(config), executor=executor,
                          wake=lambda: wakes.append("pass"), refill=lambda: wakes.append("refill"),
                          destroy=lambda vm: wakes.append(("destroy", vm)),
                          metrics=build_metrics(config, db))
        app = make_app(context)
        server = Server(app)
        servers.append(server)
        executors.append(executor)
        return Api(Client(server.port), context, wakes, app)

    yield start
    for server in servers:
        server.stop()
    for executor in executors:
        executor.shutdown(wait=True)


#: the API prefixes every route is served under (one set of handlers, see vmpooler/api/version.py)
VERSIONS = ["/api/v1", "/api/v2", "/api/v3"]


@pytest.fixture(params=VERSIONS)
def base(request):
    """Each API prefix in turn: a test taking ``base`` runs once per version, on the same fixtures."""
    return request.param


@pytest.fixture
def api(start_api):
    """No auth, the two example pools, domain company.com."""
    return start_api(settings={"domain": "company.com"})


@pytest.fixture
def auth_api(start_api):
    """A users auth store (jdoe, other), domain company.com."""
    return start_api(settings={"domain": "company.com", "vm_lifetime_auth": 48}, auth=USERS_AUTH)


def vm_row(api, name):
    from vmpooler.db import vms as vm_store

    return vm_store.latest(api.db, name)


def states(api, names):
    return {name: vm_row(api, name).state for name in names}


def scrape(client: Client, path="/prometheus"):
    """(text, {family name: family}) of one scrape, read by prometheus_client's own parser."""
    response = client.get(path)
    assert response.status == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return response.text, {family.name: family for family in text_string_to_metric_families(response.text)}


def values(families, family: str, sample: str = None, **match) -> dict:
    """{poolname (or the labels left): value} of the samples named ``sample`` matching ``match``."""
    found = {}
    for s in families[family].samples if family in families else ():
        if s.name == (sample or families[family].samples[0].name) and all(s.labels.get(k) == v
                                                                          for k, v in match.items()):
            found[s.labels.get("poolname", tuple(sorted(s.labels.items())))] = s.value
    return found


def assert_too_large(client: Client, body, timeout: float = 10) -> dict:
    """POST ``body`` (bytes; an iterable of chunks is sent chunked) to /api/v1/vm on a connection
    of its own: it must be answered 413 with a JSON error (not reset), and the same connection must
    then still answer a GET /api/v1/status (the server read the refused body to its end). Returns
    the error body."""
    connection = http.client.HTTPConnection("127.0.0.1", client.port, timeout=timeout)
    try:
        connection.request("POST", "/api/v1/vm", body=body, encode_chunked=not isinstance(body, bytes))
        response = connection.getresponse()
        assert response.status == 413, response.status
        assert response.getheader("content-type") == "application/json"
        error = json.loads(response.read())
        assert error["ok"] is False and error["error"], error
        connection.request("GET", "/api/v1/status")
        assert connection.getresponse().status == 200
        return error
    finally:
        connection.close()


def assert_error(response, status, with_message=True):
    """A JSON error: the status, Content-Type application/json, ok false (and an error text)."""
    assert response.status == status, (response.status, response.text)
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["ok"] is False
    if with_message:
        assert isinstance(body.get("error"), str) and body["error"]
    if status == 401:
        assert response.headers["www-authenticate"] == 'Basic realm="Authentication required"'
    return body
