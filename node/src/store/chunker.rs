//! Cutting a body into GridFS chunks: frames in, whole chunks out in batches of
//! `chunks_per_write`, and the bytes of an unfinished chunk kept as the tail. One pure
//! piece used by PUT, multipart and tus, so the chunk boundaries are tested once.

use bytes::{Bytes, BytesMut};

/// Frames → batches of whole chunks (+ the unfinished tail).
#[derive(Debug)]
pub struct Chunker {
    chunk_size: usize,
    per_batch: usize,
    /// The start of the next chunk, not yet `chunk_size` long.
    partial: BytesMut,
    /// Whole chunks not yet handed out as a full batch.
    batch: Vec<Bytes>,
}

impl Chunker {
    /// A chunker for chunks of `chunk_size` bytes in batches of `per_batch` (both ≥ 1),
    /// continuing after `tail`, the stored bytes of an unfinished chunk (tus; empty for a
    /// new file).
    pub fn new(chunk_size: usize, per_batch: usize, tail: &[u8]) -> Self {
        Self {
            chunk_size: chunk_size.max(1),
            per_batch: per_batch.max(1),
            partial: BytesMut::from(tail),
            batch: Vec::with_capacity(per_batch),
        }
    }

    /// Takes one frame; returns the batches it completed, in order (usually none or one).
    /// A whole chunk inside one frame is passed on without a copy.
    pub fn push(&mut self, mut data: Bytes) -> Vec<Vec<Bytes>> {
        let mut full = Vec::new();
        while !data.is_empty() {
            if self.partial.is_empty() && data.len() >= self.chunk_size {
                self.batch.push(data.split_to(self.chunk_size));
            } else {
                let take = (self.chunk_size - self.partial.len()).min(data.len());
                self.partial.extend_from_slice(&data.split_to(take));
                if self.partial.len() == self.chunk_size {
                    self.batch.push(self.partial.split().freeze());
                }
            }
            if self.batch.len() == self.per_batch {
                full.push(std::mem::replace(
                    &mut self.batch,
                    Vec::with_capacity(self.per_batch),
                ));
            }
        }
        full
    }

    /// Ends the stream: the whole chunks not yet handed out, then the tail. For a file
    /// whose last byte has arrived, the tail is its (short) last chunk; for an unfinished
    /// tus upload it is what the state document keeps.
    pub fn finish(mut self) -> (Vec<Bytes>, Bytes) {
        (std::mem::take(&mut self.batch), self.partial.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `frames` (sizes) of a counting byte stream through a chunker; returns every
    /// chunk's length in order, batch boundaries as `|`, and the tail's length.
    fn cut(cs: usize, per: usize, tail: usize, frames: &[usize]) -> (String, usize) {
        let mut c = Chunker::new(cs, per, &vec![7u8; tail]);
        let mut out = Vec::new();
        let mut next = 0u8;
        let mut all = vec![7u8; tail];
        for &len in frames {
            let frame: Vec<u8> = (0..len)
                .map(|_| {
                    next = next.wrapping_add(1);
                    next
                })
                .collect();
            all.extend_from_slice(&frame);
            for batch in c.push(Bytes::from(frame)) {
                assert_eq!(batch.len(), per, "a full batch");
                out.push(batch);
            }
        }
        let (rest, tail) = c.finish();
        out.push(rest);
        // The bytes come out unchanged and in order.
        let joined: Vec<u8> = out
            .iter()
            .flatten()
            .flat_map(|b| b.to_vec())
            .chain(tail.to_vec())
            .collect();
        assert_eq!(joined, all);
        let shape = out
            .iter()
            .map(|b| {
                b.iter()
                    .map(|c| c.len().to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect::<Vec<_>>()
            .join("|");
        (shape, tail.len())
    }

    #[test]
    fn chunk_boundaries() {
        let cs = 10;
        // (tail, frames) → (whole chunks by batch, tail length)
        let cases: &[(usize, &[usize], &str, usize)] = &[
            (0, &[], "", 0),
            (0, &[0], "", 0),
            (0, &[1], "", 1),
            (0, &[cs - 1], "", 9),
            (0, &[cs], "10", 0),
            (0, &[cs + 1], "10", 1),
            (0, &[2 * cs], "10,10|", 0),
            (0, &[5 * cs + 3], "10,10|10,10|10", 3),
            (0, &[3, 3, 3, 3], "10", 2),
            (0, &[7, 13, 1, 19, 4], "10,10|10,10|", 4),
            (0, &[1; 25], "10,10|", 5),
            (4, &[6], "10", 0),
            (4, &[5], "", 9),
            (9, &[1, 10, 1], "10,10|", 1),
        ];
        for &(tail, frames, shape, rest) in cases {
            assert_eq!(
                cut(cs, 2, tail, frames),
                (shape.to_string(), rest),
                "tail {tail}, frames {frames:?}"
            );
        }
    }

    #[test]
    fn batches_of_one_and_big_frames() {
        assert_eq!(cut(4, 1, 0, &[9]), ("4|4|".into(), 1));
        assert_eq!(cut(4, 3, 0, &[100]).1, 0);
        assert_eq!(
            cut(261_120, 4, 0, &[65_536; 20]).0,
            "261120,261120,261120,261120|261120"
        );
    }
}
