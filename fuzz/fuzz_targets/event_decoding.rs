//! Arbitrary bytes as a `POST /v1/events` body, through the collector's own decoding and
//! per-event validation ([`scribble_collector::check_body`]) with the production limits, once as
//! each endpoint (`/v1/events`, `/v1/identify`, `/v1/alias`) sees it. A body that starts like
//! gzip is sent as `Content-Encoding: gzip`, so the seeds can reach validation through inflation
//! too. Nothing may panic, and rejections come back in the order of the events' indexes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use scribble_collector::{check_body, Checked, CollectorConfig};
use scribble_domain::project::Projects;

/// The gzip magic number, which starts every gzip member.
const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];

/// A fixed receive time (2027-01-15), so a crash replays the same way on any day.
const RECEIVED_MS: i64 = 1_800_000_000_000;

fuzz_target!(|body: &[u8]| {
    let config = CollectorConfig::new(Projects::default());
    let encoding = body.starts_with(GZIP_MAGIC).then_some("gzip");
    for forced_type in [None, Some("identify"), Some("alias")] {
        let Ok(Checked { rejected, .. }) =
            check_body(body, encoding, forced_type, RECEIVED_MS, &config)
        else {
            continue;
        };
        assert!(
            rejected
                .windows(2)
                .all(|pair| pair[0].index < pair[1].index),
            "rejections out of order: {rejected:?}"
        );
    }
});
