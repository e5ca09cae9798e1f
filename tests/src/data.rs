//! Test data that is generated, not stored: a seeded pseudo-random byte stream that can be
//! produced twice (once to upload, once to check) without holding a large file in memory.

use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};

const BLOCK: usize = 1 << 20;

/// The bytes `offset..offset+len` of the stream for `seed`, in blocks of up to 1 MiB.
fn blocks(seed: u64, len: u64) -> impl Iterator<Item = Bytes> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut left = len;
    std::iter::from_fn(move || {
        if left == 0 {
            return None;
        }
        let n = left.min(BLOCK as u64) as usize;
        let mut block = Vec::with_capacity(n + 8);
        while block.len() < n {
            // xorshift64*: fast, and different seeds give different files.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            block.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        block.truncate(n);
        left -= n as u64;
        Some(Bytes::from(block))
    })
}

/// The whole stream for `seed`, as one buffer (small files only).
pub fn bytes(seed: u64, len: u64) -> Vec<u8> {
    blocks(seed, len).flat_map(|b| b.to_vec()).collect()
}

/// The stream for `seed` as a request body.
pub fn body(seed: u64, len: u64) -> reqwest::Body {
    let stream = futures::stream::iter(blocks(seed, len).map(Ok::<_, std::io::Error>));
    reqwest::Body::wrap_stream(stream)
}

/// SHA-256 (hex) of the stream for `seed`.
pub fn sha256(seed: u64, len: u64) -> String {
    let mut h = Sha256::new();
    blocks(seed, len).for_each(|b| h.update(&b));
    hex(&h.finalize())
}

pub fn sha256_of(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// Reads a response body to its end without keeping it: (bytes read, SHA-256 hex).
pub async fn drain(response: reqwest::Response) -> Result<(u64, String), reqwest::Error> {
    let mut h = Sha256::new();
    let mut n = 0u64;
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        n += chunk.len() as u64;
        h.update(&chunk);
    }
    Ok((n, hex(&h.finalize())))
}

/// A stream of `body` that stops (without ending the request) after `limit` bytes, for
/// uploads that break off: the caller then drops the connection.
pub fn stalled_body(seed: u64, limit: u64) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::iter(blocks(seed, limit).map(Ok)).chain(futures::stream::pending())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The stream for `seed` as a request body that stops before its first block past byte
/// `at`: `reached` fires there, and the body goes on once `go` is sent (or dropped).
pub fn paused_body(seed: u64, len: u64, at: u64) -> (reqwest::Body, Pause) {
    let (reached_tx, reached) = tokio::sync::oneshot::channel();
    let (go, go_rx) = tokio::sync::oneshot::channel::<()>();
    let mut sent = 0u64;
    let mut reached_tx = Some(reached_tx);
    let mut go_rx = Some(go_rx);
    let stream = futures::stream::iter(blocks(seed, len)).then(move |block| {
        let pause = (sent + block.len() as u64 > at)
            .then(|| (reached_tx.take(), go_rx.take()))
            .and_then(|(r, g)| Some((r?, g?)));
        sent += block.len() as u64;
        async move {
            if let Some((reached, go)) = pause {
                let _ = reached.send(());
                let _ = go.await;
            }
            Ok::<_, std::io::Error>(block)
        }
    });
    (reqwest::Body::wrap_stream(stream), Pause { reached, go })
}

/// The two ends of a [`paused_body`]'s pause.
pub struct Pause {
    pub reached: tokio::sync::oneshot::Receiver<()>,
    pub go: tokio::sync::oneshot::Sender<()>,
}
