"""The tree's shape: no module of vmpooler/ past 400 lines, and one way to run a statement in the
state layer's VM modules (prepared or not, the same call shape: no isinstance bridge)."""
import ast
import pathlib

import vmpooler
from vmpooler.db import vm_statements
from vmpooler.db.prepared import PlainRead, PlainWrite, PreparedRead, PreparedWrite

PACKAGE = pathlib.Path(vmpooler.__file__).parent
MAX_LINES = 400
#: the modules that run every statement through the one call shape of db/prepared.py
ONE_WAY = ("db/vms.py", "db/checkout.py", "db/events.py", "db/tasks.py")


def test_no_module_is_over_400_lines():
    long = {str(path.relative_to(PACKAGE)): n for path in PACKAGE.rglob("*.py")
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}, "split these modules"


def test_the_checkout_has_its_own_module():
    from vmpooler.db import checkout, vms
    assert callable(checkout.checkout) and not hasattr(vms, "checkout") and not hasattr(vms, "Shortfall")


def test_statements_run_one_way():
    for name in ONE_WAY:
        tree = ast.parse((PACKAGE / name).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                assert not (node.func.attr == "execute" and ast.unparse(node.func.value) == "conn"), \
                    f"{name}:{node.lineno}: conn.execute; wrap the statement (PlainRead/PlainWrite or prepared)"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "isinstance":
                assert "Prepared" not in ast.unparse(node), f"{name}:{node.lineno}: an isinstance bridge"
    statements = [value for value in vars(vm_statements).values()
                  if isinstance(value, (PlainRead, PlainWrite, PreparedRead, PreparedWrite))]
    assert len(statements) >= 12
    for statement in statements:  # one call shape whichever runs it
        shape = ("execute",) if isinstance(statement, (PlainWrite, PreparedWrite)) else ("first", "all")
        assert all(callable(getattr(statement, method)) for method in shape)


def test_mypy_runs_before_the_tests_in_ci():
    """.ci/run runs scripts/test.sh, which type-checks vmpooler/ (mypy.ini) before pytest and
    stops on an error; mypy comes with the test extras."""
    root = PACKAGE.parent
    script = (root / "scripts" / "test.sh").read_text(encoding="utf-8")
    assert "bash scripts/test.sh" in (root / ".ci" / "run").read_text(encoding="utf-8")
    assert "set -euo pipefail" in script
    assert 0 <= script.index(".venv/bin/mypy --config-file mypy.ini") < script.index("-m pytest")
    assert "files = vmpooler" in (root / "mypy.ini").read_text(encoding="utf-8")
    assert '"mypy' in (root / "setup.py").read_text(encoding="utf-8")
