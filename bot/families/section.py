"""The `families:` programme section: the public pages' wording, languages and limits.

    families:
      short_link: https://northbridge.example/tell-us
      daily_limit: 10          # submissions per address per day
      contact_days: 30         # contact details kept at most this long
      languages: [en, cy]      # the strings files offered (staffvoice/web/families/strings/)
      routes: [Children's social care front door (MASH)]   # of safeguarding.routes; default all
      wording:                 # the programme's own words, over the strings files
        en:
          families: {title: "...", intro: "..."}
          young_people: {intro: "..."}
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.programme.core_sections import get_setting, set_setting
from bot.programme.schema import Doc

LANG = re.compile(r"^[a-z]{2,3}(?:-[A-Za-z]{2,4})?$")
WORDING_SECTIONS = {"common", "families", "young_people"}


class FamiliesSection:
    key = "families"
    order = 25

    def validate(self, doc: Doc, value: Any) -> None:
        p = (self.key,)
        m = doc.mapping(value, p)
        if m is None:
            return
        doc.unknown_keys(m, p, {"short_link", "daily_limit", "contact_days", "languages", "wording",
                                "routes"})
        routes = doc.get(m, p, "routes", list)
        for i, name in enumerate(routes or []):
            if not isinstance(name, str) or not name.strip():
                doc.problem(p + ("routes", i), "should be the name of a safeguarding route")
        link = doc.get(m, p, "short_link", str)
        if link and not link.startswith(("https://", "http://")):
            doc.problem(p + ("short_link",), "should be a web address starting https://")
        dl = doc.get(m, p, "daily_limit", int)
        if dl is not None and not 1 <= dl <= 10000:
            doc.problem(p + ("daily_limit",), "must be between 1 and 10000")
        cd = doc.get(m, p, "contact_days", int)
        if cd is not None and not 1 <= cd <= 365:
            doc.problem(p + ("contact_days",), "must be between 1 and 365 days")
        langs = doc.get(m, p, "languages", list)
        for i, lang in enumerate(langs or []):
            if not isinstance(lang, str) or not LANG.match(lang):
                doc.problem(p + ("languages", i), "should be a language code such as en or cy")
        wording = doc.get(m, p, "wording", dict)
        for lang, sections in (wording or {}).items():
            wp = p + ("wording", lang)
            if not isinstance(lang, str) or not LANG.match(lang):
                doc.problem(wp, "should be a language code such as en or cy")
            if not isinstance(sections, dict):
                doc.problem(wp, "should be a mapping of common, families and young_people")
                continue
            doc.unknown_keys(sections, wp, WORDING_SECTIONS)
            for name, texts in sections.items():
                if not isinstance(texts, dict) or not all(
                        isinstance(k, str) and isinstance(v, str) for k, v in texts.items()):
                    doc.problem(wp + (name,), "should map names of texts to the words to show")

    async def sync(self, s: AsyncSession, doc: Doc, value: Any) -> None:
        await set_setting(s, "families", {
            "short_link": str(value.get("short_link") or ""),
            "daily_limit": value.get("daily_limit"),
            "contact_days": value.get("contact_days"),
            "languages": [str(x) for x in value.get("languages") or []],
            "routes": [str(x) for x in value.get("routes") or []],
            "wording": {str(lang): {str(k): {str(a): str(b) for a, b in v.items()}
                                    for k, v in sections.items()}
                        for lang, sections in (value.get("wording") or {}).items()},
        })

    async def export(self, s: AsyncSession) -> Any:
        v = await get_setting(s, "families")
        if not v:
            return None
        return {k: x for k, x in v.items() if x not in ("", [], {}, None)}
