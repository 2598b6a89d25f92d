"""Scenario: filling a pool of 8 real QEMU guests through the libvirt provider, against a floor
script doing the same linked clones with plain libvirt-python (volume, define, start, wait for
port 22 of ``<vm>.vmpool.test``) with the same concurrency.

Both run in the lab of tests/libvirt/lab.py (root; its Debian packages), each inside the lab's
network namespace so that both resolve the guests' names through the network's dnsmasq, one
after the other on the same template, every guest of one run destroyed before the next. Eight TCG
guests booting at once on two cores take 33-47 s from one run to the next, floor or service, so
the two alternate for ROUNDS rounds and their medians are compared.
Run alone: ``python benchmarks/libvirt.py [count] [rounds]`` (or ``benchmarks/run.py --only libvirt``).
"""
from __future__ import annotations

import concurrent.futures
import datetime
import os
import re
import socket
import statistics
import sqlite3
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

COUNT = 8
ROUNDS = 3
PORT = 22


def floor(uri: str, count: int, domain: str, storage_pool: str, template: str) -> float:
    """Seconds from the first clone to the last guest answering on port 22 (runs in the netns)."""
    import libvirt

    def clone(n: int) -> None:
        conn = libvirt.open(uri)
        try:
            name = f"floor{n}"
            base = conn.lookupByName(template)
            xml = base.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
            source = re.search(r"<source file='([^']+)'", xml).group(1)
            backing = conn.storageVolLookupByPath(source)
            volume = conn.storagePoolLookupByName(storage_pool).createXML(
                f"<volume><name>{name}-vda.qcow2</name><capacity>{backing.info()[1]}</capacity>"
                f"<target><format type='qcow2'/></target><backingStore><path>{source}</path>"
                f"<format type='qcow2'/></backingStore></volume>", 0)
            xml = re.sub(r"<uuid>.*?</uuid>|<mac [^>]*/>", "", xml).replace(f"<name>{template}</name>",
                                                                            f"<name>{name}</name>")
            xml = xml.replace(source, volume.path()).replace(
                "</os>", "<smbios mode='sysinfo'/></os><sysinfo type='smbios'><system>"
                f"<entry name='serial'>ds=nocloud;h={name}</entry></system></sysinfo>")
            conn.defineXML(xml).create()
        finally:
            conn.close()
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            try:
                socket.create_connection((f"{name}.{domain}", PORT), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"{name} never answered")

    began = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        for future in [pool.submit(clone, n) for n in range(count)]:
            future.result()
    return time.perf_counter() - began


def remove_all(lab) -> None:
    """Every guest and volume but the template's: what a run left."""
    import libvirt

    from tests.libvirt.lab import TEMPLATE
    conn = lab.connect()
    try:
        for domain in conn.listAllDomains(0):
            if domain.name() != TEMPLATE:
                if domain.isActive():
                    domain.destroy()
                domain.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
        storage = conn.storagePoolLookupByName("vmpooler")
        for volume in storage.listAllVolumes(0):
            if not volume.name().startswith(TEMPLATE):
                volume.delete(0)
    finally:
        conn.close()


