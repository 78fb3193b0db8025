"""The playground page at `/` in headless Chromium, against a live server with API keys and the committed models,
with every host but loopback unresolvable: each panel runs a real request and its result appears in the page.

Chromium is driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: JSON messages ending in NUL on
file descriptors 3 and 4), so no driver package is needed. `CELLSTATE_PLAYGROUND_SCREENSHOTS=docs` also writes a
screenshot of each panel to docs/playground-<panel>.png (the README's pictures).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import io
import json
import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_docs_offline import CHROMIUM_FLAGS, chromium
from tests.live_server import live_server

REPO = Path(__file__).resolve().parents[2]
API_KEY = "playground-test-key"
SCREENSHOTS = os.environ.get("CELLSTATE_PLAYGROUND_SCREENSHOTS")  # a directory, e.g. docs
VIEWPORT = (1000, 900)
# The docs test's flags without --virtual-time-budget (this test waits for conditions itself).
FLAGS = [f for f in CHROMIUM_FLAGS if not f.startswith("--virtual-time-budget")]

pytestmark = pytest.mark.e2e


def save_png(path: Path, data: str) -> None:
    """A base64 PNG from Chromium, reduced to a 128-colour palette when Pillow is there (a third of the size)."""
    raw = base64.b64decode(data)
    try:
        from PIL import Image
    except ImportError:
        path.write_bytes(raw)
        return
    with Image.open(io.BytesIO(raw)) as image:
        image.convert("RGB").quantize(colors=128, dither=Image.Dither.NONE).save(path, optimize=True)


class DevTools:
    """The DevTools protocol over Chromium's pipe: one page target, commands answered in order."""

    def __init__(self, binary: str, profile: Path) -> None:
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()
        # Move the child's ends out of the way of 3 and 4 before dup2 puts them there.
        child_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 100)
        child_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 100)
        os.close(to_browser_r)
        os.close(from_browser_w)

        def map_pipes() -> None:  # runs in the child before exec
            os.dup2(child_r, 3)
            os.dup2(child_w, 4)

        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe", "--window-size=1100,900",
             "about:blank"],
            preexec_fn=map_pipes,  # the test process runs no other threads
            close_fds=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(child_r)
        os.close(child_w)
        self.out = to_browser_w
        self.inp = from_browser_r
        self.buffer = b""
        self.next_id = 0
        self.session: str | None = None
        targets = self.call("Target.getTargets", session=False)["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        self.session = self.call("Target.attachToTarget", {"targetId": page["targetId"], "flatten": True},
                                 session=False)["sessionId"]  # fmt: skip
        self.call("Page.enable")
        self.call("Runtime.enable")

    def _message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.inp], [], [], left)[0]:
                raise TimeoutError("no answer from Chromium")
            chunk = os.read(self.inp, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed its DevTools pipe")
            self.buffer += chunk
        raw, _, self.buffer = self.buffer.partition(b"\0")
        return dict(json.loads(raw))

    def call(self, method: str, params: dict[str, Any] | None = None, session: bool = True,
             timeout: float = 30.0) -> dict[str, Any]:  # fmt: skip
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self.out, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            answer = self._message(deadline)
            if answer.get("id") == self.next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return dict(answer.get("result", {}))

    def js(self, expression: str, timeout: float = 30.0) -> Any:
        """Evaluate in the page (promises awaited) and return the value; a thrown error fails the test."""
        result = self.call("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                "returnByValue": True}, timeout=timeout)  # fmt: skip
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise AssertionError(details.get("exception", {}).get("description") or details.get("text"))
        return result["result"].get("value")

    def wait(self, condition: str, timeout: float = 15.0) -> Any:
        """Poll a JavaScript expression in the page until it is truthy; return its value."""
        return self.js(
            f"""new Promise((resolve, reject) => {{
                const start = Date.now();
                (function poll() {{
                    let value; try {{ value = ({condition}); }} catch (e) {{ value = undefined; }}
                    if (value) resolve(value);
                    else if (Date.now() - start > {timeout * 1000}) reject(new Error("timed out waiting for: " +
                        {json.dumps(condition)} + " | page errors: " + [...document.querySelectorAll(".error")]
                        .filter(e => !e.hidden).map(e => e.textContent).join(" / ")));
                    else setTimeout(poll, 25);
                }})();
            }})""",
            timeout=timeout + 5,
        )

    def viewport(self, width: int, height: int, mobile: bool = False) -> None:
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})  # fmt: skip

    def screenshot(self, selector: str, path: Path) -> None:
        """A PNG of one element: the viewport grows to the whole page first, so nothing moves while it is taken."""
        self.viewport(VIEWPORT[0], int(self.js("document.documentElement.scrollHeight")))
        try:
            rect = self.js(f"""new Promise(r => requestAnimationFrame(() => {{
                const b = document.querySelector({json.dumps(selector)}).getBoundingClientRect();
                r({{x: b.left + scrollX, y: b.top + scrollY, width: b.width, height: b.height}}); }}))""")
            clip = {k: round(v) for k, v in rect.items()} | {"scale": 1}
            save_png(path, self.call("Page.captureScreenshot", {"format": "png", "clip": clip})["data"])
        finally:
            self.viewport(*VIEWPORT)

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.call("Browser.close", session=False, timeout=5)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.out)
        os.close(self.inp)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {**os.environ, "CELLSTATE_API_KEYS": API_KEY, "CELLSTATE_LOG_LEVEL": "warning"}
    log = tmp_path_factory.mktemp("playground") / "server.log"
    with live_server(sys.executable, cwd=REPO, env=env, log_file=log) as (url, _):
        yield url


