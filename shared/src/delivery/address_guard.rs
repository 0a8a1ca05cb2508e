//! Refuses delivery to private, loopback, link-local and other non-public addresses (SSRF),
//! unless the operator allows them. Checked on the resolved addresses, inside the HTTP
//! client's resolver, so a DNS answer cannot slip past the check. An IPv6 address that carries
//! an IPv4 one (mapped, compatible, NAT64, 6to4) is judged by the IPv4 address it reaches.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240)
}

/// The IPv4 address an IPv6 address reaches, for the forms that carry one: a packet to it
/// ends up at that IPv4 address (through the host's stack, a NAT64 gateway or a 6to4 relay),
/// so the IPv4 rules judge it.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = Ipv4Addr::from_bits(ip.to_bits() as u32);
    match s {
        // IPv4-mapped ::ffff:0:0/96 and IPv4-compatible ::/96 (deprecated; `::` and `::1`
        // read as 0.0.0.0 and 0.0.0.1, which the IPv4 rules refuse).
        [0, 0, 0, 0, 0, 0xffff | 0, ..] => Some(low),
        // NAT64's well-known prefix 64:ff9b::/96 (RFC 6052).
        [0x64, 0xff9b, 0, 0, 0, 0, ..] => Some(low),
        // 6to4 2002::/16 (RFC 3056): the next 32 bits.
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::from_bits((u32::from(hi) << 16) | u32::from(lo))),
        _ => None,
    }
}

/// Only global unicast (2000::/3) is public, less its special-purpose ranges; outside it lie
/// loopback, unspecified, multicast, link-local, site-local (fec0::/10), unique local, NAT64's
/// local-use prefix (64:ff9b:1::/48, whose IPv4 placement is the operator's), discard-only and
/// the unassigned space.
fn is_public_v6(ip: Ipv6Addr) -> bool {
    let [a, b, ..] = ip.segments();
    let global_unicast = (a & 0xe000) == 0x2000;
    global_unicast
        // IETF protocol assignments 2001::/23: Teredo 2001::/32 (a tunnel to an address it
        // obfuscates), benchmarking, ORCHID and ORCHIDv2, AMT, AS112: no webhook lives there.
        && !(a == 0x2001 && b < 0x0200)
        // Documentation 2001:db8::/32 and 3fff::/20 (RFC 9637).
        && !(a == 0x2001 && b == 0x0db8)
        && !(a == 0x3fff && b < 0x1000)
}

/// A resolver that drops non-public addresses and fails when none is left.
pub(crate) struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::task::spawn_blocking(move || (host.as_str(), 0).to_socket_addrs())
                    .await??
                    .collect();
            let allowed: Vec<SocketAddr> =
                addrs.into_iter().filter(|a| is_public(a.ip())).collect();
            if allowed.is_empty() {
                return Err(Box::new(Refused) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("endpoint resolves to a private, loopback or link-local address")]
pub struct Refused;

#[cfg(test)]
mod tests {
    use super::*;

    fn check(blocked: &[&str], public: &[&str]) {
        for ip in blocked {
            assert!(!is_public(ip.parse().unwrap()), "{ip} must be refused");
        }
        for ip in public {
            assert!(is_public(ip.parse().unwrap()), "{ip} must be allowed");
        }
    }

    #[test]
    fn classifies_addresses() {
        check(
            &[
                "127.0.0.1",
                "10.1.2.3",
                "172.16.0.1",
                "192.168.1.1",
                "169.254.169.254",
                "0.0.0.0",
                "100.64.0.1",
                "::1",
                "::",
                "fe80::1",
                "fd00::1",
                "ff02::1",
            ],
            &["1.1.1.1", "52.94.236.248", "2606:4700::1111"],
        );
    }

    /// Each IPv6 range: an address inside it, and one outside. Ranges that carry an IPv4
    /// address are judged by it.
    #[test]
    fn ipv6_ranges() {
        // IPv4-mapped ::ffff:0:0/96.
        check(
            &["::ffff:127.0.0.1", "::ffff:10.0.0.1"],
            &["::ffff:8.8.8.8"],
        );
        // IPv4-compatible ::/96 (deprecated).
        check(
            &["::127.0.0.1", "::10.0.0.1", "::169.254.169.254"],
            &["::8.8.8.8"],
        );
        // NAT64 well-known prefix 64:ff9b::/96; local-use 64:ff9b:1::/48 is never public.
        check(
            &[
                "64:ff9b::127.0.0.1",
                "64:ff9b::a9fe:a9fe",
                "64:ff9b:1::8.8.8.8",
            ],
            &["64:ff9b::8.8.8.8"],
        );
        // 6to4 2002::/16 carries the IPv4 address in its next 32 bits.
        check(
            &["2002:7f00:1::", "2002:a00:1::1", "2002:a9fe:a9fe::1"],
            &["2002:808:808::1", "2003::1"],
        );
        // Site-local fec0::/10 (deprecated), unique local fc00::/7, link-local fe80::/10.
        check(&["fec0::1", "feff::1", "fc00::1", "febf::1"], &[]);
        // Teredo 2001::/32, benchmarking 2001:2::/48, ORCHID 2001:10::/28 and ORCHIDv2
        // 2001:20::/28: the IETF protocol assignments 2001::/23.
        check(
            &[
                "2001::1",
                "2001:0:4136:e378::1",
                "2001:2::1",
                "2001:10::1",
                "2001:20::1",
                "2001:1ff::1",
            ],
            &["2001:200::1", "2001:4860:4860::8888"],
        );
        // Documentation 2001:db8::/32 and 3fff::/20.
        check(
            &["2001:db8::1", "3fff::1", "3fff:fff::1"],
            &["2001:db9::1", "3fff:1000::1"],
        );
        // Outside global unicast 2000::/3: discard-only 100::/64, SRv6 5f00::/16, unassigned.
        check(&["100::1", "5f00::1", "4000::1", "1::1"], &["2a00:1450::1"]);
    }
}
