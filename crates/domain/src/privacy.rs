//! Privacy rules, without IO: how much of a sender's IP address is kept, which events the
//! tombstones of a forgotten customer stop, and where a project's retention period cuts.
//!
//! - IP addresses are truncated before an event is queued unless the project keeps them whole
//!   (`Project::keep_full_ip`): IPv4 to its /24 (last octet zero), IPv6 to its /48. An IPv4
//!   address written as IPv6 (`::ffff:203.0.113.7`, what a dual-stack listener reports) is
//!   truncated as the IPv4 address it is; its /48 would keep all of it.
//! - Forgetting a customer leaves a tombstone per identity. An event naming any tombstoned
//!   identity (anonymous id, user id, or an alias's previous id) is dropped by the workers, so a
//!   late or replayed event cannot bring the customer back.
//! - A retention period of N days keeps the touchpoints whose event time is at most N days old,
//!   and the traits recorded in that time; identity links stay until the customer is forgotten
//!   (they say who is who, and dropping them would split customers who are still active).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::Map;

use crate::event::{Body, Event, IdentityKey};

/// Milliseconds in one day of a retention period.
const DAY_MS: i64 = 24 * 3600 * 1000;

/// The address stored for a sender at `ip`: whole when the project keeps full addresses, else
/// [`truncate_ip`].
pub fn stored_ip(ip: IpAddr, keep_full_ip: bool) -> IpAddr {
    if keep_full_ip {
        ip.to_canonical()
    } else {
        truncate_ip(ip)
    }
}

/// The network of `ip` that is kept by default: IPv4 /24, IPv6 /48. IPv4-mapped IPv6 addresses
/// are truncated as IPv4.
pub fn truncate_ip(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::V4(Ipv4Addr::new(a, b, c, 0))
        }
        IpAddr::V6(v6) => {
            let [a, b, c, ..] = v6.segments();
            IpAddr::V6(Ipv6Addr::new(a, b, c, 0, 0, 0, 0, 0))
        }
    }
}

/// Whether `event` names an identity `is_tombstoned` accepts: such an event belongs to a
/// forgotten customer and must not be stored.
pub fn names_tombstoned(event: &Event, is_tombstoned: impl Fn(&IdentityKey) -> bool) -> bool {
    event.identities().iter().any(is_tombstoned)
}

/// What a retention sweep does with one stored event.
#[derive(Debug, Clone, PartialEq)]
pub enum Expiry {
    /// Recent enough, or already reduced to a link: left as it is.
    Keep,
    /// An expired touchpoint of one identity: deleted.
    Delete,
    /// An expired event that links identities, stored again as only that link: an identify
    /// without traits and without an IP address, with the same id, time and identities.
    ReduceToLink(Event),
}

/// What a sweep cutting at `cutoff_ms` does with `event`. Links outlive the retention period,
/// because identity stitching needs them while the customer is active; everything else an
/// expired event carried (touchpoint, properties, traits, IP address) goes.
pub fn expiry(event: &Event, cutoff_ms: i64) -> Expiry {
    if event.at_ms >= cutoff_ms {
        return Expiry::Keep;
    }
    let linking = event.identities().len() > 1;
    let reduced = match &event.body {
        Body::Touchpoint { .. } if !linking => return Expiry::Delete,
        Body::Touchpoint { .. } => Body::Identify { traits: Map::new() },
        Body::Identify { traits } if traits.is_empty() && event.ip.is_none() => {
            return Expiry::Keep
        }
        Body::Identify { .. } => Body::Identify { traits: Map::new() },
        Body::Alias { .. } if event.ip.is_none() => return Expiry::Keep,
        Body::Alias { previous_id } => Body::Alias {
            previous_id: previous_id.clone(),
        },
    };
    Expiry::ReduceToLink(Event {
        body: reduced,
        ip: None,
        ..event.clone()
    })
}

