"""Renders a computed report through the Jinja templates in templates/report/.

Operators may override any of them by putting a file of the same name under their
TIERBOT_TEMPLATES_DIR/report/. The HTML template is rendered with autoescaping on
(customer questions appear in it); the others are plain text or JSON.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from ..rendering import Renderer
from ..secrets import redact
from .chart import bar_chart

__all__ = ["FORMATS", "render_report", "slack_message", "report_renderer"]

FORMATS = {"text": "report/report.txt.j2", "markdown": "report/report.md.j2",
           "json": "report/report.json.j2", "html": "report/report.html.j2",
           "slack": "report/report.slack.j2"}


def usd(v: float | None, unknown: int = 0) -> str:
    if v is None:
        return "unknown"
    if v == 0:
        text = "$0.00"
    elif abs(v) < 0.01:
        text = f"${v:.6f}"
    elif abs(v) < 1:
        text = f"${v:.4f}"
    else:
        text = f"${v:,.2f}"
    return text + (f" + price unknown ({unknown})" if unknown else "")


def pct(v: float | None) -> str:
    return "—" if v is None else f"{v * 100:.1f}%"


def delta(v: float | None) -> str:
    return "—" if v is None else f"{v * 100:+.0f}%"


def ms(v: float | None) -> str:
    return "—" if v is None else f"{v:,.0f} ms"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def metric(v: Any, kind: str) -> str:
    if v is None:
        return "—"
    if kind == "usd":
        return usd(v)
    if kind == "pct":
        return pct(v)
    return f"{v:,.1f}" if isinstance(v, float) and not v.is_integer() else f"{int(v):,}"


def mrkdwn(text: str) -> str:
    """Slack's three control characters escaped: customer text cannot ping <!channel>."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


FILTERS = {"mrkdwn": mrkdwn, "usd": usd, "pct": pct, "delta": delta, "ms": ms, "duration": duration, "metric": metric}


@functools.lru_cache(maxsize=8)
def report_renderer(operator_dir: Path | None, *, html: bool) -> Renderer:
    """One environment per template folder (Jinja caches compiled templates in it)."""
    renderer = Renderer(operator_dir, autoescape=html)
    renderer.env.filters.update(FILTERS)
    return renderer


def render_report(report: dict[str, Any], fmt: str, operator_dir: Path | None = None) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"unknown report format {fmt!r}; choose one of {', '.join(FORMATS)}")
    renderer = report_renderer(operator_dir, html=fmt == "html")
    context = {"r": report, "chart": bar_chart(report["chart"]) if fmt == "html" else None}
    text = renderer.render(FORMATS[fmt], **context)
    return redact(text) + "\n"


def slack_message(report: dict[str, Any], operator_dir: Path | None = None) -> tuple[list[dict], str]:
    """(blocks, fallback text) for chat.postMessage."""
    blocks = json.loads(render_report(report, "slack", operator_dir))
    t = report["totals"]
    text = (f"tierbot daily report {report['date']}: {t['messages']:,} messages, "
            f"cost {usd(t['cost_usd'], t['unknown_price_attempts'])}")
    return blocks, text
