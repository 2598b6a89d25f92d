"""The settings are one declared frozen dataclass: read as attributes, never by a string key,
every attribute read anywhere in the tree names one of its fields, and the loader's rows are
derived from those fields."""
import ast
import dataclasses
import os
from typing import Optional

import pytest

from tests.conftest import make_config
from vmpooler.settings import SETTINGS, SETTINGS_BY_KEY, Setting, Settings, build_settings, check_setting, setting
from vmpooler import settings as settings_module

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: Tornado's own ``settings`` dicts (application.settings, RequestHandler.settings) are read this way
DICT_METHODS = {"get", "setdefault", "items", "keys", "values", "update", "pop"}


def python_files():
    for top in ("vmpooler", "tests", "benchmarks"):
        for directory, _dirs, files in os.walk(os.path.join(ROOT, top)):
            yield from (os.path.join(directory, name) for name in files if name.endswith(".py"))


def _is_settings(node) -> bool:
    return (isinstance(node, ast.Name) and node.id == "settings") or \
        (isinstance(node, ast.Attribute) and node.attr == "settings")


def _tornado_settings(tree) -> set:
    """The ``self.settings`` nodes inside Tornado Application and RequestHandler subclasses: those
    are Tornado's own settings dict, not ours."""
    found = set()
    for cls in ast.walk(tree):
        if isinstance(cls, ast.ClassDef) and any(ast.unparse(base).endswith(("Application", "Handler"))
                                                  for base in cls.bases):
            found.update(id(node) for node in ast.walk(cls) if isinstance(node, ast.Attribute)
                         and node.attr == "settings" and isinstance(node.value, ast.Name) and node.value.id == "self")
    return found


def settings_reads():
    """(place, how, key) for each ``<...>settings.<name>``, ``<...>settings["key"]`` and
    ``.setting("key")`` in the tree (Tornado's own settings excepted)."""
    for path in python_files():
        with open(path, encoding="utf-8") as handle:
            tree = ast.parse(handle.read())
        place, tornado = os.path.relpath(path, ROOT), _tornado_settings(tree)
        for node in ast.walk(tree):
            if getattr(node, "value", None) is not None and id(node.value) in tornado:
                continue
            if isinstance(node, ast.Attribute) and _is_settings(node.value):
                yield f"{place}:{node.lineno}", "attribute", node.attr
            elif isinstance(node, ast.Subscript) and _is_settings(node.value) and \
                    isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
                yield f"{place}:{node.lineno}", "subscript", node.slice.value
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr in ("setting", "get") and node.args and isinstance(node.args[0], ast.Constant) \
                    and (node.func.attr == "setting" or _is_settings(node.func.value)):
                yield f"{place}:{node.lineno}", node.func.attr, node.args[0].value


def test_every_settings_attribute_read_names_a_key_of_the_table():
    unknown = [f"{place}: settings.{name}" for place, how, name in settings_reads()
               if how == "attribute" and name not in SETTINGS_BY_KEY and name not in DICT_METHODS]
    assert unknown == []


def test_no_setting_is_looked_up_by_a_string():
    by_string = [f"{place}: {how} {key!r}" for place, how, key in settings_reads()
                 if how != "attribute" and key in SETTINGS_BY_KEY]
    assert by_string == []


def test_the_settings_object_is_frozen_and_complete():
    settings = make_config(settings={"task_limit": 3, "allowed_tags": ["user"]}).settings
    assert isinstance(settings, Settings)
    assert settings.task_limit == 3 and settings.vm_lifetime == 24 and settings.allowed_tags == ("user",)
    assert [field.name for field in dataclasses.fields(Settings)] == [row.key for row in SETTINGS]
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.task_limit = 4
    with pytest.raises(AttributeError):
        getattr(settings, "task_limt")  # a typo is an AttributeError (and fails the test above)


def test_settings_with_overrides():
    assert build_settings({}).task_limit == SETTINGS_BY_KEY["task_limit"].default
    assert dataclasses.replace(build_settings({"prefix": "ci-"}), task_limit=1).prefix == "ci-"
    with pytest.raises(TypeError):
        build_settings({"no_such_key": 1})


def test_settings_is_a_declared_dataclass_whose_fields_carry_the_documentation():
    """Declared in the module's source (so mypy and readers see every key), not built at run time
    from a table; each field's metadata holds its doc text, variable and bounds."""
    with open(settings_module.__file__, encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    declared = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "Settings")
    names = [node.target.id for node in declared.body if isinstance(node, ast.AnnAssign)]
    assert names == [field.name for field in dataclasses.fields(Settings)]
    task_limit = next(field for field in dataclasses.fields(Settings) if field.name == "task_limit")
    assert task_limit.metadata["env"] == "TASK_LIMIT" and task_limit.metadata["minimum"] == 1
    assert task_limit.metadata["doc"].startswith("Clones in flight")
    row = SETTINGS_BY_KEY["vm_lifetime_auth"]
    assert (row.kind, row.default, row.env, row.minimum) == ("number", None, "VM_LIFETIME_AUTH", 0)
    assert SETTINGS_BY_KEY["allowed_tags"].kind == "list" and SETTINGS_BY_KEY["circuit_breaker_enabled"].kind == "bool"


def test_a_field_of_a_type_the_loader_cannot_read_is_refused():
    @dataclasses.dataclass(frozen=True)
    class Odd:
        when: Optional[complex] = setting(None, "no such kind")

    with pytest.raises(TypeError, match="complex"):
        settings_module._rows(Odd)


def test_bounds_are_enforced_both_ways():
    row, problems = Setting("share", "number", 0.5, "a fraction", minimum=0, maximum=1), []
    assert check_setting(row, "0.25", "config.share", problems) == 0.25 and problems == []
    assert check_setting(row, 2, "config.share", problems) == 0.5
    assert problems == ["config.share: must be at most 1, not 2.0"]
