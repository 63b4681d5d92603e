"""Untrusted text (captions, tags, clip ids, file names, notes) shown through Streamlit's markdown as inert text.

st.markdown, st.caption, st.write, st.success and widget labels render markdown (links, images, ``:red[...]``
directives, ``:material/...:`` icons, LaTeX); Streamlit never renders raw HTML there unless asked, but a
markdown link or directive inside a caption would still be live. These helpers make such text literal.
"""
from __future__ import annotations

_MARKDOWN_SPECIALS = set("\\`*_{}[]()<>#+-.!|~:$&=\"'")


def _printable(char: str) -> bool:
    return not (ord(char) < 32 or 0x7F <= ord(char) < 0xA0)


def escape_markdown(text: object) -> str:
    """Every markdown, directive, LaTeX and HTML character backslash-escaped; line breaks and tabs become
    spaces; other control characters are dropped."""
    out = []
    for char in str(text):
        if char in _MARKDOWN_SPECIALS:
            out.append("\\" + char)
        elif char in "\n\r\t":
            out.append(" ")
        elif _printable(char):
            out.append(char)
    return "".join(out)


def inline_code(text: object) -> str:
    """``text`` as one markdown code span (nothing inside a code span is interpreted), fenced with more
    backticks than any run inside it."""
    clean = "".join(" " if char in "\n\r\t" else char for char in str(text) if char in "\n\r\t" or _printable(char))
    longest = run = 0
    for char in clean:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    return f"{fence} {clean} {fence}" if longest or clean.startswith(" ") else f"{fence}{clean}{fence}"


def readable_columns(frame):
    """A copy of ``frame`` whose column names read as words ("hallucination_rate" -> "Hallucination rate"): a
    table on a page shows words, not code identifiers."""
    return frame.rename(columns={c: str(c).replace("_", " ").strip().capitalize() for c in frame.columns})
