"""Review6: N23 nesting when only min_group was raised: comment lists are not nested."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.reports.anonymity import Org, Thresholds
from bot.reports.results import QuestionInfo, RoundData, RoundInfo, compute


def test_raising_only_min_group_shows_no_comment_list_the_close_hid() -> None:
    # Family Support (fs) holds Assessment (as); t2, t3, t4 sit under the whole.
    org = Org({"fs": None, "as": "fs", "t2": None, "t3": None, "t4": None}, ())
    respondents = {("t2", "*"): 20, ("t3", "*"): 2, ("t4", "*"): 3, ("fs", "*"): 6,
                   ("as", "*"): 10}
    commenters = {("t2", "*"): 9, ("t3", "*"): 1, ("fs", "*"): 1, ("as", "*"): 10}
    data = RoundData(respondents=dict(respondents), invited=dict(respondents),
                     answered={"q": dict(respondents)}, commenters={"c": commenters},
                     teams={"q": {}}, roles={"q": {}}, whole={"q": {}},
                     parents=dict(org.parents), thresholds=Thresholds(5, 10))
    info = RoundInfo("r", "s", "Survey", 1, datetime(2026, 11, 2, tzinfo=UTC), True)
    qs = [QuestionInfo("q", "Rated", "likert5"), QuestionInfo("c", "Say", "text")]

    def comment_lists(th: Thresholds) -> set[str]:
        out = compute(org, {}, th, info, qs, data)
        return {g.key for g in out.groups.values() if g.shown
                for q in g.questions if q.question.id == "c" and q.comments_shown}

    at_close = comment_lists(Thresholds(5, 10))
    stricter = comment_lists(Thresholds(6, 10))  # the programme raised min_group only
    # At close: Family Support's list (11 comments), Assessment's hidden (FS's own 1 commenter).
    # Under 6: Family Support hidden, Assessment's list shown (10): FS's list minus it is one
    # person's comment.
    assert stricter <= at_close, (sorted(at_close), sorted(stricter))
