"""Headless Chromium, driven over the DevTools protocol on a pipe: open a page, evaluate an expression, get JSON back.

Used by the web export's browser check, ``mobilestylegan-export --check DIR`` and the benchmark's browser rows.
Chromium's ``--remote-debugging-pipe`` reads protocol messages on fd 3 and writes them on fd 4, each a JSON
object ended by a NUL byte; no network port is opened and no driver package is needed. The page itself is
served by :func:`export.web.server.make_server` on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from export.errors import ExportError

CHROMIUM_ENV = "MOBILESTYLEGAN_CHROMIUM"
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
INSTALL = f"apt-get install chromium (Debian/Ubuntu), or set ${CHROMIUM_ENV} to a Chrome/Chromium executable"


def find_chromium() -> str | None:
    """``$MOBILESTYLEGAN_CHROMIUM``, else the first Chromium or Chrome on PATH; None when there is none."""
    given = os.environ.get(CHROMIUM_ENV)
    if given:
        return given if os.access(given, os.X_OK) else shutil.which(given)
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


class PageError(ExportError):
    """The page threw, timed out or the browser died; the message says which and quotes the page."""


class Chromium:
    """One headless browser process; :meth:`evaluate` runs an expression in a fresh tab."""

    def __init__(self, executable: str | None = None, timeout_s: float = 300.0) -> None:
        exe = executable or find_chromium()
        if exe is None:
            raise ExportError(f"no Chromium found for the browser check; {INSTALL}")
        self.timeout_s = timeout_s
        self._profile = tempfile.mkdtemp(prefix="msg-chromium.")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # A Python trampoline puts the two pipe ends on fds 3 and 4, where the protocol expects them (the ends are
        # moved above fd 9 first, so the first dup2 cannot overwrite the second).
        to_browser_r, from_browser_w = (_above_9(fd) for fd in (to_browser_r, from_browser_w))
        args = [
            exe,
            "--headless=new",
            "--remote-debugging-pipe",
            f"--user-data-dir={self._profile}",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-gpu",
            "--disable-background-timer-throttling",
            "--disable-renderer-backgrounding",
            "about:blank",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
        trampoline = (
            "import os, sys; r, w = int(sys.argv[1]), int(sys.argv[2]); os.dup2(r, 3); os.dup2(w, 4); "
            "os.close(r); os.close(w); os.execv(sys.argv[3], sys.argv[3:])"
        )
        self._proc = subprocess.Popen(
            [sys.executable, "-c", trampoline, str(to_browser_r), str(from_browser_w), *args],
            pass_fds=(to_browser_r, from_browser_w),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._stderr: list[bytes] = []
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        self._buffer = b""
        self._next_id = 0
        self.console: list[str] = []
        self._events: list[tuple[str | None, str | None]] = []
        try:
            self.version = self.call("Browser.getVersion").get("product", "chromium")
        except BaseException:
            self.close()  # no process or profile folder left behind
            raise

    def _drain_stderr(self) -> None:
        for line in self._proc.stderr:
            self._stderr = (self._stderr + [line])[-20:]

    # -- protocol -------------------------------------------------------------------------------------------------
    def call(
        self, method: str, params: dict | None = None, session: str | None = None, timeout_s: float | None = None
    ) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        try:
            os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        except BrokenPipeError:
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
            raise PageError(
                f"Chromium exited (status {self._proc.returncode}) before {method}" + self._context(stderr=True)
            ) from None
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        while True:
            reply = self._read(deadline, method)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise PageError(f"Chromium refused {method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            self._event(reply)

    def _event(self, event: dict[str, Any]) -> None:
        params = event.get("params", {})
        self._events.append((event.get("method"), event.get("sessionId")))
        if event.get("method") == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.console = (self.console + [f"console.{params.get('type')}: {text}"])[-20:]
        elif event.get("method") == "Runtime.exceptionThrown":
            d = params.get("exceptionDetails", {})
            text = d.get("exception", {}).get("description") or d.get("text")
            self.console = (self.console + [f"uncaught: {text}"])[-20:]

    def _read(self, deadline: float, what: str) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PageError(f"Chromium gave no answer to {what} in {self.timeout_s:g} s" + self._context())
            ready, _, _ = select.select([self._from_browser], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise PageError(f"Chromium exited during {what}" + self._context(stderr=True))
                self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def _wait_for(self, method: str, session: str, what: str) -> None:
        deadline = time.monotonic() + self.timeout_s
        while (method, session) not in self._events:
            self._event(self._read(deadline, f"loading {what}"))

    def _context(self, stderr: bool = False) -> str:
        lines = self.console[-5:] + ([b.decode(errors="replace").strip() for b in self._stderr[-3:]] if stderr else [])
        return ("; last messages: " + " | ".join(lines)) if lines else ""

    # -- pages ----------------------------------------------------------------------------------------------------
    def evaluate(self, url: str, expression: str, timeout_s: float | None = None) -> Any:
        """Open ``url`` in a new tab, evaluate ``expression`` (awaited if it is a promise), return its JSON value."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        try:
            self.call("Runtime.enable", session=session)
            self.call("Page.enable", session=session)
            self._events.clear()
            self.console.clear()
            self.call("Page.navigate", {"url": url}, session=session)
            self._wait_for("Page.loadEventFired", session, url)
            result = self.call(
                "Runtime.evaluate",
                {"expression": expression, "awaitPromise": True, "returnByValue": True},
                session=session,
                timeout_s=timeout_s,
            )
        finally:
            self.call("Target.closeTarget", {"targetId": target})
        if "exceptionDetails" in result:
            d = result["exceptionDetails"]
            text = d.get("exception", {}).get("description") or d.get("text", "exception")
            raise PageError(f"the page at {url} failed: {text.splitlines()[0]}" + self._context())
        return result["result"].get("value")

    def close(self) -> None:
        try:
            if self._proc.poll() is None:
                try:
                    self.call("Browser.close", timeout_s=10)
                except ExportError:
                    pass
                try:
                    self._proc.wait(10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
        finally:
            for fd in (self._to_browser, self._from_browser):
                try:
                    os.close(fd)
                except OSError:
                    pass
            shutil.rmtree(self._profile, ignore_errors=True)


def _above_9(fd: int) -> int:
    import fcntl

    high = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return high


@contextmanager
def served(directory: str | Path) -> Iterator[str]:
    """Serve ``directory`` on 127.0.0.1 (a free port) for the duration; yields the base URL."""
    from export.web.server import make_server

    server = make_server(directory, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def chromium(timeout_s: float = 300.0) -> Iterator[Chromium]:
    browser = Chromium(timeout_s=timeout_s)
    try:
        yield browser
    finally:
        browser.close()
