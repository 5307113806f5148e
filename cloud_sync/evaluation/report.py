"""The evaluation as a text table (stdout) and as one self-contained HTML file (works offline:
inline SVG chart, thumbnails embedded as base64 JPEG, no scripts)."""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path

import cv2

from cloud_sync.evaluation.evaluate import Evaluation
from cloud_sync.indexing.catalog import read_image_bytes
from components.common.errors import ImageError
from components.featurizer.preprocess import decode_image

THUMBNAIL_SIDE = 96
COLORS = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#9c755f", "#bab0ac")


def columns(ks: list[int]) -> list[tuple[str, str, str | None]]:
    """(label, key, k) of each figure shown: P@1, P@k, R@k, mAP@k."""
    return (
        [("P@1", "precision_at_1", None)]
        + [(f"P@{k}", "precision_at_k", str(k)) for k in ks if k != 1]
        + [(f"R@{k}", "recall_at_k", str(k)) for k in ks]
        + [(f"mAP@{k}", "map_at_k", str(k)) for k in ks]
    )


def figure(figures: dict, key: str, k: str | None) -> float:
    return figures[key] if k is None else figures[key][k]


def summary_lines(ev: Evaluation) -> list[str]:
    truth = "same category" if ev.ground_truth == "category" else "same item (item_id column)"
    figures = ev.results[ev.index["metric"]]
    recall = ", ".join(f"recall@{k} {v:.3f}" for k, v in figures["index_recall_at_k"].items())
    lines = [
        f"catalog: {len(ev.catalog.items)} items ({len(ev.catalog.problems)} skipped); "
        f"queries: {len(ev.queries.items)} ({len(ev.queries.problems)} skipped); "
        f"ground truth: {truth}",
        f"index: {ev.index['factory']} ({ev.index['search_params'] or 'exact'}, {ev.index['source']}), "
        f"metric {ev.index['metric']}: {recall} against exact search; "
        f"median query latency {figures['median_query_latency_s'] * 1000:.3f} ms",
    ]
    if ev.no_relevant:
        lines.append(f"note: {ev.no_relevant} query(ies) have no relevant catalog item (they score 0)")
    return lines


def format_table(ev: Evaluation) -> str:
    cols = columns(ev.ks)
    width = max(8, *(len(name) for name in ev.results))
    rows = [f"{'metric':<{width}}" + "".join(f"{label:>8}" for label, _, _ in cols)]
    for name, figures in ev.results.items():
        rows.append(f"{name:<{width}}" + "".join(f"{figure(figures, key, k):>8.3f}" for _, key, k in cols))
    return "\n".join(rows + [""] + summary_lines(ev))


def bar_chart(ev: Evaluation) -> str:
    """Grouped bars: one group per figure, one bar per metric and the random baseline."""
    cols, names = columns(ev.ks), list(ev.results)
    bar, gap, left, top, height = 10, 14, 40, 30, 200
    group = bar * len(names) + gap
    width = left + group * len(cols) + 10
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{top + height + 30}" '
        f'font-family="sans-serif" font-size="11">'
    ]
    for tick in (0, 0.25, 0.5, 0.75, 1):
        y = top + height * (1 - tick)
        parts.append(
            f'<line x1="{left}" y1="{y}" x2="{width}" y2="{y}" stroke="#ddd"/>'
            f'<text x="{left - 4}" y="{y + 4}" text-anchor="end">{tick:g}</text>'
        )
    for c, (label, key, k) in enumerate(cols):
        x0 = left + c * group + gap / 2
        for n, name in enumerate(names):
            value = figure(ev.results[name], key, k)
            parts.append(
                f'<rect x="{x0 + n * bar}" y="{top + height * (1 - value):.1f}" width="{bar - 1}" '
                f'height="{height * value:.1f}" fill="{COLORS[n % len(COLORS)]}">'
                f"<title>{escape(name)} {escape(label)}: {value:.3f}</title></rect>"
            )
        parts.append(
            f'<text x="{x0 + bar * len(names) / 2}" y="{top + height + 16}" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
    for n, name in enumerate(names):
        parts.append(
            f'<rect x="{left + n * 80}" y="6" width="10" height="10" fill="{COLORS[n % len(COLORS)]}"/>'
            f'<text x="{left + n * 80 + 14}" y="15">{escape(name)}</text>'
        )
    return "\n".join(parts + ["</svg>"])


def thumbnail(root: Path, ref: str) -> str:
    """A small JPEG of a catalog or query image as a data: URI ("" if it cannot be read)."""
    try:
        image = decode_image(read_image_bytes(root, ref), ref)
    except ImageError:
        return ""
    scale = min(1.0, THUMBNAIL_SIDE / max(image.shape[:2]))
    small = cv2.resize(
        image,
        (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))),
        interpolation=cv2.INTER_AREA,
    )
    ok, data = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return "data:image/jpeg;base64," + base64.b64encode(data.tobytes()).decode() if ok else ""


def tile(src: str, caption: str, css: str) -> str:
    img = f'<img src="{src}" alt="">' if src else '<div class="missing">no image</div>'
    return f'<figure class="{css}">{img}<figcaption>{escape(caption)}</figcaption></figure>'


def example_rows(ev: Evaluation) -> str:
    rows = []
    for example in ev.examples:
        tiles = [
            tile(thumbnail(ev.query_root, example.query.image), f"query: {example.query.category}", "query")
        ]
        for item, score, relevant in example.matches:
            mark = "✓ " if relevant else "✗ "
            tiles.append(
                tile(
                    thumbnail(ev.catalog_root, item.image),
                    f"{mark}{item.category} {score:.3f}",
                    "hit" if relevant else "miss",
                )
            )
        rows.append(f'<div class="example">{"".join(tiles)}</div>')
    return "\n".join(rows)


def html_report(ev: Evaluation) -> str:
    cols = columns(ev.ks)
    head = "".join(f"<th>{escape(label)}</th>" for label, _, _ in cols)
    body = "".join(
        f"<tr><th>{escape(name)}</th>"
        + "".join(f"<td>{figure(figures, key, k):.3f}</td>" for _, key, k in cols)
        + "</tr>"
        for name, figures in ev.results.items()
    )
    notes = "".join(f"<p>{escape(line)}</p>" for line in summary_lines(ev))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Visual search evaluation</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
.example {{ display: flex; gap: 6px; margin-bottom: 10px; align-items: flex-start; }}
figure {{ margin: 0; width: {THUMBNAIL_SIDE + 8}px; font-size: 11px; text-align: center; }}
figure img, .missing {{
  border: 4px solid #ccc; max-width: {THUMBNAIL_SIDE}px; max-height: {THUMBNAIL_SIDE}px;
}}
.query img {{ border-color: #333; }}
.hit img {{ border-color: #2a9d3a; }} .miss img {{ border-color: #d33; }}
.hit figcaption {{ color: #2a9d3a; font-weight: bold; }} .query {{ margin-right: 16px; }}
</style></head><body>
<h1>Visual search evaluation</h1>
{notes}
<h2>Retrieval quality per metric</h2>
{bar_chart(ev)}
<table><tr><th>metric</th>{head}</tr>{body}</table>
<h2>Example queries: top {len(ev.examples[0].matches) if ev.examples else 0} cosine matches</h2>
<p>Green: relevant ({'same category' if ev.ground_truth == 'category' else 'same item'}); red: not relevant.
Scores are cosine similarities.</p>
{example_rows(ev)}
</body></html>
"""
