//! `GET /scribble.js`: the browser tracker, a hand-written script embedded in the binary. A site
//! loads it with one tag carrying its write key; it sends to `/v1/events` with the key in the
//! query string and a `text/plain` JSON body (see [`crate::auth::query_key`]).

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::IntoResponse;

/// The tracker's source (`src/scribble.js`).
pub const SCRIPT: &str = include_str!("scribble.js");

pub(crate) async fn script() -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "text/javascript; charset=utf-8"),
            // Sites load it on every page: an hour in the browser's cache, then revalidated.
            (CACHE_CONTROL, "public, max-age=3600"),
        ],
        SCRIPT,
    )
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::write::GzEncoder;
    use flate2::Compression;

    use super::*;

    #[test]
    fn tracker_is_under_five_kib_gzipped() {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
        encoder.write_all(SCRIPT.as_bytes()).unwrap();
        let gzipped = encoder.finish().unwrap().len();
        assert!(gzipped < 5 * 1024, "scribble.js is {gzipped} bytes gzipped");
    }
}
