"""What the original vmpooler (0.18 to 3.x) keeps in Redis, read into plain values.

The key layout is the original's (docs/migrating.md lists it): state queues are sets
``vmpooler__<state>__<pool>``, a VM's facts the hash ``vmpooler__vm__<name>``, tokens the hashes
``vmpooler__token__<token>`` (in clear: we keep only their hashes), on-demand requests
``vmpooler__odrequest__<id>`` with their VMs in ``vmpooler__<id>__<alias>__<pool>``, run-time pool
changes in ``vmpooler__config__{poolsize,template,clone_target}``, duration samples in
``vmpooler__{clone,boot}__<date>``. Nothing here writes, to Redis or to our database.
"""
from __future__ import annotations

import dataclasses
import datetime
from typing import Dict, List, Optional, Tuple

#: the original's state queues, in the order a VM found in two of them is taken (a live queue
#: beats completed; ``migrating`` only marks VMs that are also running and is not a state)
QUEUES = ("running", "ready", "pending", "completed", "discovered")


@dataclasses.dataclass
class OriginalVM:
    name: str
    pool: str
    queue: str  # one of QUEUES
    fields: Dict[str, str]  # the vmpooler__vm__<name> hash
    checkout: Optional[datetime.datetime] = None  # from the hash, else vmpooler__active__<pool>


@dataclasses.dataclass
class OriginalToken:
    token: str
    user: Optional[str]
    created: Optional[datetime.datetime]
    last: Optional[datetime.datetime]


@dataclasses.dataclass
class OriginalRequest:
    request_id: str
    requested: List[Tuple[str, str, int]]  # (alias as asked, pool, count)
    status: Optional[str]  # None while it is being provisioned; ready, failed or deleted
    token: Optional[str]
    user: Optional[str]
    created: Optional[datetime.datetime]
    failure: Optional[str]
    delivered: Dict[Tuple[str, str], List[str]]  # (alias, pool) -> VM names handed to it


@dataclasses.dataclass
class OriginalState:
    pools: List[str]
    vms: List[OriginalVM]
    tokens: List[OriginalToken]
    requests: List[OriginalRequest]
    overrides: Dict[str, Dict[str, str]]  # setting (size, template, clone_target) -> {pool: value}
    resets: List[str]
    durations: List[Tuple[str, str, str, float, datetime.date]]  # (kind, pool, vm, seconds, day)
    dead_letters: List[dict]  # the 3.x dead-letter queue's entries (their JSON), any queue
    unreadable_dead_letters: int = 0


_OVERRIDE_KEYS = {"size": "vmpooler__config__poolsize", "template": "vmpooler__config__template",
                  "clone_target": "vmpooler__config__clone_target"}


def parse_time(value: Optional[str]) -> Optional[datetime.datetime]:
    """A time as the original writes it (Ruby's ``Time#to_s``, ``2026-12-06 11:20:00 +0000``, or
    ISO 8601), as naive UTC; None when absent or unreadable."""
    if not value:
        return None
    for parse in (lambda text: datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S %z"),
                  datetime.datetime.fromisoformat):
        try:
            moment = parse(value.strip())
        except ValueError:
            continue
        if moment.tzinfo is not None:
            moment = moment.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return moment
    return None


def read(client) -> OriginalState:
    """Everything the import carries over, from a ``redis.Redis`` client (decode_responses=True)."""
    vms = _read_vms(client)
    return OriginalState(
        pools=sorted(client.smembers("vmpooler__pools")), vms=vms, tokens=_read_tokens(client),
        requests=_read_requests(client),
        overrides={setting: client.hgetall(key) for setting, key in _OVERRIDE_KEYS.items()},
        resets=sorted(client.smembers("vmpooler__poolreset")), durations=_read_durations(client),
        **_read_dead_letters(client))


def _read_vms(client) -> List[OriginalVM]:
    found: Dict[str, OriginalVM] = {}
    for queue in QUEUES:
        prefix = f"vmpooler__{queue}__"
        for key in sorted(client.scan_iter(prefix + "*")):
            pool = key[len(prefix):]
            for name in sorted(client.smembers(key)):
                found.setdefault(name, OriginalVM(name, pool, queue, {}))
    for vm in found.values():
        vm.fields = client.hgetall(f"vmpooler__vm__{vm.name}")
        vm.checkout = parse_time(vm.fields.get("checkout") or client.hget(f"vmpooler__active__{vm.pool}", vm.name))
    return sorted(found.values(), key=lambda vm: (vm.pool, vm.name))


def _read_tokens(client) -> List[OriginalToken]:
    tokens = []
    for key in sorted(client.scan_iter("vmpooler__token__*")):
        fields = client.hgetall(key)
        tokens.append(OriginalToken(key[len("vmpooler__token__"):], fields.get("user"),
                                    parse_time(fields.get("created")), parse_time(fields.get("last"))))
    return tokens


def _read_requests(client) -> List[OriginalRequest]:
    requests = []
    for key in sorted(client.scan_iter("vmpooler__odrequest__*")):
        request_id = key[len("vmpooler__odrequest__"):]
        fields = client.hgetall(key)
        requested = []
        for part in filter(None, fields.get("requested", "").split(",")):
            alias, pool, count = part.rsplit(":", 2)
            requested.append((alias, pool, int(count)))
        score = client.zscore("vmpooler__provisioning__request", request_id)
        if score is None:
            score = client.zscore("vmpooler__provisioning__processing", request_id)
        created = (datetime.datetime.fromtimestamp(score, datetime.timezone.utc).replace(tzinfo=None)
                   if score is not None else None)
        delivered = {(alias, pool): sorted(client.smembers(f"vmpooler__{request_id}__{alias}__{pool}"))
                     for alias, pool, _count in requested}
        requests.append(OriginalRequest(request_id, requested, fields.get("status"), fields.get("token:token"),
                                        fields.get("token:user"), created,
                                        fields.get("failure_reason"), delivered))
    return requests


def _read_durations(client) -> list:
    samples = []
    for kind in ("clone", "boot"):
        prefix = f"vmpooler__{kind}__"
        for key in sorted(client.scan_iter(prefix + "*")):
            try:
                day = datetime.date.fromisoformat(key[len(prefix):])
            except ValueError:
                continue  # vmpooler__clone__<something else>: not a day's samples
            for pool_vm, seconds in client.hgetall(key).items():
                pool, _, vm = pool_vm.partition(":")
                try:
                    samples.append((kind, pool, vm, float(seconds), day))
                except ValueError:
                    continue
    return samples


def _read_dead_letters(client) -> dict:
    """3.8.1's dead-letter queue: sorted sets ``vmpooler__dlq__<queue>`` of ``<vm>:<epoch>:<json>``."""
    import json

    found, unreadable = [], 0
    for key in sorted(client.scan_iter("vmpooler__dlq__*")):
        for member in client.zrange(key, 0, -1):
            try:
                entry = json.loads(member.split(":", 2)[2])
                if not isinstance(entry, dict) or not entry.get("vm") or not entry.get("pool"):
                    raise ValueError("no vm or pool")
            except (IndexError, ValueError):
                unreadable += 1
                continue
            entry.setdefault("queue_from", key[len("vmpooler__dlq__"):])
            found.append(entry)
    return {"dead_letters": found, "unreadable_dead_letters": unreadable}
