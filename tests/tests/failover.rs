//! Failover that clients never see (issue 14): a download whose node dies or hangs
//! mid-body goes on from another node as one unbroken response, a file that changed
//! meanwhile is never spliced, and a hung node costs a GET about `first_byte_timeout`.

use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use speedbox_tests::client::{busy_node, cluster_status, file_url, get, put, wait_state};
use speedbox_tests::{data, Cluster};

const MIB: u64 = 1 << 20;

/// How a test interrupts the node serving a download.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// SIGKILL: the connection resets.
    Kill,
    /// SIGSTOP: the connection stays open and silent.
    Hang,
}

/// Downloads the balancer continued so far (`/_cluster`'s `bypassed.continued`, summed).
async fn continuations(c: &Cluster) -> u64 {
    bypassed(c, "continued").await.iter().sum()
}

/// `/_cluster`'s `bypassed.<what>` counter of every node, in config order.
async fn bypassed(c: &Cluster, what: &str) -> Vec<u64> {
    let status = cluster_status(c).await;
    let nodes = status["nodes"].as_array().unwrap();
    nodes
        .iter()
        .map(|n| n["bypassed"][what].as_u64().unwrap())
        .collect()
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Interrupts node `i` with `fault`, and undoes it once the test is done with it.
async fn fault(c: &mut Cluster, i: usize, fault: Fault) {
    match fault {
        Fault::Kill => c.kill_node(i),
        Fault::Hang => c.signal_node(i, libc::SIGSTOP),
    }
}

async fn recover(c: &mut Cluster, i: usize, fault: Fault) {
    match fault {
        Fault::Kill => c.restart_node(i).await,
        Fault::Hang => c.signal_node(i, libc::SIGCONT),
    }
    let id = c.node_id(i).to_owned();
    wait_state(c, &id, "up").await;
}

#[tokio::test]
async fn a_download_goes_on_from_another_node_when_its_node_dies_or_hangs() {
    let mut c = Cluster::builder().nodes(3).balancer(true).start().await;
    let len = 256 * MIB;
    let stored = put(&c, &c.balancer_url(), "movie.bin", data::body(3, len)).await;
    assert_eq!(stored["sha256"], data::sha256(3, len));
    // Where the client has read to when the node is interrupted: its first chunk, the
    // middle, late (the node is still some MiB of socket buffers ahead of the client).
    let cases = [
        (64 * 1024, Fault::Kill),
        (len / 2, Fault::Kill),
        (len - 64 * MIB, Fault::Kill),
        (len / 4, Fault::Hang),
    ];
    for (at, how) in cases {
        let before = continuations(&c).await;
        let resp = get(&c, &c.balancer_url(), "movie.bin").await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-length"], len.to_string().as_str());
        let mut body = resp.bytes_stream();
        let (mut hash, mut read, mut victim) = (Sha256::new(), 0u64, None);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.unwrap_or_else(|e| panic!("{how:?} at {at}: cut at {read}: {e}"));
            read += chunk.len() as u64;
            hash.update(&chunk);
            if victim.is_none() && read >= at {
                let i = busy_node(&c).await;
                fault(&mut c, i, how).await;
                victim = Some(i);
            }
        }
        assert_eq!(
            (read, hex(&hash.finalize())),
            (len, data::sha256(3, len)),
            "{how:?} at {at}: one whole, byte-identical response"
        );
        assert!(
            continuations(&c).await > before,
            "{how:?} at {at}: the balancer did not have to continue it, so this case tested nothing"
        );
        recover(&mut c, victim.unwrap(), how).await;
    }
}

