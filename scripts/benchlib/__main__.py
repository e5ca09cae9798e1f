"""scripts/bench: speedbox-balancer against one node directly, nginx and HAProxy; the node's
storage path against the plain mongodb driver. Run through scripts/bench, which installs
what is missing and builds first. See `scripts/bench --help`."""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from . import files, load, report, workloads
from .procs import Procs
from .stack import ROOT, Stack
from .workloads import SMALL_FILES, SMALL_SIZE, Ctx

SECTIONS = ["large", "concurrent", "small", "files", "proxy"]  # the default
OPTIONAL = ["tus"]  # run only when --only names them
LAST_RUN = ROOT / "target" / "bench" / "last-run.json"
# --quick runs (CI's, the test suite's) keep theirs apart, so they never replace a full run's.
LAST_QUICK_RUN = LAST_RUN.with_name("last-quick-run.json")


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="scripts/bench",
        description="Benchmarks speedbox-balancer against one node directly, nginx and HAProxy "
        "(through the cluster and proxy-only), and the node's storage path against the plain "
        "mongodb driver. Writes BENCHMARKS.md after a full run of every section.",
    )
    p.add_argument("--quick", action="store_true",
                   help="about a minute: 32 MiB files, 1 run, 2 s wrk (what CI runs)")
    p.add_argument("--reps", type=int, help="runs per figure (default 5 for single large "
                   "transfers and 3 for the rest, quick 1)")
    p.add_argument("--size-mib", type=int, help="size of the large transfers (default 1024, quick 32)")
    p.add_argument("--wrk-seconds", type=int, help="duration of each wrk run (default 10, quick 2)")
    p.add_argument("--only", default=",".join(SECTIONS),
                   help=f"comma-separated sections: {', '.join(SECTIONS)} (the default: all of "
                   "these), tus (PUT against tus by curl and by tuspy through the balancer; needs "
                   "scripts/setup --test-tools), or storage (node against the driver only)")
    p.add_argument("--out", type=Path,
                   help="write the report here (default BENCHMARKS.md after a full run of every section)")
    p.add_argument("--db", choices=["rs", "py"],
                   help="the SecantusDB server: rs = secantusd-rs (default; scripts/bench installs it), "
                   "py = secantusd-py (default with --quick, as in CI)")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory (logs, configs)")
    p.add_argument("--no-build", action="store_true", help="use the binaries already built")
    p.add_argument("--render", type=Path, metavar="JSON",
                   help=f"only write the report again from a run's raw results (each run saves "
                   f"them to {LAST_RUN.relative_to(ROOT)})")
    p.add_argument("--bins", type=Path, default=ROOT / "target" / "release", help=argparse.SUPPRESS)
    a = p.parse_args()
    a.full = not (a.quick or a.only != ",".join(SECTIONS) or a.size_mib or a.wrk_seconds or a.reps)
    # Single transfers through the database vary most from run to run, and cost least.
    a.large_reps = a.reps or (1 if a.quick else 5)
    a.reps = a.reps or (1 if a.quick else 3)
    a.size = (a.size_mib or (32 if a.quick else 1024)) << 20
    a.wrk_seconds = a.wrk_seconds or (2 if a.quick else 10)
    a.db = a.db or ("py" if a.quick else "rs")
    a.sections = set(a.only.split(","))
    a.storage_only = a.sections == {"storage"}
    if a.storage_only:
        a.sections = {"large"}
    if not a.sections <= set(SECTIONS + OPTIONAL):
        p.error(f"--only: unknown section in {a.only!r}")
    if "tus" in a.sections and importlib.util.find_spec("tusclient") is None:
        p.error("--only tus needs tuspy: run scripts/setup --test-tools")
    return a


def write_random(path: Path, size: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, 1 << 20))
            h.update(block)
            f.write(block)
            left -= len(block)
    return h.hexdigest()


