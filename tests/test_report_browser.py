"""The bench report in a real browser: Debian's headless chromium, driven over the DevTools protocol
through --remote-debugging-pipe (stdlib only). A bench-like folder (the default bench's results.json
with a grid per row and a Pareto plot) is rendered; at 1400x900 the key columns of the first model's
table must be on screen, the long tables folded away, and the console free of errors. Skips when
chromium is absent (.ci/run installs it, so CI runs it)."""
import base64
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import torch

from effdiff.report import write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None and os.environ.get("EFFDIFF_REQUIRE_BROWSER"):       # CI (.ci/run) must not skip it
    raise RuntimeError("EFFDIFF_REQUIRE_BROWSER is set but chromium is not installed (apt-get install chromium)")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
DEFAULT = Path(__file__).resolve().parents[1] / "docs" / "bench" / "default" / "results.json"
KEY = ["config", "NFE", "ms/sample", "speed-up", "FD ± sd", "FD vs reference (paired, 95% CI)",
       "memorization (NN train/held-out)", "samples"]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--remote-debugging-pipe",
         "--window-size=1400,900"]


class Browser:
    """A headless chromium and its DevTools protocol over fds 3/4 (messages are JSON ending in NUL)."""

    def __init__(self, profile: Path):
        to_r, self._to = os.pipe()
        self._from, from_w = os.pipe()
        cmd = ["bash", "-c", f'exec "$0" "$@" 3<&{to_r} 4>&{from_w}', CHROMIUM, *FLAGS,
               f"--user-data-dir={profile}", "about:blank"]
        self.proc = subprocess.Popen(cmd, pass_fds=(to_r, from_w), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        os.close(to_r)
        os.close(from_w)
        self._buf, self._id, self.events, self.session = b"", 0, [], None

    def send(self, method: str, timeout: float = 30, **params) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if self.session and not method.startswith(("Target.", "Browser.")):
            msg["sessionId"] = self.session
        os.write(self._to, json.dumps(msg).encode() + b"\0")
        while True:
            m = self._next(timeout)
            if m.get("id") == self._id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, method: str, timeout: float = 30) -> dict:
        for i, m in enumerate(self.events):
            if m.get("method") == method:
                return self.events.pop(i)
        while True:
            m = self._next(timeout)
            if m.get("method") == method:
                return m
            self.events.append(m)

    def _next(self, timeout: float) -> dict:
        end = time.monotonic() + timeout
        while b"\0" not in self._buf:
            left = end - time.monotonic()
            if left <= 0 or not select.select([self._from], [], [], left)[0]:
                raise TimeoutError("chromium did not answer")
            chunk = os.read(self._from, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def open(self, url: str, width: int = 1400, height: int = 900) -> None:
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        self.send("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired")

    def eval(self, expression: str):
        out = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in out:
            raise RuntimeError(out["exceptionDetails"])
        return out["result"].get("value")

    def errors(self) -> list:
        """Console errors, uncaught exceptions and browser log errors seen so far."""
        bad = []
        for m in self.events:
            p = m.get("params", {})
            if m.get("method") == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                bad.append(p)
            elif m.get("method") == "Runtime.exceptionThrown":
                bad.append(p)
            elif m.get("method") == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                bad.append(p["entry"])
        return bad

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to)
        os.close(self._from)


def bench_folder(root: Path) -> Path:
    """A folder shaped like `effdiff bench --out`: results.json, grids/MODEL__CONFIG.png, pareto.png."""
    from effdiff.viz import pareto_plot, save_grid
    results = json.loads(DEFAULT.read_text())
    out = root / "bench-out"
    (out / "grids").mkdir(parents=True)
    (out / "results.json").write_text(json.dumps(results))
    g = torch.Generator().manual_seed(0)
    for r in results["rows"]:
        save_grid(torch.rand(20, 1, 8, 8, generator=g) * 2 - 1, out / "grids" / f"{r['model']}__{r['config']}.png")
    pareto_plot(results["rows"], out / "pareto.png", floor=results["real_vs_real_fd"])
    return out


VISIBLE = """(() => {
  const t = document.querySelector('table.key');
  const cells = [...t.querySelectorAll('thead th'), ...t.querySelectorAll('tbody tr:first-child td')];
  const W = window.innerWidth, H = window.innerHeight;
  return {width: W, height: H, cells: cells.map(c => { const r = c.getBoundingClientRect();
    return {text: c.textContent, on: r.width > 0 && r.height > 0 && r.left >= 0 && r.top >= 0 && r.right <= W && r.bottom <= H}; }),
    folded: [...document.querySelectorAll('details table')].every(x => !x.checkVisibility()),
    tables: [...document.querySelectorAll('table.key')].map(x => x.dataset.name),
    thumbs: document.querySelectorAll('td.grid img').length,
    broken: [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).length};
})()"""


@pytest.mark.skipif(not DEFAULT.is_file(), reason="docs/bench/default/results.json absent")
def test_key_columns_are_on_screen_at_1400x900_and_the_console_is_clean(tmp_path):
    page = write_report(bench_folder(tmp_path))
    browser = Browser(tmp_path / "profile")
    try:
        browser.open(page.resolve().as_uri())
        seen = browser.eval(VISIBLE)
        shot = base64.b64decode(browser.send("Page.captureScreenshot", format="png")["data"])
        errors = browser.errors()
    finally:
        browser.close()
    if os.environ.get("EFFDIFF_SCREENSHOT"):
        Path(os.environ["EFFDIFF_SCREENSHOT"]).write_bytes(shot)
    assert (seen["width"], seen["height"]) == (1400, 900)
    assert seen["tables"] == ["rows:digits-dit", "rows:digits-unet"]              # one table per model
    heads = [c["text"] for c in seen["cells"][:len(KEY)]]
    assert heads == KEY
    off = [c["text"] for c in seen["cells"] if not c["on"]]
    assert not off, f"off screen at 1400x900: {off}"
    assert seen["folded"] and seen["thumbs"] == 16 and seen["broken"] == 0
    assert not errors, errors
    assert shot[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_checker_sees_console_errors_and_missing_images(tmp_path):
    """The browser harness can fail: a console error, an uncaught exception and a broken image are seen."""
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><head><link rel='icon' href='data:,'></head><body>"
                    "<img src='data:image/png;base64,AAAA'><script>console.error('boom'); null.x;</script></body></html>")
    browser = Browser(tmp_path / "profile")
    try:
        browser.open(page.resolve().as_uri())
        broken = browser.eval("[...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).length")
        errors = browser.errors()
    finally:
        browser.close()
    assert broken == 1
    assert any("boom" in json.dumps(e) for e in errors) and any("exceptionDetails" in e for e in errors)
