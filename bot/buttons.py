"""The check run's buttons: each one's identifier, its label, and the command it stands for.

GitHub sends a button's identifier back in a `requested_action` event; its own "Re-run" of a check
run arrives as `rerequested`, which stands for `retry` too.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class Button:
    identifier: str
    label: str
    command: str


BUTTONS = MappingProxyType({button.identifier: button for button in (
    Button("retry", "Retry", "retry"),
    Button("approve", "Approve", "approve"),
    Button("cancel", "Cancel", "cancel"),
)})
RERUN = "rerun"  # the action of a check run GitHub was asked to run again
RERUN_COMMAND = "retry"


def command_of(action: str) -> str:
    """The command a check-run action (a button's identifier, or RERUN) stands for."""
    return RERUN_COMMAND if action == RERUN else BUTTONS[action].command
