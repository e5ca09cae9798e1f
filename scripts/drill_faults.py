"""What the failover drill (drill.py) does to the cluster, and what it sees of it.

Faults: SIGKILLs of nodes (supervisor restarts them), hangs (SIGSTOP a node for a few
seconds, then SIGCONT) and a SIGKILL of the embedded database, spread evenly over the run
and one at a time: each waits until its node is back in the balancer before the next
starts, and each picks a node the balancer has up, so at most one node is stopped or
killed at any moment. A hang's SIGCONT is sent in a `finally`: an interrupted drill never
leaves a node stopped.

Sight: the balancer's /_cluster, polled every 100 ms in a thread (`ClusterWatch`), gives
the intervals when no node was up; a client-visible failure inside one (with grace, see
`ClusterWatch.excused`) is excused, since then the whole cluster was legitimately down.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import threading
import time
from dataclasses import dataclass, field

from probe import http_ok

GRACE_BEFORE_S = 0.5  # the balancer marks the last node down a moment after it died
GRACE_AFTER_S = 2.0  # requests that were failing as the cluster came back
DB_OUTAGE_LOOKAHEAD_S = 30.0  # how long after a database kill its nodes may take to go down
REJOIN_WITHIN_S = 60.0


@dataclass
class Balancer:
    """The balancer's /_cluster, asked with the drill's token."""

    host: str
    port: int
    headers: dict[str, str]

    def get(self) -> tuple[int, bytes]:
        c = http.client.HTTPConnection(self.host, self.port, timeout=5)
        try:
            c.request("GET", "/_cluster", headers=self.headers)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def view(self) -> dict:
        status, body = self.get()
        if status != 200:
            raise ValueError(f"/_cluster answered {status}: {body[:200]!r}")
        return json.loads(body)

    def refusal(self) -> str | None:
        """Its answer when it refuses /_cluster with 401 or 403 (a missing token, or one this
        cluster's keys do not verify); None otherwise, unreachable included."""
        try:
            status, body = self.get()
        except (OSError, http.client.HTTPException):
            return None
        return f"{status} {body[:200]!r}" if status in (401, 403) else None

    def states(self) -> dict[str, str] | None:
        """Each node's state (`up`, `down`, …); None when the balancer does not answer."""
        try:
            return {n["id"]: n["state"] for n in self.view()["nodes"]}
        except (OSError, ValueError, KeyError, http.client.HTTPException):
            return None

    def node_state(self, node: str) -> str | None:
        return (self.states() or {}).get(node)

    def first_state(self, node: str, state: str, until: float) -> float | None:
        """When (epoch seconds) the balancer first shows `node` in `state`, polled every 50 ms
        until `until`; None if it did not."""
        while time.time() < until:
            if self.node_state(node) == state:
                return time.time()
            time.sleep(0.05)
        return None

    def wait_all_up(self, timeout: float) -> bool:
        deadline = time.time() + timeout
        while time.time() < deadline:
            states = self.states()
            if states and all(s == "up" for s in states.values()):
                return True
            time.sleep(0.25)
        return False


class ClusterWatch:
    """Polls /_cluster every `period` seconds in a thread and keeps the intervals (epoch
    seconds) during which it answered and listed no node up. An unanswered poll changes
    nothing: it is no evidence that the nodes were down."""

    def __init__(self, balancer: Balancer, period: float = 0.1):
        self.balancer, self.period = balancer, period
        self.intervals: list[tuple[float, float]] = []
        self._since: float | None = None
        self._last = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> list[tuple[float, float]]:
        """Stops polling; the intervals, one still open closed now."""
        self._stop.set()
        self._thread.join(timeout=10)
        if self._since is not None:
            self.intervals.append((self._since, self._last))
            self._since = None
        return self.intervals

    def _run(self) -> None:
        while not self._stop.is_set():
            t = time.time()
            states = self.balancer.states()
            if states is not None:
                self._record(t, any(s == "up" for s in states.values()))
            self._stop.wait(max(0.0, self.period - (time.time() - t)))

    def _record(self, t: float, any_up: bool) -> None:
        self._last = t
        if not any_up and self._since is None:
            self._since = t
        elif any_up and self._since is not None:
            self.intervals.append((self._since, t))
            self._since = None

    def excused(self, db_kills: list[float]) -> list[tuple[float, float]]:
        """When a failure is excused: each interval with no node up (from GRACE_BEFORE_S
        before to GRACE_AFTER_S after), and each database kill from GRACE_AFTER_S before it
        to GRACE_AFTER_S after the end of the first no-node-up interval that follows it
        (after the kill alone if none follows: the nodes never went down)."""
        windows = [(a - GRACE_BEFORE_S, b + GRACE_AFTER_S) for a, b in self.intervals]
        for t in db_kills:
            ends = [b for a, b in self.intervals if t <= a <= t + DB_OUTAGE_LOOKAHEAD_S]
            windows.append((t - GRACE_AFTER_S, (ends[0] if ends else t) + GRACE_AFTER_S))
        return windows


def plan(kills: int, hangs: int, kill_db: bool) -> list[str]:
    """The faults in order: kills and hangs interleaved, the database last."""
    out = []
    for i in range(max(kills, hangs)):
        out += ["kill"] * (i < kills) + ["hang"] * (i < hangs)
    return out + ["db"] * kill_db


@dataclass
class Faults:
    """Runs a plan of faults against `cluster` (scripts/cluster.py's Cluster) and records
    what the balancer did about each."""

    cluster: object
    balancer: Balancer
    started: float
    hang_s: float
    kills: list[dict] = field(default_factory=list)
    hangs: list[dict] = field(default_factory=list)
    db_kills: list[float] = field(default_factory=list)

    def run(self, faults: list[str], duration: float) -> None:
        gap = duration / (len(faults) + 1)
        for k, what in enumerate(faults):
            time.sleep(max(0.0, self.started + gap * (k + 1) - time.time()))
            if what == "db":
                self.kill_db()
            else:
                (self.kill if what == "kill" else self.hang)(self.victim(k))

    def victim(self, k: int) -> str:
        """The k-th node in rotation, or the next one after it that the balancer has up."""
        nodes = self.cluster.nodes
        states = self.balancer.states() or {}
        order = [nodes[(k + i) % len(nodes)] for i in range(len(nodes))]
        return next((n for n in order if states.get(n) == "up"), order[0])

    def at(self, t: float) -> str:
        return f"+{t - self.started:.1f}s"

    def kill(self, node: str) -> None:
        addr = dict(self.cluster.node_addrs())[node]
        self.cluster.kill(node)
        killed = time.time()
        down, restarted, up = watch_recovery(self.balancer, node, addr, killed)
        self.kills.append({"node": node,
                           "kill_to_marked_down_s": rnd(down and down - killed),
                           "kill_to_restarted_s": rnd(restarted and restarted - killed),
                           "restart_to_rejoined_s": rnd(up and restarted and up - restarted)})
        seen_down = f"marked down after {fmt_s(down - killed)}" if down else \
            "restarted before the balancer had to mark it down"
        print(f"  killed {node} at {self.at(killed)}: {seen_down}; answered again after "
              f"{fmt_s(restarted and restarted - killed)}; rejoined "
              f"{fmt_s(up and restarted and up - restarted)} after that", flush=True)

    def hang(self, node: str) -> None:
        pid = self.cluster.pid(node)
        if pid is None:
            print(f"  hang of {node} skipped: it is not running", flush=True)
            return
        os.kill(pid, signal.SIGSTOP)
        stopped = time.time()
        try:
            down = self.balancer.first_state(node, "down", until=stopped + self.hang_s)
            time.sleep(max(0.0, stopped + self.hang_s - time.time()))
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        resumed = time.time()
        up = self.balancer.first_state(node, "up", until=resumed + REJOIN_WITHIN_S)
        self.hangs.append({"node": node, "stopped_s": rnd(resumed - stopped),
                           "sigstop_to_marked_down_s": rnd(down and down - stopped),
                           "rejoined": up is not None,
                           "sigcont_to_rejoined_s": rnd(up and down and up - resumed)})
        seen = f"marked down after {fmt_s(down - stopped)}" if down else \
            "the balancer kept it up"
        back = (f"not back within {REJOIN_WITHIN_S:.0f} s" if up is None else
                f"rejoined {fmt_s(up - resumed)} after SIGCONT" if down else "up after SIGCONT")
        print(f"  hung {node} (SIGSTOP) at {self.at(stopped)} for {resumed - stopped:.1f}s: "
              f"{seen}; {back}", flush=True)

    def kill_db(self) -> None:
        self.cluster.kill("secantusd")
        self.db_kills.append(time.time())
        print(f"  killed the database at {self.at(self.db_kills[-1])}", flush=True)


def watch_recovery(balancer: Balancer, node: str, addr: str, killed_at: float):
    """Times (epoch seconds) at which the balancer marked `node` down, the node answered
    /healthz again, and the balancer took it back; None for what did not happen."""
    down = restarted = up = None
    while time.time() - killed_at < REJOIN_WITHIN_S and up is None:
        state = balancer.node_state(node)
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
