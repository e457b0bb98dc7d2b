"""What a Markdown string of the app shows a reader: its text, and whether it holds markup that
makes the browser fetch or follow something (an image, a link, raw HTML). CommonMark via
markdown-it-py (installed with Streamlit's rich); GFM's bare-URL autolinks are checked by hand.
tests/test_browser.py checks the same in a real browser."""

from __future__ import annotations

import re

from markdown_it import MarkdownIt

_PARSER = MarkdownIt("commonmark")
_ACTIVE = {"image", "link_open", "html_inline", "html_block"}
# GFM autolink literals as Streamlit finds them in text nodes (after escapes are resolved)
_BARE_URL = re.compile(r"(?:https?://|www\.)\S|[-.\w+]+@[-\w]+\.[-\w]", re.IGNORECASE)


def shown(source: str) -> str:
    """The text ``source`` renders as (markup removed, escapes resolved)."""
    parts: list[str] = []
    for token in _PARSER.parse(source):
        for child in token.children or []:
            if child.type in ("text", "code_inline"):
                parts.append(child.content)
            elif child.type in ("softbreak", "hardbreak"):
                parts.append(" ")
    return "".join(parts).replace("\u2060", "")  # WORD JOINER: invisible (apps/plain_text.py puts it in URLs)


def active_markup(source: str) -> list[str]:
    """The image / link / HTML tokens of ``source``, and any bare URL, www. name or e-mail address
    in its text that GFM would turn into a link (escaping does not stop that; Streamlit links them
    after the escapes are resolved)."""
    tokens = [t for token in _PARSER.parse(source) for t in [token, *(token.children or [])]]
    found = [t.type for t in tokens if t.type in _ACTIVE]
    text = "".join(t.content for t in tokens if t.type == "text")  # escapes resolved, as Streamlit sees it
    return found + [m.group(0) for m in _BARE_URL.finditer(text)]