@pytest.fixture(scope="module")
def page(server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevTools]:
    browser = DevTools(chromium(), tmp_path_factory.mktemp("chromium-profile"))
    try:
        browser.viewport(*VIEWPORT)
        browser.call("Page.navigate", {"url": f"{server}/"})
        browser.wait("document.readyState === 'complete' && document.body.dataset.ready")
        # Models need the key: before it is given, the panel shows the API's own 401 message.
        assert "missing API key" in browser.wait("document.querySelector('#models-error:not([hidden])')?.textContent")
        browser.js(f"""document.getElementById('api-key').value = {json.dumps(API_KEY)};
            document.getElementById('key-form').requestSubmit();""")  # fmt: skip
        browser.wait("document.querySelectorAll('#models-list .card').length === 3")
        if SCREENSHOTS:  # the sticky header would cover parts of panels captured below the first screen
            browser.js("document.querySelector('header.top').style.position = 'static'")
        yield browser
    finally:
        browser.close()


def shoot(page: DevTools, panel: str) -> None:
    if SCREENSHOTS:
        out = REPO / SCREENSHOTS / f"playground-{panel}.png"
        page.screenshot(f"#{panel}", out)


def test_page_and_assets_are_open_without_a_key_and_local(server: str) -> None:
    html = httpx.get(f"{server}/", timeout=5)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert not re.findall(r"(?:src|href)=[\"']?(?:https?:)?//", html.text), "the page loads something remote"
    for asset in re.findall(r"(?:src|href)=\"(playground/[^\"]+)\"", html.text):
        assert httpx.get(f"{server}/{asset}", timeout=5).status_code == 200, asset
    assert httpx.get(f"{server}/playground/nothing.js", timeout=5).status_code == 404
    assert httpx.get(f"{server}/models", timeout=5).status_code == 401  # the API itself still needs the key
    assert "sessionStorage" in httpx.get(f"{server}/playground/app.js", timeout=5).text  # never localStorage
    assert "localStorage" not in httpx.get(f"{server}/playground/app.js", timeout=5).text