/// The earliest event time (epoch ms) a project keeping events for `retention_days` keeps at
/// `now_ms`: anything before it is deleted by the next sweep.
pub fn retention_cutoff_ms(now_ms: i64, retention_days: u32) -> i64 {
    now_ms - i64::from(retention_days) * DAY_MS
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{validate, EventLimits, Who};
    use serde_json::{json, Value};
    use uuid::Uuid;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ipv4_keeps_its_slash_24() {
        assert_eq!(truncate_ip(ip("203.0.113.77")), ip("203.0.113.0"));
        assert_eq!(truncate_ip(ip("10.1.2.255")), ip("10.1.2.0"));
        assert_eq!(truncate_ip(ip("10.1.2.0")), ip("10.1.2.0"), "idempotent");
    }

    #[test]
    fn ipv6_keeps_its_slash_48() {
        assert_eq!(
            truncate_ip(ip("2001:db8:1234:5678:9abc:def0:1234:5678")),
            ip("2001:db8:1234::")
        );
        assert_eq!(truncate_ip(ip("::1")), ip("::"));
    }

    #[test]
    fn ipv4_mapped_ipv6_is_truncated_as_ipv4() {
        // Its /48 is all zeros and would keep the whole IPv4 address in the last 32 bits.
        assert_eq!(truncate_ip(ip("::ffff:203.0.113.77")), ip("203.0.113.0"));
        assert_eq!(
            stored_ip(ip("::ffff:203.0.113.77"), true),
            ip("203.0.113.77")
        );
    }

    #[test]
    fn a_project_that_keeps_full_addresses_gets_them_whole() {
        assert_eq!(stored_ip(ip("203.0.113.77"), true), ip("203.0.113.77"));
        assert_eq!(stored_ip(ip("203.0.113.77"), false), ip("203.0.113.0"));
        assert_eq!(
            stored_ip(ip("2001:db8:1234:5678::1"), true),
            ip("2001:db8:1234:5678::1")
        );
    }

    #[test]
    fn an_event_naming_any_tombstoned_identity_is_stopped() {
        let event = |who: Who, body: Body| Event {
            event_id: Uuid::nil(),
            at_ms: 0,
            received_ms: 0,
            who,
            body,
            ip: None,
        };
        let forgotten = |key: &IdentityKey| key.0 == "u:old" || key.0 == "a:cookie";
        let alias = event(
            Who {
                anonymous_id: None,
                user_id: Some("new".into()),
            },
            Body::Alias {
                previous_id: "old".into(),
            },
        );
        assert!(
            names_tombstoned(&alias, forgotten),
            "by the alias's previous id"
        );
        let identify = event(
            Who {
                anonymous_id: Some("cookie".into()),
                user_id: Some("fresh".into()),
            },
            Body::Identify {
                traits: Default::default(),
            },
        );
        assert!(
            names_tombstoned(&identify, forgotten),
            "by its anonymous id"
        );
        let stranger = event(
            Who {
                anonymous_id: Some("cookie-2".into()),
                user_id: Some("old-not".into()),
            },
            Body::Identify {
                traits: Default::default(),
            },
        );
        assert!(!names_tombstoned(&stranger, forgotten));
    }

    fn stored(raw: Value, ip: Option<&str>) -> Event {
        let mut event = validate(
            &raw,
            raw.to_string().len(),
            2_000_000_000_000,
            Uuid::nil,
            &EventLimits::default(),
        )
        .unwrap();
        event.ip = ip.map(|text| text.parse().unwrap());
        event
    }

    #[test]
    fn expired_events_keep_only_their_links() {
        let cutoff = crate::event::parse_time("2026-11-10T00:00:00Z").unwrap();
        let (old, recent) = ("2026-11-01T00:00:00Z", "2026-11-10T00:00:00Z");
        let visit = |at: &str, who: Value| {
            let mut raw =
                json!({"timestamp": at, "touchpoint": "site_visit", "properties": {"url": "/"}});
            raw.as_object_mut()
                .unwrap()
                .extend(who.as_object().unwrap().clone());
            stored(raw, Some("203.0.113.0"))
        };
        assert_eq!(
            expiry(&visit(recent, json!({"anonymous_id": "c"})), cutoff),
            Expiry::Keep,
            "the cutoff itself is kept"
        );
        assert_eq!(
            expiry(&visit(old, json!({"anonymous_id": "c"})), cutoff),
            Expiry::Delete
        );
        let linking = visit(old, json!({"anonymous_id": "c", "user_id": "ann"}));
        let Expiry::ReduceToLink(link) = expiry(&linking, cutoff) else {
            panic!("a touchpoint naming two identities keeps their link");
        };
        assert_eq!(
            (link.event_id, link.at_ms, &link.who, link.identities()),
            (
                linking.event_id,
                linking.at_ms,
                &linking.who,
                linking.identities()
            )
        );
        assert_eq!(link.body, Body::Identify { traits: Map::new() });
        assert_eq!(link.ip, None);
        assert_eq!(expiry(&link, cutoff), Expiry::Keep, "reduced once");

        let identify = stored(
            json!({"type": "identify", "timestamp": old, "user_id": "ann", "traits": {"persona": "x"}}),
            None,
        );
        let Expiry::ReduceToLink(bare) = expiry(&identify, cutoff) else {
            panic!("old traits go");
        };
        assert_eq!(bare.body, Body::Identify { traits: Map::new() });
        let alias = stored(
            json!({"type": "alias", "timestamp": old, "user_id": "ann", "previous_id": "crm-1"}),
            Some("203.0.113.0"),
        );
        let Expiry::ReduceToLink(bare_alias) = expiry(&alias, cutoff) else {
            panic!("an old alias loses its address");
        };
        assert_eq!(bare_alias.body, alias.body);
        assert_eq!(bare_alias.ip, None);
        assert_eq!(expiry(&bare_alias, cutoff), Expiry::Keep);
    }

    #[test]
    fn the_cutoff_is_whole_days_before_now() {
        let now = 1_800_000_000_000;
        assert_eq!(retention_cutoff_ms(now, 30), now - 30 * 86_400_000);
        assert_eq!(retention_cutoff_ms(now, 0), now);
    }
}
