"""Open an HTML page in headless Chromium and report what actually rendered.

A test helper for the HTML report: the Debian packages ``chromium`` and ``chromium-driver``
(``make browser`` installs them) driven by selenium. ``open_page`` loads a local file, waits for
every image, takes a full-page screenshot and returns :class:`PageFacts`: the headings, the tables
and each ``<img>`` as the browser decoded it (a broken image has ``natural_width == 0``), plus the
console errors. ``check_rendered`` turns the facts into a list of problems; ``needs_browser`` skips a
test where no browser is installed (or fails it when ``RETDM_REQUIRE_BROWSER=1``, as in CI).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
INSTALL_HINT = "install it with `make browser` (apt-get install chromium chromium-driver, as root or with sudo)"
MAX_HEIGHT = 16_384  # px; taller pages are cut in the screenshot (Chromium's largest texture side)
TIMEOUT_S = 30


@dataclass(frozen=True)
class Heading:
    """An ``<h1>``-``<h3>`` as rendered: ``level`` 1-3 and its visible text."""

    level: int
    text: str


@dataclass(frozen=True)
class TableFact:
    """A rendered ``<table>``: its header texts, its body row count and its on-screen size in px."""

    headers: tuple[str, ...]
    rows: int
    width: float
    height: float


@dataclass(frozen=True)
class ImageFact:
    """An ``<img>`` as decoded: ``natural_*`` are 0 for a broken image; ``width``/``height`` on screen."""

    alt: str
    src: str  # shortened to 80 characters for messages
    caption: str  # the enclosing <figure>'s <figcaption>, or ""
    natural_width: int
    natural_height: int
    width: float
    height: float
    complete: bool

    @property
    def broken(self) -> bool:
        """True when the browser could not decode the image or laid it out with no area."""
        return self.natural_width == 0 or self.natural_height == 0 or self.width == 0 or self.height == 0


@dataclass(frozen=True)
class PageFacts:
    """What the browser rendered for one page (see :func:`open_page`)."""

    url: str
    title: str
    headings: tuple[Heading, ...]
    tables: tuple[TableFact, ...]
    images: tuple[ImageFact, ...]
    console_errors: tuple[str, ...]
    screenshot: Path

    @property
    def heading_texts(self) -> tuple[str, ...]:
        """The headings' texts in document order."""
        return tuple(heading.text for heading in self.headings)


def browser_missing() -> str | None:
    """Say why no headless browser can run here, or return None when one can.

    Returns:
        A skip reason naming what is missing and how to install it, or None.
    """
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed in this environment; run `make setup` (requirements-dev.txt pins it)"
    for name, path in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)):
        if not os.access(path, os.X_OK) and shutil.which(name) is None:
            return f"{name} not found at {path} or on PATH; {INSTALL_HINT}"
    return None


needs_browser = pytest.mark.skipif(
    browser_missing() is not None and os.environ.get("RETDM_REQUIRE_BROWSER") != "1",
    reason=browser_missing() or "")
"""Mark a test that opens a browser: skipped (with the reason) when none is installed, unless
``RETDM_REQUIRE_BROWSER=1`` (CI), where :func:`open_page` then fails with that reason instead."""


def _binary(name: str, default: str) -> str:
    return default if os.access(default, os.X_OK) else (shutil.which(name) or default)


# Collected in the page in one round trip; sizes come from the layout, so hidden content counts as empty.
_FACTS_JS = """
const box = e => e.getBoundingClientRect();
const text = e => (e.innerText || e.textContent || '').trim();
const tables = Array.from(document.querySelectorAll('table')).map(t => {
  const head = t.tHead && t.tHead.rows.length ? t.tHead.rows[t.tHead.rows.length - 1]
    : (t.rows.length && Array.from(t.rows[0].cells).every(c => c.tagName === 'TH') ? t.rows[0] : null);
  const inHead = r => r === head || (r.parentElement && ['THEAD', 'TFOOT'].includes(r.parentElement.tagName));
  return {headers: head ? Array.from(head.cells).map(text) : [],
          rows: Array.from(t.rows).filter(r => !inHead(r)).length, width: box(t).width, height: box(t).height};
});
const images = Array.from(document.images).map(i => {
  const fig = i.closest('figure'), cap = fig && fig.querySelector('figcaption');
  return {alt: i.alt || '', src: (i.getAttribute('src') || '').slice(0, 80), caption: cap ? text(cap) : '',
          natural_width: i.naturalWidth, natural_height: i.naturalHeight,
          width: box(i).width, height: box(i).height, complete: i.complete};
});
const headings = Array.from(document.querySelectorAll('h1, h2, h3')).map(
  h => ({level: Number(h.tagName[1]), text: text(h)}));
return {title: document.title, headings, tables, images};
"""


