//! A tus 1.0 client driven by hand, for tests that send exactly the requests a real client
//! sends when it retries, replays or races (which tuspy and tus-js-client do not expose),
//! and the real clients themselves, run as processes.

use std::path::Path;
use std::process::Stdio;

use base64::Engine;
use reqwest::{Response, StatusCode};

use crate::{workspace_root, Cluster};

/// Requests to one server's `/uploads` (a node's or the balancer's).
pub struct TusClient<'a> {
    pub c: &'a Cluster,
    pub base: String,
}

impl TusClient<'_> {
    /// `POST /uploads` for `length` bytes named `name`; the upload's URL.
    pub async fn create(&self, length: u64, name: &str) -> String {
        let resp = self
            .c
            .http
            .post(format!("{}/uploads", self.base))
            .header("tus-resumable", "1.0.0")
            .header("upload-length", length)
            .header(
                "upload-metadata",
                format!(
                    "filename {}",
                    base64::engine::general_purpose::STANDARD.encode(name)
                ),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED, "create {name}");
        assert_eq!(resp.headers()["tus-resumable"], "1.0.0");
        assert!(resp.headers().contains_key("upload-expires"));
        resp.headers()["location"].to_str().unwrap().to_string()
    }

    /// `PATCH url` with `body` at `offset`.
    pub async fn patch(&self, url: &str, offset: u64, body: Vec<u8>) -> Response {
        self.patch_request(url, offset)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// The same with `Upload-Checksum: <checksum>` (`"sha1 <base64>"`).
    pub async fn patch_checked(
        &self,
        url: &str,
        offset: u64,
        body: Vec<u8>,
        checksum: &str,
    ) -> Response {
        self.patch_request(url, offset)
            .header("upload-checksum", checksum)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    fn patch_request(&self, url: &str, offset: u64) -> reqwest::RequestBuilder {
        self.c
            .http
            .patch(url)
            .header("tus-resumable", "1.0.0")
            .header("upload-offset", offset)
            .header("content-type", "application/offset+octet-stream")
    }

    pub async fn head(&self, url: &str) -> Response {
        self.c
            .http
            .head(url)
            .header("tus-resumable", "1.0.0")
            .send()
            .await
            .unwrap()
    }

    pub async fn delete(&self, url: &str) -> Response {
        self.c
            .http
            .delete(url)
            .header("tus-resumable", "1.0.0")
            .send()
            .await
            .unwrap()
    }
}

/// The `Upload-Offset` of a tus response.
pub fn offset_of(resp: &Response) -> u64 {
    resp.headers()["upload-offset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// tuspy (`tests/clients/tuspy_upload.py`) uploading `file` to `endpoint` (`…/uploads`) as
/// `name` in PATCHes of `chunk` bytes, each with a sha1 checksum; it prints the upload URL.
pub fn tuspy(endpoint: &str, file: &Path, name: &str, chunk: u64) -> tokio::process::Command {
    let python = workspace_root().join(".venv/bin/python");
    client(
        python.as_os_str(),
        "tuspy_upload.py",
        endpoint,
        file,
        name,
        chunk,
    )
}

/// tus-js-client under Node (`tests/clients/tus_js_upload.js`), the same way.
pub fn tus_js(endpoint: &str, file: &Path, name: &str, chunk: u64) -> tokio::process::Command {
    client(
        "node".as_ref(),
        "tus_js_upload.js",
        endpoint,
        file,
        name,
        chunk,
    )
}

/// `program tests/clients/<script> ENDPOINT FILE NAME CHUNK`, its output captured, killed
/// with the test. With `TUS_AUTHORIZATION` in its environment, the client sends it.
fn client(
    program: &std::ffi::OsStr,
    script: &str,
    endpoint: &str,
    file: &Path,
    name: &str,
    chunk: u64,
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(program);
    cmd.arg(workspace_root().join("tests/clients").join(script))
        .arg(endpoint)
        .arg(file)
        .arg(name)
        .arg(chunk.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs a client to its end, failing the test with its output unless it succeeded; its
/// standard output.
pub async fn run_ok(mut cmd: tokio::process::Command) -> String {
    let out = cmd.output().await.expect("start client");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "client failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
