"""contrib/vmpooler.service: systemd accepts it (systemd-analyze verify, where installed), it is
hardened, and its ExecStart is a command line vmpooler understands."""
import os
import re
import shlex
import shutil
import subprocess

import pytest

from tests.test_cli import ROOT
from vmpooler import cli

UNIT = os.path.join(ROOT, "contrib", "vmpooler.service")
HARDENING = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
             "PrivateDevices": "yes", "StateDirectory": "vmpooler", "CapabilityBoundingSet": "",
             "RestrictSUIDSGID": "yes", "User": "vmpooler"}


def directives() -> dict:
    """section -> key -> [values] (systemd allows a key several times, which configparser does not)."""
    sections, current = {}, None
    for line in open(UNIT, encoding="utf-8"):
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if re.fullmatch(r"\[\w+\]", line):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, value = line.split("=", 1)
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_the_unit_is_hardened_and_keeps_its_database_in_the_state_directory():
    service = directives()["Service"]
    for key, value in HARDENING.items():
        assert service.get(key) == [value], key
    assert service["Environment"] == ["DATABASE_URL=sqlite:////var/lib/vmpooler/vmpooler.db"]
    assert directives()["Install"]["WantedBy"] == ["multi-user.target"]


def test_exec_start_is_a_command_line_vmpooler_accepts():
    argv = shlex.split(directives()["Service"]["ExecStart"][0])
    assert argv[0].startswith("/")
    args = cli.parser().parse_args(argv[1:])
    assert args.command == "serve" and args.log_format == "json" and args.config == "/etc/vmpooler/vmpooler.yaml"


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_finds_nothing(tmp_path):
    # verify checks that the ExecStart binary exists: point it at one that does
    text = open(UNIT, encoding="utf-8").read().replace("/opt/vmpooler/bin/vmpooler", shutil.which("true"))
    unit = tmp_path / "vmpooler.service"
    unit.write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr
