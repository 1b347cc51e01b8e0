"""The HTML report in a real headless Chromium (Debian's package): it renders, the chart
is drawn, and nothing overflows at phone width.

Chromium is driven through its DevTools protocol over a websocket (aiohttp's client):
the page itself runs no JavaScript; the measuring is done from outside, like a person
with the inspector open. Skips only when Chromium is absent and the run is not CI
(.ci/run installs it and sets TIERBOT_REQUIRE_CHROMIUM=1, which turns the skip into a
failure).
"""
from __future__ import annotations

import asyncio
import base64
import datetime as dt
import itertools
import json
import os
import shutil
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot import Attempt, Event, Reply
from bot.app import build_bot
from bot.config import Config
from bot.report.web import add_routes

TOKEN = "browser-token-0123456789abcdef"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

if CHROMIUM is None:
    if os.environ.get("TIERBOT_REQUIRE_CHROMIUM"):
        raise RuntimeError("Chromium is required here (TIERBOT_REQUIRE_CHROMIUM is set) but was not found")
    pytestmark = pytest.mark.skip(
        reason="chromium not installed (apt-get install -y chromium); CI installs it and runs this test")


class DevTools:
    """Just enough of the Chrome DevTools protocol: commands on one page session."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.session: str | None = None

    async def send(self, method: str, params: dict | None = None, *, session: bool = True,
                   until_event: str | None = None) -> dict:
        msg_id = next(self.ids)
        msg = {"id": msg_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        await self.ws.send_json(msg)
        result, seen_event = None, until_event is None
        while result is None or not seen_event:
            data = json.loads((await self.ws.receive(timeout=30)).data)
            if data.get("id") == msg_id:
                if "error" in data:
                    raise RuntimeError(f"{method}: {data['error']}")
                result = data["result"]
            elif until_event and data.get("method") == until_event:
                seen_event = True
        return result

    async def evaluate(self, expression: str):
        r = await self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return r["result"]["value"]


async def launch(profile: Path) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
        "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    port_file = profile / "DevToolsActivePort"
    for _ in range(300):  # Chromium writes its port here once it listens
        if port_file.exists() and len(port_file.read_text().splitlines()) >= 2:
            port, path = port_file.read_text().splitlines()[:2]
            return proc, f"ws://127.0.0.1:{port}{path}"
        if proc.returncode is not None:
            break
        await asyncio.sleep(0.1)
    proc.kill()
    raise RuntimeError("chromium did not start its DevTools endpoint")


MEASURE = """(() => {
  const vw = document.documentElement.clientWidth;
  const svg = document.getElementById('cost-chart');
  const box = svg ? svg.getBoundingClientRect() : null;
  const inScroller = el => el.closest('.scroll') !== null;
  const over = [...document.querySelectorAll('body *')]
    .filter(el => !inScroller(el) && el.getBoundingClientRect().right > vw + 0.5)
    .map(el => el.tagName + (el.id ? '#' + el.id : '') + '.' + el.className);
  return {vw, scrollWidth: document.documentElement.scrollWidth, bodyScroll: document.body.scrollWidth,
          bars: svg ? svg.querySelectorAll('rect.bar').length : 0,
          svgWidth: box ? box.width : 0, svgHeight: box ? box.height : 0,
          over, title: document.title, messages: document.getElementById('messages').textContent,
          warn: !!document.getElementById('price-unknown'),
          scrollers: [...document.querySelectorAll('.scroll')].map(s => [s.scrollWidth, s.clientWidth])};
})()"""


@pytest.fixture
async def report_url(base_env):
    """A real server with GET /report over a ledger holding 14 days of spend."""
    now = [0.0]
    env = base_env | {"TIERBOT_API_TOKEN": TOKEN}
    bot = build_bot(Config.from_env(env, dotenv=False), plugins=("bot.ledger.plugin:install",))
    ledger = bot.services["ledger"]
    ledger.clock = lambda: now[0]
    today = dt.datetime.now(dt.timezone.utc).replace(hour=12, minute=0, second=0, microsecond=0)
    for d in range(14):
        for i, (provider, model, cost) in enumerate([("groq", "llama-3.3-70b-versatile", 0.002 * (d + 1)),
                                                     ("gemini", "gemini-2.5-flash", 0.001),
                                                     ("claude", "a-model-with-a-very-long-name-nobody-priced", None)]):
            now[0] = (today - dt.timedelta(days=d)).timestamp() + i
            ledger.record_reply(
                Event("telegram", f"c{d}-{i}", "u", "a question with a very long unbroken word " + "x" * 120),
                Reply("a", "llm", provider, model, latency_ms=100.0 * (i + 1),
                      attempts=[Attempt(provider, model, "ok", input_tokens=1000, output_tokens=100, cost_usd=cost)]))
        now[0] = (today - dt.timedelta(days=d)).timestamp() + 5
        ledger.record_reply(Event("telegram", "t", "u", "do you sell " + "very " * 30 + "big boats?"),
                            Reply("t", "template", meta={"template": "generic"}))
    await ledger.flush()
    ledger.clock = lambda: today.timestamp() + 60
    app = web.Application()
    add_routes(app, bot)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    yield str(server.make_url("/report")) + f"?token={TOKEN}&date={today.date().isoformat()}"
    await server.close()
    await bot.aclose()


@pytest.mark.parametrize("width, height, mobile", [(390, 844, True), (1280, 800, False)])
async def test_html_report_renders_with_chart_and_fits_the_screen(report_url, tmp_path, width, height, mobile):
    proc, ws_url = await launch(tmp_path / "chromium-profile")
    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(ws_url, max_msg_size=0) as ws:
            cdp = DevTools(ws)
            target = await cdp.send("Target.createTarget", {"url": "about:blank"}, session=False)
            attached = await cdp.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True},
                                      session=False)
            cdp.session = attached["sessionId"]
            await cdp.send("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 2 if mobile else 1,
                            "mobile": mobile})
            await cdp.send("Page.enable")
            await cdp.send("Page.navigate", {"url": report_url}, until_event="Page.loadEventFired")
            m = await cdp.evaluate(MEASURE)
            shot = await cdp.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
            out = Path(os.environ.get("TIERBOT_REPORT_SCREENSHOTS") or tmp_path)  # to look at it yourself
            out.mkdir(parents=True, exist_ok=True)
            (out / f"report-{width}.png").write_bytes(base64.b64decode(shot["data"]))
            await cdp.send("Browser.close", session=False)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    assert m["title"].startswith("tierbot report"), m
    assert m["messages"] == "4"
    assert m["warn"]  # the unpriced claude model is flagged
    # The chart: 14 days × (groq + gemini) bars; it fills the width and has a real height.
    assert m["bars"] == 28, m
    assert m["svgWidth"] > 0.8 * min(width, 960) - 40 and m["svgHeight"] > 100, m
    # Nothing makes the page wider than the screen (tables may scroll inside their box).
    assert width - 20 <= m["vw"] <= width, m  # a desktop scrollbar takes a few pixels
    assert m["scrollWidth"] <= m["vw"] and m["bodyScroll"] <= m["vw"], m
    assert m["over"] == [], m
