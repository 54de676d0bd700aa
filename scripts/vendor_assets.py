"""Vendor the book's front-end assets so that no page loads anything from a CDN.

Fills ``_vendor/vendor/`` (gitignored; the book copies it through ``html_extra_path``) with:

- MathJax 3 (``mathjax/tex-mml-chtml.js``, its TeX extensions, CHTML fonts, menu and a11y parts),
- ``widgets.js``: require.js, a require.js configuration that points at the vendored widget
  modules, then the ipywidgets HTML manager's ``embed-amd.js``, in one file so that they always
  run in this order (its icon fonts go to ``html-manager/``),
- anywidget's front end (``anywidget/index.js``) copied from the installed Python package.

The npm packages come from ``npm ci`` on the committed ``package-lock.json``. Every step is
skipped when its inputs are unchanged, so running this before each build costs nothing. Sphinx
does not copy extra files again when no page changed, so a changed ``_vendor/vendor`` is also
copied into an existing build directory (``--build-dir``, default ``_build/html``).

Usage: ``python scripts/vendor_assets.py [--build-dir _build/html]`` (``make vendor``).
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import anywidget

ROOT = Path(__file__).resolve().parents[1]
NODE_MODULES = ROOT / "node_modules"
OUT = ROOT / "_vendor" / "vendor"
STAMP = "STAMP"

MATHJAX_PARTS = ["tex-mml-chtml.js", "input", "output/chtml", "ui", "a11y", "sre"]
FONT_SUFFIXES = {".woff", ".woff2", ".ttf", ".eot", ".svg"}

# The widget manager's bundled modules find their icon fonts next to their own require.js
# address, so every one of them is given an address inside html-manager/.
REQUIRE_CONFIG = """\
// Written by scripts/vendor_assets.py: require.js loads the widget modules from this folder.
(function () {
  var base = document.currentScript.src.replace(/[^/]*$/, "");
  var manager = base + "html-manager/";
  window.requirejs.config({
    paths: {
      anywidget: base + "anywidget/index",
      "@jupyter-widgets/base": manager + "base",
      "@jupyter-widgets/base7": manager + "base7",
      "@jupyter-widgets/controls": manager + "controls",
      "@jupyter-widgets/controls7": manager + "controls7",
      "@jupyter-widgets/html-manager": manager + "html-manager",
      "@jupyter-widgets/html-manager/dist": base + "html-manager"
    }
  });
})();
"""


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()


def npm_ci() -> None:
    """Install the locked npm packages into node_modules/, unless already done for this lock."""
    lock = (ROOT / "package-lock.json").read_bytes()
    stamp = NODE_MODULES / ".mlmcourse-lock-sha256"
    want = _digest(lock)
    if stamp.is_file() and stamp.read_text() == want:
        return
    npm = shutil.which("npm")
    if npm is None:
        sys.exit("npm is not installed: install Node.js >= 18 (e.g. `apt-get install npm`).")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=ROOT, check=True)
    stamp.write_text(want)


def _copy(src: Path, dst: Path) -> None:
    if not src.exists():
        sys.exit(f"{src} is missing: delete node_modules/ and run this script again.")
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        shutil.copy2(src, dst)


def fill(out: Path) -> None:
    """Copy every vendored file into ``out`` (which must not exist yet)."""
    mathjax = NODE_MODULES / "mathjax" / "es5"
    for part in MATHJAX_PARTS:
        _copy(mathjax / part, out / "mathjax" / part)
    manager = NODE_MODULES / "@jupyter-widgets" / "html-manager" / "dist"
    for path in manager.iterdir():
        if path.suffix in FONT_SUFFIXES:
            _copy(path, out / "html-manager" / path.name)
    parts = [NODE_MODULES / "requirejs" / "require.js", manager / "embed-amd.js"]
    for part in parts:
        if not part.is_file():
            sys.exit(f"{part} is missing: delete node_modules/ and run this script again.")
    require, embed = (part.read_text(encoding="utf-8") for part in parts)
    (out / "widgets.js").write_text(f"{require}\n;{REQUIRE_CONFIG}\n;{embed}\n", encoding="utf-8")
    front_end = Path(anywidget.__file__).parent / "nbextension" / "index.js"
    _copy(front_end, out / "anywidget" / "index.js")


def _current_stamp() -> str:
    return _digest(
        (ROOT / "package-lock.json").read_bytes(),
        anywidget.__version__.encode(),
        Path(__file__).read_bytes(),
    )


def _sync(src: Path, dst: Path, stamp: str) -> bool:
    """Make ``dst`` a copy of ``src`` unless its stamp already says so; True if copied."""
    if (dst / STAMP).is_file() and (dst / STAMP).read_text() == stamp:
        return False
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", type=Path, default=ROOT / "_build" / "html")
    args = parser.parse_args(argv)
    npm_ci()
    stamp = _current_stamp()
    if not ((OUT / STAMP).is_file() and (OUT / STAMP).read_text() == stamp):
        tmp = OUT.with_name(OUT.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        fill(tmp)
        (tmp / STAMP).write_text(stamp)
        shutil.rmtree(OUT, ignore_errors=True)
        tmp.rename(OUT)
        print(f"vendored assets into {OUT.relative_to(ROOT)}")
    if args.build_dir.is_dir() and _sync(OUT, args.build_dir / OUT.name, stamp):
        print(f"refreshed {args.build_dir / OUT.name}")


if __name__ == "__main__":
    main()
