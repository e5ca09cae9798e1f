"""`python sink.py PORT`: the upload sink of the proxy-only workloads.

HTTP/1.1 with keep-alive, one thread per connection. A PUT or POST body (Content-Length or
chunked) is read to its last byte into a 1 MiB buffer and discarded, and only then answered
with `201 {"length": N}`, so a proxy is never cut short by an early reply (nginx's
`return 201` answers before reading the body). `GET /healthz` answers 200.
"""

import socket
import sys
import threading

BUF = 1 << 20


def read_exactly(f, view, n: int) -> None:
    while n > 0:
        got = f.readinto(view[: min(n, BUF)])
        if not got:
            raise EOFError
        n -= got


def handle(conn: socket.socket) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    f = conn.makefile("rb", buffering=65536)
    view = memoryview(bytearray(BUF))
    try:
        while True:
            line = f.readline(65537)
            if not line:
                return
            method, target, _ = line.decode("latin-1").split(" ", 2)
            headers = {}
            while (h := f.readline(65537)) not in (b"\r\n", b"\n", b""):
                key, _, value = h.decode("latin-1").partition(":")
                headers[key.strip().lower()] = value.strip()
            if headers.get("expect", "").lower() == "100-continue":
                conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            length = 0
            if "chunked" in headers.get("transfer-encoding", "").lower():
                while size := int(f.readline(65537).split(b";")[0], 16):
                    read_exactly(f, view, size + 2)  # the chunk and its CRLF
                    length += size
                while f.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
            else:
                length = int(headers.get("content-length", 0))
                read_exactly(f, view, length)
            if method in ("PUT", "POST"):
                status, body = "201 Created", '{"length":%d}' % length
            elif target.startswith("/healthz"):
                status, body = "200 OK", '{"status":"ok"}'
            else:
                status, body = "404 Not Found", '{"error":"not found"}'
            conn.sendall(
                f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\n\r\n{body}".encode()
            )
            if headers.get("connection", "").lower() == "close":
                return
    except (EOFError, ConnectionError, ValueError):
        return
    finally:
        conn.close()


def main() -> None:
    server = socket.create_server(("127.0.0.1", int(sys.argv[1])), backlog=1024)
    while True:
        conn, _ = server.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
