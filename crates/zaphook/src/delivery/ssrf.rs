//! Keeps webhook requests away from the server's own network: loopback, private, link-local,
//! CGNAT, multicast, unspecified and cloud-metadata addresses are refused after DNS resolution
//! (and for IP literals before connecting) unless the operator allows private targets, or
//! the address is in one of the networks the operator allowed.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Whether a request to `ip` could reach something that is not the public internet.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal_v4(v4);
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (first & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated)
                || v6.segments()[..6] == [0, 0, 0, 0, 0, 0] // IPv4-compatible ::a.b.c.d
                || (first == 0x64 && v6.segments()[1] == 0xff9b) // NAT64 64:ff9b::/96
                || (first == 0x2001 && v6.segments()[1] == 0x0db8) // documentation
        }
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // 169.254/16, which includes the cloud metadata 169.254.169.254
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64/10
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240 // reserved
}

/// A network in CIDR notation (`10.0.0.0/8`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (ip, prefix) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not a CIDR like 10.0.0.0/8"))?;
        let network: IpAddr = ip
            .parse()
            .map_err(|_| format!("{ip:?} is not an IP address"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("{prefix:?} is not a prefix length of 0 to {max}"))?;
        Ok(Cidr { network, prefix })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        let (net, addr, bits) = match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => (u32::from(n) as u128, u32::from(a) as u128, 32),
            (IpAddr::V6(n), IpAddr::V6(a)) => (u128::from(n), u128::from(a), 128),
            _ => return false,
        };
        if self.prefix == 0 {
            return true;
        }
        let shift = bits - u32::from(self.prefix);
        (net >> shift) == (addr >> shift)
    }
}

/// Which addresses webhook requests may reach: the public internet always; internal
/// addresses only when all are allowed or they fall in an allowed network.
#[derive(Debug, Clone, Default)]
pub struct TargetPolicy {
    pub allow_private: bool,
    pub allowed: Vec<Cidr>,
}

impl TargetPolicy {
    pub fn permits(&self, ip: IpAddr) -> bool {
        self.allow_private || !is_internal(ip) || self.allowed.iter().any(|c| c.contains(ip))
    }

    /// Refuses a URL whose host is a forbidden IP literal (literals never reach a resolver).
    pub fn check_literal(&self, url: &reqwest::Url) -> Result<(), String> {
        let ip = match url.host() {
            Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
            _ => return Ok(()),
        };
        if self.permits(ip) {
            Ok(())
        } else {
            Err(format!("{ip} is a private or internal address (refused)"))
        }
    }
}

/// Looks a host name up; the system resolver in production, a stub in tests.
pub type Lookup = Arc<
    dyn Fn(String) -> std::pin::Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>>
        + Send
        + Sync,
>;

/// The system resolver.
pub fn system_lookup() -> Lookup {
    Arc::new(|host: String| {
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .map(|a| a.ip())
                .collect())
        })
    })
}

/// A resolver that drops the addresses the policy forbids from every answer, and fails when
/// none is left, so a name cannot smuggle a request to an internal address.
pub struct GuardedResolver {
    pub policy: TargetPolicy,
    pub lookup: Lookup,
}

