"""The markdown report: the machine, the exact command, one table per section, and where
we stand against the targets of issues 5 and 17. Cells are median [min–max] over the runs; a ratio
is the median of the per-round ratios (each round measures every target once), so that
drift between rounds cancels; peak RSS is the maximum over the runs."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from datetime import datetime, timezone

from . import targets17
from .cells import cell, fmt_mib, med, multi, peak, ratio, row, size_label, verdict
from .stack import ROOT
from .workloads import CONCURRENT, SMALL_SIZE, WRK_CONNS, WRK_THREADS

PROXIES = ["balancer", "nginx", "haproxy"]
COLUMNS = ["direct", *PROXIES]
HEAD = {
    "cluster": "| workload | direct (node-1) | speedbox-balancer | nginx | HAProxy |",
    "proxy": "| workload | direct (origin / sink) | speedbox-balancer | nginx | HAProxy |",
}


def cluster_table(r, size: int, wrk_seconds: int) -> list[str]:
    s, sec = size_label(size), "cluster"
    lines = [HEAD[sec], "|---|---|---|---|---|"]
    if "download" in r.get(sec, {}):
        lines.append(row(f"{s} download, MB/s", [cell(r, sec, "download", t, "mbps") for t in COLUMNS]))
        lines.append(row(f"{s} upload, MB/s", [cell(r, sec, "upload", t, "mbps") for t in COLUMNS]))
    if "upload5" in r.get(sec, {}):
        lines.append(row(f"{CONCURRENT} × {s} concurrent uploads, MB/s total",
                         [cell(r, sec, "upload5", t, "mbps") for t in COLUMNS]))
        lines.append(row(f"the same {CONCURRENT} uploads spread by the client over the 3 nodes (no proxy)",
                         [cell(r, sec, "upload5", "spread", "mbps", None), "", "", ""]))
        rss = ["–"] + [fmt_mib(peak(r, sec, "upload5", t, "rss_proxy")) for t in PROXIES]
        lines.append(row(f"peak RSS of the proxy during the {CONCURRENT} uploads, MiB", rss))
        nodes = sorted({k for t in [*COLUMNS, "spread"] for smp in r[sec]["upload5"].get(t, []) for k in smp
                        if k.startswith("rss_node")})
        lines.append(row(
            "peak RSS of each node during them, MiB (" + " / ".join(n[4:] for n in nodes) + ")",
            [" / ".join(fmt_mib(peak(r, sec, "upload5", t, n)) for n in nodes) for t in COLUMNS]))
    if "first_byte" in r.get(sec, {}):
        seek = next(iter(r[sec]["first_byte"].values()))[0]["seek_mib"]
        lines.append(row(f"time to first byte of the {s} file from offset 0 / {seek} MiB "
                         "(`Range: bytes=N-`, fresh connection), ms",
                         [multi(r, sec, t, [("first_byte", "ms_at_0"), ("first_byte", "ms_at_seek")], 1)
                          for t in COLUMNS]))
    if "small" in r.get(sec, {}):
        lines += small_rows(r, sec, wrk_seconds)
    if "small_auth" in r.get(sec, {}):
        on = cell(r, sec, "small_auth", "balancer", "rps", None)
        # Not measured in the same rounds as auth off: the ratio of the medians.
        off = med(r, sec, "small", "balancer", "rps")
        versus = f" ×{med(r, sec, 'small_auth', 'balancer', 'rps') / off:.2f}" if off else ""
        cpu = multi(r, sec, "balancer", [("small_auth", "cpu_us_per_req")], 1)
        lines.append(row("4 KiB GET with access control on (a bearer token, checked by the node), "
                         "req/s (× off) / proxy CPU µs", ["–", f"{on}{versus} / {cpu}", "–", "–"]))
    lines.append(row("proxy CPU s/GiB: download / upload / 5× upload",
                     ["–"] + [multi(r, sec, t, [("download", "cpu_s_per_gib"), ("upload", "cpu_s_per_gib"),
                                                 ("upload5", "cpu_s_per_gib")]) for t in PROXIES]))
    return lines


def small_rows(r, sec, wrk_seconds) -> list[str]:
    label = f"{SMALL_SIZE // 1024} KiB GET, req/s (wrk -t{WRK_THREADS} -c{WRK_CONNS} -d{wrk_seconds}s)"
    return [
        row(label, [cell(r, sec, "small", t, "rps") for t in COLUMNS]),
        row(f"{SMALL_SIZE // 1024} KiB GET p50 / p99, ms",
            [multi(r, sec, t, [("small", "p50_ms"), ("small", "p99_ms")]) for t in COLUMNS]),
        row("proxy CPU µs per 4 KiB GET",
            ["–"] + [multi(r, sec, t, [("small", "cpu_us_per_req")], 1) for t in PROXIES]),
    ]


def proxy_table(r, size: int, wrk_seconds: int) -> list[str]:
    s, sec = size_label(size), "proxy"
    lines = [HEAD[sec], "|---|---|---|---|---|"]
    for wl, label in (("download", f"{s} download"), ("upload", f"{s} upload"),
                      ("download5", f"{CONCURRENT} × {s} concurrent downloads"),
                      ("upload5", f"{CONCURRENT} × {s} concurrent uploads")):
        total = " total" if wl.endswith("5") else ""
        lines.append(row(f"{label}, MB/s{total}", [cell(r, sec, wl, t, "mbps") for t in COLUMNS]))
    lines += small_rows(r, sec, wrk_seconds)
    lines.append(row("proxy CPU s/GiB: download / upload / 5× download / 5× upload",
                     ["–"] + [multi(r, sec, t, [(w, "cpu_s_per_gib") for w in
                                                 ("download", "upload", "download5", "upload5")])
                              for t in PROXIES]))
    lines.append(row(f"proxy peak RSS, MiB: {CONCURRENT}× download / {CONCURRENT}× upload",
                     ["–"] + [" / ".join(fmt_mib(peak(r, sec, w, t, "rss_proxy")) for w in ("download5", "upload5"))
                              for t in PROXIES]))
    return lines


def storage_table(r) -> list[str]:
    sec = "cluster"
    lines = ["| | plain mongodb driver (GridFS) | through one node (curl) | node / driver |", "|---|---|---|---|"]
    for wl in ("upload", "download"):
        x = ratio(r, sec, wl, "direct", "driver")
        lines.append(row(f"{wl}, MB/s", [cell(r, sec, wl, "driver", "mbps", None),
                                         cell(r, sec, wl, "direct", "mbps", None),
                                         f"×{x:.2f}" if x else "–"]))
    return lines


def tus_table(r, size: int) -> list[str]:
    sec = "tus"
    return ["| | PUT (curl) | tus, one PATCH (curl) | tuspy, 16 MiB PATCHes |", "|---|---|---|---|",
            row(f"{size_label(size)} upload, MB/s (×PUT)",
                [cell(r, sec, "upload", c, "mbps", "put") for c in ("put", "tus", "tuspy")])]


LABEL = {"download": "download", "upload": "upload", "download5": f"{CONCURRENT}× download",
         "upload5": f"{CONCURRENT}× upload"}


def targets(r) -> list[str]:
    """Ratios are judged as shown, to two decimals."""
    lines = ["| target | measured | |", "|---|---|---|"]

    for sec, wls, where in (("cluster", ("download", "upload", "upload5"), "through the cluster"),
                            ("proxy", ("download", "upload", "download5", "upload5"), "proxy only")):
        got = {wl: ratio(r, sec, wl, "balancer", "direct") for wl in wls}
        got = {k: v for k, v in got.items() if v is not None}
        if got:
            shown = ", ".join(f"{LABEL[wl]} ×{v:.2f}" for wl, v in got.items())
            spread = ratio(r, sec, "upload5", "balancer", "spread")
            if spread:
                shown += f" ({LABEL['upload5']}: ×{spread:.2f} of the client spreading over the 3 nodes itself)"
            lines.append(row(f"balancer ≥ 0.9× direct for large transfers ({where})",
                             [shown, verdict(round(min(got.values()), 2) >= 0.9)]))
        vs = {}
        for wl in wls:
            b = ratio(r, sec, wl, "balancer", "direct")
            others = [x for x in (ratio(r, sec, wl, p, "direct") for p in ("nginx", "haproxy")) if x]
            if b and others:
                vs[wl] = b / max(others)
        if vs:
            shown = ", ".join(f"{LABEL[wl]} ×{v:.2f}" for wl, v in vs.items())
            worst = min(vs.values())
            lines.append(row(f"balancer not below nginx or HAProxy for large transfers ({where}; "
                             "balancer / best of them)", [shown, verdict(round(worst, 2) >= 1, worst >= 0.97)]))
        b_rps, n_rps = med(r, sec, "small", "balancer", "rps"), med(r, sec, "small", "nginx", "rps")
        b_p99, n_p99 = med(r, sec, "small", "balancer", "p99_ms"), med(r, sec, "small", "nginx", "p99_ms")
        if b_rps and n_rps:
            rps = ratio(r, sec, "small", "balancer", "nginx", "rps")
            p99 = ratio(r, sec, "small", "balancer", "nginx", "p99_ms")
            lines.append(row(f"balancer small-request rate and p99 no worse than nginx ({where})",
                             [f"{b_rps:.0f} vs {n_rps:.0f} req/s (×{rps:.2f}), p99 {b_p99:.2f} vs "
                              f"{n_p99:.2f} ms (×{p99:.2f})",
                              verdict(round(rps, 2) >= 1 and round(p99, 2) <= 1,
                                      rps >= 0.97 and p99 <= 1.03)]))
    rss = peak(r, "cluster", "upload5", "balancer", "rss_proxy")
    if rss is not None:
        lines.append(row(f"balancer peak RSS < 64 MiB during {CONCURRENT} concurrent uploads",
                         [f"{rss:.1f} MiB", verdict(rss < 64)]))
    runs = r.get("cluster", {}).get("upload5", {})
    nodes = [s[k] for t in [*COLUMNS, "spread"] for s in runs.get(t, []) for k in s if k.startswith("rss_node")]
    if nodes:
        lines.append(row(f"each node's peak RSS < 128 MiB during {CONCURRENT} concurrent uploads",
                         [f"{max(nodes):.1f} MiB at most (any target)", verdict(max(nodes) < 128)]))
    for wl in ("upload", "download"):
        x = ratio(r, "cluster", wl, "direct", "driver")
        if x is not None:
            lines.append(row(f"{wl} through one node ≥ 0.8× the plain driver",
                             [f"×{x:.2f}", verdict(round(x, 2) >= 0.8)]))
    return lines


def command_version(argv: list[str], pattern: str) -> str:
    """The version number `pattern` finds in a tool's output."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "?"
    m = re.search(pattern, out.stdout + out.stderr)
    return m.group(1) if m else "?"


