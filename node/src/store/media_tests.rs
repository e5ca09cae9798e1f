use super::*;

fn output(generation: i64, token: i64) -> FileInfo {
    FileInfo {
        name: "a.mp4.media/master.m3u8".into(),
        key: "a.mp4.media/master.m3u8".into(),
        file_id: ObjectId::new(),
        length: 1,
        chunk_size: 1,
        content_type: "application/vnd.apple.mpegurl".into(),
        md5: String::new(),
        sha256: String::new(),
        uploaded_at: DateTime::now(),
        version: 1,
        media: Some(MediaOutput {
            source: ObjectId::new(),
            generation,
            token,
        }),
        small: None,
        inline: None,
    }
}

#[test]
fn an_output_never_replaces_a_newer_jobs_or_leases() {
    let guard = |generation, token| {
        OutputGuard(MediaOutput {
            source: ObjectId::new(),
            generation,
            token,
        })
    };
    let current = output(3, 5);
    // A retry under the same lease, or a later lease, or a later upload: allowed.
    assert!(guard(3, 5).allows(Some(&current)));
    assert!(guard(3, 6).allows(Some(&current)));
    assert!(guard(4, 1).allows(Some(&current)));
    // A worker whose lease was taken over, or the job of a replaced revision: refused.
    assert!(!guard(3, 4).allows(Some(&current)));
    assert!(!guard(2, 9).allows(Some(&current)));
    // Nothing there, or an ordinary file: allowed.
    assert!(guard(1, 1).allows(None));
    let plain = FileInfo {
        media: None,
        small: None,
        ..output(0, 0)
    };
    assert!(guard(1, 1).allows(Some(&plain)));
}

#[test]
fn videos_are_known_by_their_type() {
    assert!(is_video("video/mp4"));
    assert!(is_video("Video/QuickTime"));
    assert!(!is_video("video"));
    assert!(!is_video("image/jpeg"));
    assert!(!is_video("application/vnd.apple.mpegurl"));
}
