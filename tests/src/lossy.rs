//! A relay that loses responses: it forwards HTTP/1.1 requests one per connection to an
//! upstream and, for the first `n` requests a predicate picks, drops the client's connection
//! after the upstream has answered, the way a lost final `204` looks to a client.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The head of one request as the relay saw it: method and lower-cased headers.
pub struct SeenRequest {
    pub method: String,
    pub headers: Vec<(String, String)>,
}

impl SeenRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A running relay; stops when dropped.
pub struct LossyRelay {
    pub addr: SocketAddr,
    /// How many responses it has dropped so far.
    pub dropped: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LossyRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LossyRelay {
    /// Relays to `upstream`, dropping the responses of the first `n` requests `pick` chooses.
    pub async fn start<F>(upstream: SocketAddr, n: usize, pick: F) -> Self
    where
        F: Fn(&SeenRequest) -> bool + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("relay addr");
        let dropped = Arc::new(AtomicUsize::new(0));
        let pick = Arc::new(pick);
        let counter = dropped.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (pick, counter) = (pick.clone(), counter.clone());
                tokio::spawn(async move {
                    let _ = relay_one(client, upstream, n, &*pick, &counter).await;
                });
            }
        });
        Self {
            addr,
            dropped,
            task,
        }
    }
}

async fn relay_one(
    mut client: TcpStream,
    upstream: SocketAddr,
    n: usize,
    pick: &(dyn Fn(&SeenRequest) -> bool + Send + Sync),
    dropped: &AtomicUsize,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let head_len = read_head(&mut client, &mut buf).await?;
    let seen = parse_head(&buf[..head_len]);
    let body_len: usize = seen
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_len + body_len {
        if read_more(&mut client, &mut buf).await? == 0 {
            return Ok(());
        }
    }
    let mut server = TcpStream::connect(upstream).await?;
    server.write_all(&buf[..head_len + body_len]).await?;
    let mut resp = Vec::new();
    let resp_head = read_head(&mut server, &mut resp).await?;
    let status = parse_head(&resp[..resp_head]);
    let no_body = seen.method == "HEAD"
        || status.method.starts_with("HTTP/1.1 204")
        || status.method.starts_with("HTTP/1.1 304")
        || status.method.starts_with("HTTP/1.1 1");
    let resp_body: usize = if no_body {
        0
    } else {
        status
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    while resp.len() < resp_head + resp_body {
        if read_more(&mut server, &mut resp).await? == 0 {
            break;
        }
    }
    if pick(&seen) && dropped.fetch_add(1, Ordering::SeqCst) < n {
        return Ok(()); // the upstream acted; the client never hears of it
    }
    // One request per connection: tell the client so, then close.
    let status_line_end = resp.windows(2).position(|w| w == b"\r\n").unwrap_or(0) + 2;
    client.write_all(&resp[..status_line_end]).await?;
    client.write_all(b"connection: close\r\n").await?;
    client.write_all(&resp[status_line_end..]).await?;
    client.shutdown().await
}

async fn read_more<R: AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut chunk = [0u8; 64 * 1024];
    let got = r.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..got]);
    Ok(got)
}

/// Reads until the end of a head; its length (including the blank line).
async fn read_head<R: AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(i + 4);
        }
        if read_more(r, buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// The first line's first word (a method, or `HTTP/1.1 204 …` whole for a response) and
/// the headers.
fn parse_head(head: &[u8]) -> SeenRequest {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or_default();
    let method = if first.starts_with("HTTP/") {
        first.to_string()
    } else {
        first.split(' ').next().unwrap_or_default().to_string()
    };
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    SeenRequest { method, headers }
}
