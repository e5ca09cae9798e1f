"""Failover drill against a running local cluster (`scripts/cluster drill`).

Keeps uploads and downloads of mixed sizes running through the balancer while it SIGKILLs
nodes one after another (and, with --kill-db, the database), then verifies every upload that
was acknowledged with 201 by downloading it and checking its SHA-256, and checks that no
upload that was never acknowledged became visible. Prints a report; exits 1 if anything
acknowledged was lost or corrupted or a partial file became visible.

Failed requests are retried by the drill as a client would (same name, up to 5 times); the
report counts them. Supervisor restarts killed processes; the drill measures how long the
balancer takes to mark a killed node down and to take it back once it answers again.

With access control on ([auth] enabled), the drill mints one token (read, write, admin) for
the whole run and sends it as `Authorization: Bearer` on every request but the nodes' open
/healthz.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import random
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

from probe import http_ok

KIB, MIB = 1024, 1024 * 1024
BLOCK = 1 * MIB


@dataclass
class Stats:
    lock: threading.Lock = field(default_factory=threading.Lock)
    sent: int = 0
    failed: int = 0
    retried: int = 0
    uploads_acked: int = 0
    downloads_ok: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    errors: dict = field(default_factory=dict)

    def add(self, **kw):
        with self.lock:
            for k, v in kw.items():
                setattr(self, k, getattr(self, k) + v)

    def error(self, what: str):
        with self.lock:
            self.failed += 1
            self.errors[what] = self.errors.get(what, 0) + 1


def content(seed: int, size: int):
    """Deterministic bytes for (seed, size), in blocks, cheap to regenerate."""
    rng = random.Random(seed)
    left = size
    while left:
        n = min(BLOCK, left)
        yield rng.randbytes(n)
        left -= n


class Drill:
    def __init__(self, host: str, port: int, sizes, seed, headers: dict[str, str]):
        self.host, self.port = host, port
        self.headers = headers  # Authorization, when access control is on
        self.sizes, self.seed = sizes, seed
        self.stats = Stats()
        self.acked: dict[str, str] = {}  # name -> sha256
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.run_id = f"drill-{int(time.time())}-{seed}"

    def conn(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=60)

    def upload(self, name: str, seed: int, size: int) -> str | None:
        h = hashlib.sha256()
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
            r = c.getresponse()
            body = r.read()
            self.stats.add(sent=1)
            if r.status != 201:
                self.stats.error(f"PUT {r.status} {body[:80]!r}")
                return None
            reply = json.loads(body)
            if reply.get("sha256") != h.hexdigest():
                self.stats.error("PUT acknowledged with a wrong sha256")
                return None
            self.stats.add(bytes_up=size)
            return h.hexdigest()
        except (OSError, http.client.HTTPException) as e:
            self.stats.add(sent=1)
            self.stats.error(f"PUT {type(e).__name__}")
            return None
        finally:
            c.close()

    def download(self, name: str) -> tuple[int, str] | None:
        c = self.conn()
        try:
            c.request("GET", "/files/" + urllib.parse.quote(name), headers=self.headers)
            r = c.getresponse()
            self.stats.add(sent=1)
            if r.status != 200:
                r.read()
                self.stats.error(f"GET {r.status}")
                return None
            h = hashlib.sha256()
            n = 0
            while block := r.read(BLOCK):
                h.update(block)
                n += len(block)
            self.stats.add(bytes_down=n)
            # http.client ends a body cut short by the server like a complete one.
            if n != int(r.headers.get("Content-Length", n)):
                self.stats.error("GET cut short (connection broke mid-body)")
                return None
            return n, h.hexdigest()
        except (OSError, http.client.HTTPException) as e:
            self.stats.add(sent=1)
            self.stats.error(f"GET {type(e).__name__}")
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

    def worker(self, wid: int):
        rng = random.Random(self.seed * 1000 + wid)
        i = 0
        while not self.stop.is_set():
            i += 1
            if rng.random() < 0.5 or not self.acked:
                size = rng.choice(self.sizes)
                name = f"{self.run_id}/w{wid}-{i}-{size}"
                seed = hash((self.seed, wid, i)) & 0xFFFFFFFF
                digest = self.with_retries(self.upload, name, seed, size)
                if digest:
                    with self.lock:
                        self.acked[name] = digest
                    self.stats.add(uploads_acked=1)
            else:
                with self.lock:
                    name = rng.choice(list(self.acked))
                    want = self.acked[name]
                got = self.with_retries(self.download, name)
                if got is not None and got[1] == want:
                    self.stats.add(downloads_ok=1)
                elif got is not None:
                    self.stats.error("GET returned wrong bytes")

    def verify(self) -> tuple[int, list[str]]:
        lost = []
        for name, digest in sorted(self.acked.items()):
            got = self.with_retries(self.download, name)
            if got is None or got[1] != digest:
                lost.append(name)
        return len(self.acked) - len(lost), lost

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


def cluster_view(host: str, port: int, headers: dict[str, str]) -> dict:
    c = http.client.HTTPConnection(host, port, timeout=5)
    try:
        c.request("GET", "/_cluster", headers=headers)
        r = c.getresponse()
        body = r.read()
        if r.status != 200:
            raise ValueError(f"/_cluster answered {r.status}: {body[:200]!r}")
        return json.loads(body)
    finally:
        c.close()


def refusal(host: str, port: int, headers: dict[str, str]) -> str | None:
    """The balancer's answer when it refuses /_cluster with 401 or 403 (a missing token, or
    one this cluster's keys do not verify); None otherwise, unreachable included."""
    c = http.client.HTTPConnection(host, port, timeout=5)
    try:
        c.request("GET", "/_cluster", headers=headers)
        r = c.getresponse()
        body = r.read()
        return f"{r.status} {body[:200]!r}" if r.status in (401, 403) else None
    except (OSError, http.client.HTTPException):
        return None
    finally:
        c.close()


