"""Pages that read offline, for Sphinx: nothing a page loads comes from the web.

- MathJax 3 is served from the site itself (copied from the ``sphinx-mathjax-offline``
  package; no CDN).
- Notebook HTML outputs lose their links to web stylesheets and scripts: matplotlib's animation
  player asks for Font Awesome 4 from a CDN, and the theme already ships Font Awesome, which
  draws the same icon. Anything else in an output that would load from the web fails the build.
- A widget's view, which needs a live kernel, is replaced by a one-line note; the notebooks'
  saved widget state (only useful to a widget manager the site does not load) is not embedded
  in the pages.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.fileutil import copy_asset

logger = logging.getLogger(__name__)

WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = ("Interactive widget: it needs a running Jupyter kernel. The saved page shows "
               "its default view as an ordinary figure.")
# <link ... href="http(s)://..."> and <script src="http(s)://..."></script> in notebook HTML
REMOTE_LINK = re.compile(r"<link\b[^>]*\bhref\s*=\s*[\"']?(?:https?:)?//[^>]*>", re.IGNORECASE)
REMOTE_SCRIPT = re.compile(r"<script\b[^>]*\bsrc\s*=\s*[\"']?(?:https?:)?//[^>]*>\s*</script>",
                           re.IGNORECASE)
# anything else that would load from the web: a src, a CSS url() or @import (links to click,
# <a href>, load nothing and are fine)
REMOTE_ANY = re.compile(r"\bsrc\s*=\s*[\"']?(?:https?:)?//|url\(\s*[\"']?(?:https?:)?//|@import",
                        re.IGNORECASE)
# MathJax 3 (tex-chtml component) and what it loads at run time: its fonts and the TeX
# extensions that \require or autoload pulls in. Paths inside the package's static/mathjax.
MATHJAX_DIST = "sphinx-mathjax-offline"
MATHJAX_FILES = ("tex-chtml.js", "output/chtml/fonts/woff-v2", "input/tex/extensions")


def offline_outputs(app: Sphinx, doctree: nodes.document) -> None:
    """Notebook HTML outputs that would load from the web, and widget views, made offline."""
    for raw in list(doctree.findall(nodes.raw)):
        if "html" not in raw.get("format", "").split():
            continue
        text = raw.astext()
        if WIDGET_VIEW_MIME in text:
            note = nodes.paragraph(text=WIDGET_NOTE, classes=["srlib-widget-note"])
            raw.replace_self(note)
            continue
        cleaned = REMOTE_SCRIPT.sub("", REMOTE_LINK.sub("", text))
        if REMOTE_ANY.search(cleaned):
            logger.warning("an HTML output still loads from the web: %s",
                           REMOTE_ANY.search(cleaned).group(0), location=raw,
                           type="srlib", subtype="offline")
        if cleaned != text:
            raw.children = [nodes.Text(cleaned)]


def drop_widget_state(app: Sphinx, pagename: str, *args) -> None:
    """The saved widget state is for a widget manager the site does not load: leave it out."""
    metadata = getattr(app.env, "nb_metadata", {})
    if pagename in metadata:
        metadata[pagename].get("js_files", {}).pop("ipywidgets_state", None)


def mathjax_folder() -> Path:
    try:
        distribution = importlib.metadata.distribution(MATHJAX_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise ModuleNotFoundError(f"the site serves MathJax from the package {MATHJAX_DIST}, "
                                  f"which is not installed: pip install -e '.[dev]'") from None
    folder = Path(distribution.locate_file("sphinx-mathjax-offline/static/mathjax"))
    if not (folder / "tex-chtml.js").is_file():
        raise FileNotFoundError(f"MathJax not found in {folder}: reinstall {MATHJAX_DIST}")
    return folder


def copy_mathjax(app: Sphinx, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    source = mathjax_folder()
    target = Path(app.outdir) / "_static" / "mathjax"
    for part in MATHJAX_FILES:
        if (source / part).is_dir():
            copy_asset(str(source / part), str(target / part))
        else:
            (target / part).parent.mkdir(parents=True, exist_ok=True)
            copy_asset(str(source / part), str((target / part).parent))
