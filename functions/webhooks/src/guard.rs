//! The SSRF guard: a subscriber's URL must lead to the public internet. Checked when a subscription
//! is created and again before every delivery, *after* DNS resolution (a name can be re-pointed at
//! an internal address at any time), and the request then goes to the very address that was checked.
//!
//! Refused: anything but `https`; loopback, private (RFC 1918), carrier-grade NAT, link-local (which
//! holds the cloud metadata endpoint 169.254.169.254), unspecified, broadcast, multicast and
//! documentation, benchmarking (198.18.0.0/15) and IETF protocol (192.0.0.0/24) addresses; for IPv6
//! the same plus unique-local (fc00::/7, which holds the AWS metadata endpoint fd00:ec2::254),
//! site-local, link-local, Teredo, discard-only and local-use NAT64 addresses, and any form that
//! leads to a refused IPv4 address (IPv4-mapped, -compatible and -translated, the well-known NAT64
//! prefix 64:ff9b::/96, 6to4). Only the explicit `allow_local` setting (off in the template, on in the local deployment,
//! whose tests' receivers run on 127.0.0.1) admits plain `http` and loopback; never the rest.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use url::Url;

/// A URL the guard let through, and the addresses it may be reached at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The URL.
    pub url: Url,
    /// Its host name (for TLS and the `Host` header).
    pub host: String,
    /// The addresses checked; requests go to the first.
    pub addresses: Vec<SocketAddr>,
}

fn v4_refused(ip: Ipv4Addr, allow_local: bool) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        return (!allow_local).then_some("a loopback address");
    }
    if ip.is_private() {
        Some("a private address")
    } else if ip.is_link_local() {
        Some("a link-local address (cloud metadata)")
    } else if a == 100 && (64..128).contains(&b) {
        Some("a carrier-grade NAT address")
    } else if ip.is_unspecified() || a == 0 {
        Some("an unspecified address")
    } else if ip.is_broadcast() || ip.is_multicast() || a >= 240 {
        Some("a broadcast, multicast or reserved address")
    } else if matches!((a, b, ip.octets()[2]), (192, 0, 2) | (198, 51, 100) | (203, 0, 113)) {
        Some("a documentation address")
    } else if (a, b, ip.octets()[2]) == (192, 0, 0) {
        Some("an IETF protocol assignment (192.0.0.0/24)")
    } else if a == 198 && (b == 18 || b == 19) {
        Some("a benchmarking address (198.18.0.0/15)")
    } else {
        None
    }
}

fn v6_refused(ip: Ipv6Addr, allow_local: bool) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_refused(v4, allow_local);
    }
    let segments = ip.segments();
    // Forms that lead to an IPv4 address, judged by that address: IPv4-compatible (::a.b.c.d,
    // deprecated but routable by some stacks), the well-known NAT64 prefix (64:ff9b::/96) and
    // IPv4-translated addresses (::ffff:0:a.b.c.d) carry it in their last 32 bits; 6to4 (2002::/16)
    // in the 32 after the prefix.
    let last32 = Ipv4Addr::from(u128::from(ip) as u32);
    let compatible = segments[..6].iter().all(|s| *s == 0) && !ip.is_loopback() && !ip.is_unspecified();
    if compatible || segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || segments[..6] == [0, 0, 0, 0, 0xffff, 0] {
        return v4_refused(last32, allow_local);
    }
    if segments[0] == 0x2002 {
        let [hi, lo] = [segments[1].to_be_bytes(), segments[2].to_be_bytes()];
        return v4_refused(Ipv4Addr::new(hi[0], hi[1], lo[0], lo[1]), allow_local);
    }
    if ip.is_loopback() {
        return (!allow_local).then_some("a loopback address");
    }
    if ip.is_unspecified() {
        Some("an unspecified address")
    } else if segments[0] == 0x64 && segments[1] == 0xff9b {
        // 64:ff9b:1::/48: NAT64 for a network's own use.
        Some("a local-use NAT64 address")
    } else if segments[0] == 0x2001 && segments[1] == 0 {
        // Teredo (2001::/32): a tunnel whose IPv4 ends are hidden in the address.
        Some("a Teredo tunnel address")
    } else if segments[..4] == [0x100, 0, 0, 0] {
        Some("a discard-only address (100::/64)")
    } else if (segments[0] & 0xffc0) == 0xfec0 {
        Some("a site-local address")
    } else if (segments[0] & 0xfe00) == 0xfc00 {
        Some("a unique-local address")
    } else if (segments[0] & 0xffc0) == 0xfe80 {
        Some("a link-local address")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else if segments[0] == 0x2001 && segments[1] == 0x0db8 {
        Some("a documentation address")
    } else {
        None
    }
}

/// Why `ip` may not be a webhook target, if it may not.
pub fn refused_address(ip: IpAddr, allow_local: bool) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_refused(v4, allow_local),
        IpAddr::V6(v6) => v6_refused(v6, allow_local),
    }
}

/// Why the guard did not let a URL through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Never acceptable: not an http(s) URL we allow, carries credentials, or leads to a refused
    /// address. No retry can fix it.
    Refused(String),
    /// Its host did not resolve just now (the lookup failed, timed out, or found no address): DNS
    /// may answer later, so the delivery is retried.
    Unresolved(String),
}

impl Refusal {
    /// Whether no retry can fix it.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Refused(_))
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused(why) | Self::Unresolved(why) => f.write_str(why),
        }
    }
}

/// How long one lookup of a target's host may take.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// Parses and checks `url`, resolving its host within [`LOOKUP_TIMEOUT`]: every address it resolves
/// to must be allowed.
pub async fn check(url: &str, allow_local: bool) -> Result<Checked, Refusal> {
    check_within(url, allow_local, LOOKUP_TIMEOUT).await
}

/// [`check`], with the lookup given `lookup_timeout`.
pub async fn check_within(url: &str, allow_local: bool, lookup_timeout: Duration) -> Result<Checked, Refusal> {
    let refused = |why: String| Refusal::Refused(why);
    let url = Url::parse(url).map_err(|e| refused(format!("is not a URL ({e})")))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_local => {}
        other => return Err(refused(format!("must be https, not {other}"))),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refused("must not carry credentials".into()));
    }
    let host = url
        .host_str()
        .ok_or_else(|| refused("has no host".into()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url.port_or_known_default().ok_or_else(|| refused("has no port".into()))?;
    let addresses: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => match tokio::time::timeout(lookup_timeout, tokio::net::lookup_host((host.as_str(), port))).await {
            Err(_) => {
                return Err(Refusal::Unresolved(format!("host {host} did not resolve within {lookup_timeout:?}")))
            }
            Ok(Err(e)) => return Err(Refusal::Unresolved(format!("host {host} does not resolve ({e})"))),
            Ok(Ok(found)) => found.collect(),
        },
    };
    if addresses.is_empty() {
        return Err(Refusal::Unresolved(format!("host {host} resolves to no address")));
    }
    for address in &addresses {
        if let Some(why) = refused_address(address.ip(), allow_local) {
            return Err(refused(format!("leads to {} ({why}): not a public internet address", address.ip())));
        }
    }
    Ok(Checked { url, host, addresses })
}
