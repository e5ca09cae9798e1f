"""The local speedbox cluster under supervisord, generated from cluster.toml.

Run through scripts/cluster, which installs what is missing first. Commands:
  up [--with-prometheus [--prometheus-listen 127.0.0.1:9090]] [--fast-db]
                     build, generate the supervisor config, start or update everything;
                     with --with-prometheus also a Prometheus scraping every process each
                     second (kept by later `up`s until `down`); with --fast-db the
                     embedded database is secantusd-rs instead of secantusd-py (see README)
  down               stop everything (database files survive under [mongodb] data_dir)
  status             supervisor's view, the balancer's /_cluster view, Prometheus' address
  restart NAME       restart one program (secantusd, balancer, node-1, ...)
  kill NAME          SIGKILL one program (for drills; supervisor restarts it)
  logs NAME [-f]     a program's log
  drill              failover drill: load (PUT, GET, tus) + SIGKILLs and hangs of nodes, then
                     verify every acknowledged upload; fails on client-visible failures
  token [--scope read,write] [--prefix P] [--ttl 1h] [--page]
                     mint a bearer token (access control on); prints it alone, or with
                     --page the upload page's address carrying it
  sign NAME [--method GET|PUT] [--ttl 15m] [--max-bytes N] [--sha256 HEX]
                     a signed link to NAME (or the files under NAME/), printed as a URL
  prometheus-config --out DIR [--listen ADDR] [--watch]
                     write prometheus.yml and its file_sd targets for this cluster into DIR
                     and print the command line that runs Prometheus on them (see
                     prometheus.py); --watch keeps rewriting them as the config changes
Every command takes --config PATH (default ./cluster.toml). Clusters with different
config files run side by side: each gets its own run/ and logs/ directories.

With [auth] enabled, `up` creates every missing key file of [auth] keys (a random key,
directory 0700, file 0600; never overwritten), and status, up and drill send an admin
token they mint themselves.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import prometheus
from probe import http_ok

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv" / "bin"


class Cluster:
    def __init__(self, config: Path):
        self.config = config.resolve()
        if not self.config.exists():
            sys.exit(f"error: {self.config} not found")
        try:
            self.cfg = tomllib.loads(self.config.read_text())
        except tomllib.TOMLDecodeError as e:
            sys.exit(f"error: {self.config}: {e}")
        default = self.config == (ROOT / "cluster.toml").resolve()
        tag = "" if default else self.config.stem
        self.run_dir = ROOT / "run" / (tag or "default")
        self.log_dir = ROOT / "logs" / tag if tag else ROOT / "logs"
        self.conf = self.run_dir / "supervisord.conf"
        # Prometheus' files and database (`up --with-prometheus`); `listen` in it holds its
        # address while it is part of this cluster.
        self.prom_dir = self.run_dir / "prometheus"
        self.sock = self.run_dir / "supervisor.sock"
        mongo = self.cfg.get("mongodb", {})
        self.embedded = bool(mongo.get("embedded", False))
        self.data_dir = (self.config.parent / mongo.get("data_dir", "data/db")).resolve()
        self.db_port = embedded_port(mongo.get("uri", "")) if self.embedded else None
        # Which SecantusDB server wrote data_dir (py or rs): their files are not each
        # other's, so the kind is chosen once, by the first `up` (`--fast-db`: rs).
        self.db_kind_file = self.data_dir.parent / f"{self.data_dir.name}.server"
        self.balancer_listen = self.cfg.get("balancer", {}).get("listen", "127.0.0.1:3000")
        self.nodes = [n["id"] for n in self.cfg.get("nodes", [])]
        auth = self.cfg.get("auth") or {}
        self.auth_on = bool(auth.get("enabled", False))
        # Key files named by [auth] keys, relative to the config file (as the nodes read them).
        self.key_files = [(k.get("id", "?"), self.config.parent / k.get("secret_file", ""))
                          for k in auth.get("keys", []) if k.get("secret_file")]
        self._token: str | None = None

    # --- binaries and tokens ----------------------------------------------------------------

    @staticmethod
    def bin(name: str) -> Path:
        # SPEEDBOX_PROFILE=debug runs the test build (the test suite's drill uses it).
        return ROOT / "target" / os.environ.get("SPEEDBOX_PROFILE", "release") / name

    def ensure_keys(self) -> bool:
        """Creates every missing key file of [auth] keys with a random key (64 hex digits):
        missing directories 0700, the file 0600. An existing file is never touched. Returns
        whether it created one."""
        created = False
        for key_id, path in self.key_files:
            if path.exists():
                mode = path.stat().st_mode & 0o777
                if mode & 0o077:
                    print(f"warning: key file {path} is readable by others (mode {mode:04o}); "
                          f"chmod 600 it")
                continue
            missing = [d for d in reversed(path.parents) if not d.exists()]
            for d in missing:
                d.mkdir(mode=0o700)
                d.chmod(0o700)  # whatever the umask
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.fchmod(fd, 0o600)
                os.write(fd, (secrets.token_hex(32) + "\n").encode())
            finally:
                os.close(fd)
            print(f"created key {key_id} in {path} (mode 0600)")
            created = True
        return created

    def mint(self, sub: str = "cli", scope: str = "read", prefix: str = "",
             max_bytes: int | None = None, ttl: str = "1h", jti: str | None = None,
             extra: list[str] | None = None) -> str:
        """A token from speedbox-token (the secret stays in its file, off every command line)."""
        if not self.auth_on:
            sys.exit(f"error: {self.config}: [auth] is not enabled, so the cluster is open and "
                     f"takes no token")
        for key_id, path in self.key_files:
            if not path.exists():
                sys.exit(f"error: key file {path} ({key_id}) does not exist yet; "
                         f"`scripts/cluster up` creates it")
        exe = self.bin("speedbox-token")
        if not exe.exists():
            debug = exe.parent.name == "debug"
            sys.exit(f"error: {exe} not found; build it with scripts/setup{' --debug' if debug else ''}"
                     f" (or cargo build --workspace --bins{'' if debug else ' --release'})")
        cmd = [str(exe), "--config", str(self.config), "--sub", sub, "--scope", scope,
               "--prefix", prefix, "--ttl", ttl]
        if max_bytes is not None:
            cmd += ["--max-bytes", str(max_bytes)]
        if jti is not None:
            cmd += ["--jti", jti]
        cmd += extra or []
        out = subprocess.run(cmd, text=True, capture_output=True, check=False)
        if out.returncode != 0:
            sys.exit(out.stderr.strip() or f"error: speedbox-token exited with {out.returncode}")
        return out.stdout.strip()

    def auth_headers(self, ttl_s: float = 600) -> dict[str, str]:
        """`Authorization: Bearer` with this script's own token (read, write, admin), minted once
        per run, valid `ttl_s` seconds; no header when access control is off."""
        if not self.auth_on:
            return {}
        if self._token is None:
            self._token = self.mint(sub="scripts-cluster", scope="read,write,admin",
                                    ttl=f"{max(60, int(ttl_s))}s")
        return {"Authorization": f"Bearer {self._token}"}

    def base_url(self) -> str:
        """The balancer's address as a client on this machine reaches it."""
        return f"http://{prometheus.local_addr(self.balancer_listen)}"

    def page_url(self, token: str) -> str:
        return f"{self.base_url()}/#token={token}"

    # --- supervisor -------------------------------------------------------------------------

    def programs(self) -> dict[str, str]:
        progs: dict[str, str] = {}
        if self.embedded:
            progs["secantusd"] = (
                f"{ROOT / 'scripts' / 'secantusdb'} --port {self.db_port}"
                f" --dir {self.run_dir} --storage-path {self.data_dir} --db {self.db_kind()}"
            )
        for node in self.nodes:
            progs[node] = f"{self.bin('speedbox-node')} --config {self.config} --id {node}"
        progs["balancer"] = f"{self.bin('speedbox-balancer')} --config {self.config}"
        listen = self.prometheus_listen()
        if listen:
            progs["prometheus"] = " ".join(prometheus.command(self.prom_dir, listen))
            # The watcher that keeps the targets in step with live edits of the config.
            progs["prometheus-targets"] = (
                f"{ROOT / 'scripts' / 'cluster'} prometheus-config --config {self.config}"
                f" --out {self.prom_dir} --listen {listen} --watch"
            )
        return progs

    def prometheus_listen(self) -> str | None:
        """Prometheus' address while it is part of this cluster (from `up --with-prometheus`
        until `down`), else None."""
        marker = self.prom_dir / "listen"
        if not marker.exists():
            return None
        return marker.read_text().strip() or None

    def start_prometheus(self, listen: str) -> None:
        """Generates Prometheus' files with a new token and remembers its address, so that
        programs() lists it. A running Prometheus whose prometheus.yml changed ([auth]
        turned on or off) is told to reload it."""
        if shutil.which("prometheus") is None:
            sys.exit("error: prometheus not found: scripts/setup --with-prometheus installs it")
        running = self.running() and self.pid("prometheus") is not None
        if not (running and listen == self.prometheus_listen()) and port_taken(listen):
            sys.exit(f"error: {listen} is taken (by another cluster's Prometheus, or Debian's "
                     f"own prometheus service: `systemctl disable --now prometheus`); pick "
                     f"another address with --prometheus-listen")
        if prometheus.generate(self, self.prom_dir, fresh_token=True) and running:
            self.reload_prometheus()
        (self.prom_dir / "listen").write_text(listen + "\n")

    def reload_prometheus(self) -> None:
        """SIGHUP: Prometheus re-reads prometheus.yml (file_sd files need no reload)."""
        if self.running() and self.pid("prometheus") is not None:
            self.ctl("signal", "HUP", "prometheus")

    def write_conf(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        lines = [
            "; generated by scripts/cluster from " + str(self.config) + "; do not edit",
            "[unix_http_server]",
            f"file={self.sock}",
            "[supervisord]",
            f"logfile={self.log_dir / 'supervisord.log'}",
            f"pidfile={self.run_dir / 'supervisord.pid'}",
            f"directory={ROOT}",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "[supervisorctl]",
            f"serverurl=unix://{self.sock}",
        ]
        priority = {"secantusd": 10, "balancer": 30, "prometheus": 40, "prometheus-targets": 40}
        for name, command in self.programs().items():
            lines += [
                f"[program:{name}]",
                f"command={command}",
                f"priority={priority.get(name, 20)}",
                "autorestart=true",
                "startsecs=1",
                "startretries=100",
                "stopsignal=TERM",
                # secantusd once in ~70 stops ignored SIGTERM; supervisor escalates to SIGKILL.
                f"stopwaitsecs={35 if name != 'secantusd' else 10}",
                "redirect_stderr=true",
                f"stdout_logfile={self.log_dir / (name + '.log')}",
                "stdout_logfile_maxbytes=50MB",
                "stdout_logfile_backups=5",
                "environment=RUST_LOG=\"info\"",
            ]
        self.conf.write_text("\n".join(lines) + "\n")

    def ctl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(VENV / "supervisorctl"), "-c", str(self.conf), *args],
            text=True,
            capture_output=True,
            check=False,
        )

    def running(self) -> bool:
        return self.sock.exists() and self.ctl("pid").returncode == 0

    # --- commands ---------------------------------------------------------------------------

    def db_kind(self) -> str:
        """The embedded server this cluster runs: the one that wrote data_dir, else py."""
        try:
            return self.db_kind_file.read_text().strip() or "py"
        except FileNotFoundError:
            return "py"

    def choose_db(self, fast: bool) -> None:
        """Records the embedded server for data_dir (rs with `fast`); refuses to switch on
        data the other one wrote."""
        want, have = ("rs" if fast else None), self.db_kind()
        written = self.data_dir.exists() and any(self.data_dir.iterdir())
        if want and want != have and written:
            sys.exit(f"error: {self.data_dir} holds secantusd-{have}'s files; the servers cannot "
                     f"read each other's. Move the data (mongodump, then mongorestore into an "
                     f"empty data_dir) or point [mongodb] data_dir elsewhere")
        if want or not written:
            self.data_dir.parent.mkdir(parents=True, exist_ok=True)
            self.db_kind_file.write_text((want or have) + "\n")

    def up(self, prometheus_listen: str | None = None, fast_db: bool = False) -> None:
        """Starts or updates everything; with `prometheus_listen` (or a Prometheus already
        part of the running cluster) Prometheus too; `fast_db` runs secantusd-rs."""
        if self.embedded:
            self.choose_db(fast_db)
            if self.db_kind() == "rs" and not (ROOT / ".tools/bin/secantusd-rs").exists():
                sys.exit("error: this cluster's database is secantusd-rs, which is not built: "
                         "run scripts/cluster up --fast-db")
        # Before anything starts: a node whose key file is missing refuses to start. Running
        # processes pick a new key file up by themselves within a second.
        self.ensure_keys()
        if prometheus_listen is None and not self.running():
            # Left by a cluster that was never brought down (a reboot): a plain `up` of a
            # stopped cluster starts without Prometheus, as after `down`.
            (self.prom_dir / "listen").unlink(missing_ok=True)
        listen = prometheus_listen or self.prometheus_listen()
        if listen:
            self.start_prometheus(listen)
        self.write_conf()
        if self.embedded:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.running():
            subprocess.run([str(VENV / "supervisord"), "-c", str(self.conf)], check=True)
            print(f"supervisord started ({self.conf})")
        else:
            self.drain_removed_nodes()
            out = self.ctl("update")
            print(out.stdout.strip() or "supervisor config unchanged")
        self.wait_ready()
        self.status()

    def drain_removed_nodes(self) -> None:
        """Removed nodes keep running until the balancer has drained them."""
        out = self.ctl("status").stdout
        running = {line.split()[0] for line in out.splitlines() if line.strip()}
        removed = running - set(self.programs())
        if not removed:
            return
        print(f"waiting for the balancer to drain {', '.join(sorted(removed))}")
        deadline = time.time() + 60
        while time.time() < deadline:
            view = self.cluster_view()
            listed = {n["id"] for n in (view or {}).get("nodes", [])}
            if not listed & removed:
                return
            time.sleep(0.5)
        print("drain timeout: stopping them anyway")

    def wait_ready(self) -> None:
        deadline = time.time() + 60
        targets = [(n, f"http://{l}/healthz") for n, l in self.node_addrs()]
        targets.append(("balancer", f"http://{self.balancer_listen}/_cluster"))
        listen = self.prometheus_listen()
        if listen:
            targets.append(("prometheus", f"http://{prometheus.local_addr(listen)}/-/ready"))
        for name, url in targets:
            headers = self.auth_headers() if name == "balancer" else None  # /healthz is open
            while not http_ok(url, headers):
                if time.time() > deadline:
                    print(f"warning: {name} is not answering at {url}; see `scripts/cluster logs {name}`")
                    break
                time.sleep(0.2)
        # Then until it has scraped every target once, so that status shows their health.
        while listen and not prometheus.scraped(listen) and time.time() < deadline:
            time.sleep(0.2)

    def node_addrs(self) -> list[tuple[str, str]]:
        return [(n["id"], n["listen"]) for n in self.cfg.get("nodes", [])]

    def cluster_view(self) -> dict | None:
        """The balancer's /_cluster; None when it does not answer. A refusal (401/403: the
        token does not fit this cluster's keys) exits with the balancer's reason."""
        url = f"http://{self.balancer_listen}/_cluster"
        try:
            req = urllib.request.Request(url, headers=self.auth_headers())
            with urllib.request.urlopen(req, timeout=2) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:
            if e.code in (401, 403):
                sys.exit(f"error: the balancer refused {url}: {e.code} {e.read()[:200].decode(errors='replace')}")
            return None
        except OSError:
            return None

    def down(self) -> None:
        if not self.running():
            print("cluster is not running")
            return
        self.ctl("stop", "balancer")  # stop taking requests first; it drains
        self.ctl("stop", "all")
        self.ctl("shutdown")
        print("cluster stopped (data kept in %s)" % self.data_dir)
        if self.prometheus_listen():
            # The next `up` starts without Prometheus unless asked again; its token, a
            # credential, goes too (`up` mints a new one).
            (self.prom_dir / "listen").unlink()
            (self.prom_dir / "prometheus.token").unlink(missing_ok=True)
            print(f"prometheus stopped (its data kept in {self.prom_dir / 'data'})")

    def status(self) -> None:
        if not self.running():
            print("cluster is not running")
            return
        print(self.ctl("status").stdout.rstrip())
        if self.auth_on:
            print(f"\naccess control: on (keys {', '.join(k for k, _ in self.key_files)}; "
                  f"scripts/cluster token mints tokens)")
        else:
            print("\naccess control: off -- the cluster is OPEN: anyone who reaches it may read, "
                  "overwrite and delete every file ([auth] in the config)")
        self.prometheus_status()
        view = self.cluster_view()
        if view is None:
            print("\nbalancer: not answering")
            return
        print(f"\nbalancer {self.balancer_listen} ({view.get('algorithm', '?')}):")
        for n in view.get("nodes", []):
            latency = n.get("last_check_latency_ms")
            print(
                f"  {n['id']:<10} {n['address']:<22} {n['state']:<17} in_flight={n['in_flight']:<4}"
                f" failures={n['consecutive_failures']:<3} latency={latency}ms"
            )

    def prometheus_status(self) -> None:
        listen = self.prometheus_listen()
        if listen:
            url = f"http://{prometheus.local_addr(listen)}"
            print(f"\nprometheus {url}: {prometheus.summary(listen)}")

    def restart(self, name: str) -> None:
        print(self.ctl("restart", name).stdout.rstrip())

    def pid(self, name: str) -> int | None:
        """The process id of program `name` under supervisor; None when it is not running."""
        pid = self.ctl("pid", name).stdout.strip()
        return int(pid) if pid.isdigit() and pid != "0" else None

    def kill(self, name: str) -> None:
        pid = self.pid(name)
        if pid is None:
            sys.exit(f"error: {name} is not running ({self.ctl('pid', name).stdout.strip()})")
        os.kill(pid, signal.SIGKILL)
        print(f"SIGKILLed {name} (pid {pid}); supervisor will restart it")

    def logs(self, name: str, follow: bool) -> None:
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            sys.exit(f"error: no log {path}")
        os.execvp("tail", ["tail", "-n", "100", *(["-F"] if follow else []), str(path)])


