"""Headless Chromium driven through the DevTools protocol over a pipe, for tests.

``--remote-debugging-pipe`` makes Chromium read protocol messages from fd 3 and write
its answers to fd 4, each JSON message ended by a NUL byte: no port to find, no
websocket client to install (Playwright's own browser download is not reachable from
CI; Debian's ``chromium`` package is). As root Chromium needs ``--no-sandbox``."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any


def find_chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class ProtocolError(Exception):
    pass


class Chromium:
    """One headless browser; ``open(url)`` gives a ``Page``. ``close()`` ends it."""

    def __init__(self, executable: str) -> None:
        self._profile = tempfile.TemporaryDirectory(prefix="posthog-otel-chromium-")
        self.log = Path(self._profile.name) / "chromium.log"
        # Our ends of the two pipes; Chromium's ends moved to 10 and above so that the
        # shell's redirections onto fds 3 and 4 cannot overwrite one with the other.
        to_read, self._to_write = os.pipe()
        self._from_read, from_write = os.pipe()
        child_in = fcntl.fcntl(to_read, fcntl.F_DUPFD_CLOEXEC, 10)
        child_out = fcntl.fcntl(from_write, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_read)
        os.close(from_write)
        script = f'exec "$0" "$@" 3<&{child_in} 4>&{child_out} {child_in}<&- {child_out}>&-'
        args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--remote-debugging-pipe",
            f"--user-data-dir={self._profile.name}",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--mute-audio",
            "about:blank",
        ]
        with open(self.log, "wb") as log:
            self._process = subprocess.Popen(
                ["bash", "-c", script, executable, *args],  # dash: fds 0-9 only
                pass_fds=(child_in, child_out),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        os.close(child_in)
        os.close(child_out)
        self._cond = threading.Condition()
        self._answers: dict[int, dict[str, Any]] = {}
        self._next_id = 0
        self._eof = False
        self._reader = threading.Thread(target=self._read, name="chromium-cdp", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._from_read, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                with self._cond:
                    self._eof = True
                    self._cond.notify_all()
                return
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            with self._cond:
                for raw in messages:
                    message = json.loads(raw)
                    if "id" in message:
                        self._answers[message["id"]] = message
                self._cond.notify_all()

    def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str | None = None,
        timeout: float = 15.0,
    ) -> dict[str, Any]:
        """One protocol command; its result, or ``ProtocolError``."""
        with self._cond:
            self._next_id += 1
            ident = self._next_id
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        try:
            os.write(self._to_write, json.dumps(message).encode() + b"\0")
        except BrokenPipeError:
            raise ProtocolError(f"{method}: Chromium exited ({self._tail()})") from None
        with self._cond:
            if not self._cond.wait_for(lambda: ident in self._answers or self._eof, timeout):
                raise ProtocolError(f"{method}: no answer within {timeout} s")
            if ident not in self._answers:
                raise ProtocolError(f"{method}: Chromium exited ({self._tail()})")
            answer = self._answers.pop(ident)
        if "error" in answer:
            raise ProtocolError(f"{method}: {answer['error']}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    def _tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]

    def open(self, url: str) -> Page:
        """A new tab at ``url``; its document is there when this returns (navigated
        from a blank tab: ``Page.navigate`` answers once the new document commits)."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})
        answer = self.send("Page.navigate", {"url": url}, session["sessionId"])
        if answer.get("errorText"):
            raise ProtocolError(f"{url}: {answer['errorText']}")
        return Page(self, session["sessionId"])

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except (ProtocolError, OSError):
            pass
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)
        os.close(self._to_write)
        self._reader.join(timeout=5)
        os.close(self._from_read)
        self._profile.cleanup()


class Page:
    def __init__(self, browser: Chromium, session: str) -> None:
        self._browser = browser
        self._session = session

    def evaluate(self, expression: str, timeout: float = 15.0) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self._browser.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            self._session,
            timeout,
        )
        if "exceptionDetails" in result:
            raise ProtocolError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float) -> Any:
        """Wait until ``expression`` is truthy in the page, at most ``timeout`` seconds:
        checked in the page at each DOM change (a ``MutationObserver``, no polling);
        its last value when the time is up."""
        script = f"""new Promise((resolve) => {{
            const check = () => {{
                try {{ return ({expression}); }} catch (e) {{ return false; }}
            }};
            const first = check();
            if (first) return resolve(first);
            const observer = new MutationObserver(() => {{
                const value = check();
                if (value) {{ observer.disconnect(); resolve(value); }}
            }});
            observer.observe(document, {{subtree: true, childList: true, characterData: true,
                                         attributes: true}});
            setTimeout(() => {{ observer.disconnect(); resolve(check()); }}, {timeout * 1000});
        }})"""
        return self.evaluate(script, timeout + 10)
