//! Video jobs: every uploaded video gets a poster and HLS renditions, made by whichever
//! node claims the job, exactly once in effect: a killed worker's job finishes elsewhere
//! under the same names, a worker that lost its lease publishes nothing, a file ffmpeg
//! cannot read fails its job and stays intact, and replacing or deleting the source
//! removes its outputs after the grace period.

use std::collections::BTreeSet;
use std::time::Duration;

use bson::doc;
use speedbox_tests::client::{count, fetch_bytes, list, percent_encode, put_with};
use speedbox_tests::video::{make, probe, status, wait_ended, wait_ended_as};
use speedbox_tests::{data, eventually, Cluster};

/// Small renditions and short segments, so that a test clip makes several of each fast.
const MEDIA: &str = "heights = [120, 240]\nsegment_secs = 2\nretry_backoff_secs = 1\n";

fn cluster() -> speedbox_tests::ClusterBuilder {
    Cluster::builder().nodes(2).balancer(true).media_toml(MEDIA)
}

/// PUTs `bytes` as `name` (not yet percent-encoded) with type `video/mp4`; asserts 201.
async fn put_video(c: &Cluster, name: &str, bytes: Vec<u8>) {
    let path = urlencode_path(name);
    let resp = put_with(
        c,
        &c.balancer_url(),
        &path,
        bytes,
        &[("content-type", "video/mp4")],
    )
    .await;
    assert_eq!(resp.status(), 201, "PUT {name}");
}

/// Every name under `NAME.media/`.
async fn outputs(c: &Cluster, name: &str) -> BTreeSet<String> {
    let prefix = format!("{name}.media/");
    let query = format!("prefix={}&limit=1000", percent_encode(&prefix));
    list(c, &c.balancer_url(), &query)
        .await
        .names
        .into_iter()
        .collect()
}

/// The names a finished job of `name` must have published, read from its playlists as a
/// player would: the master's media playlists and each one's segments, and the poster.
async fn expected_outputs(c: &Cluster, name: &str) -> BTreeSet<String> {
    let base = format!("{name}.media/");
    let text = |rel: String| {
        let url = format!("{}/files/{base}{rel}", c.balancer_url());
        async move { String::from_utf8(fetch_bytes_url(c, &url).await).unwrap() }
    };
    let mut want: BTreeSet<String> = ["poster.jpg", "master.m3u8"]
        .iter()
        .map(|r| format!("{base}{r}"))
        .collect();
    for playlist in uris(&text("master.m3u8".into()).await) {
        let dir = playlist.rsplit_once('/').map_or("", |(d, _)| d).to_string();
        for segment in uris(&text(playlist.clone()).await) {
            want.insert(format!("{base}{dir}/{segment}"));
        }
        want.insert(format!("{base}{playlist}"));
    }
    want
}

async fn fetch_bytes_url(c: &Cluster, url: &str) -> Vec<u8> {
    let resp = c.http.get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200, "GET {url}");
    resp.bytes().await.unwrap().to_vec()
}

/// The URI lines of an m3u8 playlist; all must be relative.
fn uris(playlist: &str) -> Vec<String> {
    let lines: Vec<String> = playlist
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    for l in &lines {
        assert!(
            !l.contains("://") && !l.starts_with('/'),
            "absolute URI {l}"
        );
    }
    lines
}

