"""The command line, run as a user would: real processes, real signals."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def vmpooler(*args, **kwargs):
    env = {**os.environ, "PYTHONPATH": ROOT, **kwargs.pop("env", {})}
    return subprocess.run([sys.executable, "-m", "vmpooler", *args], capture_output=True, text=True, env=env,
                          timeout=60, **kwargs)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_json(url, timeout=1):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def test_help_explains_each_command():
    result = vmpooler("--help")
    assert result.returncode == 0
    for command in ("serve", "check-config", "db", "passwd"):
        assert command in result.stdout
    assert "--port" in vmpooler("serve", "--help").stdout


def test_check_config_reports_every_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(":pools:\n  - name: a\n    size: -1\n  - template: t\n    size: 1\n:providers:\n  nope: {}\n")
    result = vmpooler("check-config", str(bad))
    assert result.returncode == 1
    assert "pools[a].template" in result.stdout and "pools[a].size" in result.stdout
    assert "pools[1].name" in result.stdout and "providers.nope" in result.stdout
    good = vmpooler("check-config", os.path.join(ROOT, "vmpooler.yaml.example"))
    assert good.returncode == 0 and "OK" in good.stdout


def test_check_config_reports_warnings_beside_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(":providres:\n  dummy: {}\n:config:\n  vm_lifetme: 4\n")  # and no :pools:
    result = vmpooler("check-config", str(bad))
    assert result.returncode == 1
    assert "error: pools: at least one pool is required" in result.stdout
    assert "warning: :providres: is not a known section; ignored (did you mean providers?)" in result.stdout
    assert "warning: config.vm_lifetme is not a known key; ignored (did you mean vm_lifetime?)" in result.stdout
    assert "1 problem(s), 2 warning(s)" in result.stdout


def test_check_config_strict_fails_on_a_warning(tmp_path):
    misspelt = tmp_path / "misspelt.yaml"
    misspelt.write_text(":config:\n  vm_lifetme: 4\n:pools:\n  - name: a\n    template: t\n    size: 1\n"
                        "    tempalte: u\n")
    lenient = vmpooler("check-config", str(misspelt))
    assert lenient.returncode == 0 and "OK (1 pools, 1 providers, 2 warning(s))" in lenient.stdout
    assert "(did you mean vm_lifetime?)" in lenient.stdout and "(did you mean template?)" in lenient.stdout
    strict = vmpooler("check-config", "--strict", str(misspelt))
    assert strict.returncode == 1 and "2 warning(s), which --strict makes a failure" in strict.stdout
    good = vmpooler("check-config", "--strict", os.path.join(ROOT, "vmpooler.yaml.example"))
    assert good.returncode == 0 and "OK" in good.stdout, good.stdout


def test_serve_refuses_a_bad_config_naming_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(":pools:\n  - name: a\n    template: t\n    size: many\n")
    result = vmpooler("serve", "--config", str(bad), "--port", str(free_port()), cwd=tmp_path)
    assert result.returncode == 2 and "pools[a].size" in result.stderr


def test_serve_on_a_port_in_use_says_so_in_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = vmpooler("serve", "--port", str(port), cwd=tmp_path,
                          env={"DATABASE_URL": f"sqlite:///{tmp_path}/x.db"})
    assert result.returncode == 1
    said = [line for line in result.stderr.splitlines() if "cannot listen" in line]
    assert len(said) == 1 and said[0].endswith(
        f" ERROR vmpooler: cannot listen on 127.0.0.1:{port}: Address already in use"), result.stderr
    assert "Traceback" not in result.stderr


def test_db_upgrade_creates_the_schema(tmp_path):
    result = vmpooler("db", "upgrade", cwd=tmp_path, env={"DATABASE_URL": f"sqlite:///{tmp_path}/x.db"})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "x.db").exists()


def test_passwd_prints_a_bcrypt_hash_that_the_users_store_accepts(tmp_path):
    import bcrypt

    result = vmpooler("passwd", "--user", "jdoe", input="s3cret\ns3cret\n")
    assert result.returncode == 0, result.stderr
    user, digest = result.stdout.strip().split(": ", 1)
    assert user == "jdoe" and bcrypt.checkpw(b"s3cret", digest.strip("'").encode())
    assert "s3cret" not in result.stdout + result.stderr


def test_passwd_refuses_a_password_bcrypt_would_truncate():
    long = "x" * 73
    result = vmpooler("passwd", input=f"{long}\n{long}\n")
    assert result.returncode == 1 and "72 bytes" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_with_the_embedded_default_fills_pools_and_stops_cleanly(tmp_path, signum):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": ROOT}
    for key in ("VMPOOLER_CONFIG", "VMPOOLER_CONFIG_FILE", "DATABASE_URL"):
        env.pop(key, None)
    process = subprocess.Popen([sys.executable, "-m", "vmpooler", "serve", "--port", str(port)], cwd=tmp_path,
                               env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        status = None
        while time.monotonic() < deadline:
            try:
                status = get_json(f"http://127.0.0.1:{port}/api/v1/status")
                if status["capacity"]["current"] == 8:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        assert status and status["capacity"] == {"current": 8, "total": 8, "percent": 100.0}
        assert get_json(f"http://127.0.0.1:{port}/api/v1/vm") == ["debian-7-i386", "debian-7-x86_64"]
        process.send_signal(signum)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
    log = process.stderr.read()
    assert (tmp_path / "vmpooler.db").exists()
    assert "INFO vmpooler.state: [debian-7-i386]" in log and "pending -> ready" in log
    assert "Traceback" not in log


def test_every_package_is_installed_by_setup_py():
    """A folder of modules without __init__.py is left out of `pip install .` (it happened)."""
    for folder, _dirs, files in os.walk(os.path.join(ROOT, "vmpooler")):
        if any(f.endswith(".py") for f in files) and "__pycache__" not in folder:
            assert "__init__.py" in files, f"{folder} is not a package"
    setup = open(os.path.join(ROOT, "setup.py")).read()
    assert '"vmpooler._migrations": "migrations"' in setup and "openapi.json" in setup


def test_version_is_the_package_version_and_the_changelog_names_it_with_the_schema():
    import importlib.metadata
    import re

    from vmpooler import __version__
    from vmpooler.db.schema import scripts

    head = scripts().get_current_head()
    result = vmpooler("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"vmpooler-py {__version__} (schema {head})"
    assert importlib.metadata.version("vmpooler-py") == __version__  # setup.py reads the same line
    with open(os.path.join(ROOT, "CHANGELOG.md"), encoding="utf-8") as changelog:
        newest = re.search(r"^## (\S+) — schema (\S+)$", changelog.read(), re.M)
    assert newest and newest.groups() == (__version__, head), "CHANGELOG.md's newest entry is not this release"