impl GuardedResolver {
    /// The permitted addresses of `host`.
    pub async fn permitted(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        let found = (self.lookup)(host.to_string())
            .await
            .map_err(|e| format!("{host}: {e}"))?;
        let allowed: Vec<IpAddr> = found
            .iter()
            .copied()
            .filter(|ip| self.policy.permits(*ip))
            .collect();
        if allowed.is_empty() {
            return Err(if found.is_empty() {
                format!("{host} has no address")
            } else {
                format!("{host} resolves only to private or internal addresses (refused)")
            });
        }
        Ok(allowed)
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let (policy, lookup) = (self.policy.clone(), Arc::clone(&self.lookup));
        let host = name.as_str().to_string();
        Box::pin(async move {
            let guard = GuardedResolver { policy, lookup };
            match guard.permitted(&host).await {
                Ok(ips) => {
                    let addrs: Addrs = Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
                    Ok(addrs)
                }
                Err(e) => Err(e.into()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_internal_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip} should be internal");
        }
    }

    #[test]
    fn allows_public_addresses() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip} should be public");
        }
    }

    #[test]
    fn literal_urls_are_checked() {
        let url = |s: &str| reqwest::Url::parse(s).unwrap();
        let strict = TargetPolicy::default();
        assert!(
            strict
                .check_literal(&url("http://127.0.0.1:8080/x"))
                .is_err()
        );
        assert!(strict.check_literal(&url("http://[::1]/x")).is_err());
        assert!(strict.check_literal(&url("https://8.8.8.8/x")).is_ok());
        assert!(strict.check_literal(&url("https://example.com/x")).is_ok());
        let open = TargetPolicy {
            allow_private: true,
            allowed: vec![],
        };
        assert!(open.check_literal(&url("http://127.0.0.1:8080/x")).is_ok());
    }

    #[test]
    fn cidrs_parse_and_match() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains("10.200.3.4".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.1.1".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12:3456::1".parse().unwrap()));
        assert!(!v6.contains("fe80::1".parse().unwrap()));
        let host: Cidr = "192.168.1.7/32".parse().unwrap();
        assert!(host.contains("192.168.1.7".parse().unwrap()));
        assert!(!host.contains("192.168.1.8".parse().unwrap()));
        for bad in ["10.0.0.0", "10.0.0.0/33", "x/8", "::/129"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    /// A resolver stub: fixed answers per name.
    fn stub(answers: &[(&str, &[&str])]) -> Lookup {
        let table: std::collections::HashMap<String, Vec<IpAddr>> = answers
            .iter()
            .map(|(name, ips)| {
                (
                    name.to_string(),
                    ips.iter().map(|i| i.parse().unwrap()).collect(),
                )
            })
            .collect();
        Arc::new(move |host: String| {
            let found = table.get(&host).cloned().unwrap_or_default();
            Box::pin(async move { Ok(found) })
        })
    }

    #[tokio::test]
    async fn resolved_addresses_are_filtered_by_the_policy() {
        let lookup = stub(&[
            ("public.test", &["93.184.216.34"]),
            ("loopback.test", &["127.0.0.1", "::1"]),
            ("metadata.test", &["169.254.169.254"]),
            ("mapped.test", &["::ffff:127.0.0.1"]),
            ("mixed.test", &["10.1.2.3", "93.184.216.34"]),
            ("office.test", &["10.1.2.3"]),
        ]);
        let strict = GuardedResolver {
            policy: TargetPolicy::default(),
            lookup: lookup.clone(),
        };
        assert_eq!(
            strict.permitted("public.test").await.unwrap(),
            vec!["93.184.216.34".parse::<IpAddr>().unwrap()]
        );
        for refused in [
            "loopback.test",
            "metadata.test",
            "mapped.test",
            "office.test",
        ] {
            let err = strict.permitted(refused).await.unwrap_err();
            assert!(err.contains("refused"), "{refused}: {err}");
        }
        assert!(
            strict
                .permitted("nowhere.test")
                .await
                .unwrap_err()
                .contains("no address")
        );
        // A name with a private and a public address may only reach the public one.
        assert_eq!(
            strict.permitted("mixed.test").await.unwrap(),
            vec!["93.184.216.34".parse::<IpAddr>().unwrap()]
        );
        // An allow-list lets chosen networks through, and nothing else.
        let office = GuardedResolver {
            policy: TargetPolicy {
                allow_private: false,
                allowed: vec!["10.0.0.0/8".parse().unwrap()],
            },
            lookup,
        };
        assert_eq!(office.permitted("office.test").await.unwrap().len(), 1);
        assert!(office.permitted("loopback.test").await.is_err());
    }
}
