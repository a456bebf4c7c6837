"""The HTML page of `dvc plots show` / `dvc plots diff`, with vega, vega-lite and vega-embed inlined.

DVC's own page loads the three libraries from a CDN, so offline it shows only the PNG images. This page
carries them (the versions DVC's renderer targets, from the npm registry) and renders every chart as SVG,
so the page works without a network and a test can read what was drawn. `.dvc/config` points DVC at
it (`plots.html_template`); `make setup` builds it:

    python -m daj.plots_page                 # writes .dvc/plots_page.html (skips when it is current)

Each chart's vega view is kept in `window.dajViews` (title -> view), for the rendering test.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from daj.io import atomic_open

# what dvc_render's VegaRenderer loads from the CDN (dvc_render.vega.VegaRenderer.SCRIPTS)
PACKAGES = {"vega": ("5.20.2", "vega.min.js"), "vega-lite": ("5.2.0", "vega-lite.min.js"),
            "vega-embed": ("6.18.2", "vega-embed.min.js")}
DEFAULT_OUT = Path(".dvc/plots_page.html")
STAMP = "<!-- daj plots page: " + ", ".join(f"{k}@{v[0]}" for k, v in PACKAGES.items()) + " -->"

# SVG (readable in the DOM) and the view kept per chart; DVC's page calls vegaEmbed(div, spec).
EMBED_HOOK = """<script>
(function () {
  const embed = window.vegaEmbed;
  window.dajViews = {};
  window.dajPending = 0;
  window.vegaEmbed = function (el, spec, opt) {
    window.dajPending += 1;
    const title = (spec && spec.title && (spec.title.text || spec.title)) || String(el);
    return embed(el, spec, Object.assign({}, opt || {}, {renderer: "svg", actions: false}))
      .then(function (res) { window.dajViews[title] = res.view; window.dajPending -= 1; return res; },
            function (err) { window.dajPending -= 1; window.dajErrors = (window.dajErrors || []).concat([String(err)]); });
  };
})();
</script>"""

PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>daj plots</title>
    __STAMP__
    __SCRIPTS__
    <style>
        body { font-family: sans-serif; margin: 1em 2em; }
        table { border-spacing: 15px; }
        div.vega-embed { margin: 1em 0; }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>"""


def library(name: str, version: str, member: str, workdir: Path) -> str:
    """The minified build of an npm package, fetched with `npm pack` (the registry checks integrity)."""
    proc = subprocess.run(["npm", "pack", f"{name}@{version}", "--silent", "--pack-destination", str(workdir)],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"npm pack {name}@{version} failed: {proc.stderr.strip()[-500:]}")
    tgz = workdir / proc.stdout.strip().splitlines()[-1]
    with tarfile.open(tgz) as tar:
        data = tar.extractfile(f"package/build/{member}")
        if data is None:
            raise RuntimeError(f"{member} not in {tgz.name}")
        return io.TextIOWrapper(data, encoding="utf-8").read()


def build_page() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        scripts = [f"<script>/* {name}@{version} */\n{library(name, version, member, Path(tmp))}\n</script>"
                   for name, (version, member) in PACKAGES.items()]
    for text in scripts:  # dvc_render fills {plot_divs} by plain replacement
        if "{plot_divs}" in text or "{refresh_tag}" in text:
            raise RuntimeError("a library contains a dvc_render placeholder")
    return PAGE.replace("__STAMP__", STAMP).replace("__SCRIPTS__", "\n".join([*scripts, EMBED_HOOK]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m daj.plots_page", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--force", action="store_true", help="rebuild even when the page is current")
    args = ap.parse_args(argv)
    if not args.force and args.out.is_file() and STAMP in args.out.read_text(encoding="utf-8", errors="replace"):
        return 0
    try:
        page = build_page()
    except (OSError, RuntimeError, subprocess.SubprocessError) as e:
        print(f"error: cannot build the offline plots page ({e}); `dvc plots show` needs it "
              "(.dvc/config plots.html_template): install Node.js/npm and run `python -m daj.plots_page`",
              file=sys.stderr)
        return 2
    with atomic_open(args.out) as fh:
        fh.write(page)
    print(f"wrote {args.out} ({len(page) // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