def run(a: argparse.Namespace, work: Path, procs: Procs) -> str:
    started = time.monotonic()

    def phase(text: str) -> None:
        print(f"==> [{time.monotonic() - started:4.0f} s] {text}", file=sys.stderr, flush=True)

    www = work / "www"
    phase(f"generating a {a.size >> 20} MiB file and {SMALL_FILES} small ones")
    big = www / "files" / "big.bin"
    big_sha = write_random(big, a.size)
    small_sha = [write_random(www / "files" / "small" / f"{i:03d}.bin", SMALL_SIZE) for i in range(SMALL_FILES)]
    for p in (work, *www.rglob("*")):
        p.chmod(0o755 if p.is_dir() else 0o644)  # nginx's workers read www
    stack = Stack(work, procs, a.bins, a.db)
    machine = report.machine(stack.db_label)
    ctx = Ctx(stack, procs, work, big, big_sha, a.size, a.reps, a.large_reps, a.wrk_seconds, a.quick)
    small_path = "/files/small/000.bin"

    if a.sections & {"large", "concurrent", "small", "files", "tus"}:
        phase("starting SecantusDB, 3 nodes, the balancer, nginx and HAProxy")
        stack.start_cluster()
        node1 = f"http://127.0.0.1:{stack.node_ports[0]}"
        load.upload(f"{node1}/files/big.bin", big, a.size, big_sha)
        load.put_many(node1, [(f"/files/small/{i:03d}.bin", www / "files" / "small" / f"{i:03d}.bin",
                               small_sha[i]) for i in range(SMALL_FILES)])
        targets = stack.cluster_targets()
        balancer = next(t for t in targets if t.name == "balancer")
        if a.storage_only:
            targets = targets[:1]
        workloads.verify(ctx, targets, "/files/big.bin", small_path, small_sha[0])
        ctx.settle(False)
        if "large" in a.sections:
            phase("through the cluster: large download and upload; the plain driver")
            workloads.cluster_large(ctx, targets)
            phase("through the cluster: time to the first byte at offset 0 and further on")
            files.first_byte(ctx, targets)
        if "concurrent" in a.sections:
            phase("through the cluster: concurrent uploads")
            workloads.cluster_concurrent(ctx, targets)
        if "small" in a.sections:
            phase("through the cluster: small downloads")
            workloads.small(ctx, "cluster", targets)
            phase("through the balancer: small downloads with access control on")
            files.small_with_auth(ctx, balancer)
        if "files" in a.sections:
            phase("through the balancer: many small files (PUT rate, listing and GET as names grow)")
            files.many_files(ctx, balancer)
        if "tus" in a.sections:
            phase("through the balancer: PUT against tus (curl, tuspy)")
            workloads.cluster_tus(ctx, targets)
        procs.stop_all()
        shutil.rmtree(work / "db", ignore_errors=True)

    if "proxy" in a.sections:
        phase("proxy only: static origin and upload sinks")
        targets = stack.proxy_only_targets(www)
        workloads.verify(ctx, targets, "/files/big.bin", small_path, small_sha[0])
        workloads.proxy_only(ctx, targets)
        workloads.small(ctx, "proxy", targets)
        procs.stop_all()

    meta = report.meta(machine=machine, db=stack.db_label, size=a.size, reps=a.reps, large_reps=a.large_reps, wrk_seconds=a.wrk_seconds,
                       command=shlex.join(["scripts/bench", *sys.argv[1:]]),
                       seconds=time.monotonic() - started, full=a.full)
    saved = LAST_QUICK_RUN if a.quick else LAST_RUN
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps({"meta": meta, "results": ctx.results}, indent=1))
    return report.render(ctx.results, meta)


def main() -> int:
    a = parse()
    if a.render:
        saved = json.loads(a.render.read_text())
        return publish(a, report.render(saved["results"], saved["meta"]), saved["meta"]["full"])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="speedbox-bench."))
    (work / "logs").mkdir()
    procs = Procs(work / "logs")
    ok = False
    try:
        text = run(a, work, procs)
        ok = True
    except (load.TransferError, RuntimeError, OSError) as e:
        print(f"\nscripts/bench: FAILED: {e}\nlogs and configs kept in {work}", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()
        if ok and not a.keep:
            shutil.rmtree(work, ignore_errors=True)
        elif ok:
            print(f"scratch directory kept: {work}", file=sys.stderr)
    print(f"raw results: {LAST_QUICK_RUN if a.quick else LAST_RUN}", file=sys.stderr)
    return publish(a, text, a.full)


def publish(a: argparse.Namespace, text: str, full: bool) -> int:
    """Prints the report; writes it to --out, or to BENCHMARKS.md after a full run."""
    print(text)
    out = a.out or (ROOT / "BENCHMARKS.md" if full else None)
    if out:
        out.write_text(text + "\n")
        print(f"==> wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
