"""The dummy provider's configuration: its knobs (delays and failure chances), where it keeps its
inventory, and its one pool key, ``folder``."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional

from vmpooler.providers.base import ProviderSchema
from vmpooler.settings import Setting, read_settings

#: every knob and its default: ``*_max_time`` a delay in seconds, ``*_fail_percent`` a chance in %
KNOBS = {
    "createvm_max_time": 0.0, "createvm_fail_percent": 0.0,
    "boot_max_time": 0.0, "vmready_fail_percent": 0.0,
    "destroyvm_max_time": 0.0, "destroyvm_max_shutdown_time": 0.0, "destroyvm_fail_percent": 0.0,
    "createsnapshot_max_time": 0.0, "createsnapshot_fail_percent": 0.0,
    "revertsnapshot_max_time": 0.0, "revertsnapshot_fail_percent": 0.0,
    "createdisk_max_time": 0.0, "createdisk_fail_percent": 0.0,
    "getvm_poweroff_percent": 0.0, "getvm_rename_percent": 0.0,
    "listvms_fail_percent": 0.0,
}
#: keys of the original's dummy provider that mean nothing here: accepted without a warning
ACCEPTED = {"connection_pool_size", "connection_pool_timeout", "migratevm_couldmove_percent", "migratevm_max_time",
            "migratevm_fail_percent", "is_ready_timeout", "purge_unconfigured_folders", "folder_whitelist"}
POOL_SETTINGS = (
    Setting("folder", "str", None, "Where the pool's VMs are listed (default: the pool's name)."),
)


@dataclasses.dataclass(frozen=True)
class DummyOptions:
    knobs: Mapping[str, float] = dataclasses.field(hash=False)
    filename: Optional[str]
    seed: Any  # as written (a number or a string): random.Random(seed) replays a run


@dataclasses.dataclass(frozen=True)
class DummyPool:
    folder: str


def parse_options(section: Mapping[str, Any], problems: list) -> DummyOptions:
    knobs = {}
    for key, default in KNOBS.items():
        value = section.get(key)
        if value is None:
            knobs[key] = default
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            problems.append(f"{key}: must be a number >= 0, not {value!r}")
        elif key.endswith("_percent") and value > 100:
            problems.append(f"{key}: must be at most 100, not {value!r}")
        else:
            knobs[key] = float(value)
    filename = section.get("filename")
    if filename is not None and not isinstance(filename, str):
        problems.append(f"filename: must be a path, not {filename!r}")
    return DummyOptions(knobs=knobs, filename=filename, seed=section.get("seed"))


class DummySchema(ProviderSchema):
    PROVIDER_KEYS = frozenset({"provider_class", "filename", "seed", *KNOBS, *ACCEPTED})
    POOL_SETTINGS = POOL_SETTINGS

    def provider_options(self, section, values, settings, problems):
        return parse_options(section, problems)

    def pool_options(self, pool, options, problems):
        folder = read_settings(POOL_SETTINGS, pool, problems)["folder"]
        return DummyPool(folder=folder or str(pool.get("name")))


SCHEMA = DummySchema()
