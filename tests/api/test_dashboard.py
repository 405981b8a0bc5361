"""The live web page in a real headless Chromium (Debian's /usr/bin/chromium via Playwright).

First against a canned series served by a stand-in HTTP server (exact point counts, hostile
strings, empty and malformed replies, a server that goes away), then against a real server
under load: the charts draw real points, the plan table names a digits variant, the
screenshot's chart regions are not blank, and the page says "disconnected" when the server
stops. Set RHEOSTAT_SAVE_SCREENSHOT=1 to also keep a screenshot taken under load at
benchmarks/results/dashboard.png.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageStat

from conftest import ROOT, Server, family_repository, start_server, stop_server

pytestmark = pytest.mark.integration

sync_api = pytest.importorskip("playwright.sync_api")

STATIC = ROOT / "src" / "rheostat" / "api" / "static"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]  # fmt: skip
VIEWPORT = {"width": 1400, "height": 1000}
HOSTILE = '<img src=x onerror="window.__pwned = 1">demand & <b>moved</b>'
DIGIT = [0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0, 0, 3, 15, 2, 0, 11, 8, 0, 0, 4,
         12, 0, 0, 8, 8, 0, 0, 5, 8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0, 0, 2, 14, 5, 10,
         12, 0, 0, 0, 0, 6, 13, 10, 0, 0, 0]  # fmt: skip
INFER_BODY = {
    "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64], "data": DIGIT}],
    "parameters": {"slo_ms": 50},
}
DIGITS_VARIANTS = {"cnn_large", "cnn_small", "mlp_small", "mlp_tiny"}
POINTS_JS = "[...document.querySelectorAll('canvas')].map(c => Number(c.dataset.points))"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing: `apt-get install chromium` (make test installs it)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Page:
    """A fresh page that records uncaught errors and console errors."""

    def __init__(self, browser: Any) -> None:
        self.context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.console_errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on(
            "console",
            lambda m: (
                self.console_errors.append(f"{m.text} ({m.location.get('url')})")
                if m.type == "error"
                else None
            ),
        )

    def wait_for(self, script: str, timeout_s: float = 30) -> None:
        self.page.wait_for_function(script, timeout=timeout_s * 1000)

    def points(self) -> list[int]:
        return list(self.page.evaluate(POINTS_JS))

    def status(self) -> str:
        return str(self.page.text_content("#status-text"))

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Page]:
    page = Page(browser)
    yield page
    page.close()


# -- against a stand-in server ---------------------------------------------------------------


def canned_series(now_s: float, num_bins: int = 90) -> dict[str, Any]:
    """90 s of one family: integer rates, an accuracy gap, two plan changes (one hostile)."""
    first = math.floor(now_s) - num_bins + 1
    t = [float(first + i) for i in range(num_bins)]
    demand = [20 + round(15 * math.sin(i / 9)) for i in range(num_bins)]
    accuracy = [None if 30 <= i < 35 else 0.97 + 0.02 * (i % 2) for i in range(num_bins)]
    return {
        "window_s": 1.0,
        "t": t,
        "families": {
            "digits": {
                "demand_rps": demand,
                "served_rps": [min(d, 30) for d in demand],
                "capacity_rps": [30.0] * num_bins,
                "accuracy": accuracy,
                "slo_attainment": [None if a is None else 0.95 for a in accuracy],
            }
        },
        "plan": {"cpu1": None, "cpu0": "digits.cnn_small"},
        "events": [
            {
                "time": t[20],
                "reason": "every 10 s",
                "assignment": {"cpu0": "digits.cnn_large"},
                "solve_time_s": 0.004,
                "status": "optimal",
            },
            {
                "time": t[60],
                "reason": HOSTILE,
                "assignment": {"cpu0": "digits.cnn_small"},
                "solve_time_s": 0.012,
                "status": "time_limit",
            },
        ],
        "totals": {"requests": 1800, "slo_violations": 90, "shed": 12},
    }


EMPTY = {"window_s": 1.0, "t": [], "families": {}, "plan": {}, "events": [],
         "totals": {"requests": 0, "slo_violations": 0, "shed": 0}}  # fmt: skip
MALFORMED = {"t": "soon", "families": [1, 2], "plan": None, "events": {"a": 1}, "totals": 3}


class StandIn(ThreadingHTTPServer):
    """Serves the page's files and whatever `payload` holds as /rheostat/timeseries."""

    daemon_threads = True
    payload: dict[str, Any] = EMPTY


