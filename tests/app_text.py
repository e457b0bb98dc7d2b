"""What a Markdown string of the app shows a reader: its text, and whether it holds markup that
makes the browser fetch or follow something (an image, a link, raw HTML). CommonMark via
markdown-it-py (installed with Streamlit's rich); GFM's bare-URL autolinks are checked by hand."""

from __future__ import annotations

import re

from markdown_it import MarkdownIt

_PARSER = MarkdownIt("commonmark")
_ACTIVE = {"image", "link_open", "html_inline", "html_block"}
_BARE_URL = re.compile(r"(?:https?://|www\.)\S", re.IGNORECASE)


def shown(source: str) -> str:
    """The text ``source`` renders as (markup removed, escapes resolved)."""
    parts: list[str] = []
    for token in _PARSER.parse(source):
        for child in token.children or []:
            if child.type in ("text", "code_inline"):
                parts.append(child.content)
            elif child.type in ("softbreak", "hardbreak"):
                parts.append(" ")
    return "".join(parts)


def active_markup(source: str) -> list[str]:
    """The image / link / HTML tokens of ``source``, and any bare URL GFM would turn into a link
    (an escaped ``http\\:\\/\\/`` is not one)."""
    found = [t.type for token in _PARSER.parse(source) for t in [token, *(token.children or [])] if t.type in _ACTIVE]
    return found + [m.group(0) for m in _BARE_URL.finditer(source)]
