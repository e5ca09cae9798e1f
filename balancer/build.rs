//! Compiles the page's assets into the balancer: `static/index.html`, and hls.js when
//! `scripts/setup` has installed it (`npm ci` in `static/vendor`, pinned by its
//! package-lock.json). Without it (a fresh clone that never ran npm) the build still
//! succeeds: the page is told there is no hls.js and plays videos progressively.
//!
//! The page loads hls.js from a URL that names its content (`?v=<hash>`), so the balancer
//! can let browsers cache it for a year and a new pin still reaches them at once.

use std::path::Path;
use std::{env, fs};

const PAGE: &str = "static/index.html";
const VENDOR: &str = "static/vendor";
const HLS: &str = "static/vendor/node_modules/hls.js/dist/hls.min.js";
/// What `PAGE` says where the hls.js URL goes: a valid script as it stands (no hls.js),
/// so the file also works opened on its own.
const PLACEHOLDER: &str = "/*HLS_SRC*/ null";
/// Where the balancer serves hls.js (`page::HLS_PATH`).
const HLS_PATH: &str = "/assets/hls.min.js";

fn main() {
    println!("cargo:rerun-if-changed={PAGE}");
    // A directory: cargo reruns this when any file under it changes, so an `npm ci` after
    // a build (node_modules appears) is picked up. Naming the missing file itself instead
    // would rerun this, and rebuild the crate, on every build of a fresh clone.
    println!("cargo:rerun-if-changed={VENDOR}");

    let out = env::var("OUT_DIR").expect("OUT_DIR");
    let out = Path::new(&out);
    let hls = fs::read(HLS).unwrap_or_default();
    let src = if hls.is_empty() {
        println!("cargo:warning=hls.js is not installed ({HLS}): the page plays videos without HLS; scripts/setup installs it");
        "null".to_owned()
    } else {
        format!("\"{HLS_PATH}?v={:016x}\"", fnv1a(&hls))
    };
    // An empty file stands for "not installed": page.rs answers 404 then.
    fs::write(out.join("hls.min.js"), &hls).expect("write hls.min.js");

    let page = fs::read_to_string(PAGE).expect("read the page");
    assert!(
        page.matches(PLACEHOLDER).count() == 1,
        "{PAGE} must contain `{PLACEHOLDER}` exactly once (where the hls.js URL goes)"
    );
    fs::write(out.join("index.html"), page.replace(PLACEHOLDER, &src)).expect("write the page");
}

/// FNV-1a, 64 bits: a stable content tag for the cache-busting query, without a dependency.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
