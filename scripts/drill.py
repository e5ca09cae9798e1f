"""Failover drill against a running local cluster (`scripts/cluster drill`).

Keeps uploads (PUT, and tus through tus_client.py) and downloads of mixed sizes running
through the balancer while it SIGKILLs nodes, hangs them (SIGSTOP for a few seconds, then
SIGCONT) and, with --kill-db, kills the database (drill_faults.py: one fault at a time,
spread over the run). Then it verifies every upload that was acknowledged (a PUT's 201 with
the right sha256, a tus upload whose offset reached its length) by downloading it and
checking its SHA-256, and checks that no upload that was never acknowledged became visible
(one the drill sent whole and whose answer alone was lost may, if it has the right bytes).
Contents are generated and downloads verified as streams of 1 MiB blocks: sizes of GiBs
cost no memory.

Every failed request a client sees is counted by kind:
  get_cut      a GET whose body ended before its Content-Length or broke after the head
  get_failed   a GET that got no 200 (an error status, no head: refused, reset, timeout)
  put_failed   a PUT that did not end in 201 with the right sha256
  tus_stalled  a tus upload that made no progress for 15 s, whose upload vanished, or
               whose file came out with a wrong digest (a tus resume is no failure: tus
               clients resume by design)
Failed requests are retried as a client would (same name, up to 5 times), and every failed
attempt counts. A failure while no node was up (the balancer's /_cluster, polled every
100 ms, with grace; and around a --kill-db kill) is excused and reported apart.

The run fails (exit 1) on any client-visible failure while a node was up, of a kind not
named by --allow, and on anything acknowledged lost or corrupted, a download with wrong
bytes, a partial file visible, or an acknowledged file missing from the listing
(drill_report.py). The last line is the verdict: `drill PASSED: …` or `drill FAILED: …`.

With access control on ([auth] enabled), the drill mints one token (read, write, admin) for
the whole run and sends it as `Authorization: Bearer` on every request but the nodes' open
/healthz.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import random
import signal
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

from drill_faults import Balancer, ClusterWatch, Faults, plan
from drill_report import KINDS, Checked, Failure, report
from tus_client import Stalled, TusClient

KIB, MIB, GIB = 1024, 1024 * 1024, 1024 * 1024 * 1024
BLOCK = 1 * MIB
TUS_STALL_S = 15.0


@dataclass
class Options:
    sizes: list[int]
    duration: float = 60
    kills: int = 3
    hangs: int = 0
    hang_seconds: float = 5
    kill_db: bool = False
    workers: int = 4
    tus_workers: int = 1
    seed: int = 1
    allow: frozenset[str] = frozenset()


@dataclass
class Stats:
    lock: threading.Lock = field(default_factory=threading.Lock)
    sent: int = 0
    retried: int = 0
    uploads_acked: int = 0
    tus_acked: int = 0
    downloads_ok: int = 0
    wrong_bytes: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    failures: list[Failure] = field(default_factory=list)
    resumes: dict[str, int] = field(default_factory=dict)
    slowest: dict[str, float] = field(default_factory=dict)

    def add(self, **kw):
        with self.lock:
            for k, v in kw.items():
                setattr(self, k, getattr(self, k) + v)

    def fail(self, kind: str, what: str, began: float):
        with self.lock:
            self.failures.append(Failure(kind, what, began, time.time()))

    def resumed(self, why: str):
        with self.lock:
            self.resumes[why] = self.resumes.get(why, 0) + 1

    def took(self, what: str, began: float):
        with self.lock:
            self.slowest[what] = round(max(self.slowest.get(what, 0.0), time.time() - began), 2)


def content(seed: int, size: int, start: int = 0):
    """Deterministic bytes for (seed, size) from `start` on, in blocks, each cheap to
    regenerate on its own (a tus resume starts mid-file)."""
    i = start // BLOCK
    while i * BLOCK < size:
        block = random.Random((seed << 32) | i).randbytes(min(BLOCK, size - i * BLOCK))
        yield block[start - i * BLOCK:] if i * BLOCK < start else block
        i += 1


class Drill:
    def __init__(self, balancer: Balancer, opts: Options):
        self.host, self.port = balancer.host, balancer.port
        self.headers = balancer.headers  # Authorization, when access control is on
        self.opts = opts
        self.stats = Stats()
        self.acked: dict[str, str] = {}  # name -> sha256
        # Uploads whose every byte went out but whose acknowledgement never came: the server
        # may have stored them whole (name -> sha256).
        self.unconfirmed: dict[str, str] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.run_id = f"drill-{int(time.time())}-{opts.seed}"

    def conn(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=60)

    def ack(self, name: str, digest: str, counter: str):
        with self.lock:
            self.acked[name] = digest
        self.stats.add(**{counter: 1})

    def unconfirmed_upload(self, name: str, digest: str):
        with self.lock:
            self.unconfirmed[name] = digest

    def upload(self, name: str, seed: int, size: int) -> str | None:
        h = hashlib.sha256()
        began, sent = time.time(), None
        self.stats.add(sent=1)
        c = self.conn()
        try:
            c.putrequest("PUT", "/files/" + urllib.parse.quote(name))
            c.putheader("Content-Length", str(size))
            for k, v in self.headers.items():
                c.putheader(k, v)
            c.endheaders()
            for block in content(seed, size):
                h.update(block)
                c.send(block)
            sent = time.time()
            r = c.getresponse()
            body = r.read()
            self.stats.took("PUT answer after the body", sent)
            if r.status != 201:
                what = f"PUT {r.status} {body[:80]!r}"
            elif json.loads(body).get("sha256") != h.hexdigest():
                what = "PUT acknowledged with a wrong sha256"
            else:
                self.stats.add(bytes_up=size)
                return h.hexdigest()
        except (OSError, ValueError, http.client.HTTPException) as e:
            what = f"PUT {type(e).__name__}"
        finally:
            c.close()
        self.stats.fail("put_failed", what, began)
        if sent is not None:
            self.unconfirmed_upload(name, h.hexdigest())
        return None

    def download(self, name: str) -> tuple[int, str] | None:
        """Streams the file through SHA-256: (length, sha256), or None after a failure."""
        began = time.time()
        in_body = False
        self.stats.add(sent=1)
        c = self.conn()
        try:
            c.request("GET", "/files/" + urllib.parse.quote(name), headers=self.headers)
            r = c.getresponse()
            self.stats.took("GET head", began)
            if r.status != 200:
                r.read()
                self.stats.fail("get_failed", f"GET {r.status}", began)
                return None
            in_body = True
            h, n = hashlib.sha256(), 0
            while block := r.read(BLOCK):
                h.update(block)
                n += len(block)
            self.stats.add(bytes_down=n)
            # http.client ends a body cut short by the server like a complete one.
            if n != int(r.headers.get("Content-Length", n)):
                self.stats.fail("get_cut", "GET body ended before its Content-Length", began)
                return None
            return n, h.hexdigest()
        except (OSError, http.client.HTTPException) as e:
            where = " mid-body" if in_body else ""
            self.stats.fail("get_cut" if in_body else "get_failed",
                            f"GET {type(e).__name__}{where}", began)
            return None
        finally:
            c.close()

    def with_retries(self, fn, *args):
        for attempt in range(6):
            if attempt:
                self.stats.add(retried=1)
                time.sleep(0.2 * attempt)
            result = fn(*args)
            if result is not None:
                return result
        return None

    def tus_upload(self, tus: TusClient, name: str, seed: int, size: int):
        """One tus upload, acknowledged once the server holds every byte, then its file
        checked; a stall is a client-visible failure (tus_stalled)."""
        began = time.time()
        try:
            digest = tus.upload(name, size, lambda at: content(seed, size, at))
            self.ack(name, digest, "tus_acked")
            self.stats.add(bytes_up=size)
            tus.check_file(name, digest)
        except Stalled as e:
            self.stats.fail("tus_stalled", str(e), began)
            if e.sent_digest:
                self.unconfirmed_upload(name, e.sent_digest)

    def put_or_get(self, wid: int):
        rng = random.Random(self.opts.seed * 1000 + wid)
        i = 0
        while not self.stop.is_set():
            i += 1
            if rng.random() < 0.5 or not self.acked:
                size = rng.choice(self.opts.sizes)
                name = f"{self.run_id}/w{wid}-{i}-{size}"
                seed = hash((self.opts.seed, wid, i)) & 0xFFFFFFFF
                if digest := self.with_retries(self.upload, name, seed, size):
                    self.ack(name, digest, "uploads_acked")
            else:
                with self.lock:
                    name = rng.choice(list(self.acked))
                    want = self.acked[name]
                got = self.with_retries(self.download, name)
                if got is not None and got[1] == want:
                    self.stats.add(downloads_ok=1)
                elif got is not None:
                    self.stats.add(wrong_bytes=1)

    def tus_worker(self, wid: int):
        rng = random.Random(self.opts.seed * 1000 + 500 + wid)
        tus = TusClient(self.host, self.port, self.headers, stall_s=TUS_STALL_S,
                        on_resume=self.stats.resumed)
        i = 0
        while not self.stop.is_set():
            i += 1
            size = rng.choice(self.opts.sizes)
            seed = hash((self.opts.seed, 1000 + wid, i)) & 0xFFFFFFFF
            self.tus_upload(tus, f"{self.run_id}/t{wid}-{i}-{size}", seed, size)

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self.put_or_get, args=(w,), daemon=True)
                   for w in range(self.opts.workers)]
        threads += [threading.Thread(target=self.tus_worker, args=(w,), daemon=True)
                    for w in range(self.opts.tus_workers)]
        for t in threads:
            t.start()
        return threads

    def check(self) -> Checked:
        """Downloads every acknowledged file and every file listed though never acknowledged
        that the drill sent whole, and compares the listing with the acknowledgements.
        Raises when the listing fails."""
        lost = [name for name, digest in sorted(self.acked.items())
                if not self.has(name, digest)]
        listed = self.listed()
        partial, whole = [], []
        for name in sorted(listed - set(self.acked)):
            digest = self.unconfirmed.get(name)
            (whole if digest and self.has(name, digest) else partial).append(name)
        # A name whose every attempt failed must not be listed; one acknowledged must be.
        missing = sorted(set(self.acked) - listed)
        return Checked(len(self.acked) - len(lost), lost, partial, whole, missing)

    def has(self, name: str, digest: str) -> bool:
        got = self.with_retries(self.download, name)
        return got is not None and got[1] == digest

    def listed(self) -> set[str]:
        names, after = set(), ""
        prefix = urllib.parse.quote(self.run_id + "/", safe="")
        while True:
            c = self.conn()
            query = f"/files?prefix={prefix}&limit=1000"
            if after:
                query += "&after=" + urllib.parse.quote(after, safe="")
            c.request("GET", query, headers=self.headers)
            r = c.getresponse()
            body = r.read()
            c.close()
            if r.status != 200:
                raise RuntimeError(f"listing answered {r.status}: {body[:200]!r}")
            page = json.loads(body)
            names |= {f["name"] for f in page["files"]}
            after = page.get("next_after")
            if not after:
                return names


def run(cluster, opts: Options) -> int:
    # SIGTERM unwinds like Ctrl-C, so a hang's `finally` still sends SIGCONT.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    faults = plan(opts.kills, opts.hangs, opts.kill_db and cluster.embedded)
    # One token for the whole run: load, recovery watches (up to a minute each), the wait
    # for every node and the verification after it.
    balancer = connect(cluster, ttl_s=2 * opts.duration + 60 * len(faults) + 3600)
    if balancer is None:
        return 1
    watch = ClusterWatch(balancer)
    watch.start()
    drill = Drill(balancer, opts)
    started = time.time()
    threads = drill.start()
    chaos = Faults(cluster, balancer, started, opts.hang_seconds)
    chaos.run(faults, opts.duration)
    time.sleep(max(0.0, opts.duration - (time.time() - started)))
    stop_load(drill, threads)
    # A database killed near the end may still be recovering: its files are not lost, the
    # cluster is down. Verify once every node passes its health check (a real read) again.
    if not balancer.wait_all_up(timeout=120):
        print("  not every node is up again after 120 s; verifying anyway", flush=True)
    try:
        checked = drill.check()
    except (OSError, ValueError, RuntimeError, http.client.HTTPException) as e:
        print(f"drill FAILED: cannot list the run's files: {e}")
        return 1
    no_node_up = watch.stop()
    return report(drill, chaos, started, checked, watch.excused(chaos.db_kills), no_node_up)


def connect(cluster, ttl_s: float) -> Balancer | None:
    """The balancer, with the drill's token when access control is on; None (after saying
    why) when it refuses the token."""
    host, port = cluster.balancer_listen.rsplit(":", 1)
    balancer = Balancer(host, int(port), cluster.auth_headers(ttl_s=ttl_s))
    if balancer.headers:
        print("  access control is on: every request carries the drill's token "
              "(scope read write admin)", flush=True)
    if refused := balancer.refusal():
        print(f"drill FAILED: the balancer refused the drill's requests: {refused}")
        return None
    return balancer


def stop_load(drill: Drill, threads: list[threading.Thread]) -> None:
    """Stops the clients and waits for every transfer in flight to end (each socket
    operation times out after 60 s), however long a big file takes: verifying while
    clients still upload would race them."""
    drill.stop.set()
    if busy := sum(t.is_alive() for t in threads):
        print(f"  load stopping: waiting for {busy} clients to finish their transfer", flush=True)
    for t in threads:
        t.join()
    print("  load stopped; verifying every acknowledged upload", flush=True)


def parse_sizes(text: str) -> list[int]:
    """`1K,64K,1M,8M,1G`: sizes in bytes (K, M, G, with or without iB/B, any case)."""
    units = {"k": KIB, "m": MIB, "g": GIB}
    out = []
    for part in text.split(","):
        part = part.strip().lower().removesuffix("ib").removesuffix("b")
        mult = units.get(part[-1:], 1)
        try:
            out.append(int(part.rstrip("kmg")) * mult)
        except ValueError:
            raise ValueError(f"not a size: {part!r} (like 1K, 64M, 1G)") from None
    return out


def parse_allow(text: str) -> frozenset[str]:
    """`put_failed,get_cut`: kinds of client-visible failures that do not fail the run."""
    kinds = frozenset(k.strip() for k in text.split(",") if k.strip())
    if unknown := kinds - set(KINDS):
        raise ValueError(f"unknown kind {', '.join(sorted(unknown))} (kinds: {', '.join(KINDS)})")
    return kinds
