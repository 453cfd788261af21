"""The load report: ``report.json`` (everything) and ``report.html`` (summary and plots as inline SVG).

SVG drawn by hand keeps the report a single self-contained file with no plotting dependency.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

WIDTH, HEIGHT, PAD = 560, 220, 40


def _axes(title: str, xlabel: str, ylabel: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT + 40}" class="plot">',
        f'<text x="{WIDTH / 2}" y="16" text-anchor="middle" font-weight="bold">{html.escape(title)}</text>',
        f'<line x1="{PAD}" y1="{HEIGHT}" x2="{WIDTH - 10}" y2="{HEIGHT}" stroke="#555"/>',
        f'<line x1="{PAD}" y1="30" x2="{PAD}" y2="{HEIGHT}" stroke="#555"/>',
        f'<text x="{WIDTH / 2}" y="{HEIGHT + 30}" text-anchor="middle" font-size="12">{html.escape(xlabel)}</text>',
        f'<text x="12" y="{HEIGHT / 2}" font-size="12" '
        f'transform="rotate(-90 12 {HEIGHT / 2})">{html.escape(ylabel)}</text>',
    ]


def line_chart(title: str, xs: list[float], ys: list[float], xlabel: str, ylabel: str) -> str:
    parts = _axes(title, xlabel, ylabel)
    if xs and ys:
        x_max, y_max = max(xs) or 1.0, max(ys) or 1.0
        points = " ".join(
            f"{PAD + (x / x_max) * (WIDTH - PAD - 20):.1f},{HEIGHT - (y / y_max) * (HEIGHT - 40):.1f}"
            for x, y in zip(xs, ys, strict=False)
        )
        parts.append(f'<polyline fill="none" stroke="#2d6cdf" stroke-width="2" points="{points}"/>')
        parts.append(f'<text x="{PAD + 4}" y="36" font-size="11">max {y_max:,.0f}</text>')
    else:
        parts.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">no data</text>')
    parts.append("</svg>")
    return "".join(parts)


def histogram(title: str, values: list[float], xlabel: str, bins: int = 20) -> str:
    parts = _axes(title, xlabel, "count")
    if values:
        low, high = min(values), max(values)
        span = (high - low) or 1.0
        counts = [0] * bins
        for v in values:
            counts[min(bins - 1, int((v - low) / span * bins))] += 1
        top = max(counts)
        bar = (WIDTH - PAD - 20) / bins
        for i, c in enumerate(counts):
            h = (c / top) * (HEIGHT - 40)
            x, y = PAD + i * bar, HEIGHT - h
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar - 2:.1f}" height="{h:.1f}" fill="#2d6cdf"/>')
        parts.append(f'<text x="{PAD}" y="{HEIGHT + 14}" font-size="11">{low:.0f}</text>')
        parts.append(f'<text x="{WIDTH - 40}" y="{HEIGHT + 14}" font-size="11">{high:.0f}</text>')
    else:
        parts.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">no data</text>')
    parts.append("</svg>")
    return "".join(parts)


def write_report(summary: dict[str, Any], result: dict[str, Any], directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / "report.json"
    samples_ms = result.get("latency_ms", [])  # the summary holds its percentiles; keep the file small
    kept = {**result, "latency_ms": samples_ms[:: max(1, len(samples_ms) // 2000)]}
    json_path.write_text(json.dumps({"summary": summary, **kept}, indent=1, default=str))
    subs = result["subscribers"]
    samples = result["samples"]
    expected = result["publishers_sent"]
    loss = [
        100 * max(0, expected.get(s["room"], 0) - s["packets"]) / expected[s["room"]]
        for s in subs
        if s["join_ms"] is not None and expected.get(s["room"])
    ]
    charts = [
        histogram("Join latency", [s["join_ms"] for s in subs if s["join_ms"] is not None], "ms"),
        histogram(
            "Join → first video packet", [s["first_frame_ms"] for s in subs if s["first_frame_ms"] is not None], "ms"
        ),
        histogram("Added latency (publisher bot → subscriber bot)", result.get("latency_ms", []), "ms"),
        line_chart(
            "Forwarded packets per second",
            [x["t"] for x in samples if "forwarded_pps" in x],
            [x["forwarded_pps"] for x in samples if "forwarded_pps" in x],
            "seconds",
            "packets/s",
        ),
        histogram("Loss per subscriber", loss, "% of packets"),
        line_chart(
            "Freezes over time (cumulative)",
            [x["t"] for x in samples],
            [x["freezes"] for x in samples],
            "seconds",
            "freezes",
        ),
    ]
    rows = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(json.dumps(v))}</td></tr>" for k, v in summary.items()
    )
    page = (
        "<!doctype html><meta charset='utf-8'><title>roomcast load report</title>"
        "<style>body{font-family:system-ui;margin:2rem}td{padding:.2rem .8rem;border-bottom:1px solid #ddd}"
        ".plot{margin:1rem 1rem 0 0}</style>"
        f"<h1>roomcast load report</h1><table>{rows}</table><div>{''.join(charts)}</div>"
    )
    html_path = directory / "report.html"
    html_path.write_text(page)
    return json_path, html_path
