"""The whole service with a pool whose DNS setup is BIND 9 over RFC 2136: every ready VM has its A
record, answers carry the pool's domain, a destroyed VM's record goes; a DNS server that refuses
keeps VMs from being handed out, and one that comes up late gets them registered (retried)."""
import tempfile

from sqlalchemy import select

from tests.dns.bind import LOCKED_ZONE, ZONE, Named
from tests.reliability.harness import service_config, wait_until
from tests.service import InProcessService
from vmpooler.db import vms as vm_store
from vmpooler.db.models import vm_events as events_table
from vmpooler.db.models import vms as vms_table
from vmpooler.model import READY

POOLS = [{"name": "dns-pool", "template": "t", "size": 2, "dns_plugin": "lab"},
         {"name": "plain-pool", "template": "t", "size": 2}]


def ready_names(service, pool: str) -> set:
    return {vm.name for vm in vm_store.live_in_pool(service.db, pool) if vm.state == READY}


def every_vm(service, pool: str) -> list:
    with service.db.engine.connect() as conn:
        return list(conn.execute(select(vms_table).where(vms_table.c.pool == pool)))


def start(tmp_path, dns_entry, pools=POOLS, **settings):
    return InProcessService(service_config(tmp_path, pools, settings={"domain": "default.test", **settings},
                                           dns_configs={"lab": dns_entry}))


def test_ready_vms_have_records_answers_carry_the_domain_and_delete_removes_the_record(tmp_path, named):
    service = start(tmp_path, named.section())
    try:
        wait_until(lambda: len(ready_names(service, "dns-pool")) == len(ready_names(service, "plain-pool")) == 2,
                   30, "both pools full")
        for name in ready_names(service, "dns-pool"):  # the dummy provider's VMs report 127.0.0.1
            assert named.query(f"{name}.{ZONE}") == ["127.0.0.1"], name
        assert all(named.query(f"{name}.{ZONE}") == [] for name in ready_names(service, "plain-pool"))

        taken = service.post("/vm/dns-pool").json()
        name = taken["dns-pool"]["hostname"]
        assert taken["domain"] == ZONE and "." not in name
        shown = service.get(f"/vm/{name}.{ZONE}").json()[name]  # the FQDN names the VM too
        assert shown["domain"] == ZONE and shown["state"] == "running"
        plain = service.post("/vm/plain-pool").json()
        assert plain["domain"] == "default.test"
        assert service.get(f"/vm/{plain['plain-pool']['hostname']}").json()[plain["plain-pool"]["hostname"]][
            "domain"] == "default.test"

        both = service.post("/vm/dns-pool+plain-pool").json()  # two domains: one `domain` cannot be right
        assert "domain" not in both
        assert both["dns-pool"]["hostname"].endswith(f".{ZONE}")
        assert both["plain-pool"]["hostname"].endswith(".default.test")

        wait_until(lambda: len(ready_names(service, "dns-pool")) >= 1, 30, "a ready VM again")
        v3 = service.client.post("/api/v3/vm/dns-pool").json()  # 3.x clients: FQDNs, no top-level domain
        assert "domain" not in v3 and v3["dns-pool"]["hostname"].endswith(f".{ZONE}")
        short = v3["dns-pool"]["hostname"].split(".", 1)[0]
        assert service.client.get(f"/api/v3/vm/{short}").json()[short]["fqdn"] == f"{short}.{ZONE}"

        assert service.delete(f"/vm/{name}").status == 200
        wait_until(lambda: vm_store.latest(service.db, name).state == "destroyed", 30, f"{name} destroyed")
        assert named.query(f"{name}.{ZONE}") == []
        wait_until(lambda: len(ready_names(service, "dns-pool")) == 2, 30, "the pool refilled")
        assert all(named.query(f"{n}.{ZONE}") == ["127.0.0.1"] for n in ready_names(service, "dns-pool"))
    finally:
        service.stop()


def test_a_refused_update_gives_the_vm_up_and_it_is_never_handed_out(tmp_path, named):
    service = start(tmp_path, named.section(domain=LOCKED_ZONE), pools=POOLS[:1], clone_attempts=5)
    try:
        def given_up():
            return [vm for vm in every_vm(service, "dns-pool") if vm.state == "destroyed"]

        gone = wait_until(given_up, 30, "a VM given up for its refused record")
        assert "REFUSED" in gone[0].last_error and gone[0].clone_attempts == 1  # permanent: no retry
        assert gone[0].ready_at is None and gone[0].checkout_at is None
        assert ready_names(service, "dns-pool") == set()
        assert service.post("/vm/dns-pool").status == 503
        letters = service.get("/dlq?pool=dns-pool").json()["dlq"]  # kept as any clone given up
        letter = next(entry for entry in letters if entry["vm"] == gone[0].name)
        assert letter["queue_from"] == "clone" and letter["error_class"] == "PermanentDnsError"
        assert "REFUSED" in letter["error_message"]
    finally:
        service.stop()


