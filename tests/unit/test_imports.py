"""Imports point one way (docs/architecture.md): no cycle anywhere in vmpooler/, imports inside
functions included, and no layer importing one above it. Also: checking a configuration that uses
only the dummy provider never imports pyVmomi."""
import ast
import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE = os.path.join(ROOT, "vmpooler")

#: layer -> the layers it must not import (a layer is the first part under vmpooler/)
FORBIDDEN = {
    "model": "*",  # the leaf: imports nothing of ours
    "settings": {"api", "app", "auth", "cli", "config", "context", "db", "manager", "providers"},
    "providers": {"api", "app", "auth", "cli", "config", "context", "db", "dns", "manager"},
    "dns": {"api", "app", "auth", "cli", "config", "context", "db", "manager", "providers"},
    "db": {"api", "app", "cli", "manager"},
    "api": {"app", "cli", "manager"},
    "config": {"api", "app", "cli", "db", "manager", "providers"},
    "auth_config": {"api", "app", "auth", "cli", "config", "db", "manager", "providers"},
    "dns_config": {"api", "app", "auth", "cli", "config", "db", "dns", "manager", "providers"},
    "prometheus_config": {"api", "app", "auth", "cli", "config", "db", "dns", "manager", "providers"},
    # the pool manager is handed its configuration and database; it never reaches HTTP or auth
    "manager": {"api", "app", "auth", "cli", "config", "context", "operations"},
    # auth stores: the database and their :auth: settings only
    "auth": {"api", "app", "cli", "config", "context", "manager", "metrics", "operations", "providers"},
    # the metrics registry reads the database at scrape time; the loops and handlers call it
    "metrics": {"api", "app", "auth", "cli", "config", "context", "manager", "operations", "providers"},
    # what the handlers share: no handler, loop or provider behind it
    "context": {"api", "app", "auth", "cli", "manager", "operations", "providers"},
    "operations": {"api", "app", "cli", "config", "manager", "providers"},
    # the request rate limits' section, read by config.py
    "rate_limits": {"api", "app", "auth", "cli", "config", "context", "db", "manager", "operations", "providers"},
    "quotas": {"api", "app", "auth", "cli", "config", "context", "db", "manager", "providers"},
    "rate_limits": {"api", "app", "auth", "cli", "config", "context", "db", "manager", "providers"},
    "plugins": {"api", "app", "auth", "cli", "config", "context", "db", "manager", "providers"},
    # the request rate limits' classes and numbers (read by config.py, used by api/ratelimit.py)
    "rate_limits": {"api", "app", "auth", "cli", "config", "context", "db", "manager", "providers"},
    "logs": {"api", "app", "auth", "cli", "config", "context", "db", "manager", "providers"},
    # the top: the command line, the service it assembles, and the package's own entry points
    "app": {"cli"},
    "cli": set(),
    "__main__": set(),
    "vmpooler": set(),
}


def module_name(path: str) -> str:
    relative = os.path.relpath(path, ROOT)[:-len(".py")].split(os.sep)
    return ".".join(relative[:-1] if relative[-1] == "__init__" else relative)


def modules() -> dict:
    """{module name: file path} of every module under vmpooler/."""
    found = {}
    for directory, _dirs, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                found[module_name(path)] = path
    return found


def imports_of(source: str, package: str, known: set) -> set:
    """The modules of ours that ``source`` (a module of ``package``) imports anywhere, functions
    included: for ``from a import b``, ``a.b`` when that is a module, else ``a``."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, one level up per extra dot
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {name for name in found if name == "vmpooler" or name.startswith("vmpooler.")}


def import_graph() -> dict:
    known = modules()
    graph = {}
    for module, path in known.items():
        with open(path, encoding="utf-8") as handle:
            package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
            graph[module] = imports_of(handle.read(), package, set(known)) - {module}
    return graph


def cycles(graph: dict) -> list:
    """Every strongly connected group of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "vmpooler"


def wrong_way(graph: dict) -> list:
    """'a -> b' for each import that points up (see FORBIDDEN)."""
    found = []
    for module, targets in sorted(graph.items()):
        forbidden = FORBIDDEN.get(layer(module), set())
        for target in sorted(targets):
            if layer(target) != layer(module) and (forbidden == "*" or layer(target) in forbidden):
                found.append(f"{module} -> {target}")
    return found


def test_every_layer_has_a_row_of_forbidden_imports():
    """A new module or package under vmpooler/ must say which layers it may not import."""
    assert {layer(module) for module in import_graph()} - set(FORBIDDEN) == set()


def test_no_import_cycle_in_vmpooler():
    assert cycles(import_graph()) == []


def test_imports_point_one_way():
    assert wrong_way(import_graph()) == []


def test_the_checks_see_imports_inside_functions():
    known = {"vmpooler.config", "vmpooler.providers", "vmpooler.providers.base", "vmpooler.model"}
    source = textwrap.dedent("""
        from vmpooler.model import PoolConfig
        def late():
            from vmpooler import config
    """)
    found = imports_of(source, "vmpooler.providers", known)
    assert found == {"vmpooler.model", "vmpooler.config"}
    assert imports_of("from ..model import VMInfo\nfrom . import base\n", "vmpooler.providers", known) == {
        "vmpooler.model", "vmpooler.providers.base"}
    graph = {"vmpooler.providers.base": found, "vmpooler.config": {"vmpooler.providers.base"}, "vmpooler.model": set()}
    assert cycles(graph) == [["vmpooler.config", "vmpooler.providers.base"]]
    assert wrong_way(graph) == ["vmpooler.config -> vmpooler.providers.base",
                                "vmpooler.providers.base -> vmpooler.config"]


def test_model_is_a_leaf_and_settings_import_nothing_above_them():
    graph = import_graph()
    assert graph["vmpooler.model"] == set()
    assert graph["vmpooler.settings"] <= {"vmpooler.model"}


def check_config_in_a_subprocess(tmp_path, yaml_text: str):
    path = tmp_path / "vmpooler.yaml"
    path.write_text(yaml_text)
    program = ("import sys\nfrom vmpooler.cli import main\ncode = main(['check-config', sys.argv[1]])\n"
               "print('pyVmomi imported' if any(m.startswith(('pyVmomi', 'pyVim')) for m in sys.modules) "
               "else 'pyVmomi not imported')\nsys.exit(code)\n")
    return subprocess.run([sys.executable, "-c", program, str(path)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": ROOT})


def test_check_config_of_a_dummy_file_never_imports_pyvmomi(tmp_path):
    result = check_config_in_a_subprocess(tmp_path, ":pools:\n  - name: a\n    template: t\n    size: 1\n")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout and "pyVmomi not imported" in result.stdout


def test_check_config_of_a_vsphere_file_checks_its_keys_without_pyvmomi(tmp_path):
    result = check_config_in_a_subprocess(tmp_path, textwrap.dedent("""
        :providers:
          :vsphere:
            server: vc.example.test
            username: svc
        :pools:
          - name: a
            template: t
            size: 1
            folder: vmpooler/a
            ready_check_port: many
    """))
    assert result.returncode == 1
    assert "providers.vsphere.password: required" in result.stdout
    assert "pools[a].datastore: required for a vSphere pool" in result.stdout
    assert "pools[a].ready_check_port: must be an integer" in result.stdout
    assert "pyVmomi not imported" in result.stdout
