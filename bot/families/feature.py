"""Families and young people in chat: the change team reads contact requests and marks them made.

Their feedback itself is listed with `feedback list families` (bot/feedback), with the same
themes, statuses and "you said, we did" as staff feedback; the public pages are in
staffvoice/web/families/.
"""

from __future__ import annotations

from datetime import datetime

from bot.audit import trail
from bot.core import Core, Ctx
from bot.families import service
from bot.families.section import FamiliesSection
from bot.feedback import service as fb
from bot.feedback.tables import FeedbackItem
from bot.model import Context, Fields, Message, Text
from bot.roles import CHANGE_TEAM, SAFEGUARDING_LEAD
from bot.router import Router


async def contact_cmd(ctx: Ctx, args: str) -> None:
    """Show who asked to be contacted about an item (change team only; sent privately)."""
    item, contact = await service.read_contact(ctx.core, args,
                                                  lead=ctx.has(SAFEGUARDING_LEAD))
    await _record(ctx, "view.family_contact", item)
    await ctx.reply(Message(
        (Text(f"Contact request for {fb.ref_of(item.id)}", heading=True),
         Fields((("Name", contact.name), ("Phone or email", contact.how))),
         Context("When you have made contact, type "
                 f"“families contacted {fb.ref_of(item.id)}”: the details are then deleted. "
                 "They are deleted anyway when the retention period ends.")),
        fallback=f"Contact request for {fb.ref_of(item.id)}"))


async def contacted_cmd(ctx: Ctx, args: str) -> None:
    """The contact was made: delete the details for good."""
    item = await service.contact_made(ctx.core, args, lead=ctx.has(SAFEGUARDING_LEAD))
    await _record(ctx, "family_contact.deleted", item)
    await ctx.say(f"Contact details for {fb.ref_of(item.id)} deleted. The feedback itself stays.")


async def _record(ctx: Ctx, action: str, item: FeedbackItem) -> None:
    """A member of the public's contact details read or deleted, in the audit trail (the data
    protection officer asks who read them). A lead acting on an urgent item before its release
    is recorded as a look at the urgent queue, naming no item, as `feedback show` is: the change
    team reads the trail, and a reference with its minute would date the item (N37)."""
    if ctx.has(SAFEGUARDING_LEAD) and fb.lead_only(item):
        await trail.record_ctx(ctx, "view.urgent_queue", target="urgent")
    else:
        await trail.record_ctx(ctx, action, target=fb.ref_of(item.id))


async def _tick(core: Core, now: datetime) -> int:
    return await service.tick(core, now)


def register(r: Router) -> None:
    r.command("families contact", contact_cmd, "who asked to be contacted about a family's feedback",
              usage="REF", roles={CHANGE_TEAM}, private=True)
    r.command("families contacted", contacted_cmd, "contact made: delete their contact details",
              usage="REF", roles={CHANGE_TEAM})
    r.sections.append(FamiliesSection())
    r.ticker("families", _tick)
