"""The 3.8.1 input validation of /api/v3, with the original's messages (its input_validator.rb).

Each check raises ``ApiError(400, <the original's message>)``; the handlers call them only for
``ApiVersion.V3`` (v1 and v2 keep their own checks). Where the original answers a 500 (tags that
are not an object, a tag value that is not a string) these answer 400 instead.
"""
from __future__ import annotations

import json
import re

from vmpooler.api.errors import ApiError

MAX_HOSTNAME_LENGTH = 253
MAX_POOL_NAME_LENGTH = 100
MAX_TAG_KEY_LENGTH = 50
MAX_TAG_VALUE_LENGTH = 255
MAX_BODY = 10_240
MAX_DEPTH = 5
MAX_VMS = 100
MAX_DISK_GB = 2048

_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
HOSTNAME = re.compile(rf"{_LABEL}(\.{_LABEL})*", re.IGNORECASE | re.ASCII)
POOL_NAME = re.compile(r"[A-Za-z0-9_-]+")
TAG_KEY = re.compile(r"[A-Za-z0-9_.-]+")
_TAG_VALUE_REFUSED = re.compile(r"[^\w\s\-.@:/]", re.ASCII)
_DIGITS = re.compile(r"\d+", re.ASCII)


def _refuse(message: str):
    raise ApiError(400, message)


def _name(value: str, what: str, limit: int, pattern: re.Pattern) -> None:
    if not value:
        _refuse(f"{what} is required")
    if len(value) > limit:
        _refuse(f"{what} too long")
    if not pattern.fullmatch(value):
        _refuse(f"Invalid {what.lower()} format")


def hostname(raw: str) -> None:
    _name(raw, "Hostname", MAX_HOSTNAME_LENGTH, HOSTNAME)


def pool_name(name: str) -> None:
    _name(name, "Pool name", MAX_POOL_NAME_LENGTH, POOL_NAME)


def integer(value, name: str, low: int, high: int) -> int:
    """``value`` (a JSON number or a string of digits, as the original's ``to_s`` match) within
    low..high."""
    text = str(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else ""
    if not _DIGITS.fullmatch(text):
        _refuse(f"{name} must be a valid integer")
    number = int(text)
    if number < low:
        _refuse(f"{name} must be at least {low}")
    if number > high:
        _refuse(f"{name} must be at most {high}")
    return number


def vm_count(value) -> int:
    return integer(value, "VM count", 1, MAX_VMS)


def disk_size(value) -> int:
    return integer(value, "Disk size", 1, MAX_DISK_GB)


def _deeper_than(value, limit: int) -> bool:
    """Whether ``value`` nests objects and arrays more than ``limit`` levels (as the original's
    json_depth counts them: ``{}`` is 1, a scalar 0); iterative, so any depth is safe to ask."""
    level = [value]
    for _ in range(limit):
        level = [child for item in level if isinstance(item, (dict, list))
                 for child in (item.values() if isinstance(item, dict) else item)]
    return any(isinstance(item, (dict, list)) for item in level)


def json_object(raw: bytes) -> dict:
    """The body as the original's sanitize_json_body reads it: {} when empty; else an object no
    deeper than 5 levels and no larger than 10 KiB."""
    if not raw.strip():
        return {}
    try:
        parsed = json.loads(raw)
    except (ValueError, RecursionError) as error:
        _refuse(f"Invalid JSON: {error}" if isinstance(error, ValueError) else "Request body too complex")
    if not isinstance(parsed, dict):
        _refuse("Request body must be a JSON object")
    if _deeper_than(parsed, MAX_DEPTH):
        _refuse("Request body too complex")
    if len(raw) > MAX_BODY:
        _refuse("Request body too large")
    return parsed


def tag_problem(key, value):
    """The original's message for a bad tag, or None when it is fine (a null value is skipped)."""
    if not isinstance(key, str) or not key:
        return "Tag key is required"
    if len(key) > MAX_TAG_KEY_LENGTH:
        return "Tag key too long"
    if not TAG_KEY.fullmatch(key):
        return "Invalid tag key format"
    if value is None:
        return None
    if isinstance(value, (dict, list, bool)):
        return "Tag value must be a string"  # the original fails with a 500 here
    value = str(value)
    if len(value) > MAX_TAG_VALUE_LENGTH:
        return "Tag value too long"
    if _TAG_VALUE_REFUSED.search(value):
        return "Tag value contains invalid characters"
    return None