#[tokio::test]
async fn curl_gets_a_whole_range_though_its_node_dies() {
    let mut c = Cluster::builder().nodes(2).balancer(true).start().await;
    let len = 128 * MIB;
    put(&c, &c.balancer_url(), "r.bin", data::body(9, len)).await;
    let (first, last) = (10 * MIB + 7, 120 * MIB - 3);
    let out = c.dir().join("curl.out");
    let curl = Command::new("curl")
        .args([
            "-sS",
            "--limit-rate",
            "40M",
            "-r",
            &format!("{first}-{last}"),
            "-o",
        ])
        .arg(&out)
        .args(["-w", "%{http_code} %{num_connects} %{size_download}"])
        .arg(file_url(&c.balancer_url(), "r.bin"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("curl");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&out).map_or(0, |m| m.len()) < 40 * MIB {
        assert!(Instant::now() < deadline, "curl did not get going");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = continuations(&c).await;
    let victim = busy_node(&c).await;
    c.kill_node(victim);
    let done = curl.wait_with_output().unwrap();
    let summary = String::from_utf8_lossy(&done.stdout).to_string();
    assert!(done.status.success(), "curl failed: {summary}");
    let want = last - first + 1;
    assert_eq!(
        summary,
        format!("206 1 {want}"),
        "one 206 response on one connection"
    );
    let got = std::fs::read(&out).unwrap();
    let all = data::bytes(9, len);
    assert!(
        got == all[first as usize..=last as usize],
        "the range's bytes"
    );
    assert!(
        continuations(&c).await > before,
        "the node's death did not touch the download"
    );
}

#[tokio::test]
async fn a_file_replaced_mid_download_is_never_spliced() {
    let mut c = Cluster::builder().nodes(2).balancer(true).start().await;
    let len = 64 * MIB;
    put(&c, &c.balancer_url(), "v.bin", data::body(1, len)).await;
    let resp = get(&c, &c.balancer_url(), "v.bin").await;
    let mut body = resp.bytes_stream();
    let mut got = Vec::new();
    while got.len() < MIB as usize {
        got.extend_from_slice(&body.next().await.unwrap().unwrap());
    }
    let victim = busy_node(&c).await;
    put(&c, &c.node_url(1 - victim), "v.bin", data::body(2, len)).await;
    c.kill_node(victim);
    let mut error = None;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(chunk) => got.extend_from_slice(&chunk),
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    assert!(
        error.is_some(),
        "the client must see the response break off"
    );
    assert!(
        (got.len() as u64) < len,
        "no complete body made of two revisions"
    );
    assert!(
        got[..] == data::bytes(1, got.len() as u64)[..],
        "only the first revision's bytes"
    );
    assert!(c
        .log("balancer")
        .contains("the file changed while it was being sent"));
}

#[tokio::test]
async fn a_hung_node_costs_a_get_about_the_first_byte_timeout() {
    let mut c = Cluster::builder().nodes(3).balancer(true).start().await;
    for k in 0..12 {
        put(
            &c,
            &c.balancer_url(),
            &format!("s{k}"),
            data::bytes(k, 4096),
        )
        .await;
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loops: Vec<_> = (0..4)
        .map(|w| {
            let (http, base, stop) = (c.http.clone(), c.balancer_url(), stop.clone());
            tokio::spawn(async move {
                let (mut times, mut failed) = (Vec::new(), Vec::new());
                let mut k = w;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    k = (k + 5) % 12;
                    let started = Instant::now();
                    let resp = http.get(file_url(&base, &format!("s{k}"))).send().await;
                    let ok = match resp {
                        Ok(r) if r.status() == StatusCode::OK => r
                            .bytes()
                            .await
                            .is_ok_and(|b| b[..] == data::bytes(k as u64, 4096)[..]),
                        other => {
                            failed.push(format!("{other:?}"));
                            continue;
                        }
                    };
                    if !ok {
                        failed.push(format!("s{k}: wrong or cut body"));
                    }
                    times.push(started.elapsed());
                }
                (times, failed)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.signal_node(0, libc::SIGSTOP);
    let stopped = Instant::now();
    wait_state(&c, "node-1", "down").await;
    let marked_down = stopped.elapsed();
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(marked_down)).await;
    c.signal_node(0, libc::SIGCONT);
    wait_state(&c, "node-1", "up").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut times, mut failed) = (Vec::new(), Vec::new());
    for l in loops {
        let (t, f) = l.await.unwrap();
        times.extend(t);
        failed.extend(f);
    }
    times.sort();
    let p99 = times[times.len() * 99 / 100];
    let max = times[times.len() - 1];
    println!(
        "{} GETs, node-1 marked down {marked_down:?} after SIGSTOP, p99 {p99:?}, max {max:?}",
        times.len()
    );
    assert!(failed.is_empty(), "failed GETs: {failed:?}");
    // Without hedging a GET sent to the stopped node waits for the response timeout (30 s).
    assert!(max < Duration::from_secs(5), "a GET took {max:?}");
    let hedged = bypassed(&c, "hedged").await;
    assert!(
        hedged[0] > 0,
        "no GET met the hung node, so this tested nothing: {hedged:?}"
    );
    assert!(c.log("balancer").contains("hedging on another node"));
    println!(
        "hedged {hedged:?}, ejected {:?}",
        bypassed(&c, "ejected").await
    );
}
