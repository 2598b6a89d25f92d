"""One way from the IOLoop into the database (docs/architecture.md, "How a request flows"): api/
and manager/ call the state layer only through ``await db.run(function, ...)``, never directly
(a direct call would run on the IOLoop, waiting on PostgreSQL's round trips, and bypass the group
commit); and every public function of db/ that writes is marked ``@writes`` so that ``run`` hands
it to the group commit."""
import ast
import importlib
import inspect
import pathlib

import vmpooler

PACKAGE = pathlib.Path(vmpooler.__file__).parent
#: db/ modules whose writes are deliberately not batched: a lease is renewed on time in its own
#: transaction (manager/leader.py), and the CLI's copy and import run alone
UNBATCHED = {"leases", "copy", "import_redis", "database", "batch", "errors", "models", "events", "notify"}
#: helpers of db/ that write in their caller's name (a function calling them writes)
WRITING_HELPERS = {"transition", "amend", "_move"}
#: modules that reach the database their own way, each for a stated reason
OWN_WAY = {
    # the lease is taken in its own executor thread, never batched: its timing is the fencing
    "manager/leader.py",
}


def _db_aliases(tree: ast.Module) -> dict:
    """{local name: db module} for ``from vmpooler.db import vms as vm_store`` and the like."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "vmpooler.db":
            for alias in node.names:
                aliases[alias.asname or alias.name] = importlib.import_module(f"vmpooler.db.{alias.name}")
    return aliases


def _takes_database(function) -> bool:
    params = list(inspect.signature(function).parameters)
    return bool(params) and params[0] == "db"


def _direct_calls(path: pathlib.Path) -> list:
    tree = ast.parse(path.read_text())
    aliases = _db_aliases(tree)
    found = []

    def visit(node, inside_db_function: bool):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args.posonlyargs + node.args.args
            inside_db_function = bool(args) and args[0].arg == "db"  # itself run through db.run
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id in aliases
                and not inside_db_function):
            target = getattr(aliases[node.func.value.id], node.func.attr, None)
            if inspect.isfunction(target) and _takes_database(target):
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.func.value.id}.{node.func.attr}()")
        for child in ast.iter_child_nodes(node):
            visit(child, inside_db_function)

    visit(tree, False)
    return found


def test_api_and_manager_reach_the_database_only_through_run():
    calls = []
    for layer in ("api", "manager"):
        for path in sorted((PACKAGE / layer).rglob("*.py")):
            if str(path.relative_to(PACKAGE)) not in OWN_WAY:
                calls += _direct_calls(path)
    assert calls == [], "call these through `await db.run(function, ...)`: " + "; ".join(calls)


def _writes(node: ast.FunctionDef) -> bool:
    for inner in ast.walk(node):
        if isinstance(inner, ast.Call):
            func = inner.func
            if isinstance(func, ast.Attribute) and func.attr == "write":
                return True
            if isinstance(func, ast.Name) and func.id in WRITING_HELPERS:
                return True
    return False


def test_every_writing_function_of_db_is_marked():
    unmarked = []
    for path in sorted((PACKAGE / "db").glob("*.py")):
        if path.stem in UNBATCHED or path.stem.startswith("_"):
            continue
        module = importlib.import_module(f"vmpooler.db.{path.stem}")
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_") and _writes(node):
                if not getattr(getattr(module, node.name), "vmpooler_writes", False):
                    unmarked.append(f"db/{path.name}: {node.name}")
    assert unmarked == [], "mark these @writes (vmpooler.db.database.writes): " + ", ".join(unmarked)
