"""What docs/ name exists in the code: every route a doc names (with its method) is served, every
configuration key in docs/configuration.md's tables is one the code reads, and every metric in
docs/operations.md's table is exposed. (The other way round, code to docs, is checked beside each
table: tests/unit/test_config.py, tests/api/test_openapi.py, tests/api/test_metrics.py.)"""
import ast
import fnmatch
import os
import re

import pytest
import tornado.httputil
import tornado.web

from tests.conftest import make_config
from vmpooler.api.base import NotFoundHandler
from vmpooler.api.routes import make_app
from vmpooler.api.version import ApiVersion
from vmpooler.auth import build_auth_store
from vmpooler.context import Context
from vmpooler.metrics import Metrics

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: the docs that describe this service: all of docs/ but performance.md, which also names its
#: benchmarks' own routes
DOCS = sorted(name for name in os.listdir(os.path.join(ROOT, "docs"))
              if name.endswith(".md") and name != "performance.md")
METHODS = ("GET", "POST", "PUT", "DELETE", "HEAD")


def doc(name: str) -> str:
    with open(os.path.join(ROOT, "docs", name), encoding="utf-8") as handle:
        return handle.read()


def documented_routes() -> set:
    """(method, path) for each ``METHOD /path`` the docs name; a ``<placeholder>`` becomes a sample
    value (the first of ``<a|b>``), ``[optional]`` parts and queries are dropped."""
    found = set()
    for name in DOCS:
        text = doc(name).replace("&lt;", "<").replace("&gt;", ">")
        # a path ends at a space, a quote, a comma or a table cell's | (an escaped \| is part of it)
        for method, path in re.findall(rf"\b({'|'.join(METHODS)}) (/(?:[^\s`|,)*\\]|\\\|)*)", text):
            path = re.sub(r"\[[^\]]*\]*\]", "", path)  # [/<name>], [+<pool>...], [?history=1]
            path = path.split("?")[0].split("[")[0].rstrip(".:")  # and what a comma cut: [?view=a
            path = re.sub(r"<([^>|]+)(\|[^>]*)?>", lambda m: m.group(1).split("\\")[0] if m.group(2) else "x1",
                          path)
            # a\|b in a table: either segment; the first stands for both
            path = "/".join(segment.split("\\|")[0] for segment in path.split("/"))
            found.add((method, path))
    return found


def served_by(app, method: str, path: str):
    """The handler class that answers ``method path``, or None (the JSON 404, or no such method)."""
    for candidate in (path, *(version.prefix + path for version in ApiVersion)):
        request = tornado.httputil.HTTPServerRequest(
            start_line=tornado.httputil.RequestStartLine(method, candidate, "HTTP/1.1"),
            headers=tornado.httputil.HTTPHeaders({"Host": "127.0.0.1"}))
        handler = app.find_handler(request).handler_class
        if handler is NotFoundHandler:
            continue
        if getattr(handler, method.lower()) is not getattr(tornado.web.RequestHandler, method.lower()):
            return handler
    return None


def test_every_documented_route_is_served(db):
    config = make_config(prometheus={})
    context = Context(config=config, db=db, auth=build_auth_store(config), executor=None,
                      wake=lambda: None, refill=lambda: None, metrics=Metrics(config, db))
    app = make_app(context)
    routes = documented_routes()
    assert {("PUT", "/vm/x1"), ("POST", "/vm/x1/snapshot"), ("DELETE", "/config/poolsize/x1")} <= routes  # parsed
    missing = sorted(f"{method} {path}" for method, path in routes if served_by(app, method, path) is None)
    assert missing == []


def names_in_the_code() -> set:
    """Every string constant and every declared field (``key: type = ...`` in a class, as the
    ``Settings`` dataclass declares the core keys) in vmpooler/'s source: a key the code reads is
    one of them."""
    found = set()
    for directory, _dirs, files in os.walk(os.path.join(ROOT, "vmpooler")):
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(directory, name), encoding="utf-8") as handle:
                    tree = ast.parse(handle.read())
                found.update(node.value for node in ast.walk(tree)
                             if isinstance(node, ast.Constant) and isinstance(node.value, str))
                found.update(node.target.id for node in ast.walk(tree)
                             if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name))
    return found


def test_every_documented_configuration_key_is_read_by_the_code():
    literals = names_in_the_code()
    keys = set()
    for row in re.findall(r"^\| ([^|]*`[^|]*) \|", doc("configuration.md"), re.M):
        keys.update(key.strip(":") for key in re.findall(r"`([^`]+)`", row))
    assert {"task_limit", "ready_check_port", "service_account_hash", "migratevm_*"} <= keys  # the parsing works
    unknown = sorted(key for key in keys if not fnmatch.filter(literals, key))
    assert unknown == []


def test_every_documented_metric_is_exposed(db):
    config = make_config(prometheus={})
    exposition = Metrics(config, db).exposition().decode()
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", exposition, re.M))  # also those without samples yet
    exposed = set(types) | {name + "_total" for name, kind in types.items() if kind == "counter"}
    documented = []
    for row in re.findall(r"^\| (`P_[^|]*) \|", doc("operations.md"), re.M):
        names = re.findall(r"`([^`]+)`", row)
        for name in names:  # `P_a_b_c`, `_d`: the second is `P_a_b_d`
            documented.append(name if name.startswith("P_") else documented[-1].rsplit("_", 1)[0] + name)
    assert "P_ondemandrequest_fail_invalid" in documented  # the parsing works
    missing = sorted(name for name in documented if name.replace("P_", "vmpooler_", 1) not in exposed)
    assert missing == []
