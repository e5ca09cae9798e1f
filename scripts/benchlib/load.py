"""The load generators: curl for large transfers (PUT, and tus), tuspy, wrk for small
requests. Each run checks what it moved (status, sizes, and the node's SHA-256 of an upload)
and raises `TransferError` when a transfer was wrong; every run has a timeout and stops by itself."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

TIMEOUT = 900  # seconds for any one transfer or wrk run
# The tus client the integration tests drive (tuspy; scripts/setup --test-tools installs it).
TUSPY_CLIENT = Path(__file__).resolve().parents[2] / "tests" / "clients" / "tuspy_upload.py"


class TransferError(RuntimeError):
    pass


def _curl(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        ["curl", "-sS", "--max-time", str(TIMEOUT), *args],
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


def tus_upload(base: str, name: str, file: Path, size: int, sha256: str) -> float:
    """tus by curl: POST /uploads (creation), then the whole file in one PATCH. Checks the
    204, the bytes sent and the stored file's SHA-256; returns the PATCH's time_total."""
    meta = "filename " + base64.b64encode(name.encode()).decode()
    created = subprocess.run(
        ["curl", "-sS", "-f", "--max-time", "60", "-D", "-", "-o", "/dev/null", "-X", "POST",
         "-H", "Tus-Resumable: 1.0.0", "-H", f"Upload-Length: {size}", "-H", f"Upload-Metadata: {meta}",
         f"{base}/uploads"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    location = next((line.split(":", 1)[1].strip() for line in created.stdout.splitlines()
                     if line.lower().startswith("location:")), None)
    if created.returncode != 0 or not location:
        raise TransferError(f"POST {base}/uploads: curl exited {created.returncode}, no Location: "
                            f"{created.stderr.strip()}")
    url = urllib.parse.urljoin(f"{base}/uploads", location)
    proc = _curl(["-H", "Expect:", "-X", "PATCH", "-H", "Tus-Resumable: 1.0.0", "-H", "Upload-Offset: 0",
                  "-H", "Content-Type: application/offset+octet-stream", "-T", str(file), "-o", "/dev/null",
                  "-w", "\n%{http_code} %{size_upload} %{time_total}", url])
    _, (code, sent, secs) = _finish(proc, f"PATCH {url}")
    if code != "204" or int(sent) != size:
        raise TransferError(f"PATCH {url}: status {code}, sent {sent}, expected 204 and {size}")
    check_stored(f"{base}/files/{urllib.parse.quote(name)}", size, sha256)
    return float(secs)


def tuspy_upload(base: str, name: str, file: Path, size: int, sha256: str, chunk: int) -> float:
    """tuspy in `chunk`-byte PATCHes (tests/clients/tuspy_upload.py); checks the stored file's
    SHA-256. Returns the client's wall time, interpreter start included."""
    started = time.monotonic()
    out = subprocess.run([sys.executable, str(TUSPY_CLIENT), f"{base}/uploads", str(file), name, str(chunk)],
                         capture_output=True, text=True, timeout=TIMEOUT, check=False)
    secs = time.monotonic() - started
    if out.returncode != 0:
        raise TransferError(f"tuspy {name}: exited {out.returncode}: {out.stderr.strip()[-2000:]}")
    check_stored(f"{base}/files/{urllib.parse.quote(name)}", size, sha256)
    return secs


def check_stored(url: str, size: int, sha256: str) -> None:
    """HEAD: the stored file has this length and SHA-256 (its ETag)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=60) as r:
            length, etag = r.headers.get("Content-Length"), r.headers.get("ETag")
    except OSError as e:
        raise TransferError(f"HEAD {url}: {e}") from e
    if length != str(size) or etag != f'"{sha256}"':
        raise TransferError(f"HEAD {url}: length {length}, ETag {etag}, expected {size} and {sha256}")


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


def wrk(base: str, prefix: str, count: int, script_dir: Path, seconds: int, conns: int, threads: int,
        headers: dict[str, str] | None = None) -> dict:
    """wrk over `count` small files, sending `headers` on every request; requests/s and
    p50/p99 latency (ms). Non-2xx answers, socket errors or timeouts make the run wrong."""
    script = script_dir / "small.lua"
    script.write_text(WRK_SCRIPT % {"count": count, "prefix": prefix})
    extra = [arg for k, v in (headers or {}).items() for arg in ("-H", f"{k}: {v}")]
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--timeout", "10s", "--latency",
         *extra, "-s", script, base],
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


def first_byte_ms(url: str, offset: int, size: int) -> float:
    """Milliseconds from sending `GET url` with `Range: bytes=offset-` on a fresh connection to
    the first body byte (what a video player waits for when it seeks). Checks the 206 and its
    Content-Range against `size`, then drops the connection without reading the rest."""
    parsed = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
    try:
        conn.connect()
        started = time.perf_counter()
        conn.request("GET", parsed.path, headers={"Range": f"bytes={offset}-"})
        r = conn.getresponse()
        first = r.read(1)
        elapsed = (time.perf_counter() - started) * 1000
        want = f"bytes {offset}-{size - 1}/{size}"
        if r.status != 206 or r.getheader("Content-Range") != want or len(first) != 1:
            raise TransferError(f"GET {url} from {offset}: status {r.status}, Content-Range "
                                f"{r.getheader('Content-Range')}, expected 206 and {want}")
        return elapsed
    finally:
        conn.close()