class StandInHandler(BaseHTTPRequestHandler):
    server: StandIn

    def do_GET(self) -> None:
        if self.path == "/dashboard":
            self.reply(200, (STATIC / "dashboard.html").read_bytes(), "text/html")
        elif self.path.startswith("/static/") and "/" not in self.path[len("/static/") :]:
            path = STATIC / self.path[len("/static/") :]
            kind = {".js": "text/javascript", ".css": "text/css"}.get(path.suffix, "text/html")
            self.reply(*((200, path.read_bytes()) if path.is_file() else (404, b"")), kind)
        elif self.path == "/rheostat/timeseries":
            self.reply(200, json.dumps(self.server.payload).encode(), "application/json")
        else:
            self.reply(404, b"", "text/plain")

    def reply(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    server = StandIn(("127.0.0.1", 0), StandInHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_page_draws_canned_series_escapes_strings_and_notices_a_lost_server(
    stand_in: StandIn, page: Page
) -> None:
    url = f"http://127.0.0.1:{stand_in.server_address[1]}"
    page.page.goto(f"{url}/dashboard")
    page.wait_for("document.getElementById('status-text').textContent === 'live'")
    assert page.page.is_visible("#families-empty")
    assert page.page.locator("#plan-table tbody").text_content() == "No devices reported."

    stand_in.payload = MALFORMED
    page.page.wait_for_timeout(1500)
    assert page.status() == "live"

    stand_in.payload = series = canned_series(time.time())
    page.wait_for("document.querySelectorAll('canvas').length === 2")
    page.wait_for(f"{POINTS_JS}.every(n => n > 0)")
    complete = 89  # the newest bin is still filling: never drawn
    digits = series["families"]["digits"]
    quality = sum(v is not None for k in ("accuracy", "slo_attainment") for v in digits[k][:-1])
    assert page.points() == [3 * complete, quality]
    rows = page.page.eval_on_selector_all(
        "#plan-table tbody tr", "rows => rows.map(r => [r.dataset.device, r.dataset.variant])"
    )
    assert rows == [["cpu0", "digits.cnn_small"], ["cpu1", ""]]
    expected_rate = sum(digits["demand_rps"][-6:-1]) / 5
    assert page.page.text_content("#card-rate .card-value") == f"{expected_rate:.1f}"
    assert page.page.text_content("#card-shed .card-value") == "12"
    reasons = page.page.locator("#events .event-reason").all_text_contents()
    assert reasons == [HOSTILE, "every 10 s"]  # newest first, shown as text
    assert page.page.locator("#events img, #events b").count() == 0
    assert page.page.evaluate("window.__pwned") is None

    stand_in.shutdown()  # the server stops answering
    page.wait_for("document.getElementById('status-text').textContent.includes('disconnected')")
    assert page.points() == [3 * complete, quality]  # the last data stays on screen
    assert page.errors == []


# -- against the real server -----------------------------------------------------------------


class Load:
    """Closed-loop JSON requests to digits at `rate_rps` (changeable) until stopped."""

    def __init__(self, url: str, rate_rps: float) -> None:
        self.url = url
        self.rate_rps = rate_rps
        self.statuses: Counter[int] = Counter()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            due = time.monotonic()
            while not self.stopped.is_set():
                reply = client.post("/v2/models/digits/infer", json=INFER_BODY)
                self.statuses[reply.status_code] += 1
                due = max(due + 1 / self.rate_rps, time.monotonic() - 1)
                self.stopped.wait(max(0.0, due - time.monotonic()))

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(15)


@pytest.fixture
def digits_server(default_repository: Path, tmp_path: Path) -> Iterator[Server]:
    repo = family_repository(default_repository, tmp_path / "digits-only", "digits")
    server = start_server(repo, "--device", "cpu:0", "--planner", "milp")
    yield server
    if server.process.poll() is None:
        stop_server(server)


def chart_regions(page: Page, screenshot: Path) -> list[tuple[float, int]]:
    """Per chart canvas in the screenshot: the pixels' grey-level standard deviation (0 when
    blank) and how many pixels are strongly coloured (series lines; axes and grid are grey)."""
    with Image.open(screenshot) as png:
        image = png.convert("RGB")
    regions = []
    for canvas in page.page.locator("canvas").all():
        box = canvas.bounding_box()
        assert box is not None
        crop = image.crop((int(box["x"]), int(box["y"]),
                           int(box["x"] + box["width"]), int(box["y"] + box["height"])))  # fmt: skip
        spread = ImageStat.Stat(crop.convert("L")).stddev[0]
        saturation = crop.convert("HSV").getchannel("S").histogram()
        regions.append((spread, sum(saturation[120:])))
    return regions


@pytest.mark.slow
def test_page_shows_live_server_under_load(
    digits_server: Server, page: Page, tmp_path: Path
) -> None:
    save = bool(os.environ.get("RHEOSTAT_SAVE_SCREENSHOT"))
    with Load(digits_server.url, rate_rps=25) as load:
        page.page.goto(f"{digits_server.url}/dashboard")
        page.wait_for("document.querySelector('#plan-table tr[data-variant^=\"digits.\"]')")
        page.wait_for(f"{POINTS_JS}.length === 2 && {POINTS_JS}.every(n => n >= 12)")
        if save:  # a longer, changing load so the kept picture shows something happening
            for rate_rps in (60, 120, 40):
                load.rate_rps = rate_rps
                page.page.wait_for_timeout(12_000)
        screenshot = tmp_path / "dashboard.png"
        page.page.screenshot(path=str(screenshot), full_page=True)
    assert 200 in load.statuses, load.statuses
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(screenshot) as png:
        width, height = png.size
    assert width == VIEWPORT["width"] and height >= 600
    regions = chart_regions(page, screenshot)
    assert len(regions) == 2 and all(spread > 5 and lines > 100 for spread, lines in regions), (
        regions
    )
    variant = page.page.get_attribute('#plan-table tr[data-variant^="digits."]', "data-variant")
    assert variant is not None and variant.split(".")[1] in DIGITS_VARIANTS
    assert float(str(page.page.text_content("#card-rate .card-value"))) > 0
    assert str(page.page.text_content("#card-slo .card-value")).endswith(" %")
    assert page.console_errors == [] and page.errors == []
    if save:
        target = ROOT / "benchmarks" / "results" / "dashboard.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(screenshot, target)

    stop_server(digits_server)
    page.wait_for("document.getElementById('status-text').textContent.includes('disconnected')")
    assert page.errors == []
