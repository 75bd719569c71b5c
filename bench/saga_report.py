"""Reads an oxcart event log and reports the saga's end-to-end figures.

Usage: saga_report.py DATABASE LABEL MARK [RESULTS]

DATABASE is a SQLite file, or a postgres:// URL (read with psql). Waits until every
order is PAID (or 120 s pass), then measures the orders placed since the previous report,
whose last log position it keeps in the file MARK. With RESULTS, also appends the
figures to that file as one JSON line.
"""
import json
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

db_path, label, mark = sys.argv[1], sys.argv[2], sys.argv[3]
results = sys.argv[4] if len(sys.argv) > 4 else None
mark_path = Path(mark)
since = int(mark_path.read_text()) if mark_path.exists() else 0


class Psql:
    """Just enough of a DB-API connection over psql for the queries below."""

    def __enter__(self):
        return self

    def __exit__(self, *_):
        return False

    def execute(self, sql, params=()):
        for value in params:
            sql = sql.replace("?", str(int(value)), 1)
        out = subprocess.run(
            ["psql", db_path, "-AtF", "\t", "-c", "SET search_path TO eventlog; " + sql],
            check=True, capture_output=True, text=True,
        ).stdout
        rows = [line.split("\t") for line in out.splitlines() if line and line != "SET"]
        return Rows([[int(v) if v.lstrip("-").isdigit() else v for v in row] for row in rows])


class Rows(list):
    def fetchone(self):
        return self[0] if self else [None]

    def fetchall(self):
        return self


def connect():
    if db_path.startswith("postgres"):
        return Psql()
    return sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)


def ts(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


deadline = time.time() + 120
while True:
    with connect() as db:
        open_orders = db.execute(
            "SELECT COUNT(*) FROM events c WHERE c.event_type = 'order.created' AND c.position > ? "
            "AND NOT EXISTS (SELECT 1 FROM events p WHERE p.aggregate_id = c.aggregate_id "
            "AND p.event_type = 'order.paid')",
            (since,),
        ).fetchone()[0]
    if open_orders == 0 or time.time() > deadline:
        break
    time.sleep(0.2)
drained_at = time.time()

with connect() as db:
    rows = db.execute(
        "SELECT c.occurred_at, p.occurred_at, c.position FROM events c JOIN events p "
        "ON p.aggregate_id = c.aggregate_id AND p.event_type = 'order.paid' "
        "WHERE c.event_type = 'order.created' AND c.position > ?",
        (since,),
    ).fetchall()
    head = db.execute("SELECT MAX(position) FROM events").fetchone()[0]
mark_path.write_text(str(head))

latencies = sorted((ts(p) - ts(c)) * 1000 for c, p, _ in rows)
if not latencies:
    sys.exit(f"{label}: no paid orders")
first = min(ts(c) for c, _, _ in rows)
last_created = max(ts(c) for c, _, _ in rows)
last_paid = max(ts(p) for _, p, _ in rows)


def pct(q):
    return latencies[min(len(latencies) - 1, int(q * len(latencies)))]


print(f"-- {label}: {len(rows)} orders paid, {open_orders} still open")
print(f"   created -> paid  p50 {pct(0.50):.1f} ms  p90 {pct(0.90):.1f} ms  p99 {pct(0.99):.1f} ms  max {latencies[-1]:.1f} ms")
print(f"   placed {len(rows) / max(last_created - first, 1e-9):.0f} orders/s; "
      f"paid {len(rows) / max(last_paid - first, 1e-9):.0f} orders/s sustained end to end; "
      f"the consumers drained {max(last_paid - last_created, 0):.1f} s after the last order")

if results:
    with open(results, "a") as out:
        out.write(json.dumps({
            "label": label, "paid": len(rows), "open": open_orders,
            "p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99), "max": latencies[-1],
            "placedPerSecond": len(rows) / max(last_created - first, 1e-9),
            "paidPerSecond": len(rows) / max(last_paid - first, 1e-9),
        }) + "\n")
