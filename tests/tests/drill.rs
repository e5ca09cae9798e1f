//! The operator's failover drill, on a small scale, against a cluster started the way users
//! start it: `scripts/cluster up` under a real supervisord, then `scripts/cluster drill`.
//! Access control is on, as in the repository's `cluster.toml`: `up` creates the key file,
//! `scripts/cluster token` mints tokens, and status and the drill send their own.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use speedbox_tests::{free_port, workspace_root};

/// Stops the supervised cluster even when the test fails.
struct Down<'a>(&'a std::path::Path);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = cluster(self.0, &["down"]);
    }
}

fn run(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(workspace_root().join("scripts/cluster"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("SPEEDBOX_PROFILE", "debug")
        .env("SPEEDBOX_SKIP_SETUP", "1")
        .output()
        .expect("run scripts/cluster")
}

fn cluster(config: &Path, args: &[&str]) -> (bool, String) {
    let out = run(config, args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `scripts/cluster ARGS` (`token …`, `sign …`): its stdout, which must be the answer alone
/// on one line.
fn answer(config: &Path, args: &[&str]) -> String {
    let out = run(config, args);
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    assert!(
        out.status.success(),
        "scripts/cluster {args:?} failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.lines().count(), 1, "{stdout:?}");
    stdout.trim().to_owned()
}

/// The status code of one plain HTTP/1.1 request to `addr`, with `Authorization: Bearer
/// <bearer>` when given.
fn status_of(addr: &str, method: &str, path: &str, bearer: Option<&str>, body: &[u8]) -> u16 {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let auth = bearer.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("{method} {addr}{path}: no HTTP answer: {answer:?}"))
}

/// The drill's JSON report: the lines from a `{` alone on its line to the next `}` alone.
fn drill_report(out: &str) -> serde_json::Value {
    let start = out
        .find("\n{\n")
        .unwrap_or_else(|| panic!("no report in:\n{out}"));
    let end = start
        + out[start..]
            .find("\n}\n")
            .unwrap_or_else(|| panic!("no report end in:\n{out}"));
    serde_json::from_str(&out[start + 1..end + 2])
        .unwrap_or_else(|e| panic!("report is not JSON ({e}):\n{out}"))
}

/// Unix permission bits of `path`.
fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// What `scripts/cluster up` and `scripts/cluster status` print, read back: the supervisor's
/// state of each program, and the balancer's view of each node (`id address state …` under
/// `balancer ADDR (ALGORITHM):`).
#[derive(Debug, Default)]
struct Status {
    programs: BTreeMap<String, String>,
    nodes: Vec<(String, String, String)>,
}

fn parse_status(out: &str) -> Status {
    let mut status = Status::default();
    let mut in_view = false;
    for line in out.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if line.starts_with("balancer ") && line.ends_with("):") {
            in_view = true;
        } else if in_view && line.starts_with("  ") && fields.len() >= 3 {
            let [id, address, state] = [fields[0], fields[1], fields[2]].map(str::to_owned);
            status.nodes.push((id, address, state));
        } else if !in_view
            && fields.len() >= 2
            && fields[1].len() >= 4
            && fields[1].bytes().all(|b| b.is_ascii_uppercase())
        {
            // supervisorctl: `NAME  STATE  pid …, uptime …`
            status
                .programs
                .insert(fields[0].to_owned(), fields[1].to_owned());
        }
    }
    status
}

#[test]
fn drill_passes_on_a_supervised_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let tag = format!("drill-{}", free_port());
    let config = dir.path().join(format!("{tag}.toml"));
    let balancer = format!("127.0.0.1:{}", free_port());
    let mut text = format!(
        "[balancer]\nlisten = \"{balancer}\"\nhealth_interval_ms = 250\n\n\
         [mongodb]\nuri = \"mongodb://127.0.0.1:{}\"\nembedded = true\ndata_dir = \"db\"\n\n\
         [auth]\nenabled = true\nkeys = [ {{ id = \"k1\", secret_file = \"secrets/k1.key\" }} ]\n\
         anonymous = []\n\n",
        free_port()
    );
    let nodes: Vec<(String, String)> = (1..=3)
        .map(|i| (format!("node-{i}"), format!("127.0.0.1:{}", free_port())))
        .collect();
    for (id, listen) in &nodes {
        text.push_str(&format!(
            "[[nodes]]\nid = \"{id}\"\nlisten = \"{listen}\"\n\n"
        ));
    }
    std::fs::write(&config, text).unwrap();
    let key_file = dir.path().join("secrets/k1.key");
    assert!(!key_file.exists());
    let down = Down(&config);
    let (ok, out) = cluster(&config, &["up"]);
    assert!(ok, "scripts/cluster up failed:\n{out}");
    // `up` created the missing key: a random 64-hex-digit secret only its owner reads.
    assert!(out.contains("created key k1"), "{out}");
    let key = std::fs::read_to_string(&key_file).unwrap();
    let key = key.trim_end();
    assert!(
        key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()),
        "the key file holds {} bytes, not 64 hex digits",
        key.len()
    );
    assert_eq!(mode(&key_file), 0o600, "key file mode");
    assert_eq!(mode(&dir.path().join("secrets")), 0o700, "secrets/ mode");
    assert!(!out.contains(key), "up printed the secret");
    // Every program started under the supervisor, and the balancer lists every node at its
    // address (a node may still be on its way up: states are waited for below).
    let status = parse_status(&out);
    let programs: Vec<&str> = status.programs.keys().map(String::as_str).collect();
    assert_eq!(
        programs,
        ["balancer", "node-1", "node-2", "node-3", "secantusd"],
        "{out}"
    );
    for (name, state) in &status.programs {
        assert!(state == "RUNNING" || state == "STARTING", "{name}: {out}");
    }
    let listed: Vec<(&str, &str)> = status
        .nodes
        .iter()
        .map(|(id, address, _)| (id.as_str(), address.as_str()))
        .collect();
    let want: Vec<(&str, &str)> = nodes
        .iter()
        .map(|(i, l)| (i.as_str(), l.as_str()))
        .collect();
    assert_eq!(listed, want, "{out}");
    for (id, _, state) in &status.nodes {
        assert!(state == "up" || state == "down", "{id}: {out}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, out) = cluster(&config, &["status"]);
        let status = parse_status(&out);
        let running =
            status.programs.len() == 5 && status.programs.values().all(|s| s == "RUNNING");
        let up = status.nodes.len() == 3 && status.nodes.iter().all(|n| n.2 == "up");
        if ok && running && up {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every program running and every node up after 30 s:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // `up` again on the running cluster keeps the key it made.
    let (ok, out) = cluster(&config, &["up"]);
    assert!(ok, "second scripts/cluster up failed:\n{out}");
    assert!(!out.contains("created key"), "{out}");
    assert_eq!(std::fs::read_to_string(&key_file).unwrap().trim_end(), key);

    // Access control is on, through the balancer and at a node reached directly; /healthz
    // stays open. Tokens from `scripts/cluster token` are accepted within their scope.
    let node = nodes[0].1.as_str();
    assert_eq!(
        status_of(&balancer, "PUT", "/files/auth/x", None, b"x"),
        401
    );
    assert_eq!(status_of(node, "PUT", "/files/auth/x", None, b"x"), 401);
    assert_eq!(status_of(&balancer, "GET", "/_cluster", None, b""), 401);
    assert_eq!(status_of(node, "GET", "/healthz", None, b""), 200);
    let rw = answer(&config, &["token", "--scope", "read,write"]);
    assert_eq!(rw.split('.').count(), 3, "not a JWT: {rw}");
    let put = status_of(&balancer, "PUT", "/files/auth/x", Some(&rw), b"x");
    assert_eq!(put, 201);
    assert_eq!(status_of(node, "GET", "/files/auth/x", Some(&rw), b""), 200);
    assert_eq!(
        status_of(&balancer, "GET", "/_cluster", Some(&rw), b""),
        403
    );
    let admin = answer(&config, &["token", "--scope", "admin", "--ttl", "5m"]);
    assert_eq!(
        status_of(&balancer, "GET", "/_cluster", Some(&admin), b""),
        200
    );
    let page = answer(&config, &["token", "--page"]);
    let page_token = page
        .strip_prefix(&format!("http://{balancer}/#token="))
        .unwrap_or_else(|| panic!("{page}"));
    let listing = status_of(&balancer, "GET", "/files", Some(page_token), b"");
    assert_eq!(listing, 200);
    // A signed link, as `scripts/cluster sign` prints it: GET works without a token.
    let link = answer(&config, &["sign", "auth/x", "--ttl", "5m"]);
    let path = link
        .strip_prefix(&format!("http://{balancer}"))
        .unwrap_or_else(|| panic!("{link}"));
    assert!(path.starts_with("/files/auth/x?sig="), "{path}");
    assert_eq!(status_of(&balancer, "GET", path, None, b""), 200);
    assert_eq!(status_of(node, "GET", path, None, b""), 200);
    assert_eq!(status_of(&balancer, "PUT", path, None, b"y"), 403);

    let (ok, out) = cluster(
        &config,
        &[
            "drill",
            "--duration",
            "25",
            "--kills",
            "3",
            "--hangs",
            "1",
            "--sizes",
            "1K,64K,1M,4M",
            "--workers",
            "3",
        ],
    );
    assert!(ok, "drill failed:\n{out}");
    assert!(out.contains("drill PASSED"), "{out}");
    // The report counts client-visible failures by kind, and every kind stayed at zero
    // while a node was up: kills and hangs cut no GET, failed no PUT, stalled no tus.
    let report = drill_report(&out);
    let failures = &report["client_visible_failures"];
    for kind in ["get_cut", "get_failed", "put_failed", "tus_stalled"] {
        assert!(failures[kind].is_u64(), "no {kind} in {failures}:\n{out}");
        assert_eq!(failures[kind], 0, "{kind}:\n{out}");
    }
    assert!(
        report["tus_uploads_acknowledged"].as_u64() > Some(0),
        "{out}"
    );
    // The hung node was stopped, and is back.
    assert_eq!(out.matches("  hung node-").count(), 1, "{out}");
    let hangs = report["hangs"].as_array().expect("hangs");
    assert_eq!(hangs.len(), 1, "{out}");
    assert_eq!(hangs[0]["rejoined"], true, "{out}");
    // It passed with access control on, every request carrying its token.
    assert!(out.contains("access control is on"), "{out}");
    for refused in ["PUT 401", "PUT 403", "GET 401", "GET 403"] {
        assert!(!out.contains(refused), "{out}");
    }
    assert!(
        out.contains("\"acknowledged_files_lost_or_corrupt\": 0"),
        "{out}"
    );
    assert!(
        out.contains("\"partial_or_unacknowledged_files_visible\": 0"),
        "{out}"
    );
    // Every killed node came back under the supervisor and rejoined the balancer.
    assert_eq!(out.matches("  killed node-").count(), 3, "{out}");
    assert_eq!(out.matches("never").count(), 0, "{out}");
    drop(down);
    let logs = workspace_root().join("logs").join(&tag);
    let _ = std::fs::remove_dir_all(logs);
    let _ = std::fs::remove_dir_all(workspace_root().join("run").join(&tag));
}
