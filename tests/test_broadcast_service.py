"""Stories around composing: bad input is refused with a clear reason and nothing is stored;
an early win from a milestone arrives pre-filled; a scheduled broadcast starts when due."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from adapters.fake.port import FakePort
from bot.broadcasts import service
from bot.broadcasts.feature import settle, ticker
from bot.broadcasts.limiter import Limiter, parse_limits
from bot.broadcasts.tables import Broadcast, Delivery
from bot.clock import FakeClock
from bot.core import Core
from bot.errors import FormInvalid, UserError
from bot.model import plain_text
from bot.people.tables import Person

GOOD = {"title": "Early win", "text": "Group supervision is now weekly.", "audience": "everyone",
        "when": "now", "celebrate": "true"}


async def person(core: Core, email: str) -> str:
    async with core.db.session() as s:
        return (await s.execute(select(Person.id).where(Person.email == email))).scalar_one()


async def problems(core: Core, values: dict[str, str], platforms: set[str] | None = None) -> dict[str, str]:
    async with core.db.session() as s:
        with pytest.raises(FormInvalid) as e:
            await service.validate(s, GOOD | values, platforms or {"slack"}, core.clock.now())
    return e.value.errors


async def test_bad_input_gets_a_clear_reason_for_each_field(loaded: Core) -> None:
    assert (await problems(loaded, {"text": "  "}))["text"] == "The message text is empty."
    assert "3,001 characters; the platform shows at most 3,000" in (
        await problems(loaded, {"text": "x" * 3001}))["text"]
    assert "at most 20,000" in (await problems(loaded, {"text": "x" * 20001}, {"teams"}))["text"]
    assert "no team called 'nowhere'" in (await problems(loaded, {"audience": "teams: nowhere"}))["audience"]
    assert "'wizards' is not a role" in (await problems(loaded, {"audience": "roles: wizards"}))["audience"]
    assert "I don't understand the audience" in (await problems(loaded, {"audience": "the moon"}))["audience"]
    assert (await problems(loaded, {"image_url": "http://x.example/a.png"}))["image_url"] == (
        "The image must be an https:// address.")
    assert "https" in (await problems(loaded, {"link_url": "javascript:alert(1)"}))["link_url"]
    assert "already passed" in (await problems(loaded, {"when": "2020-01-01 09:00"}))["when"]
    async with loaded.db.session() as s:
        assert await s.scalar(select(func.count()).select_from(Broadcast)) == 0


async def test_publish_refuses_bad_input_and_sends_nothing(loaded: Core) -> None:
    port = FakePort()
    loaded.add_port(port)
    with pytest.raises(UserError, match="Nothing was sent: The message text is empty"):
        await service.publish_to_staff(loaded, await person(loaded, "changelead@northbridge.example"),
                                       title="You said, we did", text="")
    assert port.posted == {}


async def test_an_early_win_from_a_milestone_arrives_prefilled(loaded: Core) -> None:
    port = FakePort()
    loaded.add_port(port)
    author = await person(loaded, "changelead@northbridge.example")
    bid = await service.draft(loaded, author, title="Milestone done: family network meetings",
                              text="Every assessment team now runs them.", source="milestone:fnm",
                              link_url="https://example.org/roadmap")
    dm = port.messages("D-U-changelead@northbridge.example")
    card = plain_text(dm[-1].message)
    assert "Preview" in card and "Milestone done: family network meetings" in card
    assert "Read more: https://example.org/roadmap" in card and f"Id: {bid}" in card
    async with loaded.db.session() as s:
        b = await s.get(Broadcast, bid)
        assert b is not None and b.state == "draft" and b.source == "milestone:fnm"
        assert await s.scalar(select(func.count()).select_from(Delivery)) == 0, "not sent yet"


async def test_a_scheduled_broadcast_starts_when_due(loaded: Core, clock: FakeClock) -> None:
    port = FakePort()
    loaded.add_port(port)
    author = await person(loaded, "changelead@northbridge.example")
    async with loaded.db.session() as s:
        f = await service.validate(s, GOOD | {"when": "2026-11-30 14:00", "audience": "roles: leader"},
                                   {"fake"}, clock.now())
    b = await service.store(loaded, author, f)
    assert (await service.confirm(loaded, b.id, author)).state == "scheduled"
    assert await ticker(loaded, clock.now()) == 0
    clock.advance(timedelta(hours=4, minutes=1))
    assert await ticker(loaded, clock.now()) >= 2  # started, and the one leader was sent it
    await settle()
    assert any("Early win" in plain_text(p.message)
               for p in port.messages("D-U-director@northbridge.example"))


async def test_limits_are_configurable_per_platform() -> None:
    limits = parse_limits("teams:workspace=60,conversation=7;slack:workspace=2")
    assert limits["teams"].workspace_per_s == 60 and limits["slack"].workspace_per_s == 2
    with pytest.raises(ValueError, match="unknown limit"):
        parse_limits("slack:speed=3")


async def test_a_429_pauses_only_that_workspace() -> None:
    now = [0.0]
    slept: list[float] = []

    async def sleep(d: float) -> None:
        slept.append(d)
        now[0] += d

    lim = Limiter(parse_limits("slack:workspace=1,conversation=1"), clock=lambda: now[0], sleep=sleep)
    await lim.acquire("slack", "T1", "C1")
    lim.pause("slack", "T1", 30.0)
    await lim.acquire("slack", "T2", "C9")  # another workspace: no wait
    assert slept == []
    await lim.acquire("slack", "T1", "C2")  # the throttled one waits out its Retry-After
    assert sum(slept) == pytest.approx(30.0)
    await lim.acquire("slack", "T1", "C3")  # then paces at 1/s, no burst after the pause
    assert now[0] == pytest.approx(31.0)
