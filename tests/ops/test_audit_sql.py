"""Every example query of docs/operations.md ("Example queries") runs on SQLite against a database
seeded through the state layer, and answers the question it claims to."""
import datetime
import os
import re
import sqlite3

import pytest

from tests.conftest import make_config, new_vm
from tests.test_cli import ROOT
from vmpooler.auth.tokens import issue, token_hash
from vmpooler.db import events
from vmpooler.db import checkout as checkout_store
from vmpooler.db import vms as vm_store
from vmpooler.db.database import Database
from vmpooler.model import AttemptKind, Retry

CLONE = AttemptKind.CLONE

POOLS = [{"name": "debian-7-i386", "template": "debian-7-i386", "size": 3},
         {"name": "centos-7-x86_64", "template": "centos-7-x86_64", "size": 2}]


def at(clock: str, day: int = 1) -> datetime.datetime:
    return datetime.datetime.strptime(f"2026-12-{day:02d} {clock}", "%Y-%m-%d %H:%M")


def documented_queries() -> dict:
    """The first comment line of each ```sql block under "Example queries" -> the block."""
    text = open(os.path.join(ROOT, "docs", "operations.md"), encoding="utf-8").read()
    section = text.split("### Example queries", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sql\n(.*?)```", section, re.S)
    return {block.splitlines()[0].lstrip("- ").strip(): block for block in blocks}


class Seeder:
    def __init__(self, db):
        self.db, self.config = db, make_config(POOLS)

    def row(self, vm_id):
        with self.db.read() as conn:
            return events.fetch(conn, vm_id)

    def ready(self, pool, name, created, ready):
        vm_id = new_vm(self.db, self.config.pools_by_name[pool], name, created)
        vm_store.cloned(self.db, self.row(vm_id), created + datetime.timedelta(minutes=1))
        vm_store.became_ready(self.db, self.row(vm_id), ready)
        return vm_id

    def check_out(self, pool, token, user, now):
        owner = checkout_store.Owner(token_hash(token), user)
        taken = checkout_store.checkout(self.db, [checkout_store.Want(pool, (pool,), 1)], now, 12, owner=owner)
        return taken[pool][0].name

    def returned(self, vm_id, now, reason="deleted by the client", destroy=True):
        vm_store.complete(self.db, self.row(vm_id), reason, now)
        if destroy:
            vm_store.destroyed(self.db, self.row(vm_id), now + datetime.timedelta(minutes=1))


@pytest.fixture
def seeded(tmp_path):
    """A day of life in two pools (see the expectations in the test)."""
    db = Database(f"sqlite:///{tmp_path / 'vmpooler.db'}")
    db.upgrade()
    seed = Seeder(db)
    jdoe = issue(db, "jdoe", at("07:00"))
    other = issue(db, "other", at("07:00"))
    brisk = seed.ready("debian-7-i386", "brisk-otter", at("08:00"), at("08:02"))
    idle = seed.ready("debian-7-i386", "idle-wren", at("08:00"), at("08:03"))
    assert seed.check_out("debian-7-i386", jdoe, "jdoe", at("09:00")) == "brisk-otter"
    seed.returned(idle, at("09:03"), reason="ready for more than 60 minutes")
    quiet = seed.ready("debian-7-i386", "quiet-lynx", at("09:00"), at("09:05"))
    assert seed.check_out("debian-7-i386", jdoe, "jdoe", at("10:00")) == "quiet-lynx"
    seed.returned(quiet, at("10:30"), reason="reached the end of its lifetime")
    seed.returned(brisk, at("11:00"))
    # the name again, two days later, for someone else
    seed.ready("debian-7-i386", "brisk-otter", at("08:00", day=3), at("08:02", day=3))
    assert seed.check_out("debian-7-i386", other, "other", at("09:00", day=3)) == "brisk-otter"
    seed.ready("debian-7-i386", "fresh-newt", at("12:00"), at("12:05"))
    # centos: a clone that failed twice, and a VM whose destroy was given up
    calm = new_vm(db, seed.config.pools_by_name["centos-7-x86_64"], "calm-heron", at("08:00"))
    vm_store.attempt_failed(db, seed.row(calm), CLONE, "template not found", at("08:01"), Retry(1, at("08:02")))
    vm_store.attempt_failed(db, seed.row(calm), CLONE, "template not found", at("08:05"), Retry(2, None))
    vm_store.destroyed(db, seed.row(calm), at("08:06"))
    slow = seed.ready("centos-7-x86_64", "slow-mole", at("08:00"), at("08:10"))
    assert seed.check_out("centos-7-x86_64", other, "other", at("12:00")) == "slow-mole"
    seed.returned(slow, at("13:00"), destroy=False)
    vm_store.attempt_failed(db, seed.row(slow), AttemptKind.DESTROY, "NoPermission", at("13:05"), Retry(1, None))
    db.dispose()
    with sqlite3.connect(tmp_path / "vmpooler.db") as raw:
        yield raw, {"jdoe": jdoe, "other": other}


def run(raw, sql):
    return [tuple(row) for row in raw.execute(sql).fetchall()]


def test_every_documented_query_answers_its_question(seeded):
    raw, tokens = seeded
    queries = documented_queries()
    assert len(queries) == 6, list(queries)
    answers = {title: run(raw, sql) for title, sql in queries.items()}
    find = lambda words: next(answer for title, answer in answers.items() if title.startswith(words))

    who = find("who had VM brisk-otter")
    assert [(name, user, token) for name, user, token, *_ in who] == [("brisk-otter", "jdoe", tokens["jdoe"][:8])]
    assert [(name, hours) for name, _pool, _out, _back, hours in find("every VM a user had")] == [
        ("brisk-otter", 2.0), ("quiet-lynx", 0.5)]
    assert find("how long checkouts last per pool") == [("centos-7-x86_64", 1, 1.0, 1.0),
                                                        ("debian-7-i386", 2, 1.25, 2.0)]
    assert find("failures by template") == [("centos-7-x86_64", 2, 2, 1, 1), ("debian-7-i386", 5, 0, 0, 0)]
    left = find("why VMs left their pools")
    assert [(pool, count) for pool, _reason, count in left] == [("centos-7-x86_64", 1), ("debian-7-i386", 1)]
    assert left[0][1].startswith("clone failed 2 times, giving up") and left[1][1] == "ready for more than 60 minutes"
    assert find("what each pool holds now") == [("centos-7-x86_64", "failed", 1), ("debian-7-i386", "ready", 1),
                                                ("debian-7-i386", "running", 1)]
