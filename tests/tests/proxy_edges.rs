//! HTTP edge cases real clients send, through the balancer and directly to a node:
//! forwarding headers from a trusted TLS terminator (seen through the tus `Location` a
//! node builds from them), and `Expect: 100-continue`, where an upload the node refuses
//! on its headers must be refused before the client sends a byte of its body.

use std::time::Duration;

use reqwest::StatusCode;
use speedbox_tests::client::fetch;
use speedbox_tests::{data, eventually, Cluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const KIB: u64 = 1024;
/// A generous bound for one exchange on loopback, so a hang fails instead of blocking.
const EXCHANGE: Duration = Duration::from_secs(10);

/// POSTs a tus creation request with `headers` and returns the `Location` it got.
async fn tus_location(c: &Cluster, url: &str, headers: &[(&str, &str)]) -> String {
    let mut req = c
        .http
        .post(format!("{url}/uploads"))
        .header("tus-resumable", "1.0.0")
        .header("upload-length", "10");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    resp.headers()["location"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn forwarding_headers_are_believed_only_from_trusted_proxies() {
    let c = Cluster::builder()
        .nodes(1)
        .balancer(true)
        .balancer_toml("trusted_proxies = [\"127.0.0.1/32\", \"::1/128\"]\n")
        .start()
        .await;
    let b = c.balancer_url();
    let x_forwarded = [
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "public.example"),
    ];
    let forwarded = [(
        "forwarded",
        "for=198.51.100.7;proto=https;host=\"files.example:8443\"",
    )];

    // 127.0.0.1 is trusted: what the TLS terminator said reaches the node
    let loc = tus_location(&c, &b, &x_forwarded).await;
    assert!(loc.starts_with("https://public.example/uploads/"), "{loc}");
    let loc = tus_location(&c, &b, &forwarded).await;
    assert!(
        loc.starts_with("https://files.example:8443/uploads/"),
        "{loc}"
    );
    let loc = tus_location(&c, &b, &[]).await;
    let own = format!("http://{}/uploads/", c.balancer_addr());
    assert!(loc.starts_with(&own), "{loc}");

    // trust withdrawn by a live edit: the same headers are replaced by the balancer's own
    let text = std::fs::read_to_string(c.config_path()).unwrap();
    c.write_raw_config(&text.replace("trusted_proxies = [\"127.0.0.1/32\", \"::1/128\"]", ""));
    eventually(Duration::from_secs(10), "the reload", || async {
        tus_location(&c, &b, &x_forwarded).await.starts_with(&own)
    })
    .await;
    let loc = tus_location(&c, &b, &forwarded).await;
    assert!(loc.starts_with(&own), "{loc}");
}

/// The head of an HTTP/1.1 response read from `stream`: status code and the lowercased
/// head text. Bytes after the head stay in `buf`.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> (u16, String) {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            buf.drain(..end + 4);
            let code = head
                .split(' ')
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or_else(|| panic!("bad status line: {head}"));
            return (code, head);
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(EXCHANGE, stream.read(&mut chunk))
            .await
            .expect("a response within the exchange bound")
            .unwrap();
        assert!(
            n > 0,
            "connection closed before a response head; got {buf:?}"
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The body of a response with `content-length`, after its head.
async fn read_body(stream: &mut TcpStream, buf: &mut Vec<u8>, head: &str) -> String {
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no content-length: {head}"));
    while buf.len() < len {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(EXCHANGE, stream.read(&mut chunk))
            .await
            .expect("the body within the exchange bound")
            .unwrap();
        assert!(n > 0, "connection closed mid-body");
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&buf.drain(..len).collect::<Vec<_>>()).into_owned()
}

/// Sends only the head of a PUT that expects 100-continue and that the node refuses on its
/// headers (too large, a bad name, a false precondition): the final `want` must come first,
/// with no `100 Continue` before it, and the connection then closes.
/// `why` is a part of the JSON error the node must give.
async fn refused_before_the_body(
    addr: &str,
    who: &str,
    path: &str,
    extra: &str,
    (want, why): (u16, &str),
) {
    // Over the limit only where the limit is what is tested.
    let len = if want == 413 {
        4 * 1024 * KIB
    } else {
        512 * KIB
    };
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}\
         Content-Length: {len}\r\nExpect: 100-continue\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let (code, head) = read_head(&mut stream, &mut buf).await;
    assert_eq!(code, want, "{who} {path}: {head}");
    assert!(head.contains("x-speedbox-error: node"), "{who}: {head}");
    let body = read_body(&mut stream, &mut buf, &head).await;
    let error: serde_json::Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("{who} {path}: not JSON ({e}): {body}"));
    let error = error["error"].as_str().unwrap_or_default();
    assert!(error.contains(why), "{who} {path}: {body}");
    // The body was never asked for, so the connection cannot carry another request.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(EXCHANGE, stream.read_to_end(&mut rest)).await;
    assert!(
        read.is_ok(),
        "{who}: the connection stays open after the {want}"
    );
    assert!(rest.is_empty(), "{who}: more after the {want}: {rest:?}");
}

async fn too_large_is_refused_before_the_body(addr: &str, who: &str) {
    let path = "/files/expect/too-big.bin";
    let too_large = (413, "larger than the limit");
    refused_before_the_body(addr, who, path, "", too_large).await;
    let bad_name = (400, "percent-encoding");
    refused_before_the_body(addr, who, "/files/expect/%ZZ", "", bad_name).await;
}

#[tokio::test]
async fn expect_100_continue_lets_the_node_decide() {
    let c = Cluster::builder()
        .nodes(1)
        .balancer(true)
        .storage_toml(&format!("max_file_size = {}\n", 1024 * KIB))
        .start()
        .await;
    let node_addr = c.node_url(0).trim_start_matches("http://").to_owned();
    too_large_is_refused_before_the_body(&node_addr, "node").await;
    too_large_is_refused_before_the_body(&c.balancer_addr(), "balancer").await;

    // An upload the node accepts: 100 Continue from the node, then the body, then 201.
    let len = 700 * KIB;
    let addr = c.balancer_addr();
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "PUT /files/expect/ok.bin HTTP/1.1\r\nHost: {addr}\r\n\
         Content-Length: {len}\r\nExpect: 100-continue\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let (code, head) = read_head(&mut stream, &mut buf).await;
    assert_eq!(code, 100, "{head}");
    stream.write_all(&data::bytes(5, len)).await.unwrap();
    let (code, head) = read_head(&mut stream, &mut buf).await;
    let body = read_body(&mut stream, &mut buf, &head).await;
    assert_eq!(code, 201, "{head}\n{body}");
    let stored: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stored["sha256"], data::sha256(5, len));

    // The connection is still good for the next request, and the bytes are intact.
    stream
        .write_all(format!("GET /files/expect/ok.bin HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let (code, head) = read_head(&mut stream, &mut buf).await;
    assert_eq!(code, 200, "{head}");
    let got = fetch(&c, &c.balancer_url(), "expect/ok.bin").await;
    assert_eq!((got.len, got.sha256), (len, data::sha256(5, len)));
    let resp = c
        .http
        .get(format!("{}/files/expect/too-big.bin", c.balancer_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    // A create-only upload of a name that exists fails its precondition before its body.
    for (who, addr) in [("node", node_addr.as_str()), ("balancer", addr.as_str())] {
        let path = "/files/expect/ok.bin";
        let exists = (412, "precondition failed");
        refused_before_the_body(addr, who, path, "If-None-Match: *\r\n", exists).await;
    }
}
