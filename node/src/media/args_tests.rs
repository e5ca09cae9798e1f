use speedbox_common::config::MediaConfig;

use super::*;

fn facts(width: i64, height: i64, audio: bool) -> MediaFacts {
    MediaFacts {
        duration_s: 10.0,
        width,
        height,
        video_codec: "h264".into(),
        audio_codec: audio.then(|| "aac".into()),
        bit_rate: None,
        frame_rate: Some(25.0),
    }
}

#[test]
fn the_plan_keeps_the_aspect_and_never_upscales() {
    let cfg = MediaConfig::default();
    let plan = plan(&cfg, &facts(1920, 1080, true));
    let sizes: Vec<_> = plan.iter().map(|r| (r.width, r.height)).collect();
    assert_eq!(sizes, vec![(640, 360), (1280, 720), (1920, 1080)]);
    assert_eq!(plan[2].playlist, "1080p/index.m3u8");
    assert!(plan.windows(2).all(|w| w[0].bandwidth < w[1].bandwidth));
    // A portrait phone video: heights up to its own, widths even.
    let tall = super::plan(&cfg, &facts(1080, 1920, false));
    assert_eq!(
        tall.iter().map(|r| r.height).collect::<Vec<_>>(),
        vec![360, 720, 1080]
    );
    assert_eq!(tall[0].width, 202);
    assert_eq!(super::plan(&cfg, &facts(320, 240, true)).len(), 1);
}

#[test]
fn hls_arguments_map_every_rendition_and_its_audio() {
    let cfg = MediaConfig::default();
    let f = facts(1280, 720, true);
    let p = plan(&cfg, &f);
    let args = hls_args(&cfg, "http://127.0.0.1:1/x", &f, &p).join(" ");
    assert!(args.contains("[0:v]split=2[s0][s1];[s0]scale=-2:360[v0];[s1]scale=-2:720[v1]"));
    assert_eq!(args.matches("-map 0:a:0").count(), 2, "{args}");
    assert!(
        args.contains("-var_stream_map v:0,a:0,name:360p v:1,a:1,name:720p"),
        "{args}"
    );
    assert!(args.contains("-hls_segment_filename %v/%06d.ts"));
    // The limit binds the decoder (before the input) and the encoders (after it).
    assert_eq!(args.matches("-threads 1 ").count(), 2, "{args}");
    assert!(args.contains("expr:gte(t,n_forced*4)"));
    let silent = facts(1280, 720, false);
    let args = hls_args(&cfg, "in", &silent, &plan(&cfg, &silent)).join(" ");
    assert!(!args.contains("0:a:0") && !args.contains("-c:a"), "{args}");
    assert!(
        args.contains("-var_stream_map v:0,name:360p v:1,name:720p"),
        "{args}"
    );
}