def open_page(html_path: Path, screenshot: Path, width: int = 1280) -> PageFacts:
    """Render a local HTML file in headless Chromium and report what rendered.

    Loads ``html_path`` as a ``file://`` URL (lazy images forced eager), waits until the document
    and every image have finished loading, grows the window to the page's full height and saves a
    PNG screenshot of it.

    Args:
        html_path: the page to open.
        screenshot: where to write the full-page PNG (its folder is created).
        width: the window width in CSS px.

    Returns:
        The page's headings, tables, images, console errors (level SEVERE) and the screenshot path.

    Raises:
        RuntimeError: selenium, chromium or chromedriver is missing (the message says how to install it).
        FileNotFoundError: ``html_path`` does not exist.
        TimeoutError: the page or its images were still loading after 30 s.
    """
    from selenium import webdriver
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    missing = browser_missing()
    if missing is not None:
        raise RuntimeError(f"open_page: no headless browser: {missing}")
    html_path = Path(html_path).resolve()
    if not html_path.is_file():
        raise FileNotFoundError(f"open_page: expected an HTML file, found nothing at {html_path}")
    options = webdriver.ChromeOptions()
    options.binary_location = _binary("chromium", CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--allow-file-access-from-files", "--hide-scrollbars", f"--window-size={width},800"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=_binary("chromedriver", CHROMEDRIVER))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.set_page_load_timeout(TIMEOUT_S)
        driver.get(html_path.as_uri())
        wait = WebDriverWait(driver, TIMEOUT_S, poll_frequency=0.05)
        try:
            wait.until(lambda d: d.execute_script("return document.readyState") == "complete")
            driver.execute_script("for (const i of document.images) i.loading = 'eager';")
            chrome = driver.execute_script("return window.outerHeight - window.innerHeight")
            height = driver.execute_script(
                "return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)")
            driver.set_window_size(width, min(int(height) + int(chrome), MAX_HEIGHT))
            wait.until(lambda d: d.execute_script("return Array.from(document.images).every(i => i.complete)"))
        except TimeoutException as error:
            raise TimeoutError(f"open_page: {html_path} was still loading after {TIMEOUT_S} s "
                               "(document or an <img>); check for slow or remote resources") from error
        facts = driver.execute_script(_FACTS_JS)
        screenshot = Path(screenshot)
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        if not driver.save_screenshot(str(screenshot)):
            raise OSError(f"open_page: Chromium could not write the screenshot {screenshot}")
        errors = tuple(entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE")
    finally:
        driver.quit()
    return PageFacts(
        url=html_path.as_uri(), title=facts["title"],
        headings=tuple(Heading(**heading) for heading in facts["headings"]),
        tables=tuple(TableFact(headers=tuple(t["headers"]), rows=t["rows"], width=t["width"], height=t["height"])
                     for t in facts["tables"]),
        images=tuple(ImageFact(**image) for image in facts["images"]),
        console_errors=errors, screenshot=screenshot)


def check_rendered(facts: PageFacts, headings: tuple[str, ...] = (), min_tables: int = 0,
                   min_images: int = 0) -> list[str]:
    """List what did not render: missing headings, empty tables, broken images, console errors.

    Args:
        facts: what :func:`open_page` returned.
        headings: heading texts that must each appear (any of h1-h3).
        min_tables: the least number of tables expected.
        min_images: the least number of images expected.

    Returns:
        One readable line per problem; empty when the page rendered as expected.
    """
    problems = [f"heading {text!r} not found (found {list(facts.heading_texts)})"
                for text in headings if text not in facts.heading_texts]
    if len(facts.tables) < min_tables:
        problems.append(f"expected at least {min_tables} tables, found {len(facts.tables)}")
    if len(facts.images) < min_images:
        problems.append(f"expected at least {min_images} images, found {len(facts.images)}")
    for index, table in enumerate(facts.tables):
        if table.rows == 0 or table.width == 0 or table.height == 0:
            problems.append(f"table {index} {list(table.headers)} is empty: {table.rows} rows, "
                            f"{table.width:.0f}x{table.height:.0f} px on screen")
    for image in facts.images:
        if image.broken:
            name = image.alt or image.caption or image.src
            problems.append(f"image {name!r} did not render: decoded {image.natural_width}x{image.natural_height}, "
                            f"shown {image.width:.0f}x{image.height:.0f} px")
    problems.extend(f"console error: {message}" for message in facts.console_errors)
    return problems
