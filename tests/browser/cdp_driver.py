#!/usr/bin/env python3
"""Headless Chromium for the dashboard tests, driven over the DevTools protocol.

Standard library only: the protocol runs over --remote-debugging-pipe (fd 3 into
the browser, fd 4 out of it, NUL-terminated JSON), so no websocket client and no
packages are needed.

Usage: cdp_driver.py --chromium /usr/bin/chromium [--deadline SECONDS] [--workdir DIR]

The browser's profile and log live in --workdir (a fresh temporary directory
by default), which is removed on exit.

Reads one JSON command per line on stdin and answers each with one JSON line on
stdout, {"ok": true, "value": ...} or {"ok": false, "error": "..."}:

  {"cmd": "open", "url": U, "width": 1280, "height": 900, "mobile": false,
   "scale": 1, "timeout": 20}       new tab at that size, load event awaited;
                                    its number (0, 1, ...), which the commands
                                    below take as "page" (default: the newest)
  {"cmd": "wait", "expr": JS, "timeout": 15, "describe": JS2}
                                    polls JS until truthy; its value, or an error
                                    naming the last value seen and JS2's value
  {"cmd": "resize", "width": W, "height": H, "mobile": false, "scale": 1}
                                    the same tab at another size
  {"cmd": "eval", "expr": JS}       JS's value (promises awaited)
  {"cmd": "screenshot", "path": P, "full_page": false}
  {"cmd": "report"}                 {"requests": [...], "problems": [...],
                                     "warnings": [...]}: every URL the page asked
                                    for, and its errors (exceptions, console
                                    errors, failed or >= 400 loads)
  {"cmd": "quit"}

A failed command answers with its error and the session goes on. The browser
is closed on quit, on end of input, when it stops answering, on an unexpected
error, on SIGTERM or SIGINT, and after --deadline seconds whatever happens. It runs in a process
group of its own, is killed with that group, and is told to die with this
driver (PR_SET_PDEATHSIG) should the driver itself be killed.
"""

import argparse
import base64
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

CALL_TIMEOUT_S = 30.0
POLL_INTERVAL_S = 0.05


class BrowserGone(Exception):
    pass


