"""Chart of ``bench/fanout.py`` results: seconds to all-done per style, one bar group per N.

    .venv/bin/python bench/fanout_chart.py OUT.png report.json [report.json ...]

Runs of all reports are grouped by worker count. Bars are medians, dots single runs. A run that
hit ``--timeout`` is drawn hatched at its timeout, labelled "≥": it did not finish, so its time
and the ratio are lower bounds. Needs the ``bench`` extra (matplotlib).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

COLORS = {"tasks": "#c44e52", "indexed-job": "#4c72b0"}
LABELS = {"tasks": "mapped FullSyncOperator tasks", "indexed-job": "one Indexed Job"}


def _finished(run: dict) -> bool:
    return run["state"] == "success"


def draw(reports: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[int, list[dict]] = {}
    for report in reports:
        groups.setdefault(report["workers"], []).extend(report["runs"])
    fig, ax = plt.subplots(figsize=(6.4, 3.4), dpi=100)
    width = 0.38
    top = 0.0
    for g, (_n, runs) in enumerate(sorted(groups.items())):
        medians: dict[str, tuple[float, bool]] = {}
        for k, style in enumerate(("tasks", "indexed-job")):
            mine = [r for r in runs if r["style"] == style]
            if not mine:
                continue
            seconds = [r["seconds"] for r in mine]
            done = all(_finished(r) for r in mine)
            x = g + (k - 0.5) * width
            m = statistics.median(seconds)
            medians[style] = (m, done)
            top = max(top, *seconds)
            ax.bar(
                x,
                m,
                width,
                color=COLORS[style],
                hatch=None if done else "//",
                edgecolor="white",
                label=LABELS[style] if style not in ax.get_legend_handles_labels()[1] else None,
            )
            ax.plot([x] * len(seconds), seconds, "o", color="black", markersize=3)
            text = f"{m:.0f} s" if done else f"≥ {m:.0f} s\n(not done)"
            ax.annotate(text, (x, m), ha="center", va="bottom", fontsize=8)
        if len(medians) == 2:
            (t, t_done), (i, _) = medians["tasks"], medians["indexed-job"]
            ratio = f"{'' if t_done else '≥ '}{t / i:.0f}x"
            ax.annotate(ratio, (g, max(t, i) * 1.16), ha="center", fontsize=10, weight="bold")
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([f"{n} workers" for n in sorted(groups)], fontsize=8)
    ax.set_ylabel("s, trigger → DAG run success")
    ax.set_ylim(0, top * 1.35)
    ax.set_title("Fan-out under a real Airflow scheduler (LocalExecutor, parallelism 32)", fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    out, files = Path(argv[0]), [Path(a) for a in argv[1:]]
    draw([json.loads(f.read_text()) for f in files], out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
