"""Where log lines go and how they look: ``--log-format text`` (the default) or ``json``.

Both carry the same fields: the time, the level, the logger's name and the message (and the
traceback, when there is one). JSON is one object per line, for a journal or a log shipper:
``{"time": "2026-12-01T08:44:29.123+00:00", "level": "INFO", "logger": "vmpooler", "message": "..."}``.
"""
from __future__ import annotations

import atexit
import datetime
import json
import logging
import logging.handlers
import queue
import sys
import threading

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in a message are escaped by JSON)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
                .isoformat(timespec="milliseconds"),
                "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


#: how often the log thread writes what was queued (seconds): lines reach stderr within this
FLUSH_SECONDS = 0.05


class _LineWriter(threading.Thread):
    """Writes the queued records every FLUSH_SECONDS, not as each one arrives: a thread woken for
    every line would take the GIL from the IOLoop at every transition (a fifth of the write path
    of a checkout burst, measured). What is queued is written in one call, not a write and a flush
    per line: a burst queues hundreds of lines, and a thread taking the GIL back after each line's
    system call cost the server about 180 us of CPU per checkout (docs/performance.md). Stopped,
    it writes what is left."""

    def __init__(self, lines: queue.SimpleQueue, handler: logging.StreamHandler):
        super().__init__(name="log-writer", daemon=True)
        self.lines, self.handler, self.stopping = lines, handler, threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(FLUSH_SECONDS):
            self.write_queued()
        self.write_queued()

    def write_queued(self) -> None:
        records = []
        while True:
            try:
                records.append(self.lines.get_nowait())
            except queue.Empty:
                break
        if not records:
            return
        try:  # the records were formatted where they were logged (QueueHandler.prepare)
            self.handler.stream.write("".join(self.handler.format(record) + "\n" for record in records))
            self.handler.flush()
        except Exception:  # as StreamHandler.emit: reported on stderr, never raised to the logger
            self.handler.handleError(records[-1])

    def stop(self) -> None:
        self.stopping.set()
        self.join(5)


def setup_logging(level: str, log_format: str = "text", stream=None) -> None:
    """Log lines go to stderr from a thread of their own: a slow reader of stderr (a pipe to a
    journal) then never blocks the IOLoop. The queue is drained at exit."""
    # Neither format shows where a line was logged from, nor the thread or process: skip
    # collecting them for every record (the optimisations the logging HOWTO lists); every
    # transition logs a line.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    lines: queue.SimpleQueue = queue.SimpleQueue()
    # The line is formatted where it is logged (QueueHandler.prepare flattens the record, its
    # traceback included); the thread only writes it.
    queued = logging.handlers.QueueHandler(lines)
    queued.setFormatter(formatter(log_format))
    root = logging.getLogger()
    root.setLevel(level.upper())
    root.handlers[:] = [queued]
    writer = _LineWriter(lines, logging.StreamHandler(stream or sys.stderr))
    writer.start()
    atexit.register(writer.stop)
    logging.getLogger("tornado.access").setLevel(logging.WARNING)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
