//! The client's network address, for throttling and audit.

use std::net::{IpAddr, SocketAddr};

/// Finds the client's IP address.
///
/// `spin_client_addr` is the socket peer reported by Spin (`ip:port`,
/// `[v6]:port` or a bare IP). When `trust_forwarded_for` is set, the first
/// hop of `X-Forwarded-For` wins if it is a valid IP (bare, `ip:port` or
/// `[v6]:port`); otherwise the socket address is used. Only trust the
/// header behind a proxy that sets it itself: the first hop is whatever the
/// original sender wrote unless the proxy replaces the header.
///
/// IPv4-mapped IPv6 addresses are returned as IPv4.
pub fn client_ip(
    spin_client_addr: Option<&str>,
    x_forwarded_for: Option<&str>,
    trust_forwarded_for: bool,
) -> Option<IpAddr> {
    if trust_forwarded_for {
        let first_hop = x_forwarded_for
            .and_then(|header| header.split(',').next())
            .and_then(parse_addr);
        if first_hop.is_some() {
            return first_hop;
        }
    }
    spin_client_addr.and_then(parse_addr)
}

/// Parses a bare IP or a socket address, ignoring surrounding whitespace.
fn parse_addr(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    let ip = text
        .parse::<SocketAddr>()
        .map(|socket| socket.ip())
        .or_else(|_| text.parse::<IpAddr>())
        .or_else(|_| {
            // `[v6]` without a port.
            text.strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
                .ok_or(())
                .and_then(|inner| inner.parse::<IpAddr>().map_err(|_| ()))
        })
        .ok()?;
    Some(ip.to_canonical())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn socket_addresses_v4_and_v6() {
        assert_eq!(
            client_ip(Some("203.0.113.7:51234"), None, false),
            Some(ip("203.0.113.7"))
        );
        assert_eq!(
            client_ip(Some("[2001:db8::1]:443"), None, false),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(
            client_ip(Some("2001:db8::2"), None, false),
            Some(ip("2001:db8::2"))
        );
        assert_eq!(
            client_ip(Some("[2001:db8::3]"), None, false),
            Some(ip("2001:db8::3"))
        );
        assert_eq!(
            client_ip(Some("198.51.100.1"), None, false),
            Some(ip("198.51.100.1"))
        );
        assert_eq!(
            client_ip(Some("[::ffff:192.0.2.9]:80"), None, false),
            Some(ip("192.0.2.9"))
        );
    }

    #[test]
    fn forwarded_for_is_ignored_unless_trusted() {
        let socket = Some("10.0.0.5:4000");
        let xff = Some("198.51.100.23, 10.0.0.1");
        assert_eq!(client_ip(socket, xff, false), Some(ip("10.0.0.5")));
        assert_eq!(client_ip(socket, xff, true), Some(ip("198.51.100.23")));
        assert_eq!(
            client_ip(socket, Some(" 2001:db8::9 ,10.0.0.1"), true),
            Some(ip("2001:db8::9"))
        );
        assert_eq!(
            client_ip(socket, Some("[2001:db8::9]:1234"), true),
            Some(ip("2001:db8::9"))
        );
        assert_eq!(
            client_ip(socket, Some("198.51.100.23:999"), true),
            Some(ip("198.51.100.23"))
        );
    }

    #[test]
    fn garbage_falls_back_or_yields_none() {
        let socket = Some("10.0.0.5:4000");
        for bad in [
            "",
            "unknown",
            "999.1.1.1",
            "evil.example, 1.2.3.4",
            "1.2.3",
            ",1.2.3.4",
        ] {
            assert_eq!(
                client_ip(socket, Some(bad), true),
                Some(ip("10.0.0.5")),
                "{bad:?}"
            );
        }
        assert_eq!(client_ip(None, None, true), None);
        assert_eq!(client_ip(Some("not an address"), None, false), None);
        assert_eq!(client_ip(Some("1.2.3.4:99999"), None, false), None);
        assert_eq!(client_ip(Some(""), Some("garbage"), true), None);
    }
}
