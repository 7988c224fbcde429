"""The one retry policy (storage/retry.py) and the places that use it.

What is tried again, how many times, how long in between, and that a server's Retry-After is
never cut short. Waits are recorded by a stand-in `sleep`, so nothing here waits for real.
"""

from __future__ import annotations

import sqlite3

import aiohttp
import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_slack_response import AsyncSlackResponse
from sqlalchemy.exc import IntegrityError, OperationalError

from adapters.slack.port import Pacer
from adapters.teams.connector import ConnectorPool
from bot.core import ADMISSION
from bot.port import PlatformError, RateLimited, TransientError, Unreachable
from storage import sqlite_inline
from storage.retry import DATABASE_BUSY, Retry, database_busy


class Flaky:
    """Fails with `errors` in turn, then returns "done"."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


class Waits(list[float]):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


def locked() -> OperationalError:
    return OperationalError("INSERT ...", {}, sqlite3.OperationalError("database is locked"))


async def test_a_retryable_failure_is_tried_again_until_it_succeeds() -> None:
    op, waits = Flaky(ValueError("1"), ValueError("2")), Waits()
    policy = Retry(lambda e: isinstance(e, ValueError), attempts=5, base=0.01, cap=1.0)
    assert await policy.run(op, sleep=waits) == "done"
    assert op.calls == 3 and len(waits) == 2


async def test_after_the_last_attempt_the_last_error_is_raised_as_it_was() -> None:
    errors = [ValueError(str(i)) for i in range(10)]
    op, waits = Flaky(*errors), Waits()
    policy = Retry(lambda e: isinstance(e, ValueError), attempts=4)
    with pytest.raises(ValueError) as e:
        await policy.run(op, sleep=waits)
    assert e.value is errors[3]
    assert op.calls == 4 and len(waits) == 3


async def test_an_error_the_policy_does_not_name_is_raised_at_once() -> None:
    op, waits = Flaky(KeyError("no"), ValueError("x")), Waits()
    policy = Retry(lambda e: isinstance(e, ValueError), attempts=5)
    with pytest.raises(KeyError):
        await policy.run(op, sleep=waits)
    assert op.calls == 1 and waits == []


async def test_waits_grow_are_jittered_and_never_exceed_the_cap() -> None:
    op, waits = Flaky(*[ValueError() for _ in range(7)]), Waits()
    policy = Retry(lambda e: True, attempts=8, base=0.1, cap=1.0)
    await policy.run(op, sleep=waits)
    wanted = [min(1.0, 0.1 * 2 ** i) for i in range(7)]
    assert all(w / 2 <= got <= w for got, w in zip(waits, wanted, strict=True))
    assert max(waits) <= 1.0


async def test_a_servers_retry_after_is_honoured_up_to_the_cap() -> None:
    class Throttled(Exception):
        def __init__(self, after: float) -> None:
            self.after = after

    op, waits = Flaky(Throttled(3), Throttled(100)), Waits()
    policy = Retry(lambda e: isinstance(e, Throttled), attempts=5, base=0.01, cap=30,
                   after=lambda e: getattr(e, "after", None))
    await policy.run(op, sleep=waits)
    assert waits[0] >= 3 and waits[1] == 30


async def test_with_a_deadline_tries_stop_when_the_time_is_used_up() -> None:
    op, waits = Flaky(*[ValueError() for _ in range(5)]), Waits()
    policy = Retry(lambda e: True, attempts=None, deadline=0.0)
    with pytest.raises(ValueError):
        await policy.run(op, sleep=waits)
    assert op.calls == 2  # the first failure starts the clock; by the second, time is up


def test_a_policy_without_attempts_or_deadline_is_refused() -> None:
    with pytest.raises(ValueError):
        Retry(lambda e: True, attempts=None)


def test_which_database_errors_count_as_busy() -> None:
    assert database_busy(locked())
    assert database_busy(sqlite3.OperationalError("database is locked"))
    assert not database_busy(OperationalError("SELECT", {}, sqlite3.OperationalError("no such table: x")))
    assert not database_busy(IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE")))
    assert not database_busy(ValueError("locked"))


async def test_a_busy_database_is_waited_out_by_a_pulse_tap_and_by_admission() -> None:
    for policy in (DATABASE_BUSY, ADMISSION):
        op, waits = Flaky(locked(), locked()), Waits()
        assert await policy.run(op, sleep=waits) == "done"
        assert op.calls == 3


async def test_admission_retries_a_race_of_first_events_but_not_other_errors() -> None:
    race = IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE constraint failed"))
    op, waits = Flaky(race), Waits()
    assert await ADMISSION.run(op, sleep=waits) == "done"
    op = Flaky(OperationalError("SELECT", {}, sqlite3.OperationalError("disk I/O error")))
    with pytest.raises(OperationalError):
        await ADMISSION.run(op, sleep=Waits())
    assert op.calls == 1


def test_the_sqlite_driver_retries_a_held_lock_but_not_a_stale_snapshot() -> None:
    busy = sqlite3.OperationalError("database is locked")
    busy.sqlite_errorcode = 5  # type: ignore[attr-defined]
    stale = sqlite3.OperationalError("database is locked")
    stale.sqlite_errorcode = 517  # type: ignore[attr-defined]
    tries = sqlite_inline.BUSY.begin()
    assert tries.wait(busy) is not None
    assert tries.wait(stale) is None
    assert sqlite_inline.BUSY.attempts is None and sqlite_inline.BUSY.deadline == 30.0


# -- the Bot Connector's calls -----------------------------------------------------------


def answer(status: int, retry_after: str | None = None, body: str = "") -> aiohttp.ClientResponseError:
    headers = CIMultiDictProxy(CIMultiDict({"Retry-After": retry_after} if retry_after else {}))
    return aiohttp.ClientResponseError(None, (), status=status, message=body,  # type: ignore[arg-type]
                                       headers=headers)


async def connector_call(*errors: BaseException, attempts: int = 4) -> tuple[Flaky, Waits, object]:
    waits = Waits()
    pool = ConnectorPool(None, attempts=attempts, sleep=waits)
    op = Flaky(*errors)

    async def call(_client: object) -> str:
        return await op()

    try:
        result: object = await pool.call("http://127.0.0.1:9/", call, "send")
    except PlatformError as e:
        result = e
    finally:
        await pool.close()
    return op, waits, result


async def test_the_connector_retries_throttling_honouring_retry_after() -> None:
    op, waits, result = await connector_call(answer(429, "7"), answer(503), TimeoutError())
    assert result == "done" and op.calls == 4
    assert waits[0] >= 7 and len(waits) == 3


async def test_the_connector_gives_up_on_throttling_with_the_wait_it_was_asked() -> None:
    op, waits, result = await connector_call(*[answer(429, "2") for _ in range(4)])
    assert isinstance(result, RateLimited) and result.retry_after == 2
    assert op.calls == 4 and len(waits) == 3 and all(w >= 2 for w in waits)


async def test_the_connector_gives_up_on_an_outage_as_a_transient_error() -> None:
    op, waits, result = await connector_call(*[answer(502) for _ in range(4)])
    assert isinstance(result, TransientError) and not isinstance(result, RateLimited)
    assert op.calls == 4


async def test_the_connector_never_retries_a_forbidden_or_a_bad_request() -> None:
    op, waits, result = await connector_call(answer(403, body='{"error": {"code": "Blocked"}}'))
    assert isinstance(result, Unreachable) and op.calls == 1 and waits == []
    op, waits, result = await connector_call(answer(400))
    assert type(result) is PlatformError and op.calls == 1 and waits == []


# -- the Slack Web API client's 429s -------------------------------------------------------


def slack_error(status: int, retry_after: str | None = None) -> SlackApiError:
    data = {"ok": False, "error": "ratelimited" if status == 429 else "internal_error"}
    response = AsyncSlackResponse(client=None, http_verb="POST", api_url="chat.postMessage",
                                  req_args={}, data=data, status_code=status,
                                  headers={"Retry-After": retry_after} if retry_after else {})
    return SlackApiError("refused", response)


async def test_the_slack_client_waits_out_a_short_retry_after_under_the_one_policy() -> None:
    waits = Waits()
    op = Flaky(slack_error(429, "2"), slack_error(429, "3"))
    assert await Pacer(max_wait=5).retry.run(op, sleep=waits) == "done"
    assert op.calls == 3 and waits[0] >= 2 and waits[1] >= 3


async def test_the_slack_client_hands_back_a_long_retry_after_or_a_fourth_429_at_once() -> None:
    for errors, calls in (([slack_error(429, "30")], 1), ([slack_error(429, "1")] * 4, 4)):
        waits = Waits()
        op = Flaky(*errors)
        with pytest.raises(SlackApiError):
            await Pacer(max_wait=5).retry.run(op, sleep=waits)
        assert op.calls == calls and len(waits) == calls - 1


async def test_the_slack_client_leaves_other_failures_to_the_sdk_and_the_port() -> None:
    waits = Waits()
    op = Flaky(slack_error(500))
    with pytest.raises(SlackApiError):
        await Pacer().retry.run(op, sleep=waits)
    assert op.calls == 1 and waits == []