def port_taken(listen: str) -> bool:
    """Whether something listens at `listen` already (a second Prometheus could not bind)."""
    host, port = prometheus.local_addr(listen).rsplit(":", 1)
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=1):
            return True
    except OSError:
        return False


def embedded_port(uri: str) -> int:
    hostport = uri.removeprefix("mongodb://").split("/")[0].split("?")[0]
    try:
        return int(hostport.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        sys.exit(f"error: [mongodb] uri {uri!r} must be mongodb://127.0.0.1:PORT when embedded = true")


def main() -> None:
    parser = argparse.ArgumentParser(prog="scripts/cluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=Path("cluster.toml"))
    # --config is accepted after the command too (`scripts/cluster up --config x.toml`).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, default=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", parents=[common])
    up.add_argument("--with-prometheus", action="store_true",
                    help="also run Prometheus, scraping the balancer and every node each second")
    up.add_argument("--prometheus-listen", metavar="ADDR",
                    help=f"Prometheus' address (default {prometheus.LISTEN}); implies "
                         f"--with-prometheus")
    up.add_argument("--fast-db", action="store_true",
                    help="run the embedded database on secantusd-rs (built once by scripts/setup "
                         "--fast-db, about 10 minutes): about 4x the small-PUT rate of the "
                         "default secantusd-py; chosen for good by the first up on a data_dir")
    sub.add_parser("down", parents=[common])
    sub.add_parser("status", parents=[common])
    for cmd in ("restart", "kill"):
        sub.add_parser(cmd, parents=[common]).add_argument("name")
    drill = sub.add_parser("drill", parents=[common], help="failover drill")
    drill.add_argument("--duration", type=float, default=60, help="seconds of load (default 60)")
    drill.add_argument("--kills", type=int, default=3, help="nodes to SIGKILL, one after another")
    drill.add_argument("--hangs", type=int, default=0,
                       help="nodes to SIGSTOP for --hang-seconds, then SIGCONT (between the kills)")
    drill.add_argument("--hang-seconds", type=float, default=5, help="how long a hang lasts (5)")
    drill.add_argument("--kill-db", action="store_true", help="also SIGKILL the embedded database")
    drill.add_argument("--sizes", default="1K,64K,1M,8M,64M,256M",
                       help="file sizes to mix, up to G: e.g. 1K,1M,64M,1G")
    drill.add_argument("--workers", type=int, default=4, help="concurrent PUT/GET clients")
    drill.add_argument("--tus-workers", type=int, default=1, help="concurrent tus clients (1)")
    drill.add_argument("--allow", default="", metavar="KIND[,KIND]",
                       help="failure kinds reported but not failing the run: get_cut, "
                            "get_failed, put_failed, tus_stalled")
    drill.add_argument("--seed", type=int, default=1)
    token = sub.add_parser("token", parents=[common], help="mint a bearer token")
    token.add_argument("--sub", default="cli", help="who holds it (default cli)")
    token.add_argument("--scope", default="read", help="read, write, delete, admin, comma-separated")
    token.add_argument("--prefix", default="", help="names it covers: those starting with this")
    token.add_argument("--max-bytes", type=int, help="the largest upload it may make")
    token.add_argument("--ttl", default="1h", help="how long it is valid: 90, 15m, 1h, 2d")
    token.add_argument("--jti", help="its id (random if not given)")
    sign = sub.add_parser("sign", parents=[common], help="print a signed link")
    sign.add_argument("name", help="a file's name, or a prefix ending in /")
    sign.add_argument("--method", default="GET", help="GET (default) or PUT")
    sign.add_argument("--ttl", default="15m", help="how long it works: 90, 15m, 1h, 2d")
    sign.add_argument("--max-bytes", type=int, help="PUT links: the largest upload stored")
    sign.add_argument("--sha256", help="PUT links: the digest the upload must have")
    sign.add_argument("--sub", default="cli", help="who signs it (default cli)")
    token.add_argument("--page", action="store_true",
                       help="print the upload page's address with the token instead")
    prom = sub.add_parser("prometheus-config", parents=[common],
                          help="write prometheus.yml and its targets for this cluster")
    prom.add_argument("--out", type=Path, required=True, help="the directory to write into")
    prom.add_argument("--listen", default=prometheus.LISTEN,
                      help=f"the address in the printed command line (default {prometheus.LISTEN})")
    prom.add_argument("--watch", action="store_true",
                      help="keep running: rewrite the files whenever the config changes")
    logs = sub.add_parser("logs", parents=[common])
    logs.add_argument("name")
    logs.add_argument("-f", "--follow", action="store_true")
    args = parser.parse_args()
    cluster = Cluster(args.config)
    match args.cmd:
        case "up":
            listen = args.prometheus_listen or (prometheus.LISTEN if args.with_prometheus else None)
            cluster.up(listen, args.fast_db)
        case "down":
            cluster.down()
        case "status":
            cluster.status()
        case "restart":
            cluster.restart(args.name)
        case "kill":
            cluster.kill(args.name)
        case "logs":
            cluster.logs(args.name, args.follow)
        case "sign":
            extra = ["--link", args.name, "--method", args.method]
            if args.sha256:
                extra += ["--sha256", args.sha256]
            path = cluster.mint(args.sub, "read", "", args.max_bytes, args.ttl, None, extra)
            print(cluster.base_url() + path)
        case "prometheus-config":
            out = args.out.resolve()
            if args.watch:
                # Under supervisord (`up --with-prometheus`): Prometheus is its sibling.
                reload = cluster.reload_prometheus if out == cluster.prom_dir else (lambda: None)
                prometheus.watch(lambda: Cluster(args.config), out, reload)
            if prometheus.generate(cluster, out, fresh_token=True) and out == cluster.prom_dir:
                cluster.reload_prometheus()
            print(" ".join(prometheus.command(out, args.listen)))
        case "token":
            tok = cluster.mint(args.sub, args.scope, args.prefix, args.max_bytes, args.ttl, args.jti)
            print(cluster.page_url(tok) if args.page else tok)
        case "drill":
            import drill

            try:
                opts = drill.Options(
                    sizes=drill.parse_sizes(args.sizes), duration=args.duration,
                    kills=args.kills, hangs=args.hangs, hang_seconds=args.hang_seconds,
                    kill_db=args.kill_db, workers=args.workers, tus_workers=args.tus_workers,
                    seed=args.seed, allow=drill.parse_allow(args.allow))
            except ValueError as e:
                sys.exit(f"error: {e}")
            if not cluster.running():
                sys.exit("error: the cluster is not running (scripts/cluster up)")
            sys.exit(drill.run(cluster, opts))


if __name__ == "__main__":
    main()
