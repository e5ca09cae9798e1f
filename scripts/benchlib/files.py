"""The workloads of issue 17 that the proxy comparison does not cover, on the running cluster:
time to first byte of the large file when a player seeks, small GETs with access control on,
and many small files (PUT rate as the store grows, listing and GET latency at 1,000 names
and beyond). Results go to the same `results[section][workload][target]` as workloads.py."""

from __future__ import annotations

import http.client
import os
import statistics
import subprocess
import threading
import time
import urllib.error
import urllib.request

from . import load, workloads
from .stack import Stack, Target
from .workloads import Ctx, rotated

SEEK_MIB = 900  # the second offset of the time-to-first-byte rows (scaled down with --size-mib)
FIRST_BYTE_TRIES = 7  # fresh connections per offset, target and round; the median is kept
PUT_CLIENTS = 8
PUT_SIZE = 1024
AUTH_KEY = "bench-key-" + "0123456789abcdef" * 4


# --- seeking: time to the first byte -------------------------------------------------------------


def first_byte(ctx: Ctx, targets: list[Target]) -> None:
    """`Range: bytes=N-` of the large file at offset 0 and at 900 MiB (88 % of the file when it
    is smaller): milliseconds to the first body byte, median of fresh connections."""
    seek = min(SEEK_MIB << 20, ctx.size * 88 // 100)
    for rep in range(ctx.reps):
        for t in rotated(targets, rep):
            sample = {}
            for key, offset in (("ms_at_0", 0), ("ms_at_seek", seek)):
                sample[key] = statistics.median(
                    load.first_byte_ms(f"{t.down_url}/files/big.bin", offset, ctx.size)
                    for _ in range(FIRST_BYTE_TRIES))
            ctx.record("cluster", "first_byte", t.name, seek_mib=seek >> 20, **sample)
    ctx.settle(False)


# --- access control on ---------------------------------------------------------------------------


def set_auth(stack: Stack, nodes_and_balancer: list[str], on: bool) -> dict[str, str]:
    """Turns `[auth]` on or off in the running cluster's cluster.toml (reloaded live) and waits
    until every URL in `nodes_and_balancer` answers an unauthenticated GET of a small file
    with 401 (on) or 200 (off). Returns the headers a read needs."""
    toml = stack.cluster_toml
    text = toml.read_text().split("[auth]\n")[0]
    if on:
        secrets = toml.parent / "secrets"
        secrets.mkdir(mode=0o700, exist_ok=True)
        (secrets / "k1.key").write_text(AUTH_KEY)
        text += '[auth]\nenabled = true\nkeys = [{ id = "k1", secret_file = "secrets/k1.key" }]\n'
    # [auth] last: every [[nodes]] table stays before it.
    toml.write_text(text)
    want = 401 if on else 200
    deadline = time.monotonic() + 30
    for base in nodes_and_balancer:
        while (status := _status(f"{base}/files/small/000.bin")) != want:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{base}: {status} for a GET without a token, expected {want} "
                                   f"after turning access control {'on' if on else 'off'}")
            time.sleep(0.2)
    if not on:
        return {}
    out = subprocess.run([stack.bins / "speedbox-token", "--config", toml, "--sub", "bench",
                          "--scope", "read", "--ttl", "1h"], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"speedbox-token failed: {out.stderr.strip()}")
    return {"Authorization": f"Bearer {out.stdout.strip()}"}


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def small_with_auth(ctx: Ctx, balancer: Target) -> None:
    """The 4 KiB GETs through the balancer with access control on (a bearer token on every
    request, checked by the node), next to the same run's without: workload "small_auth"."""
    bases = [balancer.down_url, *(f"http://127.0.0.1:{p}" for p in ctx.stack.node_ports)]
    headers = set_auth(ctx.stack, bases, True)
    try:
        workloads.small(ctx, "cluster", [balancer], "small_auth", headers)
    finally:
        set_auth(ctx.stack, bases, False)


# --- many small files ----------------------------------------------------------------------------


