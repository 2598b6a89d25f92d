"""A real headless Chromium for tests, driven over the Chrome DevTools Protocol (CDP) with
Tornado's websocket client: no driver, no download. Debian's ``chromium`` package provides it
(scripts/test.sh installs it)."""
from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Optional

from tornado.websocket import websocket_connect

#: what a root user on a closed network needs: no sandbox (root), no GPU, nothing phoning home
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
         "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0")


def chromium_binary() -> Optional[str]:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Chromium:
    """One browser process with a fresh profile under ``directory``; stopped by ``close()``."""

    def __init__(self, directory: Path, start_timeout: float = 60):
        binary = chromium_binary()
        assert binary, "chromium is not installed (scripts/test.sh installs Debian's chromium)"
        profile = directory / "chromium-profile"
        self.log_path = directory / "chromium.log"
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                        stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        self.port = self._devtools_port(profile / "DevToolsActivePort", start_timeout)

    def _devtools_port(self, path: Path, timeout: float) -> int:
        """Chromium writes the port it picked (we asked for 0) into its profile."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"chromium exited ({self.process.returncode}): {self.log_path.read_text()}")
            text = path.read_text() if path.exists() else ""
            if text.strip():
                return int(text.split()[0])
            time.sleep(0.05)
        raise AssertionError(f"chromium did not open its DevTools port within {timeout}s")

    def page_url(self) -> str:
        """The websocket of the browser's page (the about:blank it started with)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=10) as answer:
            targets = json.load(answer)
        return next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # its own session: the renderers go too
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self._log.close()


class Page:
    """A CDP session on one page. Events that arrive meanwhile are kept in ``events``."""

    def __init__(self, connection):
        self.connection, self.next_id, self.events = connection, 0, []

    @classmethod
    async def open(cls, url: str) -> "Page":
        page = cls(await websocket_connect(url, max_message_size=64 << 20))
        for domain in ("Page", "Runtime"):
            await page.call(f"{domain}.enable")
        return page

    async def call(self, method: str, timeout: float = 30, **params) -> dict:
        self.next_id += 1
        ident = self.next_id
        await self.connection.write_message(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            raw = await asyncio.wait_for(self.connection.read_message(), timeout)
            if raw is None:
                raise ConnectionError("the DevTools connection closed")
            message = json.loads(raw)
            if message.get("id") == ident:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return message["result"]
            if "method" in message:
                self.events.append(message)

    async def navigate(self, url: str) -> None:
        await self.call("Page.navigate", url=url)
        await self.wait_for("document.readyState === 'complete'")

    async def evaluate(self, expression: str):
        """The JSON value of ``expression`` in the page (an exception in it fails the test)."""
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 20, what: str = ""):
        deadline = time.monotonic() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what or expression}")
            await asyncio.sleep(0.1)

    def uncaught_exceptions(self) -> list:
        return [event["params"]["exceptionDetails"] for event in self.events
                if event["method"] == "Runtime.exceptionThrown"]

    def console_errors(self) -> list:
        return [event["params"] for event in self.events
                if event["method"] == "Runtime.consoleAPICalled" and event["params"]["type"] == "error"]

    async def screenshot(self, path: Path) -> Path:
        result = await self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(result["data"]))
        return path

    def close(self) -> None:
        self.connection.close()
