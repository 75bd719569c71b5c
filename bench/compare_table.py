"""Prints bench/compare.sh's results as a Markdown table, each figure beside its anchor.

Usage: compare_table.py RESULTS MODE   (RESULTS: one JSON object a line)
"""
import json
import sys

results, mode = sys.argv[1], sys.argv[2]
by_label = {}
for line in open(results):
    entry = json.loads(line)
    by_label[entry["label"]] = entry


def value(label, key="value"):
    entry = by_label.get(label)
    return None if entry is None or entry.get(key) in (None, "") else float(entry[key])


def ratio(a, b):
    return f"{a / b:.3f}" if a is not None and b else "—"


def n(x, unit=""):
    return "—" if x is None else f"{x:,.0f}{unit}"


# An order in the all-in-one writes about a dozen rows: its events, the read model, the
# reservation, the payment, the invoice, the analytics rows and every inbox claim.
ROWS_PER_ORDER = 12
sqlite1, sqlite64, pgbench = value("sqlite-1"), value("sqlite-64"), value("pgbench")
write_anchor, write_anchor_name = (
    (pgbench, "PostgreSQL, pgbench single-row inserts, 16 clients")
    if mode == "distributed"
    else (sqlite1, "raw SQLite, durable 1-row transactions")
)
if mode == "distributed":
    orders_anchor = None if pgbench is None else pgbench / ROWS_PER_ORDER
    orders_anchor_name = f"pgbench: {n(pgbench)} rows/s ÷ {ROWS_PER_ORDER} = {n(orders_anchor)}"
else:
    orders_anchor = None if sqlite64 is None else sqlite64 / ROWS_PER_ORDER
    orders_anchor_name = (f"raw SQLite, 64-row transactions: {n(sqlite64)} rows/s ÷ {ROWS_PER_ORDER}"
                          f" = {n(orders_anchor)}")
post, get, axum = value("post"), value("get"), value("axum")
paid = value("saturation", "paidPerSecond")

rows = [
    ("`POST /api/orders`, saga running (16 connections)", n(post, "/s"),
     f"{write_anchor_name}: {n(write_anchor, '/s')}", ratio(post, write_anchor)),
    ("paid orders/s, sustained", n(paid),
     orders_anchor_name, ratio(paid, orders_anchor)),
]
for offered in (500, 1000):
    label = f"offered-{offered}"
    if label in by_label:
        r = by_label[label]
        rows.append((f"created → paid at {offered:,} orders/s offered",
                     f"p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms (paid {r['paidPerSecond']:.0f}/s)",
                     "—", "—"))
rows += [
    ("`GET /api/orders/{id}` with a token", n(get, "/s"), f"bare axum JSON handler: {n(axum, '/s')}",
     ratio(get, axum)),
    ("resident memory, idle / at saturation",
     f"{n(value('rss-idle'), ' MB')} / {n(value('rss-saturation'), ' MB')}", "—", "—"),
]
if pgbench is not None and mode != "distributed":
    rows.append(("(anchor) pgbench single-row inserts, 16 clients", "—", n(pgbench, "/s"), "—"))

print(f"\n{mode}, one run on this machine:\n")
print("| figure | oxcart | anchor | ratio |")
print("| --- | --- | --- | --- |")
for row in rows:
    print("| " + " | ".join(row) + " |")
