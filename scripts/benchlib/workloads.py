"""The workloads. Each runs `reps` rounds; every round runs every target in turn, starting
one further along each round, so that drift of the machine hits all targets alike.
Results go to `results[section][workload][target]` as one dict per run."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from . import load
from .procs import Procs, cpu_seconds, peak_rss_mib, reset_peak_rss, wait_idle
from .stack import GC_GRACE_SECS, SWEEP_SECS, Stack, Target

GIB = 1 << 30
CONCURRENT = 5  # parallel large transfers
SMALL_FILES = 100  # distinct 4 KiB files cycled through by wrk
SMALL_SIZE = 4096
WRK_THREADS, WRK_CONNS = 2, 32
TUSPY_CHUNK = 16 << 20  # tuspy's PATCH size in the tus workload


@dataclass
class Ctx:
    stack: Stack
    procs: Procs
    work: Path
    big: Path  # the large file (also every upload's body)
    big_sha256: str
    size: int
    reps: int
    large_reps: int  # for the single large transfers through the cluster
    wrk_seconds: int
    quick: bool
    results: dict = field(default_factory=lambda: defaultdict(lambda: defaultdict(lambda: defaultdict(list))))

    def record(self, section: str, workload: str, target: str, **sample) -> None:
        self.procs.check_all()
        self.results[section][workload][target].append(sample)
        shown = ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in sample.items())
        print(f"  {section} / {workload} / {target}: {shown}", file=sys.stderr, flush=True)

    def settle(self, deleted: bool) -> None:
        """Lets the database and nodes go quiet before the next measurement: after deletes,
        first the sweep that removes the deleted chunks."""
        if deleted and not self.quick:
            time.sleep(GC_GRACE_SECS + SWEEP_SECS + 0.5)
        pids = [pid for p in [self.stack.db, *self.stack.nodes] for pid in p.pids()]
        if not wait_idle(pids, timeout=2 if self.quick else 60, below=0.1):
            print("  (database still busy; going on)", file=sys.stderr)


def rotated(items: list, rep: int) -> list:
    k = rep % len(items)
    return items[k:] + items[:k]


def per_gib(cpu: float, nbytes: int) -> float:
    return cpu / (nbytes / GIB)


def verify(ctx: Ctx, targets: list[Target], big: str, small: str, small_sha: str) -> None:
    """Before timing: through every target, the large and one small file arrive intact."""
    for t in targets:
        for path, want in ((big, ctx.big_sha256), (small, small_sha)):
            got = load.sha256_of(t.down_url + path)
            if got != want:
                raise load.TransferError(f"{t.name}: {path} arrived with sha256 {got}, expected {want}")
        print(f"  {t.name}: content verified", file=sys.stderr, flush=True)


# --- through the cluster ----------------------------------------------------------------------


def cluster_large(ctx: Ctx, targets: list[Target]) -> None:
    """One large download and one large upload per target; and the plain mongodb driver
    writing and reading the same bytes (the storage path's limit) in the same rotation."""
    size, sec = ctx.size, "cluster"
    for rep in range(ctx.large_reps):
        for t in rotated([*targets, "driver"], rep):
            if t == "driver":
                driver(ctx)
                continue
            proxy = t.name != "direct"
            cpu = cpu_seconds(t.pids(False))
            secs = load.download(f"{t.down_url}/files/big.bin", size)
            cpu = cpu_seconds(t.pids(False)) - cpu
            extra = {"cpu_s_per_gib": per_gib(cpu, size)} if proxy else {}
            ctx.record(sec, "download", t.name, mbps=size / secs / 1e6, **extra)
            ctx.settle(False)
            url = f"{t.up_url}/files/up/{t.name}-{rep}.bin"
            cpu = cpu_seconds(t.pids(True))
            secs = load.upload(url, ctx.big, size, ctx.big_sha256)
            cpu = cpu_seconds(t.pids(True)) - cpu
            extra = {"cpu_s_per_gib": per_gib(cpu, size)} if proxy else {}
            ctx.record(sec, "upload", t.name, mbps=size / secs / 1e6, **extra)
            load.delete(url)
            ctx.settle(True)


def driver(ctx: Ctx) -> None:
    """`speedbox-bench gridfs`: the driver's GridFS upload and download of the same file to
    the same database server, journaled like the node (its own database, dropped after)."""
    out = subprocess.run(
        [ctx.stack.bins / "speedbox-bench", "gridfs", "--uri", ctx.stack.db_uri, "--file", ctx.big],
        capture_output=True, text=True, timeout=load.TIMEOUT, check=False,
    )
    if out.returncode != 0:
        raise load.TransferError(f"speedbox-bench gridfs failed: {out.stderr.strip()}")
    for line in out.stdout.splitlines():
        m = json.loads(line)
        if m["bytes"] != ctx.size:
            raise load.TransferError(f"speedbox-bench: {m['op']} moved {m['bytes']} bytes")
        op = {"driver-upload": "upload", "driver-download": "download"}[m["op"]]
        ctx.record("cluster", op, "driver", mbps=m["mb_per_s"])
    ctx.settle(False)


def cluster_concurrent(ctx: Ctx, targets: list[Target]) -> None:
    """5 large uploads at once per target; aggregate MB/s, and the peak RSS (VmHWM, reset
    before) of the proxy and of each node. "spread" is no proxy either: the client itself
    sends the uploads to the 3 nodes in turn (what the database allows 3 nodes at once)."""
    size, nodes = ctx.size, ctx.stack.nodes
    node_urls = [f"http://127.0.0.1:{p}" for p in ctx.stack.node_ports]
    for rep in range(ctx.reps):
        for t in rotated([*targets, "spread"], rep):
            name = t if t == "spread" else t.name
            proxy = name not in ("direct", "spread")
            pids = t.pids(True) if proxy else []
            reset_peak_rss([*pids, *(p for n in nodes for p in n.pids())])
            urls = [f"{node_urls[i % len(nodes)] if name == 'spread' else t.up_url}"
                    f"/files/conc/{name}-{rep}-{i}.bin" for i in range(CONCURRENT)]
            cpu = cpu_seconds(pids)
            secs = load.parallel_uploads(urls, ctx.big, size, ctx.big_sha256)
            cpu = cpu_seconds(pids) - cpu
            rss = {f"rss_{n.name}": peak_rss_mib(n.pids()) for n in nodes}
            if proxy:
                rss["rss_proxy"] = peak_rss_mib(pids)
                rss["cpu_s_per_gib"] = per_gib(cpu, CONCURRENT * size)
            ctx.record("cluster", "upload5", name, mbps=CONCURRENT * size / secs / 1e6, **rss)
            for u in urls:
                load.delete(u)
            ctx.settle(True)


def small(ctx: Ctx, section: str, targets: list[Target], workload: str = "small",
          headers: dict[str, str] | None = None) -> None:
    """wrk over the 4 KiB files, `headers` on every request: requests/s, p50/p99, and proxy
    CPU per request, recorded as `workload`."""
    for rep in range(ctx.reps):
        for t in rotated(targets, rep):
            cpu = cpu_seconds(t.pids(False))
            r = load.wrk(f"{t.down_url}/", "/files/small/", SMALL_FILES, ctx.work,
                         ctx.wrk_seconds, WRK_CONNS, WRK_THREADS, headers)
            cpu = cpu_seconds(t.pids(False)) - cpu
            if t.name != "direct":
                r["cpu_us_per_req"] = cpu / r["requests"] * 1e6
            del r["requests"]
            ctx.record(section, workload, t.name, **r)
            if section == "cluster":
                ctx.settle(False)


def cluster_tus(ctx: Ctx, targets: list[Target]) -> None:
    """Resumable uploads against a plain PUT, through the balancer: the large file by PUT
    (curl), by tus in one PATCH (curl) and by tuspy in 16 MiB PATCHes; MB/s each. Every
    stored file is checked by its SHA-256, then deleted."""
    base = next(t for t in targets if t.name == "balancer").up_url
    size = ctx.size
    for rep in range(ctx.reps):
        for client in rotated(["put", "tus", "tuspy"], rep):
            name = f"tus/{client}-{rep}.bin"
            if client == "put":
                secs = load.upload(f"{base}/files/{name}", ctx.big, size, ctx.big_sha256)
            elif client == "tus":
                secs = load.tus_upload(base, name, ctx.big, size, ctx.big_sha256)
            else:
                secs = load.tuspy_upload(base, name, ctx.big, size, ctx.big_sha256, TUSPY_CHUNK)
            ctx.record("tus", "upload", client, mbps=size / secs / 1e6)
            load.delete(f"{base}/files/{name}")
            ctx.settle(True)


# --- proxy only: no database behind the proxies -------------------------------------------------


def proxy_only(ctx: Ctx, targets: list[Target]) -> None:
    """Large downloads from a static nginx (sendfile) and uploads into sinks that discard
    them: one at a time and 5 at once, with the proxy's CPU and peak RSS."""
    size, sec = ctx.size, "proxy"
    for rep in range(ctx.reps):
        for workload in ("download", "upload", "download5", "upload5"):
            for t in rotated(targets, rep):
                up = workload.startswith("upload")
                n = CONCURRENT if workload.endswith("5") else 1
                pids = t.pids(up)
                reset_peak_rss(pids)
                cpu = cpu_seconds(pids)
                if up:
                    # The balancer's sink pool takes any path: under /files/, as a real PUT,
                    # it keeps its failover window (nginx and HAProxy route /sink*).
                    path = "/files/sink" if t.name == "balancer" else "/sink"
                    urls = [f"{t.up_url}{path}/{i}" for i in range(n)]
                    secs = (load.upload(urls[0], ctx.big, size, None) if n == 1
                            else load.parallel_uploads(urls, ctx.big, size, None))
                else:
                    urls = [f"{t.down_url}/files/big.bin"] * n
                    secs = (load.download(urls[0], size) if n == 1
                            else load.parallel_downloads(urls, size))
                extra = {}
                if t.name != "direct":
                    extra["cpu_s_per_gib"] = per_gib(cpu_seconds(pids) - cpu, n * size)
                    extra["rss_proxy"] = peak_rss_mib(pids)
                ctx.record(sec, workload, t.name, mbps=n * size / secs / 1e6, **extra)
