"""The :prometheus: section (the original's keys: prefix, prometheus_prefix, prometheus_endpoint),
validated for config.py."""
from __future__ import annotations

import dataclasses
import re
from typing import Optional

from vmpooler.settings import Setting, check_setting, mapping_of, unknown_key


@dataclasses.dataclass(frozen=True)
class PrometheusConfig:
    """The original's :prometheus: section (defaults as its Promstats applies them)."""

    #: the value of the ``vmpooler_instance`` label on every sample
    prefix: str = "vmpooler"
    #: the start of every metric name
    prometheus_prefix: str = "vmpooler"
    #: the path the exposition is served at
    prometheus_endpoint: str = "/prometheus"


_METRIC_PREFIX = re.compile(r"^[A-Za-z_:][A-Za-z0-9_:]*$")
_ENDPOINT = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@/-]+$")


def prometheus_section(section, problems, warnings) -> Optional[PrometheusConfig]:
    """None without the section, or with it empty (``:prometheus:`` and nothing under it), as the original."""
    if section is None:
        return None
    section = mapping_of(section, "prometheus", problems)
    values = {}
    for key, value in section.items():
        key = str(key).strip(":")
        if key not in PrometheusConfig.__dataclass_fields__:
            warnings.append(unknown_key("prometheus", key, PrometheusConfig.__dataclass_fields__))
            continue
        value = check_setting(Setting(key, "str", None, ""), value, f"prometheus.{key}", problems)
        if value is not None:
            values[key] = value
    prefix = values.get("prometheus_prefix")
    if prefix is not None and not _METRIC_PREFIX.match(prefix):
        problems.append(f"prometheus.prometheus_prefix: must start a Prometheus metric name (letters, digits, "
                        f"'_' and ':', not starting with a digit), not {prefix!r}")
    endpoint = values.get("prometheus_endpoint")
    if endpoint is not None and not _ENDPOINT.match(endpoint):
        problems.append(f"prometheus.prometheus_endpoint: must be a path such as /prometheus, not {endpoint!r}")
    return PrometheusConfig(**values)

