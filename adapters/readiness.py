"""What adapters add to /readyz: a named check that says what is wrong, or None."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

Check = Callable[[], "str | None"]
KEY: web.AppKey[dict[str, Check]] = web.AppKey("staffvoice_readiness", dict)


def add(app: web.Application, name: str, check: Check) -> None:
    """Report `check()` under `name` on /readyz; any problem makes the server not ready."""
    if KEY not in app:
        app[KEY] = {}
    app[KEY][name] = check


def problems(app: web.Application) -> dict[str, str | None]:
    """Every check's answer, by name."""
    return {name: check() for name, check in app.get(KEY, {}).items()}
