//! Prometheus scraping a cluster (issue 15, part 1), real processes: the config that
//! `scripts/cluster prometheus-config` generates from `cluster.toml` makes Debian's
//! Prometheus scrape the balancer and every node (with the admin token it mints, access
//! control being on), its counters equal exactly what a client sent, and the watcher that
//! `scripts/cluster up --with-prometheus` runs turns live edits of `cluster.toml` into
//! targets added and removed.
//!
//! Prometheus must be installed (`scripts/setup --test-tools`, which `scripts/test` runs):
//! without it these tests fail, never skip.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use speedbox_tests::auth::{auth_toml, bearer, claims, mint, K1};
use speedbox_tests::client::file_url;
use speedbox_tests::{free_port, workspace_root, Cluster, Proc};

/// `name` on PATH (Debian's prometheus package installs `prometheus` and `promtool`);
/// fails the test with what to run when it is missing.
fn installed(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` not found on PATH: run `scripts/setup --test-tools` (scripts/test \
                 does), which installs Debian's prometheus package"
            )
        })
}

/// `scripts/cluster prometheus-config --config CONFIG --out OUT --listen LISTEN [extra]`,
/// as a command (the test build's speedbox-token mints the scrape token).
fn prometheus_config(config: &Path, out: &Path, listen: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(workspace_root().join("scripts/cluster"));
    cmd.arg("prometheus-config")
        .arg("--config")
        .arg(config)
        .arg("--out")
        .arg(out)
        .args(["--listen", listen])
        .args(extra)
        .env("SPEEDBOX_PROFILE", "debug")
        .env("SPEEDBOX_SKIP_SETUP", "1");
    cmd
}

/// Runs the generator once; returns its stdout (the command line that runs Prometheus).
fn generate(config: &Path, out: &Path, listen: &str) -> String {
    let done = prometheus_config(config, out, listen, &[])
        .output()
        .expect("run scripts/cluster prometheus-config");
    let stdout = String::from_utf8_lossy(&done.stdout).into_owned();
    assert!(
        done.status.success(),
        "scripts/cluster prometheus-config failed:\n{stdout}{}",
        String::from_utf8_lossy(&done.stderr)
    );
    stdout
}

/// A Prometheus on `listen` (its log at `dir`/logs/prometheus.log), from the files in `out`.
fn start_prometheus(c: &Cluster, out: &Path, listen: &str) -> Proc {
    let mut cmd = Command::new(installed("prometheus"));
    cmd.arg(format!(
        "--config.file={}",
        out.join("prometheus.yml").display()
    ))
    .arg(format!(
        "--storage.tsdb.path={}",
        out.join("data").display()
    ))
    .arg(format!("--web.listen-address={listen}"))
    .current_dir(c.dir());
    Proc::spawn("prometheus", cmd, &c.dir().join("logs/prometheus.log"))
}

/// Prometheus' HTTP API.
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Option<Value> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .query(query)
            .send()
            .await
            .ok()?;
        if resp.status() != StatusCode::OK {
            return None;
        }
        let body: Value = resp.json().await.ok()?;
        (body["status"] == "success").then(|| body["data"].clone())
    }

    /// The value of an instant query whose answer is one number (`sum(...)`, `count(...)`);
    /// 0 when it has no series yet (a counter not scraped yet counts nothing).
    async fn value(&self, query: &str) -> Option<f64> {
        let data = self.get("/api/v1/query", &[("query", query)]).await?;
        let result = data["result"].as_array()?;
        match result.as_slice() {
            [] => Some(0.0),
            [one] => one["value"][1].as_str()?.parse().ok(),
            _ => panic!("{query} gives more than one series: {data}"),
        }
    }

    /// The active targets: (job, node label or "", health).
    async fn targets(&self) -> Option<Vec<(String, String, String)>> {
        let data = self.get("/api/v1/targets", &[("state", "active")]).await?;
        let active = data["activeTargets"].as_array()?;
        Some(
            active
                .iter()
                .map(|t| {
                    let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
                    (
                        text(&t["labels"]["job"]),
                        text(&t["labels"]["node"]),
                        text(&t["health"]),
                    )
                })
                .collect(),
        )
    }
}

/// Polls `check` every 200 ms until it is true; fails with `what` and Prometheus' log
/// after `within`. A Prometheus that exited fails at once.
async fn until<F, Fut>(prom: &mut Proc, within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + within;
    loop {
        let failure = match check().await {
            Ok(()) => return,
            Err(why) => why,
        };
        if prom.exited() || Instant::now() > deadline {
            panic!(
                "timed out after {within:?} waiting for {what}: {failure}\n{}",
                prom.tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every active target is up and they are exactly `want` (job, node label), in any order.
fn all_up(got: Option<Vec<(String, String, String)>>, want: &[(&str, &str)]) -> Result<(), String> {
    let got = got.ok_or("Prometheus does not answer")?;
    let mut targets: Vec<(&str, &str)> = got.iter().map(|(j, n, _)| (&j[..], &n[..])).collect();
    let mut want = want.to_vec();
    targets.sort();
    want.sort();
    if targets != want || got.iter().any(|(_, _, health)| health != "up") {
        return Err(format!("targets {got:?}, want {want:?} all up"));
    }
    Ok(())
}

#[tokio::test]
async fn prometheus_scrapes_exact_counts_and_follows_live_edits() {
    let prometheus = installed("prometheus");
    let mut c = Cluster::builder()
        .nodes(2)
        .balancer(true)
        .file("secrets/k1.key", K1)
        .extra_toml(&auth_toml(&["k1"], ""))
        .start()
        .await;
    let out = c.dir().join("prometheus");
    let listen = format!("127.0.0.1:{}", free_port());
    let printed = generate(&c.config_path(), &out, &listen);
    assert!(
        printed.starts_with(&format!("{} ", prometheus.display()))
            && printed.contains(&format!("--web.listen-address={listen}")),
        "{printed}"
    );
    // /metrics needs admin: the generated config sends the token it minted, from a file
    // only its owner reads.
    let token = out.join("prometheus.token");
    let mode = std::fs::metadata(&token).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let yml = std::fs::read_to_string(out.join("prometheus.yml")).unwrap();
    assert_eq!(yml.matches("credentials_file").count(), 2, "{yml}");

    let started = Instant::now();
    let mut prom = start_prometheus(&c, &out, &listen);
    let api = &Api {
        http: c.http.clone(),
        base: format!("http://{listen}"),
    };
    let three = [("balancer", ""), ("node", "node-1"), ("node", "node-2")];
    until(
        &mut prom,
        Duration::from_secs(30),
        "3 targets up",
        || async move { all_up(api.targets().await, &three) },
    )
    .await;
    eprintln!(
        "prometheus: 3 targets up {:?} after its start",
        started.elapsed()
    );

    // What a client sends through the balancer: 4 PUTs, 7 GETs, 2 GETs of a missing name.
    let base = c.balancer_url();
    let auth = bearer(&mint(&claims("client", "read write", "")));
    let sizes = [1usize, 1000, 300_000, 2_000_000];
    let (mut received, mut sent) = (0usize, 0usize);
    for (i, size) in sizes.iter().enumerate() {
        let url = file_url(&base, &format!("p{i}.bin"));
        let put = c.http.put(&url).header("authorization", &auth);
        let put = put.body(vec![b'p'; *size]).send().await.unwrap();
        assert_eq!(put.status(), StatusCode::CREATED);
        received += size;
        sent += put.bytes().await.unwrap().len();
    }
    for i in 0..7 {
        let url = file_url(&base, &format!("p{}.bin", i % sizes.len()));
        let get = c.http.get(&url).header("authorization", &auth);
        let get = get.send().await.unwrap();
        assert_eq!(get.status(), StatusCode::OK);
        sent += get.bytes().await.unwrap().len();
    }
    for _ in 0..2 {
        let get = c.http.get(file_url(&base, "missing.bin"));
        let get = get.header("authorization", &auth).send().await.unwrap();
        assert_eq!(get.status(), StatusCode::NOT_FOUND);
        sent += get.bytes().await.unwrap().len();
    }

    // The cluster is new: before these requests every file counter was 0 (or absent) on
    // every process, so Prometheus' sums must reach exactly what was sent, on the balancer
    // and over the nodes (each request went to one node).
    let requests =
        |method: &str, status: &str| format!(r#"route="file",method="{method}",status="{status}""#);
    let mut want = Vec::new();
    for job in ["balancer", "node"] {
        for (labels, n) in [
            (requests("PUT", "2xx"), 4),
            (requests("GET", "2xx"), 7),
            (requests("GET", "4xx"), 2),
        ] {
            want.push((
                format!(r#"sum(speedbox_http_requests_total{{job="{job}",{labels}}})"#),
                n as f64,
            ));
        }
        want.push((
            format!(r#"sum(speedbox_http_received_bytes_total{{job="{job}",route="file"}})"#),
            received as f64,
        ));
        want.push((
            format!(r#"sum(speedbox_http_sent_bytes_total{{job="{job}",route="file"}})"#),
            sent as f64,
        ));
    }
    want.push((
        r#"sum(speedbox_store_chunk_bytes_total{job="node",direction="written"})"#.into(),
        received as f64,
    ));
    // The node id is a target label: both nodes' series carry it.
    want.push((
        r#"count(count by (node) (speedbox_http_requests_total{job="node"}))"#.into(),
        2.0,
    ));
    want.push((
        r#"count(speedbox_balancer_node_up{job="balancer"} == 1)"#.into(),
        2.0,
    ));
    let want = &want;
    let sent_at = Instant::now();
    until(
        &mut prom,
        Duration::from_secs(20),
        "Prometheus' sums to equal what was sent",
        || async move {
            let mut wrong = Vec::new();
            for (query, n) in want {
                match api.value(query).await {
                    Some(v) if v == *n => {}
                    got => wrong.push(format!("{query} = {got:?}, want {n}")),
                }
            }
            if wrong.is_empty() {
                Ok(())
            } else {
                Err(wrong.join("\n"))
            }
        },
    )
    .await;
    eprintln!(
        "prometheus: exact counts {:?} after the last request",
        sent_at.elapsed()
    );

    // Live edits, through the watcher `up --with-prometheus` runs under supervisord: a node
    // added to cluster.toml becomes a target labelled with its id, a removed one stops
    // being one.
    let watch_cmd = prometheus_config(&c.config_path(), &out, &listen, &["--watch"]);
    let watcher = Proc::spawn(
        "prometheus-targets",
        watch_cmd,
        &c.dir().join("logs/prometheus-targets.log"),
    );
    let added = c.add_node().await;
    assert_eq!(c.node_id(added), "node-3");
    c.write_config(&[0, 1, 2]);
    let four = [
        ("balancer", ""),
        ("node", "node-1"),
        ("node", "node-2"),
        ("node", "node-3"),
    ];
    let edited = Instant::now();
    until(
        &mut prom,
        Duration::from_secs(20),
        "node-3 to be a target, up",
        || async move { all_up(api.targets().await, &four) },
    )
    .await;
    eprintln!(
        "prometheus: node-3 up {:?} after the edit",
        edited.elapsed()
    );
    c.write_config(&[1, 2]);
    let three = [("balancer", ""), ("node", "node-2"), ("node", "node-3")];
    until(
        &mut prom,
        Duration::from_secs(20),
        "node-1 to be dropped",
        || async move { all_up(api.targets().await, &three) },
    )
    .await;
    let log = std::fs::read_to_string(&watcher.log).unwrap_or_default();
    assert!(
        log.contains("the balancer and 3 nodes"),
        "watcher log:\n{log}"
    );
}

#[test]
fn generated_config_of_an_open_cluster_sends_no_token_and_reaches_wildcard_listeners() {
    let promtool = installed("promtool");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("open.toml");
    std::fs::write(
        &config,
        "[balancer]\nlisten = \"0.0.0.0:3999\"\n\n\
         [mongodb]\nuri = \"mongodb://127.0.0.1:27999\"\ndatabase = \"speedbox\"\n\n\
         [[nodes]]\nid = \"a\"\nlisten = \"0.0.0.0:8991\"\n\n\
         [[nodes]]\nid = \"b\"\nlisten = \"127.0.0.1:8992\"\n",
    )
    .unwrap();
    let out = dir.path().join("prom");
    generate(&config, &out, "127.0.0.1:9999");
    let yml = std::fs::read_to_string(out.join("prometheus.yml")).unwrap();
    assert!(!yml.contains("authorization"), "{yml}");
    assert!(yml.contains("scrape_interval: 1s"), "{yml}");
    assert!(!out.join("prometheus.token").exists());
    let json = |job: &str| -> Value {
        let text = std::fs::read_to_string(out.join(format!("targets-{job}.json"))).unwrap();
        serde_json::from_str(&text).unwrap()
    };
    assert_eq!(
        json("balancer"),
        serde_json::json!([{"targets": ["127.0.0.1:3999"], "labels": {}}])
    );
    assert_eq!(
        json("node"),
        serde_json::json!([
            {"targets": ["127.0.0.1:8991"], "labels": {"node": "a"}},
            {"targets": ["127.0.0.1:8992"], "labels": {"node": "b"}},
        ])
    );
    let check = Command::new(promtool)
        .args(["check", "config"])
        .arg(out.join("prometheus.yml"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "promtool check config:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}
