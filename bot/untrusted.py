"""Text from the forge (issue and pull request titles, bodies, comments) on its way to an agent.

That text is written by whoever can open an issue or comment, so it may try to instruct the agent
(prompt injection), and it may hide those instructions from the humans reading the issue.
:func:`clean` removes what a reader of the rendered issue cannot see; :func:`fence` puts the
cleaned text in a block that says where it comes from and that it is data, not instructions::

    <untrusted-input source="issue #12 body">
    ...cleaned text...
    </untrusted-input>

The text cannot close the block early: anything in it that looks like the block's opening or
closing marker (in any letter case, with spaces or another separator) is rewritten in square
brackets, ``[/untrusted-input]``. Empty text gives a block holding the line ``(empty)``.

Pure: the standard library only.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["BLOCK_TAG", "EMPTY", "clean", "fence"]

BLOCK_TAG = "untrusted-input"
EMPTY = "(empty)"
MAX_SOURCE_CHARS = 200

# Every line separator str.splitlines() knows becomes "\n" (CR LF first, so it gives one line).
_LINE_BREAKS = re.compile("\r\n|[\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")

# An HTML comment as a browser reads it: "<!--" up to the first "-->" or "--!>"; "<!-->" and
# "<!--->" are empty comments; one that is never closed runs to the end of the text.
_HTML_COMMENT = re.compile(r"<!--(?:-?>|.*?(?:--!?>|\Z))", re.DOTALL)

# Invisible characters, listed so that the list does not depend on the Unicode version Python has
# (all other characters of category Cf are removed too, see _hidden): zero-width space, joiners and
# marks, bidi embeddings, overrides and isolates, word joiner and invisible operators, the byte
# order mark, the Mongolian vowel separator, the Arabic letter mark, tag characters; then the
# combining grapheme joiner, Hangul fillers, C0 and C1 controls other than tab and newline, and the
# variation selectors VS17-VS256 (ideographic variants; they can smuggle data, like VS1-VS16 below).
_INVISIBLE_RANGES = [
    (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0xFEFF, 0xFEFF), (0x180E, 0x180E),
    (0x061C, 0x061C), (0xE0000, 0xE007F),
    (0x034F, 0x034F), (0x115F, 0x1160), (0x3164, 0x3164), (0xFFA0, 0xFFA0),
    (0x00, 0x08), (0x0B, 0x1F), (0x7F, 0x9F), (0xE0100, 0xE01EF),
]
_INVISIBLE = frozenset(chr(code) for first, last in _INVISIBLE_RANGES for code in range(first, last + 1))

# Variation selectors VS1-VS16 choose a glyph (U+FE0F: the emoji form of "\u2764"): the first of a
# run is kept, the others change nothing a reader sees (a long run can smuggle data).
_VARIATION_RUN = re.compile("([\ufe00-\ufe0f])[\ufe00-\ufe0f]+")

# The block's markers as a reader (or a model) might take them: "<" (or a look-alike), an optional
# "/" (spaces and backslashes around it too), "untrusted", up to five separators, "input", the rest of the tag up to its ">".
_OPEN_BRACKETS = "<\uff1c\ufe64\u2039\u2329\u27e8\u3008"
_CLOSE_BRACKETS = ">\uff1e\ufe65\u203a\u232a\u27e9\u3009"
_MARKER = re.compile(
    rf"[{_OPEN_BRACKETS}]([\s\\/]*)untrusted(?:[^\w<>]|_){{0,5}}input([^{_OPEN_BRACKETS}{_CLOSE_BRACKETS}\n]*)"
    rf"[{_CLOSE_BRACKETS}]?",
    re.IGNORECASE,
)

_SOURCE_UNSAFE = re.compile(r'[<>"&\\`]')


def _hidden(char: str) -> bool:
    """True for a character a reader of the rendered text does not see.

    That is category Cf (format characters: zero-width spaces and joiners, word joiner and
    invisible operators, bidi embeddings, overrides, isolates and marks, the Arabic letter mark,
    the Mongolian vowel separator, the byte order mark, tag characters U+E0000-U+E007F, the soft
    hyphen...), and the characters in ``_INVISIBLE_RANGES``.
    """
    return char in _INVISIBLE or unicodedata.category(char) == "Cf"


def _remove_comments(text: str) -> str:
    # Removing one comment can join the text around it into a new "<!--"; repeat until none is left.
    while True:
        stripped = _HTML_COMMENT.sub("", text)
        if stripped == text:
            return text
        text = stripped


def clean(text: str) -> str:
    """``text`` without what a reader cannot see, with "\\n" line ends.

    Removes HTML comments (also an unterminated one, to the end of the text, and also inside code
    blocks), format characters (Unicode category Cf), control characters other than tab and
    newline, Hangul fillers, the combining grapheme joiner, and variation selectors beyond the
    first after a character. Every line break (CR LF, CR, U+2028...) becomes "\\n". Idempotent;
    the result never contains ``<!--``.
    """
    text = _LINE_BREAKS.sub("\n", text)
    text = "".join(char for char in text if not _hidden(char))
    # After the invisible characters: "<!\u200b--" is a comment once the space is gone.
    text = _remove_comments(text)
    # After the comments: removing one can join two runs of selectors.
    return _VARIATION_RUN.sub(r"\1", text)


def _neutralise_markers(text: str) -> str:
    def rewrite(match: re.Match[str]) -> str:
        slash = "/" if "/" in match[1] else ""
        return f"[{slash}{BLOCK_TAG}{match[2].rstrip()}]"

    return _MARKER.sub(rewrite, text)


def _source_label(source: str) -> str:
    label = " ".join(_SOURCE_UNSAFE.sub("", clean(source)).split())
    if len(label) > MAX_SOURCE_CHARS:
        label = label[: MAX_SOURCE_CHARS - 1] + "…"
    return label or "unknown"


def fence(text: str, source: str) -> str:
    """``text``, cleaned, in an ``<untrusted-input source="...">`` block (see the module's doc).

    ``source`` says where the text comes from ("issue #12 body", "comment by @alice"); it is
    cleaned too and loses line breaks, quotes, ``<``, ``>``, ``&``, backslashes and backquotes, so
    it stays inside the opening line's attribute. Blank lines around the text are dropped; blank or
    empty text gives the line ``(empty)``. No trailing newline.
    """
    body = _neutralise_markers(clean(text)).strip("\n")
    if not body.strip():
        body = EMPTY
    return f'<{BLOCK_TAG} source="{_source_label(source)}">\n{body}\n</{BLOCK_TAG}>'
