"""What the tests that run a real server of their own (slapd, named) share: a free port on
loopback, and stopping, pausing and resuming the server's process."""
import signal
import socket
import subprocess
from typing import Optional


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop_process(process: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)


class PausableServer:
    """The process of a test's own server (``process``, set by the subclass's start): stopped even
    while paused, paused with SIGSTOP (connections are still accepted, the kernel's backlog, but
    nothing answers) and resumed."""

    process: Optional[subprocess.Popen] = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a paused server cannot act on SIGTERM
            stop_process(self.process)
        self.process = None

    def pause(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)
