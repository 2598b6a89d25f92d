"""Every benchmark module imports: the suite loads its scenario modules only when they run, so a
name one of them imports from another could go missing unnoticed until a benchmark run."""
import importlib
import os

import pytest

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
MODULES = sorted(name[:-3] for name in os.listdir(BENCHMARKS) if name.endswith(".py") and name != "__init__.py")


@pytest.mark.parametrize("name", MODULES)
def test_the_benchmark_module_imports(name):
    importlib.import_module(f"benchmarks.{name}")
