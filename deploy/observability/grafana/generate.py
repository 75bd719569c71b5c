#!/usr/bin/env python3
"""Writes oxcart's Grafana dashboards into dashboards/ as JSON.

The dashboards share their panels (a request-rate panel is the same on every service's
dashboard, only the routes differ), so they are made here rather than kept by hand;
the JSON files are committed for Grafana's file provisioning to load as they are.

    python3 generate.py          # rewrite the files
    python3 generate.py --check  # fail if a file differs from what this script makes (CI)

Every PromQL expression names only metrics a live oxcart scrape exposes; CI checks that
(bin/oxcart/tests/api/metrics.rs) along with the alert rules.
"""

import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
OUT = HERE / "dashboards"
PROMETHEUS = {"type": "prometheus", "uid": "prometheus"}


def target(expr, legend, ref):
    return {
        "datasource": PROMETHEUS,
        "expr": expr,
        "legendFormat": legend,
        "refId": ref,
        # Latency and counter panels show the trace ids oxcart attaches as exemplars.
        "exemplar": True,
    }


def panel(title, exprs, unit, description=""):
    """A time series panel; `exprs` is a list of (expr, legend)."""
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": PROMETHEUS,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [target(e, l, chr(ord("A") + i)) for i, (e, l) in enumerate(exprs)],
    }