#[tokio::test]
async fn an_uploaded_video_gets_a_poster_and_hls_renditions() {
    let c = cluster().start().await;
    let clip = make(c.dir(), "clip.mp4", 7, 320, 240, false);
    let name = "videos/holiday clip.mp4";
    put_video(&c, name, std::fs::read(&clip).unwrap()).await;

    let job = wait_ended(&c, &c.balancer_url(), name, Duration::from_secs(120)).await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["progress"], 100);
    assert_eq!(job["attempts"], 1);
    let facts = &job["facts"];
    assert_eq!(
        (facts["width"].as_i64(), facts["height"].as_i64()),
        (Some(320), Some(240))
    );
    assert_eq!(facts["video_codec"], "h264");
    assert_eq!(facts["audio_codec"], "aac");
    let duration = facts["duration_s"].as_f64().unwrap();
    assert!((6.9..7.2).contains(&duration), "{facts}");

    // The URLs the API gives are the file API's, percent-encoded.
    let out = &job["outputs"];
    assert_eq!(
        out["master"],
        "/files/videos/holiday%20clip.mp4.media/master.m3u8"
    );
    assert_eq!(
        out["poster"],
        "/files/videos/holiday%20clip.mp4.media/poster.jpg"
    );
    let heights: Vec<i64> = out["renditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["height"].as_i64().unwrap())
        .collect();
    assert_eq!(heights, vec![120, 240]);

    // ffprobe reads the master playlist and each rendition through the balancer.
    let master = probe(&format!(
        "{}{}",
        c.balancer_url(),
        out["master"].as_str().unwrap()
    ));
    let mut seen: Vec<i64> = master["streams"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["codec_type"] == "video")
        .map(|s| s["height"].as_i64().unwrap())
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen, vec![120, 240], "{master}");
    for r in out["renditions"].as_array().unwrap() {
        let url = format!("{}{}", c.balancer_url(), r["playlist"].as_str().unwrap());
        let p = probe(&url);
        let codecs: BTreeSet<&str> = p["streams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["codec_name"].as_str().unwrap())
            .collect();
        assert_eq!(codecs, BTreeSet::from(["h264", "aac"]), "{url}");
        let d: f64 = p["format"]["duration"].as_str().unwrap().parse().unwrap();
        assert!((6.5..7.5).contains(&d), "{url}: {d} s");
    }

    // Exactly the files the playlists name, listed under the source's name; 2 s segments.
    let listed = outputs(&c, name).await;
    assert_eq!(listed, expected_outputs(&c, name).await);
    let segments = listed.iter().filter(|n| n.ends_with(".ts")).count();
    assert!((6..=10).contains(&segments), "{listed:?}");
    let poster = fetch_bytes_url(
        &c,
        &format!("{}{}", c.balancer_url(), out["poster"].as_str().unwrap()),
    )
    .await;
    assert!(
        poster.starts_with(&[0xFF, 0xD8, 0xFF]),
        "poster is not a JPEG"
    );
    let resp = c
        .http
        .head(format!(
            "{}{}",
            c.balancer_url(),
            out["master"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["content-type"],
        "application/vnd.apple.mpegurl"
    );

    // Outputs are not videos of their own: one job in all, counted once where it ran.
    assert_eq!(count(&c, "fs.media", doc! {}).await, 1);
    assert_eq!(attempts_counted(&c, "done").await, 1.0);
    // The source is untouched.
    assert_eq!(
        fetch_bytes(&c, &c.balancer_url(), "videos/holiday%20clip.mp4").await,
        std::fs::read(&clip).unwrap()
    );
    // Not a video: 404 with a JSON error.
    put_with(&c, &c.balancer_url(), "notes.txt", "hello", &[]).await;
    for missing in [
        "notes.txt",
        "nothing.mp4",
        &format!("{name}.media/poster.jpg"),
    ] {
        let (code, body) = status(&c, &c.balancer_url(), &urlencode_path(missing)).await;
        assert_eq!(code, 404, "{missing}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("no video"),
            "{body}"
        );
    }
}

fn urlencode_path(name: &str) -> String {
    name.split('/')
        .map(percent_encode)
        .collect::<Vec<_>>()
        .join("/")
}

/// The job document of the current revision of `name`.
async fn job_doc(c: &Cluster, name: &str) -> bson::Document {
    let db = c.db().await;
    let current = db
        .collection::<bson::Document>("fs.names")
        .find_one(doc! {"_id": name})
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no name {name}"));
    let id = current.get_object_id("file_id").unwrap();
    db.collection::<bson::Document>("fs.media")
        .find_one(doc! {"_id": id})
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no job for {name}"))
}

/// Waits until `name`'s job is running on some node and past the poster (ffmpeg busy
/// with the renditions); returns its document.
async fn wait_running(c: &Cluster, name: &str) -> bson::Document {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, job) = status(c, &c.balancer_url(), name).await;
        assert_ne!(
            job["state"], "done",
            "the job ended before the test could interfere"
        );
        if job["state"] == "running" && job["progress"].as_i64().unwrap_or(0) >= 5 {
            return job_doc(c, name).await;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no job running: {job}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `media` records of every output of `name`: (output name, source, token).
async fn output_records(c: &Cluster, name: &str) -> Vec<(String, bson::oid::ObjectId, i64)> {
    use futures::TryStreamExt;
    let prefix = format!("{name}.media/");
    let docs: Vec<bson::Document> = c
        .db()
        .await
        .collection::<bson::Document>("fs.names")
        .find(doc! {"_id": {"$regex": format!("^{}", regex_escape(&prefix))}})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    docs.iter()
        .map(|d| {
            let m = d
                .get_document("media")
                .expect("an output without its job record");
            (
                d.get_str("_id").unwrap().to_string(),
                m.get_object_id("source").unwrap(),
                m.get_i64("token").unwrap(),
            )
        })
        .collect()
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .map(|ch| {
            if ch.is_ascii_alphanumeric() || ch == '/' || ch == '_' || ch == '-' {
                ch.to_string()
            } else {
                format!("\\{ch}")
            }
        })
        .collect()
}

/// A long clip, so a test can act while its job runs.
fn long_clip(c: &Cluster) -> Vec<u8> {
    std::fs::read(make(c.dir(), "long.mp4", 90, 640, 360, false)).unwrap()
}

#[tokio::test]
async fn a_killed_workers_job_finishes_on_another_node_under_the_same_names() {
    let mut c = cluster().start().await;
    let name = "talk.mp4";
    put_video(&c, name, long_clip(&c)).await;
    let running = wait_running(&c, name).await;
    let holder = running.get_str("lease_node").unwrap().to_string();
    let killed = usize::from(holder == "node-2");
    c.kill_node(killed);

    let job = wait_ended(&c, &c.balancer_url(), name, Duration::from_secs(180)).await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["attempts"], 2, "{job}");
    let done = job_doc(&c, name).await;
    assert_ne!(
        done.get_str("lease_node").ok(),
        Some(holder.as_str()),
        "{done}"
    );
    // Exactly the files the playlists name; each from the job's last lease.
    assert_eq!(outputs(&c, name).await, expected_outputs(&c, name).await);
    let token = done.get_i64("lease_token").unwrap();
    for (output, source, t) in output_records(&c, name).await {
        assert_eq!(
            (source, t),
            (done.get_object_id("_id").unwrap(), token),
            "{output}"
        );
    }
    // Nothing half-written left behind: no upload in progress, no unpublished file.
    assert_eq!(count(&c, "fs.uploads", doc! {}).await, 0);
    let names = count(&c, "fs.names", doc! {}).await;
    assert_eq!(count(&c, "fs.files", doc! {}).await, names);
}

#[tokio::test]
async fn a_worker_that_lost_its_lease_publishes_nothing() {
    let c = cluster().start().await;
    let name = "lecture.mp4";
    put_video(&c, name, long_clip(&c)).await;
    let running = wait_running(&c, name).await;
    let stale = running.get_i64("lease_token").unwrap();
    // Another worker took the lease (and went silent): the token moved on.
    c.db()
        .await
        .collection::<bson::Document>("fs.media")
        .update_one(
            doc! {"_id": running.get_object_id("_id").unwrap()},
            doc! {"$inc": {"lease_token": 1_i64}},
        )
        .await
        .unwrap();

    let job = wait_ended(&c, &c.balancer_url(), name, Duration::from_secs(180)).await;
    assert_eq!(job["state"], "done", "{job}");
    let done = job_doc(&c, name).await;
    let token = done.get_i64("lease_token").unwrap();
    assert!(
        token > stale + 1,
        "claimed again after the lease ran out: {done}"
    );
    let records = output_records(&c, name).await;
    assert!(!records.is_empty());
    for (output, _, t) in records {
        assert_eq!(t, token, "{output} was published under a stale lease");
    }
    assert_eq!(outputs(&c, name).await, expected_outputs(&c, name).await);
    let logs = c.log("node-1") + &c.log("node-2");
    assert!(
        logs.contains("video job left to its new holder"),
        "the stale worker did not stop"
    );
}

#[tokio::test]
async fn a_file_ffmpeg_cannot_read_fails_its_job_and_stays_intact() {
    let c = cluster().start().await;
    let junk = data::bytes(7, 300_000);
    put_video(&c, "broken.mp4", junk.clone()).await;
    let job = wait_ended(&c, &c.balancer_url(), "broken.mp4", Duration::from_secs(60)).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["attempts"], 1, "not retried: ffmpeg's verdict is final");
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains("Invalid data"),
        "ffmpeg's error summarised: {error}"
    );
    assert!(
        !error.contains("127.0.0.1"),
        "the loopback URL leaked: {error}"
    );
    assert_eq!(job["outputs"], serde_json::Value::Null);
    assert_eq!(fetch_bytes(&c, &c.balancer_url(), "broken.mp4").await, junk);
    assert!(outputs(&c, "broken.mp4").await.is_empty());
}

