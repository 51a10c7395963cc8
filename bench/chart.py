"""Draw the benchmark ratios as a small PNG for docs/benchmarks.md (matplotlib: the ``bench`` extra).

Usage: ``.venv/bin/python bench/chart.py --cdc "before=/tmp/a.json" "after=/tmp/b.json"
[--out docs/assets/cdc-ratios.png]``

Each ``--cdc`` input is a ``bench/cdc.py --out`` file (one session of interleaved runs). Per
session the chart shows every run's zdtp ÷ native-subscription, zdtp ÷ pg_recvlogical and (with
``--base-worker``) zdtp ÷ older-zdtp apply rates (dots) and their medians (bars), with the 1.0
line the issue's target is measured against.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

REPO = Path(__file__).resolve().parents[1]
SERIES = (
    ("native", "zdtp ÷ native subscription", "#4c72b0"),
    ("recvlogical", "zdtp ÷ pg_recvlogical (read only)", "#dd8452"),
    ("zdtp_base", "zdtp ÷ the older zdtp (--base-worker), same runs", "#55a868"),
)


def ratios(result: dict, reference: str) -> list[float]:
    return [
        r["drain"]["zdtp"]["changes_per_s"] / r["drain"][reference]["changes_per_s"]
        for r in result["runs"]
        if reference in r["drain"] and "zdtp" in r["drain"]
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cdc", nargs="+", required=True, help="label=path of a bench/cdc.py --out JSON file")
    ap.add_argument("--out", default=str(REPO / "docs" / "assets" / "cdc-ratios.png"))
    args = ap.parse_args()
    sessions = []
    for item in args.cdc:
        label, _, path = item.partition("=")
        sessions.append((label, json.loads(Path(path).read_text())))

    fig, ax = plt.subplots(figsize=(max(6.4, 2.3 * len(sessions)), 3.6), dpi=100)
    width = 0.26
    labelled: set[str] = set()  # each series once in the legend
    for s, (_label, result) in enumerate(sessions):
        for k, (ref, name, color) in enumerate(SERIES):
            values = ratios(result, ref)
            if not values:
                continue
            x = s + (k - 1) * width
            median = statistics.median(values)
            ax.bar(x, median, width * 0.9, color=color, label=None if ref in labelled else name)
            labelled.add(ref)
            ax.scatter([x] * len(values), values, color="black", s=10, zorder=3)
            ax.annotate(
                f"{median:.2f}",
                (x, median),
                ha="center",
                va="bottom",
                fontsize=8,
                xytext=(0, 2),
                textcoords="offset points",
            )
    ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xticks(range(len(sessions)))
    ax.set_xticklabels(
        [f"{label}\n{r.get('date', '')}\n{len(r['runs'])} runs" for label, r in sessions], fontsize=8
    )
    ax.set_ylabel("apply rate ratio")
    ax.set_title("CDC backlog drain: zdtp vs PostgreSQL (bars: median, dots: runs)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_ylim(0, max(1.6, ax.get_ylim()[1] * 1.15))
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
