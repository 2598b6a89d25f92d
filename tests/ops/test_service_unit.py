"""contrib/vmpooler.service and the template contrib/vmpooler@.service: systemd accepts them (systemd-analyze verify, where installed), it is
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
TEMPLATE = os.path.join(ROOT, "contrib", "vmpooler@.service")
HARDENING = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
             "PrivateDevices": "yes", "StateDirectory": "vmpooler", "CapabilityBoundingSet": "",
             "RestrictSUIDSGID": "yes", "User": "vmpooler"}


def directives(path=UNIT) -> dict:
    """section -> key -> [values] (systemd allows a key several times, which configparser does not)."""
    sections, current = {}, None
    for line in open(path, encoding="utf-8"):
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if re.fullmatch(r"\[\w+\]", line):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, value = line.split("=", 1)
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.mark.parametrize("path", [UNIT, TEMPLATE])
def test_the_units_are_hardened_alike(path):
    service = directives(path)["Service"]
    for key, value in HARDENING.items():
        assert service.get(key) == [value], key
    assert directives(path)["Install"]["WantedBy"] == ["multi-user.target"]
    plain = {key: values for key, values in directives()["Service"].items() if key not in ("ExecStart", "Environment")}
    assert {key: values for key, values in service.items() if key not in ("ExecStart", "Environment")} == plain


def test_the_single_unit_keeps_its_database_in_the_state_directory():
    assert directives()["Service"]["Environment"] == ["DATABASE_URL=sqlite:////var/lib/vmpooler/vmpooler.db"]


def test_the_template_takes_its_port_from_the_instance_and_its_role_from_the_environment():
    service = directives(TEMPLATE)["Service"]
    assert service["Environment"] == ["VMPOOLER_ROLE=all"]  # no SQLite file: several processes need PostgreSQL
    argv = shlex.split(service["ExecStart"][0])
    port, role = argv[argv.index("--port") + 1], argv[argv.index("--role") + 1]
    assert (port, role) == ("%i", "${VMPOOLER_ROLE}")
    args = cli.parser().parse_args([a.replace("%i", "4568").replace("${VMPOOLER_ROLE}", "api") for a in argv[1:]])
    assert (args.command, args.port, args.role, args.log_format) == ("serve", 4568, "api", "json")


def test_exec_start_is_a_command_line_vmpooler_accepts():
    argv = shlex.split(directives()["Service"]["ExecStart"][0])
    assert argv[0].startswith("/")
    args = cli.parser().parse_args(argv[1:])
    assert args.command == "serve" and args.log_format == "json" and args.config == "/etc/vmpooler/vmpooler.yaml"


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
@pytest.mark.parametrize("path, name", [(UNIT, "vmpooler.service"), (TEMPLATE, "vmpooler@4568.service")])
def test_systemd_analyze_verify_finds_nothing(tmp_path, path, name):
    # verify checks that the ExecStart binary exists: point it at one that does
    text = open(path, encoding="utf-8").read().replace("/opt/vmpooler/bin/vmpooler", shutil.which("true"))
    unit = tmp_path / name
    unit.write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


def install_block() -> list:
    """The commands of docs/operations.md's "Installing as a service"."""
    text = open(os.path.join(ROOT, "docs", "operations.md"), encoding="utf-8").read()
    block = text.split("## Installing as a service", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


@pytest.mark.parametrize("path", [UNIT, TEMPLATE])
def test_documentation_names_what_exists_after_the_documented_install(path, tmp_path):
    """Each Documentation= is a web page or a file the install steps create (run here, with
    /opt/vmpooler moved under a temporary directory)."""
    for target in directives(path)["Unit"]["Documentation"][0].split():
        assert target.startswith(("https://", "file:///")), target
        if target.startswith("file://"):
            installed = target[len("file://"):]
            steps = [line for line in install_block() if os.path.dirname(installed) in line]
            assert steps, f"no install step creates {installed}"
            for step in steps:
                subprocess.run(["bash", "-ec", step.replace("/opt/vmpooler", str(tmp_path / "opt"))], cwd=ROOT,
                               check=True)
            assert os.path.isfile(installed.replace("/opt/vmpooler", str(tmp_path / "opt"))), installed
