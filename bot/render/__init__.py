"""Everything agentry shows on a forge: the status comment, check-run payloads, PR text, replies.

Pure: standard library only, no I/O, no clock. Inputs are duck-typed (a ProtocolRun and its
StepRuns, or anything with the same attributes); statuses may be plain strings or str enums.

Every piece of user or agent text that is echoed back goes through one of three doors:
``inline_text`` (one line), ``markdown_block`` (many lines of markdown) or ``code_span``. They
strip agentry's own hidden markers, neutralise ``@mentions`` and ``/commands`` with a zero-width
joiner, and defuse HTML tags, so a comment never pings people, never triggers a bot (agentry
included) and never breaks the surrounding layout.

Everything returned fits GitHub's limits below, measured in code points (Python ``len``); a body
within 65,536 code points is also within GitHub's 262,144-byte storage cap.

The modules, from the bottom up: `text` (limits, markers, plain text), `markdown` (the three
doors), `views` (reading the inputs), `fitting` (levels of detail), `status_parts` and
`status_comment`, `check_runs`, `messages` (pull requests and replies). What other modules use is
imported from here.
"""

from bot.render.attention import STATE_COMMANDS, next_commands, unmet_promise, unmet_promise_note
from bot.render.check_runs import check_run_actions, check_run_payload, check_run_state
from bot.render.markdown import code_span, escape_pipes, inline_text, markdown_block
from bot.render.messages import (
    pr_body,
    pr_title,
    reply_answer,
    reply_conflict,
    reply_denied,
    reply_error,
    reply_rate_limited,
    reply_unknown,
)
from bot.render.status_comment import status_comment
from bot.render.status_parts import status_header, step_table
from bot.render.text import (
    ACTION_DESCRIPTION_MAX,
    ACTION_IDENTIFIER_MAX,
    ACTION_LABEL_MAX,
    ACTIONS_MAX,
    ANNOTATIONS_PER_REQUEST,
    CHECK_OUTPUT_MAX,
    CHECK_TITLE_MAX,
    COMMENT_BODY_MAX,
    PR_BODY_MAX,
    PR_TITLE_MAX,
    find_protocol_id,
    format_cost,
    format_tokens,
    reply_marker,
    status_marker,
    truncate_end,
    truncate_middle,
)
from bot.render.views import CHECK_STATE, PROTOCOL_EMOJI, STEP_EMOJI, step_number, step_to_approve, step_to_retry

__all__ = [
    "ACTIONS_MAX",
    "ACTION_DESCRIPTION_MAX",
    "ACTION_IDENTIFIER_MAX",
    "ACTION_LABEL_MAX",
    "ANNOTATIONS_PER_REQUEST",
    "CHECK_OUTPUT_MAX",
    "CHECK_STATE",
    "CHECK_TITLE_MAX",
    "COMMENT_BODY_MAX",
    "PROTOCOL_EMOJI",
    "PR_BODY_MAX",
    "PR_TITLE_MAX",
    "STATE_COMMANDS",
    "STEP_EMOJI",
    "check_run_actions",
    "check_run_payload",
    "check_run_state",
    "code_span",
    "escape_pipes",
    "find_protocol_id",
    "format_cost",
    "format_tokens",
    "inline_text",
    "markdown_block",
    "next_commands",
    "pr_body",
    "pr_title",
    "reply_answer",
    "reply_conflict",
    "reply_denied",
    "reply_error",
    "reply_marker",
    "reply_rate_limited",
    "reply_unknown",
    "status_comment",
    "status_header",
    "status_marker",
    "step_number",
    "step_table",
    "step_to_approve",
    "step_to_retry",
    "truncate_end",
    "truncate_middle",
    "unmet_promise",
    "unmet_promise_note",
]