def put_loop(port: int, names: list[str], body: bytes, latencies: list[float], errors: list[str]) -> None:
    """PUTs `names` one after another on one keep-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for name in names:
        t = time.perf_counter()
        conn.request("PUT", f"/files/{name}", body=body)
        r = conn.getresponse()
        r.read()
        latencies.append(time.perf_counter() - t)
        if r.status != 201:
            errors.append(f"{name}: {r.status}")
    conn.close()


def put_many_small(port: int, prefix: str, count: int, clients: int, body: bytes) -> dict:
    """`count` PUTs of `body` by `clients` threads, each on its own connection: PUT/s, p50
    and p99 ms. Raises TransferError unless every PUT answered 201."""
    latencies: list[float] = []
    errors: list[str] = []
    per = count // clients
    threads = [threading.Thread(target=put_loop, args=(
        port, [f"{prefix}/c{c}/f{i}" for i in range(per)], body, latencies, errors)) for c in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise load.TransferError(f"{len(errors)} small PUTs failed, e.g. {errors[:3]}")
    latencies.sort()
    p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    return {"rate": len(latencies) / elapsed, "p50_ms": p(0.5), "p99_ms": p(0.99)}


def times_ms(port: int, path: str, reps: int) -> list[float]:
    """Milliseconds of each of `reps` GETs of `path` on one keep-alive connection (each 200)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        conn.request("GET", path)
        r = conn.getresponse()
        r.read()
        times.append((time.perf_counter() - t) * 1000)
        if r.status != 200:
            raise load.TransferError(f"GET {path}: status {r.status}")
    conn.close()
    return times


def fill_names(names, like: str, upto: int, prefix: str = "fill/") -> None:
    """Adds name documents shaped like `like`'s (each pointing at a file of its own, absent),
    named `{prefix}userNN/file-NNNNNNN.bin`, straight into `names` (a pymongo fs.names) until
    it holds `upto`: what a listing or a lookup sees of a big store, without hours of PUTs
    (the PUT rate is measured separately)."""
    import bson  # the project's virtualenv has it (pymongo's)
    template = names.find_one({"_id": like})
    template.pop("small", None)  # the one-round-trip GET's join key: these files have no chunks
    have = names.count_documents({})
    for start in range(have, upto, 1000):
        names.insert_many([dict(template, _id=n, name=n, file_id=bson.ObjectId())
                           for n in (f"{prefix}user{i % 100:02d}/file-{i:07d}.bin"
                                     for i in range(start, min(upto, start + 1000)))])


def names_collection(db_uri: str):
    """fs.names of the database the cluster file names by default, through pymongo (the
    project's virtualenv has it: SecantusDB's dependency)."""
    import pymongo
    return pymongo.MongoClient(db_uri + "/?directConnection=true").speedbox["fs.names"]


def many_files(ctx: Ctx, balancer: Target) -> None:
    """1 KiB PUTs through the balancer by 8 clients: the first 1,000 (200 with --quick), then
    4,000 more (200); listing (`limit=10`) and a 1 KiB GET's latency through the balancer at
    about 1,000 names, then at 20,000 and 100,000 (2,000 with --quick)."""
    port = int(balancer.down_url.rsplit(":", 1)[1])
    names = names_collection(ctx.stack.db_uri)
    body = os.urandom(PUT_SIZE)
    first, more = (200, 200) if ctx.quick else (1000, 4000)
    ctx.record("files", "put", "first", names=first, **put_many_small(port, "put/a", first, PUT_CLIENTS, body))
    probe = "/files/put/a/c0/f0"
    sizes = [first] + ([2000] if ctx.quick else [20_000, 100_000])
    for i, size in enumerate(sizes):
        if i == 1:
            ctx.settle(False)
            ctx.record("files", "put", "more", names=first + more,
                       **put_many_small(port, "put/b", more, PUT_CLIENTS, body))
        fill_names(names, probe.removeprefix("/files/"), size)
        ctx.settle(False)
        reps = 9 if size >= 100_000 else 15
        # The slowest listing too: a node that has not cut the grown store with fences
        # yet reads every name once (node/src/store/fences.rs).
        lists = times_ms(port, "/files?limit=10", reps)
        ctx.record("files", "at_size", str(size), names=names.count_documents({}),
                   list_ms=statistics.median(lists), list_max_ms=max(lists),
                   get_ms=statistics.median(times_ms(port, probe, 51)))
