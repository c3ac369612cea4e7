//! Who the client is: the peer address of the connection, or, when the peer is a trusted reverse proxy, the
//! address that proxy reports in `X-Forwarded-For`.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;

/// An IP address or a CIDR range (`10.0.0.0/8`, `::1`), as `LATHE_TRUSTED_PROXIES` lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    network: IpAddr,
    prefix_len: u8,
}

impl IpRange {
    /// Whether `ip` is inside the range. An IPv4 address written as IPv6 (`::ffff:10.0.0.1`) counts as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical(ip)) {
            (IpAddr::V4(network), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u32::from(network) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u128::from(network) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let (address, prefix) = text
            .split_once('/')
            .map_or((text, None), |(a, p)| (a, Some(p)));
        let network = canonical(
            address
                .parse::<IpAddr>()
                .map_err(|_| format!("`{text}` is not an IP address or CIDR range"))?,
        );
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix_len = match prefix {
            None => max,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|len| *len <= max)
                .ok_or_else(|| format!("`{text}`: the prefix length must be 0 to {max}"))?,
        };
        Ok(Self {
            network,
            prefix_len,
        })
    }
}

/// `::ffff:a.b.c.d` as `a.b.c.d`, so a dual-stack listener's peers compare with IPv4 ranges.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The client's address, for per-address limits. `None` only where no connection information exists (a router
/// driven without the listener, as in some tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<ClientIp>()
            .copied()
            .unwrap_or(ClientIp(None)))
    }
}

/// The client address of a request from `peer`: `peer` itself unless it is a trusted proxy; otherwise the
/// right-most `X-Forwarded-For` address that is not a trusted proxy (each proxy appends the address it received the
/// request from, so everything left of the first untrusted one could have been written by the client).
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpRange]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|range| range.contains(ip));
    let mut client = canonical(peer);
    if !is_trusted(client) {
        return client;
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .collect::<Vec<_>>();
    for hop in forwarded.into_iter().rev() {
        // An entry that is not an address (garbage, or `unknown`) ends the walk: the last trusted hop is the best
        // address there is.
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            break;
        };
        client = canonical(ip);
        if !is_trusted(client) {
            break;
        }
    }
    client
}

/// Middleware: resolves the request's [`ClientIp`] from the connection's peer address and the trusted proxies.
pub async fn resolve(trusted: Arc<[IpRange]>, mut request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    let client = peer.map(|peer| client_address(peer, request.headers(), &trusted));
    request.extensions_mut().insert(ClientIp(client));
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(list: &[&str]) -> Vec<IpRange> {
        list.iter().map(|r| r.parse().unwrap()).collect()
    }

    fn forwarded(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", value.parse().unwrap());
        headers
    }

    #[test]
    fn ranges_contain_their_addresses_only() {
        let range: IpRange = "10.1.0.0/16".parse().unwrap();
        assert!(range.contains("10.1.200.3".parse().unwrap()));
        assert!(range.contains("::ffff:10.1.0.1".parse().unwrap()));
        assert!(!range.contains("10.2.0.1".parse().unwrap()));
        assert!(!range.contains("::1".parse().unwrap()));
        let one: IpRange = "2001:db8::1".parse().unwrap();
        assert!(one.contains("2001:db8::1".parse().unwrap()));
        assert!(!one.contains("2001:db8::2".parse().unwrap()));
        let all: IpRange = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.9".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<IpRange>().is_err());
        assert!("proxy.local".parse::<IpRange>().is_err());
    }

    #[test]
    fn forwarded_for_is_ignored_from_an_untrusted_peer() {
        let trusted = ranges(&["10.0.0.0/8"]);
        let client = client_address(
            "203.0.113.7".parse().unwrap(),
            &forwarded("198.51.100.1"),
            &trusted,
        );
        assert_eq!(client, "203.0.113.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn the_right_most_untrusted_forwarded_address_is_the_client() {
        let trusted = ranges(&["10.0.0.0/8", "127.0.0.1"]);
        // The client wrote `1.2.3.4` itself; the first proxy appended the address it saw, then a second proxy.
        let headers = forwarded("1.2.3.4, 198.51.100.9, 10.0.0.5");
        let client = client_address("127.0.0.1".parse().unwrap(), &headers, &trusted);
        assert_eq!(client, "198.51.100.9".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_chain_of_trusted_hops_or_garbage_stops_at_the_last_known_address() {
        let trusted = ranges(&["10.0.0.0/8"]);
        let all_trusted = client_address(
            "10.0.0.1".parse().unwrap(),
            &forwarded("10.0.0.2"),
            &trusted,
        );
        assert_eq!(all_trusted, "10.0.0.2".parse::<IpAddr>().unwrap());
        let garbage = client_address(
            "10.0.0.1".parse().unwrap(),
            &forwarded("1.2.3.4, unknown"),
            &trusted,
        );
        assert_eq!(garbage, "10.0.0.1".parse::<IpAddr>().unwrap());
        let missing = client_address("10.0.0.1".parse().unwrap(), &HeaderMap::new(), &trusted);
        assert_eq!(missing, "10.0.0.1".parse::<IpAddr>().unwrap());
    }
}
