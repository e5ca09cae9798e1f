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
            if n == 0 {
                return RangeRequest::Unsatisfiable;
            }
            if len == 0 {
                // §14.1.1: on an empty representation a non-zero suffix is the one
                // satisfiable shape, yet it selects no byte and no Content-Range can name
                // it; §14.2 lets us ignore the Range, so the answer is 200 with no body.
                return RangeRequest::Full;
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
/// validator is a strong entity-tag equal to ours. A date never is.
///
/// §13.1.5 honours a date only if it is a strong validator in the sense of §8.8.2.2, and an
/// origin server may treat a Last-Modified date as strong only when it "reliably knows that
/// the associated representation did not change twice during the second covered by the
/// presented validator". Ours is `uploaded_at` cut to the second, and a node knows only the
/// current revision: when revision A is uploaded at 12:00:00.200, served, and replaced by B
/// at 12:00:00.700, both carry `Last-Modified: 12:00:00`, and nothing stored says A existed
/// (it is garbage-collected after the grace period, and a delete plus a new upload resets
/// the name's version). No rule over the date, `uploaded_at` and the current time closes
/// this: the client may resume a day later, and "old enough" says nothing about when it
/// received its copy. Nodes also stamp `uploaded_at` with their own clocks. So a date is
/// treated as weak and the condition is false: the client gets 200 with the whole current
/// file, never a splice of two revisions. Clients resume with the ETag (the SHA-256, always
/// strong), as browsers and download managers do when one is offered.
pub fn if_range_holds(header: Option<&str>, etag: &str) -> bool {
    match header.map(str::trim) {
        None => true,
        // A strong comparison: weak tags and dates never match (§8.8.3.2, §13.1.5).
        Some(v) => v.starts_with('"') && v == etag,
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
    }

    /// RFC 9110 §14.1.1: on a zero-length representation only a suffix-range with a
    /// non-zero length is satisfiable; it selects nothing, so it is answered 200 (empty).
    #[test]
    fn every_range_shape_on_an_empty_file() {
        let r = |h: &str| parse_range(Some(h), 0);
        for h in ["bytes=0-", "bytes=0-0", "bytes=5-", "bytes=0-9", "bytes=-0"] {
            assert_eq!(r(h), Unsatisfiable, "{h}");
        }
        for h in ["bytes=-1", "bytes=-5", "bytes=-99999999999"] {
            assert_eq!(r(h), Full, "{h}");
        }
        // Invalid or multiple ranges are ignored on empty files too.
        for h in ["bytes=5-2", "bytes=-", "bytes=0-0,-1", "items=0-0"] {
            assert_eq!(r(h), Full, "{h}");
        }
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
        let e = "\"abc\"";
        assert!(if_range_holds(None, e));
        assert!(if_range_holds(Some("\"abc\""), e));
        assert!(if_range_holds(Some(" \"abc\" "), e));
        assert!(!if_range_holds(Some("\"old\""), e));
        assert!(!if_range_holds(Some("W/\"abc\""), e));
        assert!(!if_range_holds(Some("\"abc"), e));
    }

    /// A date is weak (§8.8.2.2), whatever its age: the node cannot know that no other
    /// revision carried the same second. Revision A at 16:00:00.200 and its replacement B
    /// at 16:00:00.700 format to this same date; any of them may be the client's copy.
    #[test]
    fn if_range_dates_never_hold() {
        let e = "\"abc\"";
        for d in [
            "Mon, 23 Nov 2026 16:00:00 GMT",
            "Sun, 22 Nov 2026 16:00:00 GMT",
            "Thu, 01 Jan 1970 00:00:00 GMT",
        ] {
            assert!(!if_range_holds(Some(d), e), "{d}");
        }
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
