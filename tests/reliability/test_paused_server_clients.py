"""Clients that time out while the server process is paused (SIGSTOP): the issue's probe left 13
of 14 such checkouts running for nobody. A real server process; the clients connect and send
while it is stopped (the kernel queues both), give up after 0.3 s and close; the server, resumed,
reads each checkout, makes it, finds the client gone and hands the VM back."""
import signal
import socket
import time

from sqlalchemy import select

from tests.reliability.harness import ServerProcess, pools_full, wait_until
from vmpooler.db.models import vm_events, vms

POOLS = [{"name": "a", "template": "t", "size": 14}]
REQUEST = b"POST /api/v1/vm/a HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"


def checkout_given_up(port: int) -> None:
    """Send a checkout, wait 0.3 s for an answer that cannot come, give up (close: FIN)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=2)
    sock.sendall(REQUEST)
    sock.settimeout(0.3)
    try:
        assert sock.recv(1) == b"", "a stopped server answered"
    except socket.timeout:
        pass
    sock.close()


def events_to(db, state: str, reason_prefix: str = "") -> list:
    with db.read() as conn:
        query = select(vm_events).where(vm_events.c.to_state == state, vm_events.c.reason.like(reason_prefix + "%"))
        return list(conn.execute(query))


def test_checkouts_whose_clients_gave_up_during_a_pause_are_handed_back(tmp_path):
    server = ServerProcess(tmp_path, POOLS, settings={"vm_checktime": 1})
    server.start()
    db = None
    try:
        wait_until(lambda: pools_full(server.client, POOLS), 20, "the pool full")
        server.process.send_signal(signal.SIGSTOP)
        try:
            for _ in range(14):
                checkout_given_up(server.port)
        finally:
            server.process.send_signal(signal.SIGCONT)
        db = server.database()
        wait_until(lambda: len(events_to(db, "ready", "handed back: ")) == 14, 15, "14 checkouts handed back")
        time.sleep(0.3)
        with db.read() as conn:
            held = conn.execute(select(vms.c.name).where(vms.c.state == "running")).all()
        assert held == []  # no VM running for nobody
        assert len(events_to(db, "running")) == 14  # each checkout was made, then handed back
        assert pools_full(server.client, POOLS)  # and the VMs are handed out again
        assert server.client.post("/api/v1/vm/a").status == 200
        assert "Traceback" not in server.log()
        assert server.stop() == 0
    finally:
        if db is not None:
            db.dispose()
        server.kill_if_running()
