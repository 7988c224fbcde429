"""A staffvoice worker process for kill tests:
`python -m tests.hardening.runner MODE DB_URL API_URL EPOCH`.

MODE `pulse`: Monday 10:00, run the scheduled work (the weekly round opens and queues everyone's
invitation in the delivery ledger), send until the ledger's invitations are settled, then print
"done". Every incarnation is sender "replica-a" (STAFFVOICE_SENDER_ID), so a restart takes back
at once the rows its killed predecessor left in flight and asks the platform about them. MODE `broadcast`: run the broadcast sender worker (as every `serve` replica
does) until killed; MODE `broadcast-holder`: the same as replica "replica-holder" whose leases
last an hour. The platform is the rate-limited fake over HTTP (`adapters/fake/http_port`).
Time runs from Monday 10:00 at wall-clock EPOCH, the same in every incarnation, so leases and
reconciliation see a restart as the real passing of time.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from adapters.fake.http_port import HttpPort
from bot.broadcasts.ledger import OPEN
from bot.broadcasts.limiter import Limiter, Limits
from bot.broadcasts.sender import Sender
from bot.broadcasts.tables import Delivery
from bot.config import Settings
from bot.core import Core
from storage.db import Database

SECRET = "test-secret-not-for-production"
MONDAY_10 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
FAST = {"fakehttp": Limits(workspace_per_s=2000, conversation_per_s=2000, burst=20)}


class MondayClock:
    """Monday 10:00 at wall-clock `epoch`, moving on in real time."""

    def __init__(self, epoch: float) -> None:
        self.epoch = epoch

    def now(self) -> datetime:
        return MONDAY_10 + timedelta(seconds=time.time() - self.epoch)


async def unsettled_invitations(core: Core) -> int:
    """Invitations still to settle now (not those held for someone's working hours)."""
    now = core.clock.now()
    async with core.db.session() as s:
        return int(await s.scalar(select(func.count()).where(
            Delivery.kind == "pulse", Delivery.state.in_(OPEN),
            (Delivery.not_before.is_(None)) | (Delivery.not_before <= now))) or 0)


async def main(mode: str, db_url: str, api_url: str, epoch: str) -> None:
    os.environ["STAFFVOICE_SENDER_ID"] = "replica-a"
    os.environ["STAFFVOICE_BROADCAST_LIMITS"] = "fakehttp:workspace=2000,conversation=2000,burst=20"
    db = Database(db_url)
    clock = MondayClock(float(epoch))
    core = Core(db, settings=Settings(database_url=db_url, secret_key=SECRET), clock=clock)
    await core.start()
    port = HttpPort(api_url)
    core.add_port(port)
    print("started", flush=True)
    try:
        if mode == "pulse":
            sender = Sender(core, limiter=Limiter(FAST), batch=4, send_timeout_s=2.0)
            await sender.recover()
            await core.router.tickers["pulse"](core, clock.now())
            while await unsettled_invitations(core):
                await sender.drain()
                await asyncio.sleep(0.1)
            print("done", flush=True)
        elif mode == "broadcast-holder":
            # Another replica's sender, whose leases would last an hour: only a takeover that
            # learns at once that it is gone lets anyone else finish its broadcast.
            sender = Sender(core, sender_id="replica-holder", limiter=Limiter(FAST), batch=4,
                            send_timeout_s=2.0, lease=timedelta(hours=1),
                            workspace_lease_ttl=timedelta(hours=1))
            await sender.run(asyncio.Event(), poll_s=0.1)
        else:
            sender = Sender(core, sender_id="replica-a", limiter=Limiter(FAST), batch=4,
                            send_timeout_s=2.0)
            await sender.run(asyncio.Event(), poll_s=0.1)
    finally:
        await port.close()
        await db.dispose()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
