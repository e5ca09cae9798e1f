"""The load generators: curl for large transfers, wrk for small requests. Each run checks
what it moved (status, sizes, and the node's SHA-256 of an upload) and raises
`TransferError` when a transfer was wrong; every run has a timeout and stops by itself."""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import subprocess
import time
from pathlib import Path

TIMEOUT = 900  # seconds for any one transfer or wrk run


class TransferError(RuntimeError):
    pass


def _curl(args: list[str], timeout: float = TIMEOUT) -> subprocess.Popen:
    return subprocess.Popen(
        ["curl", "-sS", "--max-time", str(timeout), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen, what: str) -> tuple[str, list[str]]:
    """The response body (if captured) and the -w fields of the last line."""
    out, err = proc.communicate(timeout=TIMEOUT + 60)
    if proc.returncode != 0:
        raise TransferError(f"{what}: curl exited {proc.returncode}: {err.strip()}")
    body, _, last = out.rpartition("\n")
    return body, last.split()


def start_download(url: str) -> subprocess.Popen:
    return _curl(["-o", "/dev/null", "-w", "\n%{http_code} %{size_download} %{time_total}", url])


def finish_download(proc: subprocess.Popen, url: str, size: int) -> float:
    """Checks the download; returns curl's time_total."""
    _, (code, got, secs) = _finish(proc, f"GET {url}")
    if code != "200" or int(got) != size:
        raise TransferError(f"GET {url}: status {code}, {got} bytes, expected 200 and {size}")
    return float(secs)


def start_upload(url: str, file: Path) -> subprocess.Popen:
    # "Expect:" off: no 100-continue round trip (and no proxy answering it on the node's behalf).
    return _curl(
        ["-H", "Expect:", "-T", str(file), "-w", "\n%{http_code} %{size_upload} %{time_total}", url]
    )


def finish_upload(proc: subprocess.Popen, url: str, size: int, sha256: str | None) -> float:
    """Checks the upload from the answer: the node's length and SHA-256 of what it stored,
    or the sink's count of the bytes it read. Returns curl's time_total."""
    body, (code, sent, secs) = _finish(proc, f"PUT {url}")
    try:
        answer = json.loads(body)
    except ValueError:
        answer = {}
    if code != "201" or int(sent) != size or answer.get("length") != size:
        raise TransferError(f"PUT {url}: status {code}, sent {sent}, answer {body[:300]!r}")
    if sha256 and answer.get("sha256") != sha256:
        raise TransferError(f"PUT {url}: stored sha256 {answer.get('sha256')}, sent {sha256}")
    return float(secs)


def download(url: str, size: int) -> float:
    return finish_download(start_download(url), url, size)


def upload(url: str, file: Path, size: int, sha256: str | None) -> float:
    return finish_upload(start_upload(url, file), url, size, sha256)


def parallel_downloads(urls: list[str], size: int) -> float:
    """All at once; returns the wall time until the last one finished."""
    started = time.monotonic()
    procs = [start_download(u) for u in urls]
    for p, u in zip(procs, urls):
        finish_download(p, u, size)
    return time.monotonic() - started


def parallel_uploads(urls: list[str], file: Path, size: int, sha256: str | None) -> float:
    started = time.monotonic()
    procs = [start_upload(u, file) for u in urls]
    for p, u in zip(procs, urls):
        finish_upload(p, u, size, sha256)
    return time.monotonic() - started


def put_many(base: str, files: list[tuple[str, Path, str]]) -> None:
    """Uploads small files over one keep-alive connection: (path, file, sha256) each."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    for path, file, sha256 in files:
        body = file.read_bytes()
        conn.request("PUT", path, body=body)
        r = conn.getresponse()
        answer = json.loads(r.read() or b"{}")
        if r.status != 201 or answer.get("sha256") != sha256:
            raise TransferError(f"PUT {base}{path}: status {r.status}, answer {answer}")
    conn.close()


def delete(url: str) -> None:
    subprocess.run(["curl", "-sS", "-f", "-o", "/dev/null", "-X", "DELETE", url], check=True, timeout=60)


def sha256_of(url: str) -> str:
    """Downloads `url` and hashes what arrived (the content check before timed runs)."""
    with subprocess.Popen(["curl", "-sS", "-f", url], stdout=subprocess.PIPE) as p:
        h = hashlib.sha256()
        while chunk := p.stdout.read(1 << 20):
            h.update(chunk)
    if p.returncode != 0:
        raise TransferError(f"GET {url}: curl exited {p.returncode}")
    return h.hexdigest()


WRK_SCRIPT = """
-- Cycles through the small files, one sequence per wrk thread.
local i = 0
request = function()
  i = (i + 1) %% %(count)d
  return wrk.format("GET", string.format("%(prefix)s%%03d.bin", i))
end
"""

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk(base: str, prefix: str, count: int, script_dir: Path, seconds: int, conns: int, threads: int) -> dict:
    """wrk over `count` small files; requests/s and p50/p99 latency (ms). Non-2xx answers,
    socket errors or timeouts make the run wrong."""
    script = script_dir / "small.lua"
    script.write_text(WRK_SCRIPT % {"count": count, "prefix": prefix})
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--timeout", "10s", "--latency",
         "-s", script, base],
        capture_output=True, text=True, timeout=seconds + 60,
    )
    text = out.stdout
    if out.returncode != 0 or "Non-2xx" in text or "Socket errors" in text:
        raise TransferError(f"wrk {base}: exit {out.returncode}\n{text}{out.stderr}")
    lat = {
        m.group(1): float(m.group(2)) * _UNITS[m.group(3)]
        for m in re.finditer(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    }
    requests = int(re.search(r"^\s+(\d+) requests in", text, re.M).group(1))
    rps = float(re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M).group(1))
    return {"rps": rps, "requests": requests, "p50_ms": lat["50"], "p99_ms": lat["99"]}
