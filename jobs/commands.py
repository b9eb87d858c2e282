"""Jobs for slash commands, labels and check-run buttons; `bot.command_service` carries them out."""

from __future__ import annotations

from bot import command_service
from bot.command_service import JobOrigin


async def handle_command_job(ctx: dict, delivery_id: str, index: int) -> None:
    await command_service.answer_comment(ctx["deps"], delivery_id, index, JobOrigin.of(ctx))


async def handle_label_job(ctx: dict, delivery_id: str) -> None:
    await command_service.answer_label(ctx["deps"], delivery_id, JobOrigin.of(ctx))


async def handle_check_action_job(ctx: dict, delivery_id: str) -> None:
    await command_service.answer_button(ctx["deps"], delivery_id, JobOrigin.of(ctx))
