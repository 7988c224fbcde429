"""`staffvoice report ...`: a round's results as CSV or JSON, and trend charts, from the shell.

The command line sees every group, but only through the anonymity engine, like chat.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from bot.config import Settings
from bot.reports import chart, service
from bot.reports.export import ReportError, export_round
from staffvoice.database import opened


def add_to(sub: argparse._SubParsersAction[argparse.ArgumentParser], settings: Settings) -> None:
    """The `report` command (read-only)."""
    p = sub.add_parser("report", help="pulse results: rounds, a round's export, trend charts",
                       description="Pulse results from the shell, through the same anonymity "
                                   "rules as chat (groups under the threshold show no numbers). "
                                   "Read-only.")
    rsub = p.add_subparsers(dest="sub", required=True, metavar="ACTION")
    rounds = rsub.add_parser("rounds", help="list closed rounds and their ids",
                             description="Closed rounds: round id, survey id, label.")
    rounds.set_defaults(run=run)
    rnd = rsub.add_parser("round", help="a closed round's results for every group",
                          description="A closed round's results for every group, as JSON or CSV.")
    rnd.add_argument("round_id", metavar="ROUND_ID", help="the round (see: staffvoice report rounds)")
    rnd.add_argument("--format", choices=("csv", "json"), default="json",
                     help="json (default) or csv (one row per group, question and measure)")
    rnd.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output")
    rnd.set_defaults(run=run)
    ch = rsub.add_parser("chart", help="a question's trend over rounds as a PNG (and as text)",
                         description="A question's trend over the last rounds, drawn as a PNG "
                                     "and described in words.")
    ch.add_argument("--survey", required=True, metavar="SURVEY", help="the survey's id")
    ch.add_argument("--question", required=True, metavar="QUESTION", help="question key or id")
    ch.add_argument("--group", default="all", metavar="GROUP",
                    help="all (default), a team id or name, or a role")
    ch.add_argument("--rounds", type=int, default=service.TREND_ROUNDS, metavar="N",
                    help=f"how many recent rounds (default {service.TREND_ROUNDS})")
    ch.add_argument("--out", required=True, metavar="FILE", help="the PNG file to write")
    ch.set_defaults(run=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    return asyncio.run(_run(settings, args))


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    async with opened(settings, migrate=False) as core:
        async with core.db.session() as s:
            if args.sub == "rounds":
                return await _rounds(s)
            if args.sub == "round":
                _write(await export_round(s, args.round_id, args.format), args.out)
                target = f"round {args.round_id} as {args.format}"
            else:
                await _chart(s, args)
                target = f"chart {args.survey} {args.question} {args.group}"
        # Pulse results left the product: the audit trail says who took them, and when.
        from bot.audit import trail
        from staffvoice.commands.audit import operator

        await trail.record(core.db, operator(), "export.report", surface="cli",
                           now=core.clock.now(), target=target[:200])
        return 0


def _write(text: str, out: str | None) -> None:
    if out:
        Path(out).write_text(text, encoding="utf-8")
        print(f"wrote {out}")
    else:
        sys.stdout.write(text)


async def _rounds(s: Any) -> int:
    from bot.pulse import service as pulse

    found = 0
    for survey in await pulse.surveys(s, include_inactive=True):
        for r in await service.closed_rounds(s, survey.id):
            print(f"{r.id}  {survey.id}  {r.label}")
            found += 1
    if not found:
        print("no closed rounds yet (results show once a round closes)")
    return 0


async def _chart(s: Any, args: argparse.Namespace) -> int:
    qid = await _question_id(s, args.survey, args.question)
    key = await service.resolve_group(s, args.group)
    if key is None:
        raise ReportError(f"'{args.group}' is not a team or role")
    trend = await service.trend(s, args.survey, qid, key, last=max(1, args.rounds))
    Path(args.out).write_bytes(chart.render_png(trend))
    print(chart.describe(trend))
    print(f"wrote {args.out}")
    return 0


async def _question_id(s: Any, survey_id: str, question: str) -> str:
    from bot.pulse import service as pulse

    if await pulse.survey_by_id(s, survey_id) is None:
        raise ReportError(f"no survey '{survey_id}'")
    for q in await pulse.questions_of(s, survey_id, include_inactive=True):
        if question in (q.id, q.key):
            return q.id
    raise ReportError(f"survey '{survey_id}' has no question '{question}'")
