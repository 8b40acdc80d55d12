"""Plain-text docstrings and references, for Sphinx: what srlib's docstrings look like in an
editor is what the API pages show.

- Module docstrings are plain text: an indented block under a paragraph (an equation, a table
  of aligned columns, a code example) becomes a code block (``literal_blocks``), instead of a
  reST block quote that breaks on deeper indentation. Only code gets highlighted.
- A reference to a name that a package re-exports (``srlib.create_model``) links to the object
  where it is documented (``srlib.models.create_model``); a reference to an object that exists
  but is not documented (a private helper, a constant) shows as code without a link. Only a
  reference to nothing fails the build.
"""

from __future__ import annotations

import ast
import importlib
import re
import textwrap

from sphinx.application import Sphinx

LIST_ITEM = re.compile(r"\s*(?:[-*+]|\d+[.)]|#\.)\s+")


def indent_of(line: str) -> int:
    return len(line) - len(line.lstrip())


def content_indent(line: str) -> int:
    """Where a line's text starts: after the bullet of a list item."""
    match = LIST_ITEM.match(line)
    return len(match.group(0)) if match else indent_of(line)


def block_language(block: list[str]) -> str:
    """``python`` for a block that parses as Python (a code example), else ``text`` (an
    equation, a table of aligned columns), so that only code gets highlighted."""
    try:
        ast.parse(textwrap.dedent("\n".join(block)))
    except SyntaxError:
        return "text"
    return "python"


def literal_blocks(lines: list[str]) -> list[str]:
    """Plain-text docstring -> reST: every block indented deeper than the text above it becomes
    a code block (``python`` or ``text``, see ``block_language``), separated by blank lines.
    List items, explicit markup (``.. x::``) and blocks that are already literal (after a
    paragraph ending in ``::``) are left alone."""
    out: list[str] = []
    above = None  # index in ``out`` of the last non-blank line
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or above is None or indent_of(line) <= content_indent(out[above]) \
                or out[above].lstrip().startswith(".. "):
            out.append(line)
            if line.strip():
                above = len(out) - 1
            i += 1
            continue
        base = content_indent(out[above])
        end = i
        while end < len(lines) and (not lines[end].strip() or indent_of(lines[end]) > base):
            end += 1
        while not lines[end - 1].strip():
            end -= 1
        while not out[-1].strip():
            out.pop()
        block = lines[i:end]
        if not out[above].rstrip().endswith("::"):
            out += ["", " " * base + f".. code-block:: {block_language(block)}"]
        out += [""] + block + [""]
        above = None  # the next line starts a new paragraph
        i = end
    return out


def plain_module_docstrings(app: Sphinx, what: str, name: str, obj, options,
                            lines: list[str]) -> None:
    if what == "module":
        lines[:] = literal_blocks(lines)


def import_target(target: str):
    """The object a dotted ``srlib`` name refers to, or None."""
    parts = target.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attribute in parts[cut:]:
                obj = getattr(obj, attribute)
        except AttributeError:
            return None
        return obj
    return None


def resolve_srlib_reference(app: Sphinx, env, node, contnode):
    """Re-exported names link where they are documented; existing undocumented objects show
    as code; anything else stays unresolved (and fails the build)."""
    target = node.get("reftarget", "")
    if node.get("refdomain") != "py" or not target.startswith("srlib"):
        return None
    obj = import_target(target)
    if obj is None:
        return None
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    real = obj.__name__ if isinstance(obj, type(importlib)) else \
        f"{module}.{qualname}" if module and qualname else None
    domain = env.get_domain("py")
    if real and real != target:
        for kind in (node["reftype"], "obj"):
            found = domain.resolve_xref(env, node.get("refdoc", ""), app.builder, kind, real,
                                        node, contnode)
            if found is not None:
                return found
    return contnode
