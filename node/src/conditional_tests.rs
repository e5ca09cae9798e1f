use super::Decision::*;
use super::*;

const ETAG: &str = "\"abc\"";
/// Mon, 23 Nov 2026 16:00:00 GMT, plus 500 ms.
const MODIFIED_MS: i64 = 1_795_449_600_500;

fn cur() -> Option<Validators<'static>> {
    Some(Validators {
        etag: ETAG,
        modified_ms: MODIFIED_MS,
    })
}

fn pre(pairs: &[(&str, &str)]) -> Preconditions {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    Preconditions::from_headers(&h)
}

#[test]
fn if_none_match_star_is_create_only() {
    let p = pre(&[("if-none-match", "*")]);
    assert_eq!(p.evaluate(None, false), Proceed);
    assert_eq!(p.evaluate(cur(), false), Failed);
    assert_eq!(p.evaluate(cur(), true), NotModified);
}

#[test]
fn if_match_is_strong_and_needs_a_revision() {
    assert_eq!(
        pre(&[("if-match", "\"abc\"")]).evaluate(cur(), false),
        Proceed
    );
    assert_eq!(
        pre(&[("if-match", "\"x\", \"abc\"")]).evaluate(cur(), false),
        Proceed
    );
    assert_eq!(
        pre(&[("if-match", "\"x\""), ("if-match", "\"abc\"")]).evaluate(cur(), false),
        Proceed
    );
    assert_eq!(
        pre(&[("if-match", "W/\"abc\"")]).evaluate(cur(), false),
        Failed
    );
    assert_eq!(
        pre(&[("if-match", "\"stale\"")]).evaluate(cur(), false),
        Failed
    );
    assert_eq!(
        pre(&[("if-match", "\"stale\"")]).evaluate(cur(), true),
        Failed
    );
    assert_eq!(pre(&[("if-match", "*")]).evaluate(cur(), false), Proceed);
    assert_eq!(pre(&[("if-match", "*")]).evaluate(None, false), Failed);
    assert_eq!(
        pre(&[("if-match", "\"abc\"")]).evaluate(None, false),
        Failed
    );
}

#[test]
fn if_none_match_is_weak() {
    assert_eq!(
        pre(&[("if-none-match", "W/\"abc\"")]).evaluate(cur(), true),
        NotModified
    );
    assert_eq!(
        pre(&[("if-none-match", "\"x\", \"abc\"")]).evaluate(cur(), false),
        Failed
    );
    assert_eq!(
        pre(&[("if-none-match", "\"x\"")]).evaluate(cur(), false),
        Proceed
    );
    assert_eq!(
        pre(&[("if-none-match", "\"abc\"")]).evaluate(None, true),
        Proceed
    );
}

#[test]
fn dates_compare_at_second_precision() {
    let same = "Mon, 23 Nov 2026 16:00:00 GMT";
    let before = "Mon, 23 Nov 2026 15:59:59 GMT";
    let after = "Mon, 23 Nov 2026 16:00:01 GMT";
    assert_eq!(http_date(MODIFIED_MS), same);
    let ius = |d| pre(&[("if-unmodified-since", d)]).evaluate(cur(), false);
    assert_eq!(ius(same), Proceed);
    assert_eq!(ius(after), Proceed);
    assert_eq!(ius(before), Failed);
    assert_eq!(ius("not a date"), Proceed);
    let ims = |d| pre(&[("if-modified-since", d)]).evaluate(cur(), true);
    assert_eq!(ims(same), NotModified);
    assert_eq!(ims(after), NotModified);
    assert_eq!(ims(before), Proceed);
    // If-Modified-Since applies to reads only.
    assert_eq!(
        pre(&[("if-modified-since", same)]).evaluate(cur(), false),
        Proceed
    );
    // A missing file has no date: If-Unmodified-Since is ignored.
    assert_eq!(
        pre(&[("if-unmodified-since", before)]).evaluate(None, false),
        Proceed
    );
}

#[test]
fn order_of_evaluation() {
    // If-Match wins over If-Unmodified-Since (§13.2.2 step 2 only without If-Match).
    let p = pre(&[
        ("if-match", ETAG),
        ("if-unmodified-since", "Mon, 23 Nov 2026 15:00:00 GMT"),
    ]);
    assert_eq!(p.evaluate(cur(), false), Proceed);
    // If-None-Match wins over If-Modified-Since.
    let p = pre(&[
        ("if-none-match", "\"x\""),
        ("if-modified-since", "Mon, 23 Nov 2026 17:00:00 GMT"),
    ]);
    assert_eq!(p.evaluate(cur(), true), Proceed);
    // A failed If-Match is 412 even when If-None-Match would say 304.
    let p = pre(&[("if-match", "\"stale\""), ("if-none-match", ETAG)]);
    assert_eq!(p.evaluate(cur(), true), Failed);
    assert!(pre(&[]).is_empty());
    assert!(!pre(&[("if-none-match", "*")]).is_empty());
}
