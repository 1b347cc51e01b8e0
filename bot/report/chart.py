"""Geometry of the 14-day cost chart: stacked bars per day, one colour per provider.

Computed here (not in the template) so the template only draws rectangles, and the
chart needs no JavaScript: it is plain inline SVG that scales with its container.
"""
from __future__ import annotations

import math
from typing import Any

__all__ = ["bar_chart", "PALETTE"]

PALETTE = ("#2563eb", "#16a34a", "#d97706", "#9333ea", "#dc2626", "#0891b2", "#4b5563", "#db2777")
WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 76, 8, 12, 36


def _nice_step(value: float, parts: int = 4) -> float:
    """The smallest 1/2/2.5/5 × 10^k step whose `parts` multiples reach value (round gridlines)."""
    if value <= 0:
        return 0.25
    target = value / parts
    exp = 10 ** math.floor(math.log10(target))
    for step in (1, 2, 2.5, 5, 10):
        if step * exp >= target * (1 - 1e-12):
            return step * exp
    return 10 * exp


def _label(v: float) -> str:
    if v == 0:
        return "$0"
    return f"${v:,.0f}" if v >= 1000 else f"${v:g}"


def bar_chart(chart: dict[str, Any]) -> dict[str, Any]:
    days: list[str] = chart["days"]
    series: dict[str, list[float]] = chart["series"]
    totals = [sum(s[i] for s in series.values()) for i in range(len(days))]
    step = _nice_step(max(totals, default=0.0))
    top = step * 4
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(1, len(days))
    bar_w = slot * 0.7
    colours = {p: PALETTE[i % len(PALETTE)] for i, p in enumerate(series)}
    bars = []
    for i, day in enumerate(days):
        x = LEFT + i * slot + (slot - bar_w) / 2
        y = TOP + plot_h
        for provider, values in series.items():
            v = values[i]
            if v <= 0:
                continue
            h = v / top * plot_h
            y -= h
            bars.append({"x": round(x, 2), "y": round(y, 2), "w": round(bar_w, 2), "h": round(h, 2),
                         "fill": colours[provider], "title": f"{day} {provider}: ${v:.4f}"})
    ticks = [{"y": round(TOP + plot_h - k / 4 * plot_h, 2), "label": _label(round(step * k, 12))} for k in range(5)]
    labels = [{"x": round(LEFT + i * slot + slot / 2, 2), "text": d[5:]} for i, d in enumerate(days) if (len(days) - 1 - i) % 2 == 0]  # every other day, ending on the report's
    return {"width": WIDTH, "height": HEIGHT, "left": LEFT, "right": WIDTH - RIGHT, "base": TOP + plot_h,
            "label_y": HEIGHT - 12, "bars": bars, "ticks": ticks, "labels": labels,
            "legend": [{"provider": p, "colour": c, "total": sum(series[p]),
                "unknown": chart.get("unknown_by_provider", {}).get(p, 0)} for p, c in colours.items()],
            "empty": not bars, "max": top}
