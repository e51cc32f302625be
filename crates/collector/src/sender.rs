//! The sender's IP address, recorded on each event it sends (truncated before the event is
//! queued unless the project keeps full addresses, see `scribble_domain::privacy`).
//!
//! It is the TCP peer's address, unless the peer is a trusted proxy (`--trusted-proxy`): then
//! `X-Forwarded-For` is read from the right, the entry the nearest proxy appended first, past
//! every trusted proxy, and the first address that is not one is the sender. A client that sends
//! its own `X-Forwarded-For` only adds entries to the left of the one its proxy appends, so it
//! cannot pose as another address; with a single proxy that overwrites the header, the sender is
//! its first (only) entry. Every proxy in front of the collector must be listed. Without any
//! trusted proxy the header is ignored.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::HeaderMap;

use crate::AppState;

/// An address or a network in CIDR notation: `10.0.0.0/8`, `192.0.2.7`, `2001:db8::/32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNetwork {
    address: IpAddr,
    prefix: u8,
}

impl IpNetwork {
    /// Whether `ip` is in this network. IPv4-mapped IPv6 addresses count as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.address, ip.to_canonical()) {
            (IpAddr::V4(network), IpAddr::V4(ip)) => {
                leading_bits_equal(&network.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(network), IpAddr::V6(ip)) => {
                leading_bits_equal(&network.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

/// Whether the first `bits` bits of `a` and `b` agree.
fn leading_bits_equal(a: &[u8], b: &[u8], bits: u8) -> bool {
    let (whole, rest) = (usize::from(bits / 8), bits % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    a[whole] & mask == b[whole] & mask
}

impl FromStr for IpNetwork {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address: IpAddr = address.parse().map_err(|_| {
            format!("{text:?} is not an IP address or network; write e.g. 10.0.0.0/8 or 192.0.2.7")
        })?;
        let address = address.to_canonical();
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(bits) => bits
                .parse::<u8>()
                .ok()
                .filter(|&bits| bits <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(Self { address, prefix })
    }
}

/// The proxies whose `X-Forwarded-For` entries the collector believes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(pub Vec<IpNetwork>);

impl TrustedProxies {
    fn trust(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|network| network.contains(ip))
    }
}

/// The sender of a request from `peer`, given the `X-Forwarded-For` values in header order.
/// Pure; see the module doc. An entry that is not an address (`unknown`, garbage) ends the walk
/// at the trusted proxy that passed it on.
pub fn sender_ip<'a>(
    peer: IpAddr,
    forwarded_for: impl IntoIterator<Item = &'a str>,
    trusted: &TrustedProxies,
) -> IpAddr {
    let mut sender = peer;
    if !trusted.trust(sender) {
        return sender;
    }
    let chain: Vec<&str> = forwarded_for
        .into_iter()
        .flat_map(|value| value.split(','))
        .collect();
    for entry in chain.into_iter().rev() {
        let Some(hop) = forwarded_address(entry) else {
            return sender;
        };
        sender = hop;
        if !trusted.trust(sender) {
            return sender;
        }
    }
    sender
}

/// One `X-Forwarded-For` entry as an address: `192.0.2.7`, `2001:db8::1`, or with a port
/// (`192.0.2.7:4711`, `[2001:db8::1]:4711`).
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip);
    }
    entry.parse::<SocketAddr>().ok().map(|socket| socket.ip())
}

/// The sender's address of a request, when the server knows its peer (it is served with
/// [`crate::serve`], which records it).
pub(crate) struct SenderIp(pub Option<IpAddr>);

impl FromRequestParts<AppState> for SenderIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() else {
            return Ok(Self(None));
        };
        Ok(Self(Some(sender_ip(
            peer.ip(),
            forwarded_for(&parts.headers),
            &state.config.trusted_proxies,
        ))))
    }
}

/// The `X-Forwarded-For` values of `headers`, in order; values that are not text are skipped.
fn forwarded_for(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn trusted(networks: &[&str]) -> TrustedProxies {
        TrustedProxies(networks.iter().map(|text| text.parse().unwrap()).collect())
    }

    #[test]
    fn networks_parse_and_contain_their_addresses() {
        let private: IpNetwork = "10.0.0.0/8".parse().unwrap();
        assert!(private.contains(ip("10.200.1.2")));
        assert!(!private.contains(ip("11.0.0.1")));
        assert!(
            private.contains(ip("::ffff:10.1.2.3")),
            "IPv4-mapped counts as IPv4"
        );
        let single: IpNetwork = "192.0.2.7".parse().unwrap();
        assert!(single.contains(ip("192.0.2.7")) && !single.contains(ip("192.0.2.8")));
        let odd: IpNetwork = "192.0.2.128/25".parse().unwrap();
        assert!(odd.contains(ip("192.0.2.200")) && !odd.contains(ip("192.0.2.100")));
        let v6: IpNetwork = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")) && !v6.contains(ip("2001:db9::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        let everything: IpNetwork = "0.0.0.0/0".parse().unwrap();
        assert!(everything.contains(ip("203.0.113.9")));
        for bad in ["", "10.0.0.0/33", "::/129", "example.com", "10.0.0.0/x"] {
            assert!(bad.parse::<IpNetwork>().is_err(), "{bad}");
        }
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_sender() {
        let none = TrustedProxies::default();
        assert_eq!(
            sender_ip(ip("198.51.100.4"), ["203.0.113.9"], &none),
            ip("198.51.100.4")
        );
        let proxy = trusted(&["10.0.0.1"]);
        assert_eq!(
            sender_ip(ip("198.51.100.4"), ["203.0.113.9"], &proxy),
            ip("198.51.100.4"),
            "an untrusted peer's header is ignored"
        );
    }

    #[test]
    fn behind_trusted_proxies_the_nearest_untrusted_entry_is_the_sender() {
        let proxies = trusted(&["10.0.0.0/8"]);
        let peer = ip("10.0.0.1");
        assert_eq!(
            sender_ip(peer, ["203.0.113.9"], &proxies),
            ip("203.0.113.9")
        );
        assert_eq!(
            sender_ip(peer, ["203.0.113.9, 10.1.1.1"], &proxies),
            ip("203.0.113.9"),
            "past a second trusted proxy"
        );
        assert_eq!(
            sender_ip(peer, ["1.2.3.4", "203.0.113.9"], &proxies),
            ip("203.0.113.9"),
            "a forged entry to the left is not believed; headers join in order"
        );
        assert_eq!(
            sender_ip(peer, ["[2001:db8::7]:4711"], &proxies),
            ip("2001:db8::7")
        );
        assert_eq!(sender_ip(peer, ["unknown"], &proxies), peer);
        assert_eq!(sender_ip(peer, std::iter::empty(), &proxies), peer);
        assert_eq!(
            sender_ip(peer, ["10.9.9.9"], &proxies),
            ip("10.9.9.9"),
            "only trusted hops: the farthest one"
        );
    }
}
