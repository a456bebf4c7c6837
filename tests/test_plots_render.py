"""`dvc plots show` as a person sees it: the page renders offline in headless Chromium (Debian's
package), every chart is filled, no mark lies off its axis, pass@1 axes stay within 0-100 (stacked bars
would reach 400), axes are named, and charts with several series tell them apart by colour."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from daj.paths import REPO

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# Appended to the page: once every chart has rendered, a JSON summary of what was drawn.
PROBE = """<script>
(function () {
  // marks with the size of the plot area they sit in (their group: the view, or a facet cell)
  function walk(node, out, w, h) {
    if (!node || !node.items) return;
    for (const it of node.items) {
      if (node.role === "mark" && it.bounds) {
        out.marks.push([node.marktype, it.bounds.x1, it.bounds.x2, it.bounds.y1, it.bounds.y2, w, h]);
      }
      if (node.role === "axis-title" && it.text !== undefined) out.axisTitles.push(String(it.text));
      const cell = node.marktype === "group" && it.width > 0 && it.height > 0;
      if (it.items) for (const child of it.items) walk(child, out, cell ? it.width : w, cell ? it.height : h);
    }
  }
  function summarise() {
    const charts = [];
    for (const [title, view] of Object.entries(window.dajViews)) {
      const out = {title: title, width: view.width(), height: view.height(), marks: [], axisTitles: [], scales: {}};
      walk(view.scenegraph().root, out, view.width(), view.height());
      for (const name of ["x", "y", "color"]) {
        try { const s = view.scale(name); if (s) out.scales[name] = {type: s.type, domain: s.domain()}; } catch (e) {}
      }
      charts.push(out);
    }
    const images = Array.from(document.images).map(function (im) { return [im.src.slice(-40), im.naturalWidth]; });
    const pre = document.createElement("pre");
    pre.id = "daj-summary";
    pre.textContent = JSON.stringify({charts: charts, errors: window.dajErrors || [], images: images,
                                      divs: document.querySelectorAll("div.vega-embed, div[id]").length});
    document.body.appendChild(pre);
  }
  function poll() {
    if (window.dajViews && window.dajPending === 0 && Object.keys(window.dajViews).length) summarise();
    else setTimeout(poll, 50);
  }
  window.addEventListener("load", function () { setTimeout(poll, 50); });
})();
</script>
"""


def render(index: Path, tmp: Path) -> dict:
    """The probe's summary of `index` rendered by headless Chromium (no network)."""
    probe = index.with_name("probe.html")
    probe.write_text(index.read_text(encoding="utf-8") + PROBE, encoding="utf-8")
    proc = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp / 'chromium'}", "--virtual-time-budget=30000",
                           "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=180)
    found = re.search(r'<pre id="daj-summary">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"the page did not finish rendering: {proc.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))


def check_chart(chart: dict) -> list[str]:
    """What a reader would object to in one rendered chart (empty list: nothing)."""
    title, problems = chart["title"], []
    if not chart["marks"]:
        problems.append("no marks drawn")
    tol = 3.0  # a line's stroke reaches past its points
    for kind, x1, x2, y1, y2, w, h in chart["marks"]:
        if kind in ("text", "rule"):
            continue
        if x1 < -tol or y1 < -tol or x2 > w + tol or y2 > h + tol:
            problems.append(f"a {kind} mark off its axes ({x1:.0f}..{x2:.0f} x {y1:.0f}..{y2:.0f} in {w}x{h})")
            break
    for axis in chart["axisTitles"]:
        if axis.strip().lower() in ("", "x", "y", "dvc_inferred_y_value", "value"):
            problems.append(f"an axis titled {axis!r}")
    if "pass@1" in title:
        for name in ("x", "y"):
            scale = chart["scales"].get(name)
            if scale and scale["type"] in ("linear", "sqrt", "log") and max(scale["domain"]) > 100 + 1e-9:
                problems.append(f"a pass@1 axis reaching {max(scale['domain'])} (bars stacked?)")
    colour = chart["scales"].get("color")
    if colour and len(colour["domain"]) == 1 and colour["domain"][0] in ("workspace", "HEAD"):
        problems.append("one colour for every series")
    return [f"{title}: {p}" for p in problems]


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> dict:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium missing in CI (.ci/run installs Debian's chromium)")
        pytest.skip("no chromium here (apt-get install chromium)")
    tmp = tmp_path_factory.mktemp("plots")
    template = REPO / ".dvc/plots_page.html"
    if not template.is_file():
        built = subprocess.run([sys.executable, "-m", "daj.plots_page", "--out", str(template)], cwd=REPO,
                               capture_output=True, text=True, timeout=600)
        assert built.returncode == 0, built.stderr
    proc = subprocess.run([sys.executable, "-m", "dvc", "plots", "show", "-o", str(tmp / "out")], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    index = tmp / "out" / "index.html"
    assert "cdn.jsdelivr" not in index.read_text(encoding="utf-8")  # nothing to fetch: it renders offline
    return render(index, tmp)


def test_every_chart_renders_offline_and_reads_right(page):
    assert not page["errors"], page["errors"]
    assert len(page["charts"]) >= 4, [c["title"] for c in page["charts"]]
    problems = [p for chart in page["charts"] for p in check_chart(chart)]
    assert not problems, "\n".join(problems)
    assert page["images"] and all(width > 0 for _, width in page["images"]), page["images"]


def test_the_checks_catch_what_the_issue_saw():
    """Stacked pass@1 bars (400 on the axis), an axis called 'y', one colour, an empty chart, a mark
    outside the plot: each is reported."""
    bad = {"title": "Best-of-N pass@1 by method", "width": 300, "height": 200,
           "marks": [["rect", 0, 310, 0, 20, 300, 200]], "axisTitles": ["y", "method"],
           "scales": {"x": {"type": "linear", "domain": [0, 400]}, "color": {"type": "ordinal", "domain": ["workspace"]}}}
    found = " | ".join(check_chart(bad))
    for words in ("off its axes", "axis titled 'y'", "reaching 400", "one colour"):
        assert words in found, found
    assert "no marks" in " ".join(check_chart({**bad, "marks": []}))