def dashboard(uid, title, description, panels):
    # Two panels a row, each 12 wide and 8 high.
    for i, p in enumerate(panels):
        p["id"] = i + 1
        p["gridPos"] = {"h": 8, "w": 12, "x": (i % 2) * 12, "y": (i // 2) * 8}
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["oxcart"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "panels": panels,
    }


def http_panels(routes):
    """The RED panels, for the routes matching the regular expression `routes`."""
    sel = f'endpoint=~"{routes}"'
    return [
        panel(
            "Request rate",
            [(f"sum by (method, endpoint) (rate(http_requests_total{{{sel}}}[5m]))", "{{method}} {{endpoint}}")],
            "reqps",
        ),
        panel(
            "Error rate (5xx share)",
            [(
                f'sum(rate(http_requests_total{{{sel},status=~"5.."}}[5m])) / sum(rate(http_requests_total{{{sel}}}[5m]))',
                "5xx",
            )],
            "percentunit",
        ),
        panel(
            "Latency p95",
            [(
                f"histogram_quantile(0.95, sum by (endpoint, le) (rate(http_request_duration_seconds_bucket{{{sel}}}[5m])))",
                "{{endpoint}}",
            )],
            "s",
        ),
        panel(
            "Responses by status",
            [(f"sum by (status) (rate(http_requests_total{{{sel}}}[5m]))", "{{status}}")],
            "reqps",
        ),
    ]


def consumer_panels(group):
    sel = f'group="{group}"'
    return [
        panel(
            f"{group}: events processed and failed",
            [
                (f"sum(rate(events_processed_total{{{sel}}}[5m]))", "processed"),
                (f"sum(rate(events_failed_total{{{sel}}}[5m]))", "failed attempts"),
                (f"sum(rate(events_dead_lettered_total{{{sel}}}[5m]))", "dead-lettered"),
            ],
            "ops",
        ),
        panel(
            f"{group}: lag and dead letters",
            [
                (f"max(consumer_lag{{{sel}}})", "lag (events)"),
                (f"max(dead_letters{{{sel}}})", "dead letters"),
            ],
            "short",
            "Lag: events in the log after the group's committed position. Dead letters: "
            "events it gave up on, waiting for `oxcart dlq replay`.",
        ),
    ]


# Each service: its routes (a regular expression over the route templates), its consumer
# groups, and panels of its own.
SERVICES = {
    "users": ("Accounts and tokens", "/api/users.*|/api/auth/.*|/.well-known/.*", [], []),
    "catalog": ("Products and stock", "/api/products.*", ["catalog-service"], []),
    "orders": (
        "Orders: placement, the saga and the read model",
        "/api/orders.*",
        ["order-service"],
        [
            panel(
                "Read model lag",
                [('max(consumer_lag{group="order-projection"})', "events behind")],
                "short",
                "How far the order read model (GET /api/orders) trails the log.",
            ),
            panel(
                "Orders placed, by outcome",
                [("sum by (status) (rate(orders_created_total[5m]))", "{{status}}")],
                "ops",
                "created, replayed (an idempotent retry), rejected (the client's error), failed (ours).",
            ),
            panel(
                "Order creation SLO: failed share",
                [
                    ("oxcart:orders_created_failed:ratio_rate5m", "5m"),
                    ("oxcart:orders_created_failed:ratio_rate1h", "1h"),
                    ("oxcart:orders_created_failed:ratio_rate6h", "6h"),
                ],
                "percentunit",
                "The objective: at most 0.5% over 30 days. The burn-rate alerts fire at 7.2% (1h and 5m) and 3% (6h and 30m).",
            ),
        ],
    ),
    "payments": ("Charges and refunds", "/api/payments.*", ["payment-service"], []),
    "notifications": ("E-mails to customers", None, ["email-service"], []),
    "invoices": ("Invoices and credit notes", "/api/invoices.*", ["invoice-service"], []),
    "analytics": ("Sales figures", "/api/analytics.*", ["analytics-service"], []),
    "webhooks": ("Events POSTed to registered endpoints", "/api/webhooks.*", ["webhook-service"], []),
}


def dashboards():
    overview = dashboard(
        "oxcart-overview",
        "Backend Overview",
        "The spec's Backend Overview, across every oxcart process.",
        [
            panel("Request Rate", [("sum by (endpoint) (rate(http_requests_total[5m]))", "{{endpoint}}")], "reqps"),
            panel(
                "Error Rate",
                [('sum(rate(http_requests_total{status=~"5.."}[5m])) / sum(rate(http_requests_total[5m]))', "5xx share")],
                "percentunit",
                "The share of requests answered 5xx (the spec divides series by series, which reads 100% on any error).",
            ),
            panel(
                "Latency (p95)",
                [("histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))", "p95")],
                "s",
            ),
            panel(
                "Requests in Flight",
                [("sum(http_requests_in_flight)", "in flight")],
                "short",
                "Requests being handled right now (the spec's 'Active Connections' panel plotted a request rate).",
            ),
            panel("Orders Placed", [("sum by (status) (rate(orders_created_total[5m]))", "{{status}}")], "ops"),
            panel(
                "Memory (resident)",
                [("max by (instance) (process_resident_memory_bytes)", "{{instance}}")],
                "bytes",
            ),
            panel(
                "Database Connections",
                [
                    ('sum by (pool) (db_pool_connections{state="in_use"})', "{{pool}} in use"),
                    ('sum by (pool) (db_pool_connections{state="idle"})', "{{pool}} idle"),
                    ("sum by (pool) (db_pool_max_connections)", "{{pool}} max"),
                ],
                "short",
            ),
            panel(
                "Processes Up",
                [('sum(up{job="oxcart"})', "up"), ('count(up{job="oxcart"})', "scraped")],
                "short",
            ),
        ],
    )
    yield "backend-overview.json", overview

    for name, (description, routes, groups, own) in SERVICES.items():
        panels = list(own)
        if routes:
            panels += http_panels(routes)
        for group in groups:
            panels += consumer_panels(group)
        yield f"service-{name}.json", dashboard(f"oxcart-{name}", f"oxcart / {name}", description, panels)

    flow = dashboard(
        "oxcart-event-flow",
        "oxcart / event flow",
        "Events from the log to every consumer group: appended, published to Kafka (distributed mode), consumed, lagging, dead-lettered.",
        [
            panel(
                "Events appended",
                [("max(rate(events_appended_total[5m]))", "appended")],
                "ops",
                "Every process reports the whole log's count, hence max.",
            ),
            panel(
                "Published to Kafka, by topic",
                [("sum by (topic) (rate(events_published_total[5m]))", "{{topic}}")],
                "ops",
                "Distributed mode only: the outbox relay's acknowledged publishes.",
            ),
            panel("Outbox backlog", [("max(outbox_backlog)", "backlog")], "short"),
            panel(
                "Relay publish latency p95",
                [("histogram_quantile(0.95, sum by (le) (rate(relay_publish_duration_seconds_bucket[5m])))", "p95")],
                "s",
            ),
            panel("Processed, by group", [("sum by (group) (rate(events_processed_total[5m]))", "{{group}}")], "ops"),
            panel("Lag, by group", [("max by (group) (consumer_lag)", "{{group}}")], "short"),
            panel("Dead letters waiting, by group", [("max by (group) (dead_letters)", "{{group}}")], "short"),
            panel(
                "Failed attempts and dead-lettered, by group",
                [
                    ("sum by (group) (rate(events_failed_total[5m]))", "{{group}} failed"),
                    ("sum by (group) (rate(events_dead_lettered_total[5m]))", "{{group}} dead-lettered"),
                ],
                "ops",
            ),
        ],
    )
    yield "event-flow.json", flow


def main():
    check = "--check" in sys.argv[1:]
    OUT.mkdir(exist_ok=True)
    stale = []
    wanted = set()
    for name, board in dashboards():
        wanted.add(name)
        text = json.dumps(board, indent=2) + "\n"
        path = OUT / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    extra = sorted(p.name for p in OUT.glob("*.json") if p.name not in wanted)
    if check and (stale or extra):
        print(f"dashboards out of date: {stale + extra}; run deploy/observability/grafana/generate.py")
        sys.exit(1)
    for name in extra:
        (OUT / name).unlink()


if __name__ == "__main__":
    main()
