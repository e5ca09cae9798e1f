//! HTTP Range and conditional-request decisions (RFC 9110), as pure functions.
//!
//! Only single byte ranges are served as 206; a header asking for several ranges is
//! answered with the whole file (200), which RFC 9110 allows and every client handles.

/// What a `Range` header asks of a file of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable Range header: send everything.
    Full,
    /// Bytes `start..=end`, both inside the file.
    Partial { start: u64, end: u64 },
    /// A syntactically valid range that selects nothing: 416.
    Unsatisfiable,
}

/// Decides a `Range` header. Invalid syntax is ignored, as RFC 9110 §14.2 requires.
pub fn parse_range(header: Option<&str>, len: u64) -> RangeRequest {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match (first.is_empty(), last.is_empty()) {
        // "-n": the last n bytes.
        (true, false) => {
            let Some(n) = digits(last).then(|| last.parse::<u64>().ok()).flatten() else {
                return RangeRequest::Full;
            };
            if n == 0 || len == 0 {
                return RangeRequest::Unsatisfiable;
            }
            RangeRequest::Partial {
                start: len.saturating_sub(n),
                end: len - 1,
            }
        }
        // "a-" or "a-b".
        (false, _) => {
            let Some(start) = digits(first).then(|| first.parse::<u64>().ok()).flatten() else {
                return RangeRequest::Full;
            };
            let end = if last.is_empty() {
                u64::MAX
            } else {
                match digits(last).then(|| last.parse::<u64>().ok()).flatten() {
                    Some(end) if end >= start => end,
                    // "5-2" is invalid, not unsatisfiable: ignore it.
                    _ => return RangeRequest::Full,
                }
            };
            if start >= len {
                return RangeRequest::Unsatisfiable;
            }
            RangeRequest::Partial {
                start,
                end: end.min(len - 1),
            }
        }
        (true, true) => RangeRequest::Full,
    }
}

/// Whether a Range may be honoured under `If-Range` (RFC 9110 §13.1.5): only when the
/// validator still names this exact representation (a strong ETag, or the exact date).
pub fn if_range_holds(header: Option<&str>, etag: &str, last_modified: &str) -> bool {
    match header.map(str::trim) {
        None => true,
        Some(v) if v.starts_with('"') => v == etag,
        Some(v) if v.starts_with("W/") => false,
        Some(v) => v == last_modified,
    }
}

/// The chunks that hold bytes `start..=end` of a file stored in `chunk_size` pieces, and
/// how many bytes of the first one to skip.
pub fn chunk_span(start: u64, end: u64, chunk_size: u64) -> (u64, u64, usize) {
    let first = start / chunk_size;
    let last = end / chunk_size;
    (first, last, (start - first * chunk_size) as usize)
}

#[cfg(test)]
mod tests {
    use super::RangeRequest::*;
    use super::*;

    #[test]
    fn ranges() {
        let r = |h: &str, len| parse_range(Some(h), len);
        assert_eq!(r("bytes=0-0", 10), Partial { start: 0, end: 0 });
        assert_eq!(
            r("bytes=1000-2000", 5000),
            Partial {
                start: 1000,
                end: 2000
            }
        );
        assert_eq!(r("bytes=5-", 10), Partial { start: 5, end: 9 });
        assert_eq!(r("bytes=5-100", 10), Partial { start: 5, end: 9 });
        assert_eq!(r("bytes=-3", 10), Partial { start: 7, end: 9 });
        assert_eq!(r("bytes=-30", 10), Partial { start: 0, end: 9 });
        assert_eq!(r("bytes= 2 - 3 ", 10), Partial { start: 2, end: 3 });
    }

    #[test]
    fn unsatisfiable() {
        let r = |h: &str, len| parse_range(Some(h), len);
        assert_eq!(r("bytes=10-", 10), Unsatisfiable);
        assert_eq!(r("bytes=10-20", 10), Unsatisfiable);
        assert_eq!(r("bytes=-0", 10), Unsatisfiable);
        assert_eq!(r("bytes=0-", 0), Unsatisfiable);
        assert_eq!(r("bytes=-5", 0), Unsatisfiable);
    }

    #[test]
    fn invalid_or_multiple_ranges_are_ignored() {
        let r = |h: &str| parse_range(Some(h), 10);
        for h in [
            "bytes=5-2",
            "bytes=a-b",
            "bytes=-",
            "items=0-1",
            "bytes=0-1,3-4",
            "bytes=1",
            "bytes=+1-2",
            "bytes=99999999999999999999999-",
        ] {
            assert_eq!(r(h), Full, "{h}");
        }
        assert_eq!(parse_range(None, 10), Full);
    }

    #[test]
    fn if_range() {
        let (e, d) = ("\"abc\"", "Mon, 23 Nov 2026 16:00:00 GMT");
        assert!(if_range_holds(None, e, d));
        assert!(if_range_holds(Some("\"abc\""), e, d));
        assert!(!if_range_holds(Some("\"old\""), e, d));
        assert!(!if_range_holds(Some("W/\"abc\""), e, d));
        assert!(if_range_holds(Some(d), e, d));
        assert!(!if_range_holds(Some("Sun, 22 Nov 2026 16:00:00 GMT"), e, d));
    }

    #[test]
    fn spans_start_at_the_chunk_holding_the_first_byte() {
        assert_eq!(chunk_span(0, 9, 10), (0, 0, 0));
        assert_eq!(chunk_span(10, 10, 10), (1, 1, 0));
        assert_eq!(chunk_span(9, 10, 10), (0, 1, 9));
        assert_eq!(chunk_span(1000, 2000, 261_120), (0, 0, 1000));
        assert_eq!(chunk_span(261_119, 261_120, 261_120), (0, 1, 261_119));
        assert_eq!(chunk_span(600_000, 1_000_000, 261_120), (2, 3, 77_760));
    }
}
