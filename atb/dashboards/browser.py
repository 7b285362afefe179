"""Drive Debian's Chromium with Playwright (tests, benchmark): no browser download.

Records every request and console message so callers can assert that no resource left
the dashboard host and that the page logged no errors.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    """`$ATB_CHROMIUM`, else Debian's /usr/bin/chromium, else whatever is on PATH."""
    for candidate in (os.environ.get("ATB_CHROMIUM"), "/usr/bin/chromium"):
        if candidate and os.path.exists(candidate):
            return candidate
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class PageLog:
    requests: list[str] = field(default_factory=list)
    console: list[tuple[str, str]] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def errors(self) -> list[str]:
        return [text for kind, text in self.console if kind == "error"] + self.page_errors

    def foreign_hosts(self, allowed: set[str]) -> list[str]:
        out = []
        for url in self.requests:
            parts = urlsplit(url)
            if parts.scheme in ("data", "blob", "about"):
                continue
            if parts.hostname not in allowed:
                out.append(url)
        return out


@contextmanager
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    if path is None:
        raise FileNotFoundError("chromium not found (apt-get install -y chromium)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser: Any, width: int = 1400, height: int = 1600) -> tuple[Any, PageLog]:
    page = browser.new_page(viewport={"width": width, "height": height})
    log = PageLog()
    page.on("request", lambda r: log.requests.append(r.url))
    page.on("console", lambda m: log.console.append((m.type, m.text)))
    page.on("pageerror", lambda e: log.page_errors.append(str(e)))
    return page, log


def first_meaningful_paint(page: Any, url: str, selector: str, timeout_ms: int = 30_000) -> float:
    """Seconds from navigation start until `selector` (a KPI with real data) is visible."""
    t0 = time.perf_counter()
    page.goto(url, wait_until="commit")
    page.wait_for_selector(selector, state="visible", timeout=timeout_ms)
    return time.perf_counter() - t0


# Bokeh draws axes on a canvas: the tick text is read from BokehJS's own axis views (the
# labels it computed for the ticks on screen), not from pixels.
_AXIS_LABELS_JS = """() => {
  const out = [], seen = new Set();
  function walk(view) {
    if (!view || seen.has(view)) return;
    seen.add(view);
    if (view.tick_coords && view.compute_labels) {
      const boxes = view.compute_labels(view.tick_coords.major[view.dimension]);
      const items = boxes.items ?? Array.from(boxes);
      const title = view.parent?.model?.title?.text ?? "";
      out.push({plot: title, axis: view.model.type, labels: items.map(l => String(l.text))});
    }
    for (const k of view.child_views ?? []) walk(k);
    for (const k of view.renderer_views?.values() ?? []) walk(k);
    for (const k of view.computed_renderer_views ?? []) walk(k);
  }
  for (const v of Object.values(Bokeh.index)) walk(v);
  return out;
}"""

_SOURCE_ROWS_JS = """(column) => {
  const out = [];
  for (const doc of Bokeh.documents)
    for (const m of doc.all_models)
      if (m.type === "ColumnDataSource") {
        const d = m.data, v = d instanceof Map ? d.get(column) : d[column];
        if (v != null) out.push(v.length);
      }
  return out;
}"""


def axis_labels(page: Any) -> list[dict[str, Any]]:
    """Every rendered Bokeh axis: {plot: title, axis: model type, labels: tick texts}."""
    return list(page.evaluate(_AXIS_LABELS_JS))


def source_rows(page: Any, column: str) -> list[int]:
    """Row counts of the page's Bokeh data sources that have `column`."""
    return list(page.evaluate(_SOURCE_ROWS_JS, column))
