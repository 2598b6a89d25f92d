"""--log-format json: one JSON object per line, with the fields of the text log."""
import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time

from tests.test_cli import ROOT, free_port, get_json
from vmpooler.logs import TEXT_FORMAT, JsonFormatter, setup_logging

FIELDS = {"time", "level", "logger", "message"}


def record(message, *args, exc_info=None):
    return logging.LogRecord("vmpooler.state", logging.WARNING, __file__, 1, message, args, exc_info)


def test_a_record_is_one_json_line_with_the_text_fields():
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        line = JsonFormatter().format(record("[%s] %s: a\nb \u00e9", "pool", "vm", exc_info=sys.exc_info()))
    assert "\n" not in line
    parsed = json.loads(line)
    assert set(parsed) == FIELDS | {"exception"}
    assert parsed["level"] == "WARNING" and parsed["logger"] == "vmpooler.state"
    assert parsed["message"] == "[pool] vm: a\nb \u00e9"
    assert "ValueError: boom" in parsed["exception"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", parsed["time"])
    # the text log has the same fields: time, level, logger name, message
    assert [name for name in re.findall(r"%\((\w+)\)s", TEXT_FORMAT)] == ["asctime", "levelname", "name", "message"]


def test_the_queued_handler_keeps_the_traceback_in_the_json_line():
    stream = io.StringIO()
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        setup_logging("INFO", "json", stream=stream)
        try:
            1 / 0
        except ZeroDivisionError:
            logging.getLogger("vmpooler.test").exception("failed %d", 3)
        logging.getLogger("vmpooler.test").debug("not shown")
        deadline = time.monotonic() + 5
        while not stream.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    parsed = json.loads(lines[0])
    assert parsed["message"] == "failed 3" and "ZeroDivisionError" in parsed["exception"]


class _CountedWrites(io.StringIO):
    def __init__(self):
        super().__init__()
        self.writes = 0

    def write(self, text):
        self.writes += 1
        return super().write(text)


def test_the_lines_queued_meanwhile_are_written_in_one_call_each_on_its_own_line():
    """The log thread writes what is queued in one call (a burst logs hundreds of lines; a write
    and a flush per line took the GIL from the IOLoop at every line), in order, a line each."""
    stream = _CountedWrites()
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        setup_logging("INFO", "text", stream=stream)
        for number in range(50):
            logging.getLogger("vmpooler.test").info("line %d", number)
        deadline = time.monotonic() + 5
        while len(stream.getvalue().splitlines()) < 50 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    lines = stream.getvalue().splitlines()
    assert [line.rsplit(": ", 1)[1] for line in lines] == [f"line {number}" for number in range(50)]
    assert all(" INFO vmpooler.test: " in line for line in lines)
    assert stream.writes <= 2  # one, or two when the thread woke while the lines were being logged


def test_serve_with_json_logs_writes_only_json_lines(tmp_path):
    port = free_port()
    env = {key: value for key, value in os.environ.items()
           if key not in ("VMPOOLER_CONFIG", "VMPOOLER_CONFIG_FILE", "DATABASE_URL")}
    env["PYTHONPATH"] = ROOT
    process = subprocess.Popen([sys.executable, "-m", "vmpooler", "--log-format", "json", "serve", "--port",
                                str(port)], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if get_json(f"http://127.0.0.1:{port}/api/v1/status")["capacity"]["current"] == 8:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
    lines = process.stderr.read().splitlines()
    parsed = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all(set(entry) == FIELDS for entry in parsed), parsed[:3]
    messages = [entry["message"] for entry in parsed]
    assert any("pending -> ready" in message for message in messages)
    assert messages[-1] == "stopped"
