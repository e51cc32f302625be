//! The hand-built scenario both end-to-end tests send: three customers whose journeys are worked
//! out by hand in tests/embedded_e2e.rs.

use serde_json::{json, Value};

/// Event ids, so the duplicate can be sent twice on purpose.
pub fn id(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

/// Ann: an ad click and a visit as cookie-a, then email and a purchase as user ann; the identify
/// tying cookie-a to ann is sent last. Bob: anonymous, loops on the site and drops off. Cara:
/// email-driven, buys on day 6.
pub fn touchpoints() -> Vec<Value> {
    let t = |n: u32, at: &str, touchpoint: &str, who: (&str, &str)| json!({"event_id": id(n), "timestamp": at, "touchpoint": touchpoint, who.0: who.1});
    vec![
        t(
            1,
            "2026-10-01T09:00:00Z",
            "ad_click",
            ("anonymous_id", "cookie-a"),
        ),
        t(
            2,
            "2026-10-01T09:05:00Z",
            "site_visit",
            ("anonymous_id", "cookie-a"),
        ),
        t(3, "2026-10-03T09:00:00Z", "email_open", ("user_id", "ann")),
        t(4, "2026-10-03T09:10:00Z", "site_visit", ("user_id", "ann")),
        t(5, "2026-10-04T09:00:00Z", "purchase", ("user_id", "ann")),
        t(
            6,
            "2026-10-01T10:00:00Z",
            "ad_click",
            ("anonymous_id", "cookie-b"),
        ),
        t(
            7,
            "2026-10-01T10:02:00Z",
            "site_visit",
            ("anonymous_id", "cookie-b"),
        ),
        t(
            8,
            "2026-10-02T10:00:00Z",
            "site_visit",
            ("anonymous_id", "cookie-b"),
        ),
        t(9, "2026-10-01T09:00:00Z", "email_open", ("user_id", "cara")),
        t(
            10,
            "2026-10-01T09:30:00Z",
            "site_visit",
            ("user_id", "cara"),
        ),
        t(
            11,
            "2026-10-06T09:00:00Z",
            "email_open",
            ("user_id", "cara"),
        ),
        t(12, "2026-10-07T09:00:00Z", "purchase", ("user_id", "cara")),
    ]
}

/// The identify that ties cookie-a to ann, sent after all of Ann's touchpoints.
pub fn late_identify() -> Value {
    json!({"type": "identify", "event_id": id(13), "timestamp": "2026-10-05T08:00:00Z",
           "user_id": "ann", "anonymous_id": "cookie-a", "traits": {"persona": "researcher"}})
}