def test_a_dns_server_down_is_retried_until_it_answers(tmp_path):
    late = Named(tempfile.mkdtemp(dir=tmp_path))
    service = start(tmp_path, late.section(timeout=0.5), pools=POOLS[:1], clone_attempts=1000,
                    retry_backoff=0.05, retry_backoff_max=0.2)
    try:
        wait_until(lambda: any(vm.clone_attempts >= 2 for vm in vm_store.live_in_pool(service.db, "dns-pool")), 30,
                   "failed DNS updates retried")
        assert ready_names(service, "dns-pool") == set()
        late.start()
        wait_until(lambda: len(ready_names(service, "dns-pool")) == 2, 30, "the pool full once DNS answers")
        for name in ready_names(service, "dns-pool"):
            assert late.query(f"{name}.{ZONE}") == ["127.0.0.1"]
    finally:
        service.stop()
        late.stop()



def checked_out_with_record(service, server) -> str:
    wait_until(lambda: ready_names(service, "dns-pool"), 30, "a ready VM")
    name = service.post("/vm/dns-pool").json()["dns-pool"]["hostname"]
    assert server.query(f"{name}.{ZONE}") == ["127.0.0.1"]
    return name


def test_a_record_removal_that_fails_is_retried_with_the_destroy(tmp_path):
    server = Named(tempfile.mkdtemp(dir=tmp_path))
    server.start()
    service = start(tmp_path, server.section(timeout=0.3), pools=POOLS[:1], destroy_attempts=1000,
                    retry_backoff=0.05, retry_backoff_max=0.2)
    try:
        name = checked_out_with_record(service, server)
        server.pause()
        assert service.delete(f"/vm/{name}").status == 200
        wait_until(lambda: vm_store.latest(service.db, name).destroy_attempts >= 2, 30, "the removal retried")
        assert vm_store.latest(service.db, name).state == "completed"  # not destroyed without its record gone
        server.resume()
        wait_until(lambda: vm_store.latest(service.db, name).state == "destroyed", 30, f"{name} destroyed")
        assert server.query(f"{name}.{ZONE}") == []
    finally:
        service.stop()
        server.stop()


def test_a_record_that_cannot_be_removed_leaves_the_vm_destroyed_and_says_so(tmp_path):
    server = Named(tempfile.mkdtemp(dir=tmp_path))
    server.start()
    service = start(tmp_path, server.section(timeout=0.3), pools=POOLS[:1], destroy_attempts=2,
                    retry_backoff=0.05, retry_backoff_max=0.1)
    try:
        name = checked_out_with_record(service, server)
        server.stop()  # stopped, not paused: no update sent meanwhile can reach it later
        assert service.delete(f"/vm/{name}").status == 200
        wait_until(lambda: vm_store.latest(service.db, name).state == "destroyed", 30, f"{name} destroyed")
        with service.db.engine.connect() as conn:
            reasons = [row.reason for row in conn.execute(
                select(events_table).where(events_table.c.vm_id == vm_store.latest(service.db, name).id))]
        assert any(reason.startswith("destroyed; its DNS record could not be removed: DNS lab: removing")
                   for reason in reasons), reasons
        assert name not in service.dummy.names()
        server.start()  # the zone as it was (BIND's journal): the record is left behind, as the log says
        assert server.query(f"{name}.{ZONE}") == ["127.0.0.1"]
    finally:
        service.stop()
        server.stop()


def test_a_ready_vm_whose_address_changes_gets_its_record_updated(tmp_path, named):
    service = start(tmp_path, named.section(), pools=POOLS[:1])
    try:
        wait_until(lambda: len(ready_names(service, "dns-pool")) == 2, 30, "the pool full")
        name = sorted(ready_names(service, "dns-pool"))[0]
        assert named.query(f"{name}.{ZONE}") == ["127.0.0.1"]
        service.dummy.readdress(name, "127.0.0.2")
        wait_until(lambda: named.query(f"{name}.{ZONE}") == ["127.0.0.2"], 30, "the record following the address")
        assert vm_store.latest(service.db, name).state == READY
    finally:
        service.stop()