class Chromium:
    """One browser process and the protocol connection to it."""

    def __init__(self, executable, workdir=None):
        if workdir:
            os.makedirs(workdir, exist_ok=True)
            self.root = workdir
        else:
            self.root = tempfile.mkdtemp(prefix="mdp-chromium-")
        self.log_path = os.path.join(self.root, "chromium.log")
        to_browser_r, self.to_browser = os.pipe()
        self.from_browser, from_browser_w = os.pipe()
        libc = _libc()

        def child_setup():
            # Put our pipe ends on fds 3 and 4; dup first so neither dup2
            # can overwrite the other's source.
            inbound, outbound = os.dup(to_browser_r), os.dup(from_browser_w)
            os.dup2(inbound, 3)
            os.dup2(outbound, 4)
            if libc is not None:
                libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG

        argv = [
            executable,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-default-apps",
            "--disable-extensions",
            "--disable-sync",
            "--no-default-browser-check",
            "--no-first-run",
            "--hide-scrollbars",
            "--mute-audio",
            "--user-data-dir=" + os.path.join(self.root, "profile"),
            "--remote-debugging-pipe",
            "about:blank",
        ]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=child_setup,
                pass_fds=(3, 4),
                start_new_session=True,
            )
        os.close(to_browser_r)
        os.close(from_browser_w)

        self.lock = threading.Condition()
        self.next_id = 0
        self.replies = {}
        self.events = []
        self.gone = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        buffer = b""
        try:
            while True:
                chunk = os.read(self.from_browser, 1 << 16)
                if not chunk:
                    break
                buffer += chunk
                *messages, buffer = buffer.split(b"\0")
                with self.lock:
                    for raw in messages:
                        message = json.loads(raw)
                        if "id" in message:
                            self.replies[message["id"]] = message
                        else:
                            self.events.append(message)
                    self.lock.notify_all()
        except (OSError, ValueError):
            pass
        with self.lock:
            self.gone = True
            self.lock.notify_all()

    def call(self, method, params=None, session=None, timeout=CALL_TIMEOUT_S):
        with self.lock:
            if self.gone:
                raise BrowserGone("chromium exited" + self.log_tail())
            self.next_id += 1
            ident = self.next_id
        message = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self.lock:
            while ident not in self.replies:
                left = deadline - time.monotonic()
                if self.gone:
                    raise BrowserGone(f"chromium exited during {method}" + self.log_tail())
                if left <= 0:
                    raise TimeoutError(f"{method}: no answer within {timeout:g} s")
                self.lock.wait(left)
            reply = self.replies.pop(ident)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error'].get('message', reply['error'])}")
        return reply.get("result", {})

    def wait_event(self, predicate, start, timeout):
        """The first event at index >= start matching predicate."""
        deadline = time.monotonic() + timeout
        with self.lock:
            index = start
            while True:
                while index < len(self.events):
                    if predicate(self.events[index]):
                        return self.events[index]
                    index += 1
                left = deadline - time.monotonic()
                if self.gone:
                    raise BrowserGone("chromium exited" + self.log_tail())
                if left <= 0:
                    return None
                self.lock.wait(left)

    def event_count(self):
        with self.lock:
            return len(self.events)

    def events_of(self, session):
        with self.lock:
            return [e for e in self.events if e.get("sessionId") == session]

    def log_tail(self):
        try:
            with open(self.log_path, "rb") as log:
                lines = log.read().decode(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return ("; chromium log tail: " + " | ".join(lines[-8:])) if lines else ""

    def close(self):
        if self.proc.poll() is None:
            try:
                self.call("Browser.close", timeout=5)
            except Exception:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        # Helpers (renderer, zygote, utility) share the browser's process group.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for fd in (self.to_browser, self.from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


class Page:
    """One tab, with its own protocol session."""

    def __init__(self, browser, width, height, mobile, scale):
        self.browser = browser
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = browser.call(
            "Target.attachToTarget", {"targetId": target, "flatten": True}
        )["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(domain + ".enable")
        self.resize(width, height, mobile, scale)

    def resize(self, width, height, mobile, scale):
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": scale, "mobile": mobile},
        )
        self.call("Emulation.setTouchEmulationEnabled", {"enabled": mobile})

    def call(self, method, params=None, timeout=CALL_TIMEOUT_S):
        return self.browser.call(method, params, session=self.session, timeout=timeout)

    def open(self, url, timeout):
        mark = self.browser.event_count()
        result = self.call("Page.navigate", {"url": url}, timeout=timeout)
        if result.get("errorText"):
            raise RuntimeError(f"navigation to {url} failed: {result['errorText']}")
        loaded = self.browser.wait_event(
            lambda e: e.get("sessionId") == self.session and e.get("method") == "Page.loadEventFired",
            mark,
            timeout,
        )
        if loaded is None:
            raise TimeoutError(f"{url}: no load event within {timeout:g} s")

    def eval(self, expr):
        result = self.call(
            "Runtime.evaluate",
            {"expression": expr, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise RuntimeError(f"{expr}: {text}")
        return result.get("result", {}).get("value")

    def wait(self, expr, timeout, describe=None):
        deadline = time.monotonic() + timeout
        last = None
        while True:
            try:
                value = self.eval(expr)
                if value:
                    return value
                last = value
            except RuntimeError as err:
                last = str(err)
            if time.monotonic() >= deadline:
                seen = ""
                if describe:
                    try:
                        seen = "; page: " + json.dumps(self.eval(describe))
                    except RuntimeError as err:
                        seen = f"; page: ({err})"
                raise TimeoutError(f"waited {timeout:g} s for {expr}; last value: {json.dumps(last)}{seen}")
            time.sleep(POLL_INTERVAL_S)

    def screenshot(self, path, full_page):
        params = {"format": "png", "captureBeyondViewport": bool(full_page)}
        if full_page:
            size = self.call("Page.getLayoutMetrics")["cssContentSize"]
            params["clip"] = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        data = self.call("Page.captureScreenshot", params)["data"]
        with open(path, "wb") as out:
            out.write(base64.b64decode(data))
        return path

    def report(self):
        requests, problems, warnings = [], [], []
        for event in self.browser.events_of(self.session):
            method, params = event.get("method"), event.get("params", {})
            if method == "Network.requestWillBeSent":
                requests.append(params["request"]["url"])
            elif method == "Network.webSocketCreated":
                requests.append(params["url"])
            elif method == "Network.responseReceived":
                response = params["response"]
                if response.get("status", 0) >= 400:
                    problems.append(f"HTTP {response['status']} for {response['url']}")
            elif method == "Network.loadingFailed" and not params.get("canceled"):
                problems.append(f"load failed ({params.get('errorText')}): {params.get('type')}")
            elif method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                text = details.get("exception", {}).get("description") or details.get("text")
                problems.append(f"uncaught exception: {text}")
            elif method == "Runtime.consoleAPICalled":
                text = " ".join(_remote_text(arg) for arg in params.get("args", []))
                if params.get("type") in ("error", "assert"):
                    problems.append(f"console.{params['type']}: {text}")
                elif params.get("type") == "warning":
                    warnings.append(f"console.warn: {text}")
            elif method == "Log.entryAdded":
                entry = params["entry"]
                line = f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}".strip()
                if entry.get("level") == "error":
                    problems.append(line)
                elif entry.get("level") == "warning":
                    warnings.append(line)
        return {"requests": requests, "problems": problems, "warnings": warnings}


def _remote_text(arg):
    if "value" in arg:
        return str(arg["value"])
    return arg.get("description") or arg.get("type", "?")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chromium", default="chromium")
    parser.add_argument("--deadline", type=float, default=300.0,
                        help="close the browser and exit after this many seconds, whatever happens")
    parser.add_argument("--workdir", help="directory for the profile and log (removed on exit)")
    args = parser.parse_args()

    def stop(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    browser = Chromium(args.chromium, args.workdir)

    def overrun():
        try:
            os.killpg(browser.proc.pid, signal.SIGKILL)
        finally:
            shutil.rmtree(browser.root, ignore_errors=True)
            print(json.dumps({"ok": False, "error": f"driver deadline of {args.deadline:g} s passed"}),
                  flush=True)
            os._exit(3)

    watchdog = threading.Timer(args.deadline, overrun)
    watchdog.daemon = True
    watchdog.start()

    pages = []
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                command = json.loads(line)
                name = command.get("cmd")
                if name == "quit":
                    answer(True, None)
                    break
                if name == "open":
                    page = Page(browser, int(command.get("width", 1280)), int(command.get("height", 900)),
                                bool(command.get("mobile", False)), float(command.get("scale", 1)))
                    pages.append(page)
                    page.open(command["url"], float(command.get("timeout", 20)))
                    answer(True, len(pages) - 1)
                    continue
                index = int(command.get("page", len(pages) - 1))
                if not 0 <= index < len(pages):
                    answer(False, f"{name}: no page {index}")
                    continue
                page = pages[index]
                if name == "resize":
                    page.resize(int(command["width"]), int(command["height"]),
                                bool(command.get("mobile", False)), float(command.get("scale", 1)))
                    answer(True, None)
                elif name == "wait":
                    answer(True, page.wait(command["expr"], float(command.get("timeout", 15)),
                                           command.get("describe")))
                elif name == "eval":
                    answer(True, page.eval(command["expr"]))
                elif name == "screenshot":
                    answer(True, page.screenshot(command["path"], bool(command.get("full_page", False))))
                elif name == "report":
                    answer(True, page.report())
                else:
                    answer(False, f"unknown command {name!r}")
            except BrowserGone as err:
                answer(False, str(err))
                break
            except (KeyError, ValueError, TypeError, RuntimeError, TimeoutError, OSError) as err:
                answer(False, f"{type(err).__name__}: {err}")
    finally:
        watchdog.cancel()
        browser.close()


def answer(ok, payload):
    message = {"ok": True, "value": payload} if ok else {"ok": False, "error": payload}
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
