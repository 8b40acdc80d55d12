"""Sphinx configuration of srlib's documentation site.

Build it with ``bash scripts/build_docs.sh`` (never plain ``sphinx-build docs``): the script
stages this folder and the lessons (``notebooks/*.ipynb`` -> ``lessons/``) into one source
tree and runs Sphinx with warnings as errors. Nothing is executed and nothing is downloaded:
the lessons render from their committed outputs, and every script and font the pages load
ships with the site.
"""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

# The repository the site is built from (configs/, benchmarks/results/, tests/ are read at build
# time): scripts/build_docs.sh sets it, since this file runs from a staged copy of docs/.
srlib_repository = os.environ.get("SRLIB_DOCS_REPOSITORY", os.fspath(HERE.parent))

project = "srlib"
author = "The srlib authors"
copyright = "2026, The srlib authors (MIT License)"  # noqa: A001 (Sphinx's name)
release = version = "0.1.0"

extensions = [
    "myst_nb",  # Markdown pages and the notebooks (MyST), with their saved outputs
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",  # Google-style ``Args:`` / ``Returns:`` docstrings
    "sphinx.ext.mathjax",
    "srlib_docs",  # recipes and benchmark tables, test links, offline MathJax (docs/_ext)
]

root_doc = "index"
exclude_patterns = ["_build", "**.ipynb_checkpoints", "Thumbs.db", ".DS_Store"]
nitpicky = True  # every cross-reference must resolve (scripts/build_docs.sh passes -n too)
# Types from other libraries are named in signatures and docstrings, but their inventories
# are not fetched (the build is offline): a reference outside srlib is plain text, one into
# srlib must resolve.
nitpick_ignore_regex = [(r"py:.*", r"(?!srlib(\.|$)).*")]

# -- the lessons: MyST-NB renders the committed outputs, never runs a cell ------------------
nb_execution_mode = "off"
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist", "attrs_inline"]
myst_heading_anchors = 3
mathjax_path = "mathjax/tex-chtml.js"  # under _static: MathJax 3 copied by srlib_docs, no CDN
# Widgets: no require.js or widget manager from a CDN. A widget's view renders as nothing
# (srlib_docs puts a note in its place); the figure an ordinary cell draws with the widget's
# defaults is the saved view.
nb_ipywidgets_js = {}
nb_merge_streams = True  # one block per cell for stdout and one for stderr

# -- API reference ---------------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
maximum_signature_line_length = 100  # longer signatures list one parameter per line
autodoc_inherit_docstrings = False  # torch's and SpikingJelly's docstrings are not srlib's
# each object once, in the module that defines it (a package's __all__ re-exports are skipped)
autodoc_default_options = {"members": True, "ignore-module-all": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# -- HTML ------------------------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = "srlib · SpikingResformer"
html_static_path = ["_static"]
html_css_files = ["srlib.css"]
html_last_updated_fmt = None
html_show_sourcelink = False
html_copy_source = False
html_context = {"default_mode": "auto"}  # light or dark as the reader's system asks
html_theme_options = {
    "show_toc_level": 2,
    "home_page_in_toc": True,
    "use_download_button": False,
    "use_fullscreen_button": False,
    "navigation_with_keys": False,
}
