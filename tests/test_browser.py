"""The book as a reader sees it: every page of the built HTML opened in headless Chromium (Debian's chromium and
chromedriver, never a downloaded browser or driver), checked against what its source says it must show.

Needs ``_build/html`` (``make html``, which ``make browser`` runs first). Saves a full-page screenshot per page
under ``_build/screenshots/``.
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from book_pages import ROOT, Expected, expected, toc_pages

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
LOCAL_SCHEMES = {"data", "blob", "about", "file", "chrome"}  # chrome: the browser's own resources

pytestmark = pytest.mark.browser
APPENDIX = ("book/10_reproducing",)  # the reproduction appendix may name make targets and constants
ISSUE = re.compile(r"\bissues?\s+#?\d+|#\d+\b", re.I)

WAIT_FOR_PAGE = """
const done = arguments[arguments.length - 1];
const images = () => Promise.all([...document.images].map(img => {
  img.loading = 'eager';
  return img.complete ? null : new Promise(ok => { img.onload = img.onerror = ok; });
}));
const mj = window.MathJax && MathJax.startup && MathJax.startup.promise;
const math = mj ? MathJax.startup.promise : Promise.resolve();
Promise.all([images(), math]).then(() => done('ok'), e => done('error: ' + e));
"""

READ_PAGE = """
const article = document.querySelector('article') || document.body;
const figure = id => { const f = document.getElementById(id); const img = f && f.querySelector('img');
                       return img ? img.naturalWidth : -1; };
return {
  text: article.innerText,
  images: [...article.querySelectorAll('img')].map(i => [i.getAttribute('src'), i.naturalWidth]),
  figures: Object.fromEntries(arguments[0].map(id => [id, figure(id)])),
  tables: article.querySelectorAll('table').length,
  mathjax: document.querySelectorAll('mjx-container').length,
  errors: article.querySelectorAll('.traceback, .output.error').length,
  title: document.title,
  sidebar: (document.querySelector('#bd-docs-nav, nav.bd-links') || {innerText: ''}).innerText,
  prose: (() => { const copy = article.cloneNode(true);  // what a reader reads: the page without code sources
                  copy.querySelectorAll('.cell_input, .highlight').forEach(e => e.remove());
                  return copy.textContent; })(),
};
"""

# Every table of the article at the window's width: number cells (a number, mean ± spread, an interval) whose
# text takes more than one line (content height against the cell's line height), and tables wider than the
# article's text column.
MEASURE_TABLES = r"""
const article = document.querySelector('article') || document.body;
const column = article.getBoundingClientRect().width;
const NUMBER = /^[-+\u2212\u00b1\u2011\u2013\d.,%\u00d7x\[\]()e\s]+$/;
const isNumber = cell => /\d/.test(cell.innerText) && NUMBER.test(cell.innerText.trim());
return [...article.querySelectorAll('table')].map((table, i) => {
  const caption = (table.querySelector('caption') || {innerText: ''}).innerText.slice(0, 60);
  const wrapped = [...table.querySelectorAll('td, th')].filter(isNumber).filter(cell => {
    const range = document.createRange();
    range.selectNodeContents(cell);
    const style = getComputedStyle(cell);
    const line = parseFloat(style.lineHeight) || 1.2 * parseFloat(style.fontSize);
    return range.getBoundingClientRect().height > 1.5 * line;
  }).map(cell => cell.innerText.replace(/\s+/g, ' ').slice(0, 40));
  const box = table.parentElement;  // the theme's scroll container: overflow is hidden behind a scroll bar
  const width = Math.max(table.getBoundingClientRect().width, box.scrollWidth);
  return {index: i, caption: caption, width: width, column: Math.min(column, box.clientWidth), wrapped: wrapped};
});
"""


def require_browser() -> None:
    """One line saying what to install when Debian's Chromium or its driver is missing."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: install Debian's browser with "
                    "`apt-get install chromium chromium-driver` (`make browser-deps` does it as root)", pytrace=False)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """Serve ``_build/html`` on a loopback port for the session."""
    if not (HTML / "index.html").exists():
        pytest.fail("_build/html is missing: run `make html` first (`make browser` does)", pytrace=False)
    handler = functools.partial(QuietHandler, directory=str(HTML))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest's output readable
        pass


@pytest.fixture(scope="module")
def driver() -> Iterator:
    require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="cnode-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,900", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    browser = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    browser.set_script_timeout(60)
    yield browser
    browser.quit()
    shutil.rmtree(profile, ignore_errors=True)


def requested_urls(browser) -> list[str]:
    """Every URL the page asked for since the last call (Chrome's performance log)."""
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def is_local(url: str) -> bool:
    parsed = urlparse(url)
    return parsed.scheme in LOCAL_SCHEMES or parsed.hostname in LOCAL_HOSTS


def full_page_screenshot(browser, path: Path) -> None:
    """A PNG of the whole page: the viewport is made as tall as the page for the capture (capturing beyond the
    viewport left the lower part of tall pages blank), then restored."""
    size = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": int(size["width"]), "height": int(size["height"]), "deviceScaleFactor": 1, "mobile": False})
    try:
        shot = browser.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))


