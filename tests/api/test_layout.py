"""The API's layout: resource modules never import each other (shared parts live in non-resource
modules), and the checkout is a plain function any caller can use without a handler."""
import ast
import asyncio
import inspect
import pathlib

import pytest

import vmpooler.api
from vmpooler.api import checkout as api_checkout
from vmpooler.api import dashboard
from vmpooler.api.errors import ApiError
from vmpooler.api.routes import ROUTES, V3_ROUTES

API_DIR = pathlib.Path(vmpooler.api.__file__).parent
#: the modules whose handlers serve routes (routes.py itself is the table, not a resource)
RESOURCES = ({handler.__module__ for _path, handler, _aliased in ROUTES}
             | {handler.__module__ for _path, handler in V3_ROUTES}
             | {handler.__module__ for _name, _pattern, handler in dashboard.ROUTES}) - {"vmpooler.api.routes"}


def imported_modules(path: pathlib.Path) -> set:
    """Every vmpooler.api module ``path`` imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vmpooler.api"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)  # from vmpooler.api import x
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("vmpooler.api"))
    return found


def test_resource_modules_do_not_import_each_other():
    assert {"vmpooler.api.vm", "vmpooler.api.vms", "vmpooler.api.status", "vmpooler.api.poolstat"} <= RESOURCES
    for module in sorted(RESOURCES):
        path = API_DIR / (module.rsplit(".", 1)[1] + ".py")
        others = imported_modules(path) & (RESOURCES - {module})
        assert not others, f"{module} imports the resource module(s) {sorted(others)}"


def test_every_api_module_is_small():
    for path in API_DIR.glob("*.py"):
        assert len(path.read_text().splitlines()) < 400, path.name


def test_the_checkout_is_a_plain_function(api):
    assert inspect.isfunction(api_checkout.checkout)
    name = api.add()
    body = asyncio.run(api_checkout.checkout(api.context, {"debian-7-i386": 1}, None)).body  # no handler, no token
    assert body == {"ok": True, "debian-7-i386": {"hostname": name}, "domain": "company.com"}
    assert api.wakes
    with pytest.raises(ApiError) as refused:
        asyncio.run(api_checkout.checkout(api.context, {"debian-7-i386": 1}, None))
    assert refused.value.status == 503
