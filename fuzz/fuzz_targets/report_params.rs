//! Arbitrary bytes as a report's query string, split into pairs the way the query API's routes
//! do (axum's `Query`, over `serde_urlencoded`), then through every report parameter decoder in
//! [`scribble_query_api::params`]. Any decoder may refuse; none may panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use scribble_query_api::params;

/// A fixed "now" for `/v1/leads` (2027-01-15), so a crash replays the same way on any day.
const NOW_MS: i64 = 1_800_000_000_000;

fuzz_target!(|query: &[u8]| {
    let Ok(pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(query) else {
        return;
    };
    let _ = params::path_query(pairs.clone());
    let _ = params::metrics_query(pairs.clone());
    let _ = params::overview_query(pairs.clone());
    let _ = params::filter_query(pairs.clone());
    let _ = params::no_parameters(pairs.clone());
    let _ = params::funnel_query(pairs.clone());
    let _ = params::drop_off_query(pairs.clone());
    let _ = params::top_paths_query(pairs.clone());
    let _ = params::influence_query(pairs.clone());
    let _ = params::attribution_query(pairs.clone());
    let _ = params::sales_cycle_query(pairs.clone());
    let _ = params::leads_query(pairs, NOW_MS);
});
