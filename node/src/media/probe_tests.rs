use super::*;

#[test]
fn probe_output_gives_the_facts() {
    let json = r#"{"streams": [
        {"codec_type": "video", "codec_name": "mjpeg", "width": 300, "height": 300,
         "disposition": {"attached_pic": 1}},
        {"codec_type": "audio", "codec_name": "aac"},
        {"codec_type": "video", "codec_name": "h264", "width": 1920, "height": 1080,
         "avg_frame_rate": "30000/1001", "disposition": {"attached_pic": 0}}],
        "format": {"duration": "12.500000", "bit_rate": "4000000"}}"#;
    let f = parse_probe(json).unwrap();
    assert_eq!(
        (f.width, f.height, f.video_codec.as_str()),
        (1920, 1080, "h264")
    );
    assert_eq!(f.audio_codec.as_deref(), Some("aac"));
    assert_eq!(f.duration_s, 12.5);
    assert_eq!(f.bit_rate, Some(4_000_000));
    assert!((f.frame_rate.unwrap() - 29.97).abs() < 0.01);
}

#[test]
fn a_file_without_a_video_stream_is_rejected() {
    let audio_only = r#"{"streams": [{"codec_type": "audio", "codec_name": "mp3"}],
        "format": {"duration": "3.0"}}"#;
    assert!(matches!(
        parse_probe(audio_only),
        Err(ToolError::Rejected(_))
    ));
    let cover_only = r#"{"streams": [{"codec_type": "video", "width": 5, "height": 5,
        "disposition": {"attached_pic": 1}}]}"#;
    assert!(matches!(
        parse_probe(cover_only),
        Err(ToolError::Rejected(_))
    ));
    assert!(matches!(parse_probe("{}"), Err(ToolError::Rejected(_))));
    assert!(matches!(parse_probe("not json"), Err(ToolError::Failed(_))));
}

#[test]
fn frame_rates_are_read() {
    assert_eq!(parse_rate("25/1"), Some(25.0));
    assert_eq!(parse_rate("0/0"), None);
}