def models_with_key(server: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{server}/models", headers={"X-API-Key": API_KEY}, timeout=5)
    assert answer.status_code == 200
    return list(answer.json())


def test_models_panel(page: DevTools, server: str) -> None:
    cards = page.js("""[...document.querySelectorAll('#models-list .card')].map(c => ({
        family: c.dataset.family, text: c.textContent}))""")
    assert {c["family"] for c in cards} == {"wordlm", "sentiment", "forecast"}
    wordlm = next(c["text"] for c in cards if c["family"] == "wordlm")
    assert "wordlm-2x400" in wordlm and "test_perplexity" in wordlm and "kneser_ney_5gram" in wordlm
    served = {m["family"]: m for m in models_with_key(server)}
    assert f"v{served['wordlm']['version']} (served)" in wordlm
    assert f"{served['wordlm']['precision']} served" in wordlm  # the precision GET /models reports, and the others
    assert all(v in wordlm for v in served["wordlm"]["variants"] if v != served["wordlm"]["precision"])
    # The limits GET /models reports (when it reports them) bound the inputs.
    limits = {family: m.get("limits") or {} for family, m in served.items()}
    if "max_horizon" in limits["forecast"]:
        assert page.js("document.getElementById('fc-horizon').max") == str(limits["forecast"]["max_horizon"])
    if "layers" in limits["wordlm"]:
        assert page.js("document.getElementById('insp-layer').options.length") == limits["wordlm"]["layers"]
    shoot(page, "models")


def test_generate_streams_words_stops_and_continues_a_session(page: DevTools, server: str) -> None:
    # Limits come from the API's spec.
    assert page.js("document.getElementById('gen-max').max") == "1024"
    page.js("""document.getElementById('gen-prompt').value = 'Alice was beginning to get very tired of';
        document.getElementById('gen-max').value = '12'; document.getElementById('gen-seed').value = '7';
        document.getElementById('gen-form').requestSubmit();""")
    page.wait("document.getElementById('gen-output').dataset.finish === 'length'")
    assert page.js("document.querySelectorAll('#gen-output .tok').length") == 12  # one span per streamed piece
    assert "12 new" in page.js("document.getElementById('gen-status').textContent")
    # The streaming operation: POST /generate/stream when the service has it (else /generate with "stream": true).
    spec_paths = httpx.get(f"{server}/openapi.json", timeout=5).json()["paths"]
    expected = "/generate/stream" if "/generate/stream" in spec_paths else "/generate"
    used = page.js("""performance.getEntriesByType('resource').map(e => new URL(e.name).pathname)
        .filter(p => p.startsWith('/generate'))""")
    assert used == [expected]
    shoot(page, "generate")

    # Stop: the page aborts the fetch as soon as words arrive; the service drops the sequence, so the generation
    # never completes (a completed one would add its 1024 tokens to the counter).
    def generated() -> float:
        metrics = httpx.get(f"{server}/metrics", timeout=5).text
        found = re.search(r'^cellstate_tokens_generated_total\{family="wordlm"\} (\S+)', metrics, re.M)
        return float(found.group(1)) if found else 0.0

    before = generated()
    page.js("""document.getElementById('gen-max').value = '1024'; document.getElementById('gen-seed').value = '';
        new MutationObserver((_, observer) => {
            if (document.querySelectorAll('#gen-output .tok').length >= 3) {
                document.getElementById('gen-stop-btn').click(); observer.disconnect(); }
        }).observe(document.getElementById('gen-output'), {childList: true});
        document.getElementById('gen-form').requestSubmit();""")
    page.wait("document.getElementById('gen-output').dataset.finish === 'stopped'")
    assert 3 <= page.js("document.querySelectorAll('#gen-output .tok').length") < 1024
    time.sleep(1.5)
    assert generated() == before, "the stopped generation ran to its end on the server"

    # Session: a second run continues the first one's text without a prompt.
    page.js("""document.getElementById('gen-clear').click(); document.getElementById('gen-session').checked = true;
        document.getElementById('gen-prompt').value = 'The Queen said'; document.getElementById('gen-max').value = '5';
        document.getElementById('gen-form').requestSubmit();""")  # fmt: skip
    page.wait("document.getElementById('gen-output').dataset.finish === 'length'")
    page.wait("document.getElementById('gen-prompt').value === ''")  # the session holds the text now
    page.js("delete document.getElementById('gen-output').dataset.finish; "
            "document.getElementById('gen-form').requestSubmit();")  # fmt: skip
    page.wait("document.getElementById('gen-output').dataset.finish === 'length'")
    assert page.js("document.querySelectorAll('#gen-output .tok').length") == 10
    assert page.js("document.querySelectorAll('#gen-output .prompt').length") == 1
    assert "the next run continues" in page.js("document.getElementById('gen-status').textContent")

    # An invalid value is answered by the API, and its message is shown as it words it.
    page.js("""document.getElementById('gen-session').checked = false;
        document.getElementById('gen-session').dispatchEvent(new Event('change'));
        document.getElementById('gen-prompt').value = 'The cat'; document.getElementById('gen-temp').value = '9';
        document.getElementById('gen-form').requestSubmit();""")
    error = page.wait("document.querySelector('#gen-error:not([hidden]) .message')?.textContent")
    assert error == "temperature: Input should be less than or equal to 5"
    page.js("document.getElementById('gen-temp').value = '0.8'")


def test_forecast_panel_draws_history_median_and_band(page: DevTools) -> None:
    # No season length: the service uses its own; then the sample's 12 (monthly data).
    page.js("""document.getElementById('fc-sample').click(); document.getElementById('fc-season').value = '';
        document.getElementById('fc-horizon').value = '12'; document.getElementById('fc-form').requestSubmit();""")
    status = page.wait("document.querySelector('#fc-chart svg') && document.getElementById('fc-status').textContent")
    assert re.search(r"season length \d+ \(chosen by the service\)", status), status
    page.js("""document.getElementById('fc-chart').replaceChildren(); document.getElementById('fc-sample').click();
        document.getElementById('fc-form').requestSubmit();""")
    page.wait("document.querySelector('#fc-chart svg')")
    assert "season length 12 ·" in page.js("document.getElementById('fc-status').textContent")
    counts = page.js("""({history: +document.querySelector('#fc-chart polyline.history').dataset.points,
        median: document.querySelectorAll('#fc-chart circle.median-pt').length,
        band: +document.querySelector('#fc-chart polygon.band').dataset.points,
        csv: document.getElementById('fc-download').href})""")
    assert counts["history"] == 72 and counts["median"] == 12 and counts["band"] == 12
    csv = page.js(f"fetch({json.dumps(counts['csv'])}).then(r => r.text())")
    lines = csv.strip().split("\n")
    assert lines[0] == "t,history,median,q0.1,q0.9" and len(lines) == 1 + 72 + 12
    assert lines[73].startswith("73,,")  # the first forecast step
    shoot(page, "forecast")


def test_sentiment_panel_draws_probability_bars(page: DevTools) -> None:
    page.js("document.getElementById('sent-form').requestSubmit()")
    page.wait("document.querySelectorAll('#sent-results li').length === 3")
    labels = page.js("[...document.querySelectorAll('#sent-results li')].map(li => li.dataset.label)")
    assert labels[:2] == ["positive", "negative"]
    bars = page.js("[...document.querySelectorAll('#sent-results .bar')].map(b => +b.getAttribute('aria-valuenow'))")
    assert len(bars) == 6 and all(abs(bars[i] + bars[i + 1] - 1) < 1e-3 for i in range(0, 6, 2))
    shoot(page, "sentiment")


def test_inside_the_lstm_heat_map_neuron_line_and_neighbours(page: DevTools) -> None:
    page.js("""document.getElementById('insp-text').value = 'the queen said , " off with her head ! "';
        document.getElementById('insp-k').value = '8'; document.getElementById('insp-form').requestSubmit();""")
    page.wait("document.querySelectorAll('#insp-heatmap td.cell').length === 8 * 11")  # neurons x tokens
    assert page.js("document.querySelectorAll('#insp-heatmap thead th').length") == 1 + 11
    assert page.js("+document.querySelector('#insp-line polyline.activation').dataset.points") == 11
    # Another neuron, then a gate: the line follows.
    second = page.js("document.querySelectorAll('#insp-heatmap tbody button')[1].dataset.neuron")
    page.js("document.querySelectorAll('#insp-heatmap tbody button')[1].click()")
    assert page.wait("document.querySelector('#insp-heatmap tr.selected')?.dataset.neuron") == second
    assert f"Neuron {second}, layer 0, hidden" in page.js("document.getElementById('insp-line').textContent")
    page.js("""const s = document.getElementById('insp-state'); s.value = 'forget';
        s.dispatchEvent(new Event('change'));""")
    assert f"Neuron {second}, layer 0, forget" in page.wait("document.getElementById('insp-line').textContent")
    page.js(
        "const s2 = document.getElementById('insp-state'); s2.value = 'hidden'; s2.dispatchEvent(new Event('change'))"
    )
    page.js("document.getElementById('nb-word').value = 'queen'; document.getElementById('nb-form').requestSubmit();")
    page.wait("document.querySelectorAll('#nb-results li').length === 8")
    assert "duchess" in page.js("document.getElementById('nb-results').textContent")
    shoot(page, "inside")
    # An unknown word: the API's 404 message, as it words it.
    page.js("document.getElementById('nb-word').value = 'zzzqx'; document.getElementById('nb-form').requestSubmit();")
    assert "zzzqx" in page.wait("document.querySelector('#nb-error:not([hidden]) .message')?.textContent")


def test_phone_sized_screen_has_no_horizontal_scroll(page: DevTools) -> None:
    page.viewport(390, 844, mobile=True)
    try:
        page.wait("document.documentElement.clientWidth <= 390")
        overflow = page.js("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"the page is {overflow}px wider than a phone screen"
        # Every form control has a label a screen reader can read.
        unlabeled = page.js("""[...document.querySelectorAll('input, select, textarea')]
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map(e => e.id)""")
        assert unlabeled == []
        # The charts are redrawn at the phone's width.
        page.wait("+document.querySelector('#fc-chart svg').getAttribute('viewBox').split(' ')[2] <= 390")
        if SCREENSHOTS:
            top = page.js("window.scrollTo(0, document.getElementById('forecast').offsetTop - 8), scrollY")
            clip = {"x": 0, "y": top, "width": 390, "height": 844, "scale": 1}
            data = page.call("Page.captureScreenshot", {"format": "png", "clip": clip})["data"]
            save_png(REPO / SCREENSHOTS / "playground-phone.png", data)
    finally:
        page.viewport(*VIEWPORT)
