"""The processes the benchmark starts, and what the OS says about them (/proc).

Only processes started here are ever stopped, by their PID (nginx's workers end with their
master). CPU time and peak RSS come from /proc, never from estimates.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """One started process, its log, and its PID tree."""

    def __init__(self, name: str, popen: subprocess.Popen, log: Path):
        self.name, self.popen, self.log = name, popen, log

    @property
    def pid(self) -> int:
        return self.popen.pid

    def pids(self) -> list[int]:
        """The process and its children (nginx's workers)."""
        return [self.pid, *children(self.pid)]

    def check(self) -> None:
        rc = self.popen.poll()
        if rc is not None:
            tail = self.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.name} exited with {rc}; {self.log}:\n{tail}")


class Procs:
    """Every process the benchmark started; stop_all() ends exactly these."""

    def __init__(self, logdir: Path):
        self.logdir = logdir
        self.started: list[Proc] = []

    def start(self, name: str, argv: list[str]) -> Proc:
        log = self.logdir / f"{name}.log"
        with open(log, "wb") as out:
            popen = subprocess.Popen(
                [str(a) for a in argv],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        proc = Proc(name, popen, log)
        self.started.append(proc)
        return proc

    def check_all(self) -> None:
        for proc in self.started:
            proc.check()

    def stop(self, proc: Proc) -> None:
        if proc.popen.poll() is None:
            proc.popen.send_signal(signal.SIGTERM)
            try:
                proc.popen.wait(10)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait()
        self.started.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.started)):
            self.stop(proc)


def wait_http(url: str, proc: Proc, timeout: float = 60) -> None:
    """Until `url` answers 200 (the process must not die meanwhile)."""
    deadline = time.monotonic() + timeout
    while True:
        proc.check()
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timeout waiting for {url}")
        time.sleep(0.1)


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()  # fields from 3 (state) on


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(_stat_fields(int(entry))[1]) == pid:
                    found.append(int(entry))
            except (OSError, ValueError):
                pass
    return found


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes (all their threads), from /proc/PID/stat."""
    total = 0
    for pid in pids:
        fields = _stat_fields(pid)
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def reset_peak_rss(pids: list[int]) -> None:
    """Resets VmHWM to the current RSS (clear_refs 5, Linux >= 4.0)."""
    for pid in pids:
        Path(f"/proc/{pid}/clear_refs").write_text("5")


def peak_rss_mib(pids: list[int]) -> float:
    """Sum of VmHWM (peak resident set since the last reset) over these processes."""
    kib = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                kib += int(line.split()[1])
    return kib / 1024


def wait_idle(pids: list[int], timeout: float, below: float = 0.05, window: float = 0.5) -> bool:
    """Until these processes together use less than `below` of a core over `window`."""
    deadline = time.monotonic() + timeout
    before = cpu_seconds(pids)
    while time.monotonic() < deadline:
        time.sleep(window)
        after = cpu_seconds(pids)
        if after - before < below * window:
            return True
        before = after
    return False
