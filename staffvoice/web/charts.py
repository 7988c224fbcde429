"""Web-only charts (the roadmap timeline, delivery progress) as SVG markup with classes.

Trend charts are not here: they come from bot/reports/chart.py, which draws the chat PNG from
the same layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from xml.sax.saxutils import escape

from markupsafe import Markup

ROW = 26
LABEL_W = 260
WIDTH = 900


@dataclass(frozen=True)
class Mark:
    label: str
    due: date
    status: str  # on_track | at_risk | off_track | done | not_started


def _e(text: str) -> str:
    return escape(text, {'"': "&quot;"})


def timeline(marks: list[Mark], today: date, chart_id: str, title: str) -> Markup:
    """Milestones as markers on a date axis, one row each, with a line for today."""
    if not marks:
        return Markup("")
    first = min(min(m.due for m in marks), today) - timedelta(days=7)
    last = max(max(m.due for m in marks), today) + timedelta(days=7)
    span = max((last - first).days, 1)
    left, right = LABEL_W, WIDTH - 20
    height = 50 + ROW * len(marks)

    def x(d: date) -> float:
        return left + (right - left) * (d - first).days / span

    out = [f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" '
           f'aria-labelledby="{chart_id}-t" xmlns="http://www.w3.org/2000/svg">',
           f'<title id="{chart_id}-t">{_e(title)}</title>']
    # month ticks
    d = date(first.year, first.month, 1)
    while d <= last:
        if d >= first:
            out.append(f'<line class="chart-grid" x1="{x(d):.1f}" y1="20" x2="{x(d):.1f}" y2="{height - 10}"/>')
            out.append(f'<text class="chart-text" x="{x(d) + 3:.1f}" y="16">{d:%b %Y}</text>')
        d = date(d.year + (d.month == 12), d.month % 12 + 1, 1)
    out.append(f'<line class="chart-today" x1="{x(today):.1f}" y1="20" x2="{x(today):.1f}" y2="{height - 10}"/>')
    for i, m in enumerate(marks):
        y = 40 + ROW * i
        label = m.label if len(m.label) <= 34 else m.label[:33] + "…"
        out.append(f'<text class="chart-text" x="4" y="{y + 4}">{_e(label)}</text>')
        out.append(f'<line class="chart-grid" x1="{left}" y1="{y}" x2="{right}" y2="{y}"/>')
        cx = x(m.due)
        # shape as well as colour tells the status (WCAG 1.4.1)
        if m.status == "done":
            out.append(f'<rect class="tl tl-{m.status}" x="{cx - 6:.1f}" y="{y - 6}" width="12" height="12"/>')
        elif m.status in ("at_risk", "off_track"):
            out.append(f'<polygon class="tl tl-{m.status}" points="{cx:.1f},{y - 8} {cx + 8:.1f},{y + 6} {cx - 8:.1f},{y + 6}"/>')
        else:
            out.append(f'<circle class="tl tl-{m.status}" cx="{cx:.1f}" cy="{y}" r="6"/>')
    out.append("</svg>")
    return Markup("".join(out))


def bar(done: int, total: int, chart_id: str, title: str) -> Markup:
    """A delivery progress bar (the figures are also written out beside it)."""
    share = 1.0 if total == 0 else done / total
    w = 300
    return Markup(
        f'<svg class="chart chart-progress" viewBox="0 0 {w} 20" role="img" aria-labelledby="{chart_id}-t" '
        f'xmlns="http://www.w3.org/2000/svg"><title id="{chart_id}-t">{_e(title)}</title>'
        f'<rect class="chart-track" x="0" y="0" width="{w}" height="20"/>'
        f'<rect class="chart-bar" x="0" y="0" width="{w * share:.1f}" height="20"/></svg>')