def node_state(host, port, headers, node_id) -> str | None:
    try:
        for n in cluster_view(host, port, headers)["nodes"]:
            if n["id"] == node_id:
                return n["state"]
    except (OSError, ValueError, KeyError):
        pass
    return None


def wait_all_up(host: str, port: int, headers: dict[str, str], timeout: float) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if all(n["state"] == "up" for n in cluster_view(host, port, headers)["nodes"]):
                return True
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.25)
    return False


def run(cluster, duration: float, kills: int, kill_db: bool, sizes, workers: int, seed: int) -> int:
    host, port = cluster.balancer_listen.rsplit(":", 1)
    port = int(port)
    # One token for the whole run: load, recovery watches (up to a minute each), the wait
    # for every node and the verification after it.
    headers = cluster.auth_headers(ttl_s=2 * duration + 60 * kills + 3600)
    if headers:
        print("  access control is on: every request carries the drill's token "
              "(scope read write admin)", flush=True)
    if refused := refusal(host, port, headers):
        print(f"drill FAILED: the balancer refused the drill's requests: {refused}")
        return 1
    drill = Drill(host, port, sizes, seed, headers)
    threads = [threading.Thread(target=drill.worker, args=(w,), daemon=True) for w in range(workers)]
    started = time.time()
    for t in threads:
        t.start()
    events = []
    victims = [n for n in cluster.nodes]
    gap = duration / (kills + 1 + (1 if kill_db else 0))
    addrs = dict(cluster.node_addrs())
    for k in range(kills):
        time.sleep(gap)
        node = victims[k % len(victims)]
        cluster.kill(node)
        killed_at = time.time()
        down, restarted, up = watch_recovery(host, port, headers, node, addrs[node], killed_at)
        events.append({"node": node,
                       "kill_to_marked_down_s": rnd(down and down - killed_at),
                       "kill_to_restarted_s": rnd(restarted and restarted - killed_at),
                       "restart_to_rejoined_s": rnd(up and restarted and up - restarted)})
        seen_down = f"marked down after {fmt_s(down - killed_at)}" if down else \
            "restarted before the balancer had to mark it down"
        print(f"  killed {node} at +{killed_at - started:.1f}s: {seen_down}; answered again after "
              f"{fmt_s(restarted and restarted - killed_at)}; rejoined "
              f"{fmt_s(up and restarted and up - restarted)} after that", flush=True)
    if kill_db and cluster.embedded:
        time.sleep(gap)
        cluster.kill("secantusd")
        print(f"  killed the database at +{time.time() - started:.1f}s", flush=True)
    time.sleep(max(0.0, duration - (time.time() - started)))
    drill.stop.set()
    for t in threads:
        t.join(timeout=300)
    print("  load stopped; verifying every acknowledged upload", flush=True)
    # A database killed near the end may still be recovering: its files are not lost, the
    # cluster is down. Verify once every node passes its health check (a real read) again.
    if not wait_all_up(host, port, headers, timeout=120):
        print("  not every node is up again after 120 s; verifying anyway", flush=True)
    verified, lost = drill.verify()
    try:
        listed = drill.listed()
    except (OSError, ValueError, RuntimeError, http.client.HTTPException) as e:
        print(f"drill FAILED: cannot list the run's files: {e}")
        return 1
    partial = sorted(listed - set(drill.acked))
    # A name whose every attempt failed must not be listed; one acknowledged must be.
    missing_from_list = sorted(set(drill.acked) - listed)
    s = drill.stats
    report = {
        "duration_s": round(time.time() - started, 1),
        "requests_sent": s.sent,
        "requests_failed": s.failed,
        "client_retries": s.retried,
        "uploads_acknowledged": s.uploads_acked,
        "downloads_verified_during_load": s.downloads_ok,
        "mib_uploaded": round(s.bytes_up / MIB, 1),
        "mib_downloaded": round(s.bytes_down / MIB, 1),
        "acknowledged_files_verified": verified,
        "acknowledged_files_lost_or_corrupt": len(lost),
        "partial_or_unacknowledged_files_visible": len(partial),
        "acknowledged_files_missing_from_listing": len(missing_from_list),
        "kills": events,
        "failures_by_kind": s.errors,
    }
    print(json.dumps(report, indent=2))
    ok = not lost and not partial and not missing_from_list and verified > 0
    if lost:
        print("LOST:", lost[:20])
    if partial:
        print("VISIBLE BUT NEVER ACKNOWLEDGED:", partial[:20])
    print("drill PASSED" if ok else "drill FAILED")
    return 0 if ok else 1


def watch_recovery(host, port, headers, node, addr, killed_at, within=60.0):
    """Times (epoch seconds) at which the balancer marked `node` down, the node answered
    /healthz again, and the balancer took it back; None for what did not happen."""
    down = restarted = up = None
    while time.time() - killed_at < within and up is None:
        state = node_state(host, port, headers, node)
        now = time.time()
        if state == "down" and down is None:
            down = now
        if restarted is None and http_ok(f"http://{addr}/healthz"):
            restarted = now
        if restarted is not None and state == "up":
            up = now
        time.sleep(0.05)
    return down, restarted, up


def rnd(v):
    return None if v is None or v is False else round(v, 2)


def fmt_s(v):
    return "never" if v is None or v is False else f"{v:.2f}s"


def parse_sizes(text: str) -> list[int]:
    units = {"k": KIB, "m": MIB}
    out = []
    for part in text.split(","):
        part = part.strip().lower().removesuffix("ib").removesuffix("b")
        mult = units.get(part[-1:], 1)
        out.append(int(part.rstrip("km")) * mult)
    return out
