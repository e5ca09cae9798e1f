"""The report's parts for issue 17 (performance): the many-small-files table and the issue's
Targets table, every row judged against the same run (its direct and its competitors) where
the issue's target is relative, and against the issue's own figures where it names them."""

from __future__ import annotations

from .cells import med, peak, ratio, row, verdict
from .workloads import CONCURRENT

# Figures the issue gives for "today" (commit 2076b04, BENCHMARKS.md of 2026-11-23, on the
# machine that wrote it): 4 KiB GETs through the cluster, and 1 KiB PUTs through the balancer
# by 8 clients, (first 1,000, the growth after) per database server.
TODAY_CLUSTER_GET_RPS = 4363
TODAY_SMALL_PUTS = {"secantusd-py": (69, 12), "secantusd-rs": (346, 361)}


def files_table(r) -> list[str]:
    """PUT rate by 8 clients as the store grows; listing and GET latency at each size."""
    puts, sizes = r.get("files", {}).get("put", {}), r.get("files", {}).get("at_size", {})
    lines = ["| | names in the store | PUT/s | p50 / p99, ms |", "|---|---|---|---|"]
    for key, label in (("first", "1 KiB PUTs, the first"), ("more", "1 KiB PUTs, the next")):
        for s in puts.get(key, []):
            lines.append(row(label, [f"up to {s['names']:,}", f"{s['rate']:.0f}",
                                     f"{s['p50_ms']:.0f} / {s['p99_ms']:.0f}"]))
    lines += ["", "| names in the store | `GET /files?limit=10`, median (slowest) ms | "
              "1 KiB GET, median ms |", "|---|---|---|"]
    for size in sorted(sizes, key=int):
        for s in sizes[size]:
            slowest = f" ({s['list_max_ms']:.1f})" if "list_max_ms" in s else ""
            lines.append(row(f"{s['names']:,}", [f"{s['list_ms']:.1f}{slowest}", f"{s['get_ms']:.2f}"]))
    return lines


def targets(r, db_label: str) -> list[str]:
    lines = ["| target (issue 17) | measured | |", "|---|---|---|"]

    def add(target: str, shown: str | None, ok: bool | None) -> None:
        if shown is not None:
            lines.append(row(target, [shown, "–" if ok is None else verdict(ok)]))

    b, best = med(r, "proxy", "small", "balancer", "rps"), _best(r, "proxy", "small", "rps")
    cpu = med(r, "proxy", "small", "balancer", "cpu_us_per_req")
    if b and best and cpu:
        add("proxy only, 4 KiB GETs: req/s ≥ the best of nginx/HAProxy, CPU ≤ 14 µs per request",
            f"{b:.0f} vs {best:.0f} req/s, {cpu:.1f} µs", b >= best and cpu <= 14)
    for sec, wl, goal, where in (("proxy", "upload", 0.80, "proxy only, 1 GiB upload"),
                                 ("proxy", "upload5", 0.70, f"proxy only, {CONCURRENT} × 1 GiB uploads"),
                                 ("cluster", "download", 0.95, "through the cluster, 1 GiB download")):
        x = ratio(r, sec, wl, "balancer", "direct")
        add(f"{where}: ≥ ×{goal:.2f} of direct", x and f"×{x:.2f}", x is not None and round(x, 2) >= goal)
    x = ratio(r, "cluster", "upload", "balancer", "direct")
    others = [v for v in (ratio(r, "cluster", "upload", p, "direct") for p in ("nginx", "haproxy")) if v]
    if x and others:
        add("through the cluster, 1 GiB upload: × direct ≥ the best of nginx/HAProxy",
            f"×{x:.2f} vs ×{max(others):.2f}", round(x, 2) >= round(max(others), 2))
    rss = peak(r, "cluster", "upload5", "balancer", "rss_proxy")
    add(f"balancer peak RSS during {CONCURRENT} × 1 GiB uploads through the cluster ≤ 16 MiB",
        rss and f"{rss:.1f} MiB", rss is not None and rss <= 16)
    rps = med(r, "cluster", "small", "balancer", "rps")
    add(f"through the cluster, 4 KiB GETs: ≥ 2 × today ({TODAY_CLUSTER_GET_RPS} req/s on the machine "
        "of 2076b04's report; compare the machines before reading this row)",
        rps and f"{rps:.0f} req/s", rps is not None and rps >= 2 * TODAY_CLUSTER_GET_RPS)
    x = ratio(r, "cluster", "upload", "direct", "driver")
    add("upload through one node ≥ ×1.0 of the plain driver", x and f"×{x:.2f}", x is not None and round(x, 2) >= 1)
    _small_puts(r, db_label, add)
    sizes = {int(k): v[-1] for k, v in r.get("files", {}).get("at_size", {}).items() if v}
    if sizes:
        top = max(sizes)
        add(f"listing (`limit=10`) at {sizes[top]['names']:,} names < 50 ms"
            + ("" if top >= 100_000 else " (the target is at 100,000)"),
            f"{sizes[top]['list_ms']:.1f} ms", top >= 100_000 and sizes[top]["list_ms"] < 50)
        small, near = min(sizes), min(sizes, key=lambda k: abs(k - 20_000))
        if near != small:
            a, z = sizes[small], sizes[near]
            add(f"1 KiB GET at {z['names']:,} names within 1.5 × of {a['names']:,}",
                f"{z['get_ms']:.2f} vs {a['get_ms']:.2f} ms (×{z['get_ms'] / a['get_ms']:.2f})",
                z["get_ms"] <= 1.5 * a["get_ms"])
    t0, ts = (med(r, "cluster", "first_byte", "balancer", k) for k in ("ms_at_0", "ms_at_seek"))
    if t0 is not None and ts is not None:
        seek = r["cluster"]["first_byte"]["balancer"][0]["seek_mib"]
        add(f"time to first byte through the balancer, at 0 and at {seek} MiB, < 20 ms",
            f"{t0:.1f} / {ts:.1f} ms", max(t0, ts) < 20)
    on, off = med(r, "cluster", "small_auth", "balancer", "rps"), med(r, "cluster", "small", "balancer", "rps")
    if on and off:
        add("4 KiB GET through the balancer with access control on (no target: shown against off)",
            f"{on:.0f} vs {off:.0f} req/s (×{on / off:.2f})", None)
    add("256 MiB upload on secantusd-py ≥ 96 MB/s", "not measured by this run: "
        "`scripts/bench-storage --db py` measures it", None)
    return lines


def _best(r, sec, wl, key) -> float | None:
    got = [v for v in (med(r, sec, wl, p, key) for p in ("nginx", "haproxy")) if v]
    return max(got) if got else None


def _small_puts(r, db_label: str, add) -> None:
    puts = r.get("files", {}).get("put", {})
    first, more = (puts.get(k, [{}])[-1].get("rate") for k in ("first", "more"))
    if first is None or more is None:
        return
    server = db_label.split()[0].strip("`") if db_label else ""
    base = TODAY_SMALL_PUTS.get(server)
    shown = f"{first:.0f}/s then {more:.0f}/s as the store grows (×{more / first:.2f})"
    if base:
        shown += f"; the issue's figures on {server}: {base[0]}/s then {base[1]}/s"
    add("1 KiB PUTs through the balancer, 8 clients: ≥ 5 × today on the same database, flat "
        "as the store grows", shown, bool(base) and first >= 5 * base[0] and more >= 0.9 * first)
