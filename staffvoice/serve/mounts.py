"""The platform adapters mount themselves on the web application; each is optional."""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from aiohttp import web

from bot.core import Core

log = logging.getLogger("staffvoice.server")

MOUNTS = ("adapters.slack.mount", "adapters.teams.mount")


def mount_adapters(app: web.Application, core: Core, env: Mapping[str, str]) -> list[str]:
    """Let each platform adapter add its routes; returns one status line per adapter."""
    lines = []
    for name in MOUNTS:
        platform = name.split(".")[1]
        try:
            module = importlib.import_module(name)
        except ImportError as e:
            log.info("adapter not available", extra={"adapter": platform, "reason": str(e)[:200]})
            lines.append(f"{platform}: not available in this build")
            continue
        status = module.mount(app, core, env)
        lines.append(status or f"{platform}: not configured")
    from adapters import directory as people_sync

    lines += people_sync.install(core, env)  # the nightly directory sync, when configured
    return lines


@asynccontextmanager
async def attached_ports(core: Core, env: Mapping[str, str]) -> AsyncIterator[list[str]]:
    """The adapters' ports attached to `core` without listening (`schedule run-due`,
    `broadcast send`): the configured platforms, built from the environment as `serve` does."""
    app = web.Application()
    lines = mount_adapters(app, core, env)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()  # runs the adapters' start-up hooks, which add their ports
    try:
        yield lines
    finally:
        await runner.cleanup()
