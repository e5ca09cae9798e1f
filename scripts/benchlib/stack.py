"""What the benchmark runs against, all on loopback ports of one scratch directory:

- the cluster: SecantusDB, 3 speedbox nodes, and in front of them speedbox-balancer, nginx
  and HAProxy, each in its best honest streaming configuration;
- the proxy-only upstreams: an nginx serving static files (sendfile) and Python upload sinks,
  with the same three proxies in front, so that the proxies' own cost is not hidden behind
  the database.

A `Target` is one way in: "direct" (one upstream, no proxy) or a proxy.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .procs import Proc, Procs, free_port, wait_http

ROOT = Path(__file__).resolve().parents[2]
NODES = 3
# [storage] of the benchmark cluster: a deleted upload's chunks are swept about
# GC_GRACE_SECS + SWEEP_SECS later, and the harness waits for that between measurements.
# (A shorter grace would make every upload heartbeat more often: every grace / 4.)
GC_GRACE_SECS = 8
SWEEP_SECS = 1
SECANTUSDB = ROOT / "scripts" / "secantusdb"  # the database's one command line


def database(kind: str) -> str:
    """How the report names the SecantusDB server `kind` (rs or py), its flags included."""
    out = subprocess.run([SECANTUSDB, "--describe", "--db", kind], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip())
    return out.stdout.strip()


@dataclass
class Target:
    name: str  # direct | balancer | nginx | haproxy
    down_url: str  # base URL for downloads
    up_url: str  # base URL for uploads (the sink pool in the proxy-only workloads)
    down_procs: list[Proc] = field(default_factory=list)  # whose CPU and RSS count
    up_procs: list[Proc] = field(default_factory=list)

    def pids(self, up: bool) -> list[int]:
        return [pid for proc in (self.up_procs if up else self.down_procs) for pid in proc.pids()]


def nginx_user() -> str:
    # As root, nginx's workers need a user; Debian's nginx package creates www-data.
    return "user www-data;" if os.geteuid() == 0 else ""


def nginx_globals(name: str, work: Path) -> str:
    return f"""
{nginx_user()}
worker_processes 2;
daemon off;
pid {work}/{name}.pid;
error_log {work}/{name}.error.log warn;
events {{ worker_connections 4096; }}
"""


def nginx_http_common(name: str, work: Path) -> str:
    temp = work / f"{name}.tmp"
    temp.mkdir(exist_ok=True)
    return f"""
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
"""


def wait_tcp(port: int, proc: Proc, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        proc.check()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"timeout waiting for {proc.name} on port {port}")
            time.sleep(0.1)


class Stack:
    def __init__(self, work: Path, procs: Procs, bins: Path, db: str):
        self.work, self.procs, self.bins = work, procs, bins
        self.db_kind, self.db_label = db, database(db)
        self.db: Proc | None = None
        self.nodes: list[Proc] = []
        self.node_ports: list[int] = []

    # --- the cluster ------------------------------------------------------------------------

    def start_cluster(self) -> None:
        """SecantusDB (through scripts/secantusdb, as scripts/cluster starts it) and the nodes."""
        self.db_port = free_port()
        self.db = self.procs.start(
            "secantusd", [SECANTUSDB, "--db", self.db_kind, "--port", self.db_port, "--dir", self.work]
        )
        wait_tcp(self.db_port, self.db)
        self.db_uri = f"mongodb://127.0.0.1:{self.db_port}"
        self.node_ports = [free_port() for _ in range(NODES)]
        self.balancer_port = free_port()
        self.cluster_toml = self.work / "cluster.toml"
        self.cluster_toml.write_text(
            f'[balancer]\nlisten = "127.0.0.1:{self.balancer_port}"\n'
            f'[mongodb]\nuri = "{self.db_uri}"\nembedded = true\n'
            f"[storage]\ngc_grace_secs = {GC_GRACE_SECS}\nsweep_interval_secs = {SWEEP_SECS}\n"
            + "".join(
                f'[[nodes]]\nid = "node-{i + 1}"\nlisten = "127.0.0.1:{port}"\n'
                for i, port in enumerate(self.node_ports)
            )
        )
        for i in range(NODES):
            node = self.procs.start(
                f"node-{i + 1}",
                [self.bins / "speedbox-node", "--config", self.cluster_toml, "--id", f"node-{i + 1}"],
            )
            self.nodes.append(node)
        for node, port in zip(self.nodes, self.node_ports):
            wait_http(f"http://127.0.0.1:{port}/healthz", node)
        # /healthz answers before a node has created its indexes; an upload racing that
        # index creation can leave SecantusDB 0.7.0b3 spinning at 100 % CPU for good.
        for node in self.nodes:
            wait_log(node, "indexes in place")

    def cluster_targets(self) -> list[Target]:
        """node-1 directly, then the three proxies in front of the three nodes."""
        direct = f"http://127.0.0.1:{self.node_ports[0]}"
        balancer = self.procs.start(
            "balancer", [self.bins / "speedbox-balancer", "--config", self.cluster_toml]
        )
        wait_balancer(self.balancer_port, balancer, NODES)
        pools = {"/": self.node_ports}
        nginx_port, nginx = self.start_nginx_proxy("nginx-cluster", pools)
        haproxy_port, haproxy = self.start_haproxy("haproxy-cluster", pools)
        url = lambda port: f"http://127.0.0.1:{port}"  # noqa: E731
        return [
            Target("direct", direct, direct, [self.nodes[0]], [self.nodes[0]]),
            Target("balancer", url(self.balancer_port), url(self.balancer_port), [balancer], [balancer]),
            Target("nginx", url(nginx_port), url(nginx_port), [nginx], [nginx]),
            Target("haproxy", url(haproxy_port), url(haproxy_port), [haproxy], [haproxy]),
        ]

    # --- the proxy-only upstreams -------------------------------------------------------------

    def proxy_only_targets(self, www: Path) -> list[Target]:
        """nginx serving `www` (sendfile) on 3 ports and 3 upload sinks, directly and through
        each proxy. The proxies send /sink* to the sinks; the balancer has one pool per
        process, so it runs twice (origins, sinks)."""
        origin_ports = [free_port() for _ in range(NODES)]
        self.start_origin(www, origin_ports)
        sink_ports = [free_port() for _ in range(NODES)]
        for i, port in enumerate(sink_ports):
            sink = self.procs.start(
                f"sink-{i + 1}", [sys.executable, Path(__file__).with_name("sink.py"), port]
            )
            wait_http(f"http://127.0.0.1:{port}/healthz", sink)
        b_down_port, b_down = self.start_balancer("balancer-origins", origin_ports)
        b_up_port, b_up = self.start_balancer("balancer-sinks", sink_ports)
        pools = {"/": origin_ports, "/sink": sink_ports}
        nginx_port, nginx = self.start_nginx_proxy("nginx-proxy-only", pools)
        haproxy_port, haproxy = self.start_haproxy("haproxy-proxy-only", pools)
        url = lambda port: f"http://127.0.0.1:{port}"  # noqa: E731
        return [
            Target("direct", url(origin_ports[0]), url(sink_ports[0])),
            Target("balancer", url(b_down_port), url(b_up_port), [b_down], [b_up]),
            Target("nginx", url(nginx_port), url(nginx_port), [nginx], [nginx]),
            Target("haproxy", url(haproxy_port), url(haproxy_port), [haproxy], [haproxy]),
        ]

    def start_origin(self, www: Path, ports: list[int]) -> Proc:
        name = "nginx-origin"
        conf = self.work / f"{name}.conf"
        listens = "".join(f"        listen 127.0.0.1:{p};\n" for p in ports)
        conf.write_text(
            nginx_globals(name, self.work)
            + "http {\n"
            + nginx_http_common(name, self.work)
            + f"""
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    server {{
{listens}        root {www};
        location = /healthz {{ return 200 "ok\\n"; }}
    }}
}}
"""
        )
        proc = self.procs.start(name, ["nginx", "-e", "stderr", "-c", conf])
        for p in ports:
            wait_http(f"http://127.0.0.1:{p}/healthz", proc)
        return proc

    # --- the proxies ------------------------------------------------------------------------

    def start_balancer(self, name: str, ports: list[int]) -> tuple[int, Proc]:
        port = free_port()
        conf = self.work / f"{name}.toml"
        conf.write_text(
            f'[balancer]\nlisten = "127.0.0.1:{port}"\n'
            # required by the file format; the balancer does not connect to it
            '[mongodb]\nuri = "mongodb://127.0.0.1:9"\n'
            + "".join(
                f'[[nodes]]\nid = "{name}-{i + 1}"\nlisten = "127.0.0.1:{p}"\n'
                for i, p in enumerate(ports)
            )
        )
        proc = self.procs.start(name, [self.bins / "speedbox-balancer", "--config", conf])
        wait_balancer(port, proc, len(ports))
        return port, proc

    def start_nginx_proxy(self, name: str, pools: dict[str, list[int]]) -> tuple[int, Proc]:
        """nginx as a streaming reverse proxy, its best honest config: request and response
        buffering off, HTTP/1.1 keep-alive upstreams, least_conn, 64 KiB buffers (with the
        defaults, 4-16 KiB, it moves a few KiB per syscall and reaches a third of this)."""
        port = free_port()
        upstreams = "".join(
            f"    upstream pool{i} {{\n        least_conn;\n"
            + "".join(f"        server 127.0.0.1:{p};\n" for p in ports)
            + "        keepalive 32;\n    }\n"
            for i, ports in enumerate(pools.values())
        )
        locations = "".join(
            f"        location {prefix} {{ proxy_pass http://pool{i}; }}\n"
            for i, prefix in enumerate(pools)
        )
        conf = self.work / f"{name}.conf"
        conf.write_text(
            nginx_globals(name, self.work)
            + "http {\n"
            + nginx_http_common(name, self.work)
            + upstreams
            + f"""
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 0;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_request_buffering off;
        proxy_buffering off;
        proxy_buffer_size 64k;
        proxy_buffers 4 64k;
        proxy_busy_buffers_size 128k;
        client_body_buffer_size 64k;
        proxy_read_timeout 300s;
        proxy_send_timeout 300s;
{locations}    }}
}}
"""
        )
        proc = self.procs.start(name, ["nginx", "-e", "stderr", "-c", conf])
        wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        return port, proc

    def start_haproxy(self, name: str, pools: dict[str, list[int]]) -> tuple[int, Proc]:
        """HAProxy, its best honest config: leastconn, health checks on /healthz, keep-alive
        with server connection reuse, and splice(2) both ways."""
        port = free_port()
        backends = ""
        rules = ""
        for i, (prefix, ports) in enumerate(pools.items()):
            backends += (
                f"backend pool{i}\n    balance leastconn\n    option httpchk GET /healthz\n"
                + "".join(
                    f"    server s{j + 1} 127.0.0.1:{p} check inter 1s fall 3 rise 2\n"
                    for j, p in enumerate(ports)
                )
            )
            if prefix != "/":
                rules += f"    use_backend pool{i} if {{ path_beg {prefix} }}\n"
        conf = self.work / f"{name}.cfg"
        conf.write_text(
            f"""global
    nbthread 2
    maxconn 4000
defaults
    mode http
    option http-keep-alive
    http-reuse safe
    option splice-response
    option splice-request
    timeout connect 5s
    timeout client 300s
    timeout server 300s
frontend fe
    bind 127.0.0.1:{port}
{rules}    default_backend pool0
{backends}"""
        )
        proc = self.procs.start(name, ["haproxy", "-db", "-f", conf])
        wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        time.sleep(2.5)  # rise 2 at inter 1s: every server's first checks are in
        return port, proc


def wait_log(proc: Proc, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in proc.log.read_text(errors="replace"):
        proc.check()
        if time.monotonic() > deadline:
            raise RuntimeError(f"timeout waiting for {text!r} in {proc.log}")
        time.sleep(0.1)


def wait_balancer(port: int, proc: Proc, nodes: int, timeout: float = 30) -> None:
    """Until the balancer's /_cluster shows every node up."""
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{port}/_cluster"
    while True:
        proc.check()
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                states = [n["state"] for n in json.load(r)["nodes"]]
            if states.count("up") == nodes:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timeout waiting for {proc.name}'s nodes to be up ({url})")
        time.sleep(0.2)