#[tokio::test]
async fn replacing_or_deleting_a_video_removes_its_outputs_after_the_grace_period() {
    let c = cluster()
        .storage_toml("gc_grace_secs = 2\nsweep_interval_secs = 1\n")
        .start()
        .await;
    let name = "clip.mp4";
    let first = std::fs::read(make(c.dir(), "a.mp4", 7, 320, 240, false)).unwrap();
    put_video(&c, name, first).await;
    let job = wait_ended(&c, &c.balancer_url(), name, Duration::from_secs(120)).await;
    assert_eq!(job["state"], "done", "{job}");
    let before = outputs(&c, name).await;
    assert!(before.iter().any(|n| n.contains("/240p/")));

    // Replaced by a shorter, smaller video: one rendition (120p), fewer segments. Racing
    // with another replacement: whichever lands last is the one whose outputs stay.
    let second = std::fs::read(make(c.dir(), "b.mp4", 3, 160, 120, true)).unwrap();
    let third = std::fs::read(make(c.dir(), "c.mp4", 3, 160, 120, false)).unwrap();
    tokio::join!(put_video(&c, name, second), put_video(&c, name, third));
    let job = wait_ended(&c, &c.balancer_url(), name, Duration::from_secs(120)).await;
    assert_eq!(job["state"], "done", "{job}");
    let want = expected_outputs(&c, name).await;
    assert!(want.iter().all(|n| !n.contains("/240p/")), "{want:?}");
    let current = job_doc(&c, name).await.get_object_id("_id").unwrap();
    eventually(Duration::from_secs(30), "the older outputs removed", || {
        let (c, want) = (&c, &want);
        async move { outputs(c, name).await == *want }
    })
    .await;
    for (output, source, _) in output_records(&c, name).await {
        assert_eq!(source, current, "{output} is not the current video's");
    }
    eventually(
        Duration::from_secs(30),
        "the older jobs removed",
        || async { count(&c, "fs.media", doc! {}).await == 1 },
    )
    .await;

    let resp = c
        .http
        .delete(format!("{}/files/{name}", c.balancer_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let (code, _) = status(&c, &c.balancer_url(), name).await;
    assert_eq!(code, 404);
    eventually(
        Duration::from_secs(30),
        "every output and job removed",
        || async {
            outputs(&c, name).await.is_empty()
                && count(&c, "fs.media", doc! {}).await == 0
                && count(&c, "fs.files", doc! {}).await == 0
                && count(&c, "fs.chunks", doc! {}).await == 0
        },
    )
    .await;
}

#[tokio::test]
async fn a_video_published_without_a_job_gets_one() {
    let mut c = cluster().start().await;
    let name = "old.mp4";
    let clip = std::fs::read(make(c.dir(), "old.mp4", 3, 160, 120, false)).unwrap();
    put_video(&c, name, clip).await;
    let job = wait_ended(&c, &c.balancer_url(), name, Duration::from_secs(120)).await;
    assert_eq!(job["state"], "done");
    // As a video stored before video jobs existed: no job, no outputs.
    let db = c.db().await;
    db.collection::<bson::Document>("fs.media")
        .delete_many(doc! {})
        .await
        .unwrap();
    db.collection::<bson::Document>("fs.names")
        .delete_many(doc! {"media": {"$exists": true}})
        .await
        .unwrap();
    // A node starting looks for such videos (without anyone asking GET /media).
    c.kill_node(0);
    c.restart_node(0).await;
    eventually(Duration::from_secs(30), "a job recorded", || async {
        count(&c, "fs.media", doc! {}).await == 1
    })
    .await;
    let job = wait_ended(&c, &c.balancer_url(), name, Duration::from_secs(120)).await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(outputs(&c, name).await, expected_outputs(&c, name).await);
}

/// `speedbox_media_attempts_total{outcome}` summed over the nodes.
async fn attempts_counted(c: &Cluster, outcome: &str) -> f64 {
    let series = format!("speedbox_media_attempts_total{{outcome=\"{outcome}\"}}");
    let mut sum = 0.0;
    for i in 0..2 {
        let url = format!("{}/metrics", c.node_url(i));
        let text = c.http.get(url).send().await.unwrap().text().await.unwrap();
        sum += text
            .lines()
            .find(|l| l.starts_with(&series))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0);
    }
    sum
}

#[tokio::test]
async fn a_signed_prefix_link_plays_the_renditions_under_access_control() {
    use speedbox_tests::auth::{self, auth_toml, K1};
    let c = cluster()
        .file("secrets/k1.key", K1)
        .extra_toml(&auth_toml(&["k1"], ""))
        .start()
        .await;
    let bearer = |scope: &str| auth::bearer(&auth::mint(&auth::claims("alice", scope, "")));
    let (writer, reader) = (bearer("write"), bearer("read"));
    let clip = std::fs::read(make(c.dir(), "c.mp4", 4, 320, 240, false)).unwrap();
    let resp = put_with(
        &c,
        &c.balancer_url(),
        "c.mp4",
        clip,
        &[("content-type", "video/mp4"), ("authorization", &writer)],
    )
    .await;
    assert_eq!(resp.status(), 201);
    // The job's state needs read on the name, like the file.
    let (code, _) = status(&c, &c.balancer_url(), "c.mp4").await;
    assert_eq!(code, 401);
    let job = wait_ended_as(
        &c,
        &c.balancer_url(),
        "c.mp4",
        Some(&reader),
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(job["state"], "done", "{job}");
    let signed: serde_json::Value = c
        .http
        .post(format!("{}/_auth/sign", c.balancer_url()))
        .header("authorization", &reader)
        .json(&serde_json::json!({"name": "c.mp4.media/", "ttl_secs": 300}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let base = format!(
        "{}{}",
        c.balancer_url(),
        signed["path_url"].as_str().unwrap()
    );
    // ffprobe follows the master's relative URLs to both renditions and their segments.
    let master = probe(&format!("{base}master.m3u8"));
    let heights: BTreeSet<i64> = master["streams"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["height"].as_i64())
        .collect();
    assert_eq!(heights, BTreeSet::from([120, 240]), "{master}");
    let poster = c
        .http
        .get(format!("{base}poster.jpg"))
        .send()
        .await
        .unwrap();
    assert_eq!(poster.status(), 200);
    assert_eq!(poster.headers()["content-type"], "image/jpeg");
}

#[tokio::test]
async fn a_failing_encoder_is_retried_with_backoff_then_the_job_fails() {
    use std::os::unix::fs::PermissionsExt;
    // An ffmpeg that runs (`-version`) but fails every job, as a broken install would.
    let tools = tempfile::tempdir().unwrap();
    let fake = tools.path().join("ffmpeg");
    std::fs::write(
        &fake,
        "#!/bin/sh\n[ \"$1\" = -version ] && exit 0\necho 'Encoder libx264 exploded' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let c = cluster()
        .media_toml(&format!(
            "ffmpeg = {:?}\nmax_attempts = 3\n",
            fake.display().to_string()
        ))
        .start()
        .await;
    let clip = std::fs::read(make(c.dir(), "d.mp4", 2, 160, 120, false)).unwrap();
    put_video(&c, "d.mp4", clip.clone()).await;
    let job = wait_ended(&c, &c.balancer_url(), "d.mp4", Duration::from_secs(60)).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["attempts"], 3, "{job}");
    assert!(
        job["error"]
            .as_str()
            .unwrap()
            .contains("Encoder libx264 exploded"),
        "{job}"
    );
    assert_eq!(attempts_counted(&c, "retried").await, 2.0);
    assert_eq!(attempts_counted(&c, "failed").await, 1.0);
    // Every attempt ran and was logged (the backoff between them is 1 s, then 2 s).
    let logs = c.log("node-1") + &c.log("node-2");
    assert_eq!(
        logs.matches("video job attempt failed").count(),
        3,
        "{logs}"
    );
    assert_eq!(fetch_bytes(&c, &c.balancer_url(), "d.mp4").await, clip);
    assert!(outputs(&c, "d.mp4").await.is_empty());
}
