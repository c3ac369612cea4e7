//! Compresses the console's assets (`api/console/`) with gzip at build time, into `OUT_DIR`, so that the binary
//! embeds both forms and serves the compressed one to browsers that accept it without compressing per request.

use std::io::Write;
use std::path::Path;

/// The files `src/console/assets.rs` embeds.
const ASSETS: &[&str] = &[
    "index.html",
    "style.css",
    "app.js",
    "api.js",
    "ui.js",
    "releases.js",
    "admin.js",
    "operations.graphql",
];

fn main() {
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    for name in ASSETS {
        let source = Path::new("console").join(name);
        println!("cargo::rerun-if-changed={}", source.display());
        let bytes = std::fs::read(&source).expect("a console asset");
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&bytes).expect("gzip in memory");
        let gzipped = encoder.finish().expect("gzip in memory");
        std::fs::write(Path::new(&out).join(format!("{name}.gz")), gzipped)
            .expect("OUT_DIR is writable");
    }
}
