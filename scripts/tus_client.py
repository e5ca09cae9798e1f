"""A small tus 1.0 client for the failover drill (drill.py), on http.client alone.

It does what tuspy and tus-js-client do: creation (`POST /uploads` with Upload-Length and
the `filename` in Upload-Metadata, which names the file the finished upload becomes), then
PATCHes of `application/offset+octet-stream` at Upload-Offset. On any error it asks the
server where to resume (HEAD of the upload URL: Upload-Offset) and goes on from there; a
resume is not a failure, tus clients resume by design. An upload that makes no progress
for `stall_s` seconds, whose upload URL is gone, or whose finished file does not have the
bytes it sent (`check_file`), is given up: `Stalled`.

(Named tus_client, not tusclient: that is tuspy's package, installed in .venv for tests.)
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import time
import urllib.parse
from typing import Callable, Iterator

VERSION = "1.0.0"
CHUNK = 16 * 1024 * 1024  # bytes per PATCH, as in the README's tuspy example
RETRY_DELAY_S = 0.5  # between a failed request and the HEAD that resumes

Blocks = Callable[[int], Iterator[bytes]]  # the file's bytes from an offset to its end


class Stalled(Exception):
    """The upload gave up: no progress for too long, its URL gone, or a wrong digest.
    `sent_digest` is the SHA-256 of the file when every byte had gone out (the server may
    still complete it), else None."""

    sent_digest: str | None = None


class Trouble(Exception):
    """One request that did not go as tus says; the upload resumes after it."""


class RunningDigest:
    """SHA-256 of the bytes sent, each counted once though a resume sends some again."""

    def __init__(self):
        self.sha = hashlib.sha256()
        self.upto = 0

    def feed(self, at: int, data: bytes) -> None:
        skip = self.upto - at
        if 0 <= skip < len(data):
            self.sha.update(memoryview(data)[skip:])
            self.upto = at + len(data)


class TusClient:
    """Uploads to `/uploads` at host:port, sending `headers` (Authorization) on every request.

    `on_resume(reason)` is called for each resume, with what went wrong."""

    def __init__(self, host: str, port: int, headers: dict[str, str], stall_s: float = 15.0,
                 timeout: float = 60.0, on_resume: Callable[[str], None] = lambda why: None):
        self.host, self.port, self.headers = host, port, headers
        self.stall_s, self.timeout, self.on_resume = stall_s, timeout, on_resume

    def upload(self, name: str, size: int, blocks: Blocks) -> str:
        """Uploads `size` bytes as file `name`; their SHA-256 once the server holds them all
        (its acknowledgement: HEAD says so from then on). Raises Stalled."""
        digest = RunningDigest()
        try:
            return self.send(name, size, blocks, digest)
        except Stalled as e:
            if digest.upto == size:
                e.sent_digest = digest.sha.hexdigest()
            raise

    def send(self, name: str, size: int, blocks: Blocks, digest: RunningDigest) -> str:
        path, offset, resume, last = None, 0, False, "none"
        progress_at = time.monotonic()
        while True:
            try:
                if path is None:
                    path, moved_to = self.create(name, size), 0
                    progress_at = time.monotonic()
                elif resume:
                    moved_to, resume = self.head(path), False
                else:
                    moved_to = self.patch(path, offset, size, blocks, digest)
            except Trouble as e:
                last = str(e)
                if resume or path is None:  # a HEAD or the creation failed: nothing known moved
                    self.check_stall(progress_at, last)
                self.on_resume(last)
                resume = path is not None
                time.sleep(RETRY_DELAY_S)
                continue
            if moved_to > offset:
                progress_at = time.monotonic()
            offset = moved_to
            if offset >= size:
                return digest.sha.hexdigest()
            # A failed PATCH is always followed by a HEAD: the server may have kept its bytes.
            self.check_stall(progress_at, last)

    def check_stall(self, progress_at: float, last: str) -> None:
        if time.monotonic() - progress_at > self.stall_s:
            raise Stalled(f"tus no progress for {self.stall_s:.0f} s (last error: {last})")

    def check_file(self, name: str, want: str) -> None:
        """The finished upload is the file `name`, with the SHA-256 `want` (its ETag).
        Raises Stalled."""
        progress_at = time.monotonic()
        while True:
            try:
                etag = self.file_etag(name)
                if etag != f'"{want}"':
                    raise Stalled("tus upload finished with a wrong digest")
                return
            except Trouble as e:
                self.check_stall(progress_at, f"upload finished; {e}")
                time.sleep(RETRY_DELAY_S)

    # --- one request each -------------------------------------------------------------------

    def conn(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def request(self, method: str, path: str, headers: dict[str, str],
                body: Iterator[bytes] | None = None) -> http.client.HTTPResponse:
        """One request, its body streamed; the answer read to its end."""
        c = self.conn()
        try:
            c.putrequest(method, path)
            for k, v in {**self.headers, "Tus-Resumable": VERSION, **headers}.items():
                c.putheader(k, v)
            c.endheaders()
            for piece in body or ():
                c.send(piece)
            r = c.getresponse()
            r.read()
            return r
        except (OSError, http.client.HTTPException) as e:
            raise Trouble(f"tus {method} {type(e).__name__}") from e
        finally:
            c.close()

    def create(self, name: str, size: int) -> str:
        """POST /uploads; the upload URL's path (the balancer serves every upload)."""
        meta = "filename " + base64.b64encode(name.encode()).decode()
        r = self.request("POST", "/uploads", {"Upload-Length": str(size),
                                              "Upload-Metadata": meta, "Content-Length": "0"})
        if r.status != 201 or not r.getheader("Location"):
            raise Trouble(f"tus POST {r.status}")
        return urllib.parse.urlsplit(r.getheader("Location")).path

    def head(self, path: str) -> int:
        """The upload's durable offset."""
        r = self.request("HEAD", path, {})
        if r.status in (404, 410):
            raise Stalled(f"tus HEAD {r.status}: the upload is gone")
        if r.status != 200:
            raise Trouble(f"tus HEAD {r.status}")
        return upload_offset(r)

    def patch(self, path: str, offset: int, size: int, blocks: Blocks,
              digest: RunningDigest) -> int:
        """PATCH up to CHUNK bytes at `offset`; the offset the server then reports."""
        n = min(CHUNK, size - offset)
        r = self.request("PATCH", path, {"Upload-Offset": str(offset), "Content-Length": str(n),
                                         "Content-Type": "application/offset+octet-stream"},
                         body=pieces(blocks(offset), offset, n, digest))
        if r.status != 204:
            raise Trouble(f"tus PATCH {r.status}")
        return upload_offset(r)

    def file_etag(self, name: str) -> str | None:
        r = self.request("HEAD", "/files/" + urllib.parse.quote(name), {})
        if r.status != 200:
            raise Trouble(f"tus finished, HEAD of the file {r.status}")
        return r.getheader("ETag")


def pieces(blocks: Iterator[bytes], offset: int, n: int, digest: RunningDigest):
    """The first `n` bytes of `blocks` (which start at `offset`), fed to `digest` as sent."""
    sent = 0
    for block in blocks:
        piece = block[: n - sent]
        digest.feed(offset + sent, piece)
        yield piece
        sent += len(piece)
        if sent == n:
            return


def upload_offset(r: http.client.HTTPResponse) -> int:
    try:
        return int(r.getheader("Upload-Offset", ""))
    except ValueError as e:
        raise Trouble(f"tus {r.status} without a valid Upload-Offset") from e
