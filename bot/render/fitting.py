"""Levels of detail: how the long parts of a body shrink until it fits GitHub's limits."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bot.render.text import CHECK_OUTPUT_MAX, COMMENT_BODY_MAX, PR_BODY_MAX, truncate_middle

# --- levels of detail: how the long parts shrink to fit -----------------------------------------------

@dataclass(frozen=True)
class Detail:
    summary_chars: int | None  # per-step text (summary, error); None = whole, 0 = no step details
    attention_only: bool  # step details only for failed, blocked and needs-QA steps
    iterations: int | None  # Ralph iterations listed; None = all
    rows: int | None  # step table rows; None = all
    tails: bool  # Ralph feedback output

    @property
    def trimmed(self) -> bool:
        return self != _DETAIL_LEVELS[0]


# From most to least detailed: step texts shrink first, then the iteration list, then the table.
_DETAIL_LEVELS = (
    Detail(None, False, None, None, True),
    Detail(2000, False, 20, None, True),
    Detail(300, False, 10, None, False),
    Detail(300, True, 5, None, False),
    Detail(0, True, 5, None, False),
    *(Detail(0, True, 3, rows, False) for rows in (1000, 500, 250, 120, 60)),
    Detail(0, True, 1, 30, False),
    Detail(0, True, 1, 10, False),
)
_FIT_NOTE = "\n\n…(truncated to fit GitHub's size limit)…\n\n"


def fit(render: Callable[[Detail], str], limit: int) -> str:
    """The most detailed rendering that fits ``limit``; as a last resort, cut the middle."""
    for detail in _DETAIL_LEVELS:
        text = render(detail)
        if len(text) <= limit:
            return text
    return truncate_middle(text, limit, _FIT_NOTE)


def sections(*parts: str | None) -> str:
    return "\n\n".join(part for part in parts if part)


_EARLY_STOP = max(COMMENT_BODY_MAX, PR_BODY_MAX, CHECK_OUTPUT_MAX)


def join_within(parts: Iterable[str], sep: str = "\n") -> str:
    """Join lazily, stopping once past every GitHub limit: ``fit`` discards such a rendering anyway."""
    taken, size = [], 0
    for part in parts:
        taken.append(part)
        size += len(part) + len(sep)
        if size > _EARLY_STOP:
            break
    return sep.join(taken)