def machine(db: str) -> list[str]:
    cpuinfo = open("/proc/cpuinfo").read()
    model = next((l.split(":", 1)[1].strip() for l in cpuinfo.splitlines() if l.startswith("model name")), "?")
    mem_kib = int(next(l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal:")))
    osname = next((l.split("=", 1)[1].strip().strip('"') for l in open("/etc/os-release")
                   if l.startswith("PRETTY_NAME=")), "?")
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "?"
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.split()[1::2]
    nginx = command_version(["nginx", "-v"], r"nginx/(\S+)")
    haproxy = command_version(["haproxy", "-v"], r"version (\S+)")
    wrk = command_version(["wrk", "-v"], r"wrk \S*?(\d[\d.]*\d)")
    curl = command_version(["curl", "--version"], r"curl (\S+)")
    return [
        f"- Machine: {os.cpu_count()} cores ({model}), {mem_kib / (1 << 20):.1f} GiB memory, "
        f"{osname}, kernel {platform.release()}.",
        f"- Software: nginx {nginx}, HAProxy {haproxy}, wrk {wrk}, curl {curl}, "
        f"database {db}.",
        f"- Code: commit {commit}"
        + (f" with uncommitted changes to {', '.join(dirty)}" if dirty else "")
        + ", release build.",
    ]


SETUP = """\
## Setup

Everything runs on loopback of this one machine and shares its cores: curl and wrk, the
proxies, the nodes, SecantusDB (and, proxy-only, the origin and the sinks). Read the absolute
MB/s as a lower bound; the ratios carry over better. MB = 10^6 bytes.

- **Cluster:** SecantusDB and 3 `speedbox-node`s from one `cluster.toml` (journaled GridFS,
  255 KiB chunks, 4 chunks per write; `gc_grace_secs = 8`, `sweep_interval_secs = 1`,
  defaults otherwise). "direct" is node-1 alone. Downloads read one file uploaded before
  the runs; each upload goes to a new name, is checked against the SHA-256 the node
  reports, then deleted, and the harness waits for the sweep and an idle database before
  the next measurement.
- **speedbox-balancer:** as shipped (least-outstanding, health checks on `/healthz` every 1 s).
- **nginx** (its best honest streaming config): `worker_processes 2`, `least_conn`,
  `keepalive 32` upstreams, `proxy_http_version 1.1`, `proxy_request_buffering off`,
  `proxy_buffering off`, `proxy_buffer_size 64k; proxy_buffers 4 64k;
  proxy_busy_buffers_size 128k; client_body_buffer_size 64k`, `access_log off`.
- **HAProxy** (its best honest config): `nbthread 2`, `balance leastconn`,
  `option httpchk GET /healthz` (`inter 1s fall 3 rise 2`), `http-keep-alive`,
  `http-reuse safe`, `option splice-request`, `option splice-response`.
- **Proxy only:** the upstreams hold no database: one nginx serving the same files from the
  page cache with `sendfile` on 3 ports, and 3 Python upload sinks that read every body to its
  last byte before answering 201 with the byte count. nginx and HAProxy send `/sink*` to the
  sinks; the balancer has one pool per process, so two balancers run (origins, sinks).
  "direct" is the first origin or sink port.
- **Load:** curl (`-H 'Expect:'` on uploads) for large transfers, one at a time or 5 at once
  (aggregate = bytes / wall time until the last finished); wrk for 4 KiB GETs cycling over
  100 files. Every target is checked first: the large file and a small one arrive with the
  right SHA-256 through it. The storage row's driver is `speedbox-bench gridfs` (the plain
  `mongodb` crate, GridFS, journaled, 1 MiB writes and reads) on the same database server.
- **Seeking:** time to the first byte is a GET of the large file with `Range: bytes=N-` on a
  fresh connection (opened before the clock starts), from the request to its first body byte,
  median of 7; the connection is dropped after that byte, as a player does when it seeks.
- **Access control on:** the same wrk run through the balancer after `[auth]` is turned on
  in the running cluster's file (reloaded live, then checked: a GET without a token gets 401
  from the balancer and from every node), with a bearer token (`speedbox-token`, scope
  `read`) on every request; the node checks it. Turned off again after.
- **Many small files:** see its section; listing and the 1 KiB GET go through the balancer.
- **CPU and memory from the OS:** proxy CPU is utime+stime from `/proc/PID/stat` (10 ms
  ticks) summed over the proxy's processes; peak RSS is `VmHWM` from `/proc/PID/status`
  (summed over nginx's master and workers), reset through `clear_refs` before each run.
- **Small requests:** wrk, the proxy and the upstream fight for the same 2 cores; direct has
  one process fewer in that fight, so its p99 is not comparable with the proxied columns'.
- **Order:** each run goes through every target in turn, starting one further along each
  run, so that drift of the machine hits all targets alike.
"""


def meta(*, machine: list[str], db: str, size: int, reps: int, large_reps: int, wrk_seconds: int, command: str,
         seconds: float, full: bool) -> dict:
    """What the report says about the run besides the results (`machine` taken as it started:
    the code measured is the code built then, whatever changed while it ran)."""
    return {
        "size": size, "reps": reps, "large_reps": large_reps, "wrk_seconds": wrk_seconds,
        "command": command, "seconds": seconds, "full": full, "machine": machine, "db": db,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def render(results, m: dict) -> str:
    size, wrk_seconds, reps, large_reps = m["size"], m["wrk_seconds"], m["reps"], m["large_reps"]
    out = [
        "# Benchmarks",
        "",
        f"Written by `{m['command']}` on {m['date']} ({m['seconds'] / 60:.0f} min). Runs per figure: "
        + (f"{reps}" if reps == large_reps else
           f"{large_reps} for single large transfers through the cluster, {reps} for the rest")
        + ". Cells are median [min–max] and ×ratio to direct (the median of the per-round "
        "ratios: each round measures every target once, in rotating order); peak RSS is the "
        "maximum over the runs.",
        "",
        *m["machine"],
        "",
    ]
    if "cluster" in results:
        out += ["## Through the cluster (3 nodes, SecantusDB)", "",
                *cluster_table(results, size, wrk_seconds), ""]
        if "driver" in results["cluster"].get("upload", {}):
            out += ["## Storage path: one node against the plain driver", "",
                    f"The same {size_label(size)} file, same database server.", "",
                    *storage_table(results), ""]
    if "tus" in results:
        out += ["## Resumable uploads (tus) through the balancer", "",
                f"The same {size_label(size)} file by a plain PUT (curl), by tus with curl (POST, then "
                "one PATCH of the whole file; the time is the PATCH's) and by tuspy in 16 MiB PATCHes "
                "(the time includes its interpreter's start); each stored file's SHA-256 is checked.", "",
                *tus_table(results, size), ""]
    if "files" in results:
        out += ["## Many small files through the balancer", "",
                "1 KiB PUTs by 8 clients on keep-alive connections (each answered 201), then "
                "listing and GET latency through the balancer (one keep-alive connection, median) as "
                "the store grows: names beyond the PUTs are added straight into `fs.names`, shaped "
                "like the PUTs' (the PUT rate is measured by the PUTs). The slowest listing is one "
                "a node served before its listing fences had caught up with the grown store.", "",
                *targets17.files_table(results), ""]
    if "proxy" in results:
        out += ["## Proxy only (static origin and upload sinks, no database)", "",
                *proxy_table(results, size, wrk_seconds), ""]
    out += ["## Targets (issue 17)", "", *targets17.targets(results, m.get("db", "")), "",
            "## Targets (issue 5)", "", *targets(results), "", SETUP]
    return "\n".join(out)