@pytest.mark.parametrize("page", toc_pages(), ids=lambda p: Path(p).name)
def test_page_shows_what_its_source_promises(page: str, server: str, driver) -> None:
    want: Expected = expected(page)
    assert want.html.exists(), f"{want.html} was not built"
    requested_urls(driver)  # drop what earlier pages asked for
    driver.get(f"{server}/{page}.html")
    assert driver.execute_async_script(WAIT_FOR_PAGE) == "ok"
    seen = driver.execute_script(READ_PAGE, want.figure_ids)
    tables = driver.execute_script(MEASURE_TABLES)  # at the 1280-pixel window, before the full-page capture
    full_page_screenshot(driver, SHOTS / f"{Path(page).name}.png")
    problems = []
    if "<Figure size" in seen["text"]:
        problems.append("a figure is shown as '<Figure size ...>' text")
    if "{glue" in seen["text"]:
        problems.append("an unresolved {glue} role or directive")
    broken = [src for src, width in seen["images"] if width <= 0]
    if broken:
        problems.append(f"images that did not load: {broken}")
    missing = [name for name, width in seen["figures"].items() if width <= 0]
    if missing:
        problems.append(f"figures without a loaded <img>: {missing} (of {len(want.figure_ids)})")
    if len(seen["images"]) < want.images:
        problems.append(f"{len(seen['images'])} images, the source displays {want.images}")
    if seen["tables"] < want.tables:
        problems.append(f"{seen['tables']} tables, the source displays {want.tables}")
    if seen["errors"]:
        problems.append(f"{seen['errors']} cells with an error output")
    if want.math and not seen["mathjax"]:
        problems.append("math is not typeset (no MathJax elements)")
    if "\\(" in seen["text"] or "\\[" in seen["text"]:
        problems.append("raw TeX delimiters in the text")
    for where in ("title", "sidebar"):  # titles are plain text: pages without math show them untypeset
        if any(mark in seen[where] for mark in ("\\(", "$", "\\rho")):
            problems.append(f"raw TeX in the {where}: {seen[where][:200]!r}")
    problems += table_problems(tables)
    problems += word_problems(page, seen["prose"])
    remote = sorted({url for url in requested_urls(driver) if not is_local(url)})
    if remote:
        problems.append(f"requests to non-local URLs: {remote}")
    assert not problems, f"{page}: " + "; ".join(problems)


def table_problems(tables: list[dict]) -> list[str]:
    """What does not fit at a 1280-pixel window: number cells on two lines, tables wider than the column."""
    out = []
    for t in tables:
        name = f"table {t['index'] + 1}" + (f" ({t['caption']!r})" if t["caption"] else "")
        if t["wrapped"]:
            out.append(f"{name}: {len(t['wrapped'])} number cell(s) wrap onto a second line, e.g. {t['wrapped'][:3]}")
        if t["width"] > t["column"] + 1:
            out.append(f"{name}: {t['width']:.0f} px wide, the text column {t['column']:.0f} px")
    return out


def word_problems(page: str, text: str) -> list[str]:
    """Project words in a reader's page (the reproduction appendix excepted): issue references, upper-case
    constants of ``src/``, ``make`` targets."""
    if page in APPENDIX:
        return []
    found = [m.group(0) for m in ISSUE.finditer(text)]
    found += sorted({w for w in re.findall(r"\b[A-Z][A-Z0-9_]{2,}\b", text) if w in source_constants()})
    found += sorted({m.group(0) for m in re.finditer(r"\bmake ([a-z][\w-]*)", text) if m.group(1) in make_targets()})
    return [f"project words in the text: {found[:8]}"] if found else []


@functools.cache
def source_constants() -> frozenset[str]:
    """Module-level upper-case names of ``src/cnode`` (``PAPER_GRID``, ``TARGETS``, ...)."""
    names = set()
    for path in (ROOT / "src" / "cnode").rglob("*.py"):
        names |= set(re.findall(r"^([A-Z][A-Z0-9_]*_[A-Z0-9_]+|[A-Z]{4,})\s*[:=]", path.read_text(), re.M))
    return frozenset(names)


@functools.cache
def make_targets() -> frozenset[str]:
    return frozenset(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))


def test_word_and_table_checks_catch_what_they_should() -> None:
    assert word_problems("book/03_robustness", "as issue 11 found, PAPER_GRID holds it; run make bench")
    assert word_problems("book/03_robustness", "see issue #4")
    assert not word_problems("book/03_robustness", "MNIST and FashionMNIST, the CNN, PGD at eps 0.05")
    assert not word_problems(APPENDIX[0], "make bench measures PAPER_GRID")
    assert table_problems([{"index": 0, "caption": "", "width": 900, "column": 800, "wrapped": ["0.95 ± 0.01"]}])
    assert not table_problems([{"index": 0, "caption": "", "width": 700, "column": 800, "wrapped": []}])
