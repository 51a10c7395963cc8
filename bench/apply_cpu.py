"""Micro-benchmark of the stream's Python hot path, no database: decode → batch → staging COPY text.

Usage: ``.venv/bin/python bench/apply_cpu.py [--changes 500000] [--repeat 5]``

Builds pgoutput payloads shaped like ``bench/cdc.py``'s backlog (3/5 inserts, 2/5 updates of
``ev (id bigint, k int, v text, created_at timestamptz)``), then times, per change, the worker's
decode (``PgOutputDecoder.insert`` / ``decode``), batching (``Batch.insert`` / ``update``) and
``stage_rows`` (the COPY text of a batch), in batches of 10,000 as the worker cuts them. Best of
``--repeat``; CPU time of this process only.
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from zdtp_worker.incremental.batch import Batch  # noqa: E402
from zdtp_worker.incremental.pgoutput import Column, PgOutputDecoder, Relation, Update  # noqa: E402
from zdtp_worker.incremental.staging import stage_rows  # noqa: E402

OID = 16384
REL = Relation(
    OID,
    "public",
    "ev",
    "d",
    (
        Column("id", 20, -1, True),
        Column("k", 23, -1, False),
        Column("v", 25, -1, False),
        Column("created_at", 1184, -1, False),
    ),
)
KEYS = (0,)


def tuple_bytes(values: list[bytes]) -> bytes:
    out = [struct.pack("!h", len(values))]
    for v in values:
        out.append(b"t" + struct.pack("!i", len(v)) + v)
    return b"".join(out)


def payloads(changes: int) -> list[bytes]:
    import hashlib

    inserts = changes * 3 // 5
    out = []
    for i in range(1, inserts + 1):
        row = [
            str(i).encode(),
            str(i % 1000).encode(),
            hashlib.md5(str(i).encode()).hexdigest().encode(),
            b"2026-12-02 02:01:58.123456+00",
        ]
        out.append(b"I" + struct.pack("!I", OID) + b"N" + tuple_bytes(row))
    for i in range(1, changes - inserts + 1):
        row = [
            str(i).encode(),
            str(i % 1000 + 1).encode(),
            b"u" + str(i).encode(),
            b"2026-12-02 02:01:58.123456+00",
        ]
        out.append(b"U" + struct.pack("!I", OID) + b"N" + tuple_bytes(row))
    return out


def run(msgs: list[bytes], batch_size: int) -> dict[str, float]:
    dec = PgOutputDecoder()
    fast = dec.insert
    t_decode = t_batch = t_stage = 0.0
    clock = time.process_time
    batch = Batch()
    for start in range(0, len(msgs), batch_size):
        chunk = msgs[start : start + batch_size]
        t0 = clock()
        decoded = []
        for p in chunk:
            ins = fast(p)
            decoded.append(ins if ins is not None else dec(p))
        t1 = clock()
        for d in decoded:
            if isinstance(d, Update):
                batch.update(REL, KEYS, d.new, d.old)
            else:
                batch.insert(REL, KEYS, d[1])
        t2 = clock()
        for tb in batch.tables.values():
            stage_rows(tb, direct_new=True)
        t3 = clock()
        batch = Batch()
        t_decode += t1 - t0
        t_batch += t2 - t1
        t_stage += t3 - t2
    n = len(msgs)
    return {"decode_us": 1e6 * t_decode / n, "batch_us": 1e6 * t_batch / n, "stage_us": 1e6 * t_stage / n}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--changes", type=int, default=500_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--batch", type=int, default=10_000)
    args = ap.parse_args()
    msgs = payloads(args.changes)
    best: dict[str, float] = {}
    for _ in range(args.repeat):
        r = run(msgs, args.batch)
        best = {k: min(v, best.get(k, v)) for k, v in r.items()}
    total = sum(best.values())
    print(
        " ".join(f"{k}={v:.2f}" for k, v in best.items()),
        f"total_us={total:.2f}",
        f"=> {1e6 / total:,.0f} changes/CPU-s",
    )


if __name__ == "__main__":
    main()
