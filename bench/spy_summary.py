"""Summarise a ``bench/cdc.py --py-spy`` profile: where each worker thread's wall time went.

Usage: ``.venv/bin/python bench/spy_summary.py PREFIX.N.txt``

py-spy's raw output (collapsed stacks, idle included) is grouped per thread into the stream's
stages: reading replication messages, decoding, batching, building the staging COPY text, waiting
for the applier, and on the applier thread the target round trips (direct COPY, staging COPY, the
set-based statements, the commit with its state row) and waiting for work. Percentages are of
that thread's samples (= of the drain's wall time).
"""

from __future__ import annotations

import collections
import sys

MAIN = (
    ("wait for the applier", ("Applier.reap", "Applier.sync")),
    ("staging COPY text", ("stage_rows",)),
    ("decode (pgoutput)", ("pgoutput.py",)),
    ("batch (compaction)", ("batch.py",)),
    ("idle (select)", ("select",)),
    ("feedback", ("send_feedback", "_feedback")),
)
APPLY = (
    ("staging COPY text", ("stage_rows",)),
    ("COPY new rows into the target", ("_copy_direct",)),
    ("commit + state row", ("Target.commit",)),
    ("COPY into staging + merge SQL (DELETE / upsert / partial UPDATE)", ("Target.apply",)),
    ("waiting for work", ("_worker (concurrent/futures/thread.py:81)",)),
)


def classify(stack: list[str], rules: tuple[tuple[str, tuple[str, ...]], ...]) -> str:
    text = ";".join(stack)
    for name, needles in rules:
        if any(n in text for n in needles):
            return name
    return "other (the loop incl. psycopg2's read_message; housekeeping: sequences, metrics)"


def main() -> None:
    threads: dict[str, collections.Counter[str]] = {
        "MainThread": collections.Counter(),
        "zdtp-apply": collections.Counter(),
    }
    with open(sys.argv[1]) as fh:
        for line in fh:
            stack, n = line.rstrip("\n").rsplit(" ", 1)
            parts = stack.split(";")
            for thread, rules in (("MainThread", MAIN), ("zdtp-apply", APPLY)):
                if thread in parts[0]:
                    # Frames without their file:line, so "Target.apply;Cursor.copy" matches.
                    threads[thread][classify(parts[1:], rules)] += int(n)
    for thread, counts in threads.items():
        total = sum(counts.values()) or 1
        print(f"{thread} ({total / 200:.1f} s sampled)")
        for name, n in counts.most_common():
            print(f"  {100 * n / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()