def through_service(lab, count: int, workdir: str) -> float:
    """Seconds from the first clone requested to the last VM ready, from the service's database."""
    import yaml

    from tests.libvirt.lab import DOMAIN, NETWORK, STORAGE_POOL, TEMPLATE
    from tests.test_cli import free_port

    database = os.path.join(workdir, "bench.db")
    config = os.path.join(workdir, "bench.yaml")
    pool = {"name": "bench", "template": TEMPLATE, "size": count, "provider": "libvirt",
            "storage_pool": STORAGE_POOL, "network": NETWORK}
    with open(config, "w", encoding="utf-8") as handle:
        yaml.safe_dump({":providers:": {":libvirt:": {"uri": lab.uri}}, ":pools:": [pool],
                        ":database:": {"url": f"sqlite:///{database}"},
                        ":config:": {"domain": DOMAIN, "task_limit": count, "check_loop_delay_min": 0.2,
                                     "vm_checktime": 1}}, handle)
    log = open(os.path.join(workdir, "bench.log"), "ab")
    server = subprocess.Popen(lab.netns_command(sys.executable, "-m", "vmpooler", "serve", "--config", config,
                                                "--host", "127.0.0.1", "--port", str(free_port())),
                              stdout=subprocess.DEVNULL, stderr=log, env={**os.environ, "PYTHONPATH": ROOT})
    try:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            time.sleep(1)
            if server.poll() is not None:
                raise RuntimeError(f"the service exited with {server.returncode}; see {log.name}")
            row = _fill_times(database)
            if row and row[2] >= count:
                first, last = (datetime.datetime.fromisoformat(value) for value in row[:2])
                return (last - first).total_seconds()
        raise TimeoutError("the pool did not fill")
    finally:
        server.terminate()
        server.wait(60)
        log.close()


def _fill_times(database: str):
    if not os.path.exists(database):
        return None
    try:
        with sqlite3.connect(database) as conn:
            return conn.execute("SELECT min(created_at), max(ready_at), count(ready_at) FROM vms "
                                "WHERE pool = 'bench'").fetchone()
    except sqlite3.OperationalError:  # not migrated yet
        return None


def measure(count: int = COUNT, rounds: int = ROUNDS) -> tuple:
    """(service seconds, floor seconds): the medians of ``rounds`` runs each, alternating."""
    from tests.libvirt.lab import DOMAIN, STORAGE_POOL, TEMPLATE, Lab

    lab = Lab().start()
    service_runs, floor_runs = [], []
    try:
        for _ in range(rounds):
            output = subprocess.run(lab.netns_command(
                sys.executable, os.path.abspath(__file__), "--floor", lab.uri, str(count), DOMAIN, STORAGE_POOL,
                TEMPLATE), capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": ROOT})
            floor_runs.append(float(output.stdout.split()[-1]))
            remove_all(lab)
            with tempfile.TemporaryDirectory() as workdir:
                service_runs.append(through_service(lab, count, workdir))
            remove_all(lab)
        print(f"runs: service {', '.join(f'{v:.1f}' for v in service_runs)} s; "
              f"floor {', '.join(f'{v:.1f}' for v in floor_runs)} s", file=sys.stderr)
        return statistics.median(service_runs), statistics.median(floor_runs)
    finally:
        lab.stop()


def fill_through_libvirt(run) -> list:
    from benchmarks.harness import Row

    count = COUNT
    try:
        seconds, floor_seconds = measure(count)
    except Exception as error:  # no root, no packages: the row says so
        return [Row("libvirt", "not run", float("nan"), "", note=repr(error))]
    return [Row("libvirt", f"fill a pool of {count} QEMU guests (clone, boot, port 22)", seconds, "s", floor_seconds,
                f"libvirt-python script, {count} threads", "<= 1.1x floor", seconds <= 1.1 * floor_seconds,
                f"first clone requested -> last VM ready (from the database); medians of {ROUNDS} alternating runs")]


if __name__ == "__main__":
    # run as a script, this file's folder comes first on sys.path, and "import libvirt" would
    # import this file: the repository's root replaces it
    sys.path[:] = [ROOT] + [path for path in sys.path
                            if os.path.abspath(path or ".") != os.path.join(ROOT, "benchmarks")]
    if sys.argv[1:2] == ["--floor"]:
        uri, count, domain, storage_pool, template = sys.argv[2:7]
        print(floor(uri, int(count), domain, storage_pool, template))
    else:
        service, floor_time = measure(*(int(arg) for arg in sys.argv[1:3]))
        print(f"service: {service:.1f} s  floor: {floor_time:.1f} s (medians)  ratio: {service / floor_time:.2f}x "
              f"(target <= 1.1x)")
