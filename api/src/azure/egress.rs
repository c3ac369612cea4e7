//! Where calls to Azure DevOps may go. An organization URL is typed by a caller and the token is sent to it, so
//! without these rules `connectAzureDevOps` would read internal services and scan ports for anyone with
//! `projects:write`. Allowed: Azure DevOps Services (`https://dev.azure.com`, `https://*.visualstudio.com`) and
//! the Azure DevOps Server hosts the operator names (`LATHE_AZURE_SERVER_HOSTS`). Private, loopback, link-local
//! and unspecified addresses are refused, as literals and as what a name resolves to (the connection goes to the
//! addresses checked, so a name cannot resolve to a public address for the check and a private one for the
//! call), unless the operator allows them (`LATHE_AZURE_ALLOW_PRIVATE_ADDRESSES`). Redirects are followed only
//! within the same scheme, host and port.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use url::{Host, Url};

/// A call the rules refuse; its text is for the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// The rules, as the operator configured them.
#[derive(Debug, Clone, Default)]
pub struct Egress {
    server_hosts: Vec<ServerHost>,
    allow_private: bool,
}

/// An Azure DevOps Server host the operator allows: any port when none is given.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ServerHost {
    host: String,
    port: Option<u16>,
}

impl Egress {
    /// Parses the operator's `host[:port]` entries (`tfs.fabrikam.local:8080`, `[fd00::1]`).
    pub fn new(server_hosts: &[String], allow_private: bool) -> Result<Self, String> {
        let server_hosts = server_hosts
            .iter()
            .map(|entry| entry.trim())
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                let invalid = || format!("LATHE_AZURE_SERVER_HOSTS: `{entry}` is not host[:port]");
                let url = Url::parse(&format!("http://{entry}")).map_err(|_| invalid())?;
                if url.path() != "/" || url.query().is_some() || !url.username().is_empty() {
                    return Err(invalid());
                }
                Ok(ServerHost {
                    host: url.host_str().ok_or_else(invalid)?.to_owned(),
                    port: url.port(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            server_hosts,
            allow_private,
        })
    }

    /// Whether a call may be made to `url`, before any name is resolved.
    pub fn check_url(&self, url: &Url) -> Result<(), Refused> {
        let scheme = url.scheme();
        if !matches!(scheme, "http" | "https") {
            return Err(Refused("organizationUrl must be an https URL".to_owned()));
        }
        let host = url.host_str().unwrap_or_default();
        let port = url.port_or_known_default();
        let service =
            matches!(url.host(), Some(Host::Domain(name)) if is_azure_devops_services(name));
        if service {
            if scheme != "https" || port != Some(443) {
                return Err(Refused(format!(
                    "organizationUrl: Azure DevOps Services ({host}) is reached over https on port 443 only"
                )));
            }
        } else if !self
            .server_hosts
            .iter()
            .any(|allowed| allowed.host == host && allowed.port.is_none_or(|p| Some(p) == port))
        {
            return Err(Refused(format!(
                "organizationUrl: `{host}` is neither Azure DevOps Services (https://dev.azure.com, \
                 https://*.visualstudio.com) nor an Azure DevOps Server this service is configured for \
                 (LATHE_AZURE_SERVER_HOSTS)"
            )));
        }
        let literal = match url.host() {
            Some(Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        match literal {
            Some(ip) if !self.allows(ip) => Err(private(host)),
            _ => Ok(()),
        }
    }

    /// Whether a connection may be opened to `ip`.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allow_private || is_public(ip)
    }

    /// A resolver that drops the addresses the rules refuse, for the HTTP client: the client connects only to
    /// what it returns.
    pub fn resolver(self: &Arc<Self>) -> Arc<CheckedResolver> {
        Arc::new(CheckedResolver {
            egress: self.clone(),
        })
    }

    /// Follows a redirect only to the same scheme, host and port (Azure DevOps moves paths, never hosts, for an
    /// API call): anything else is answered to the caller as the redirect it is.
    pub fn redirect_policy() -> reqwest::redirect::Policy {
        reqwest::redirect::Policy::custom(|attempt| {
            let same_origin = attempt.previous().last().is_some_and(|from| {
                let to = attempt.url();
                from.scheme() == to.scheme()
                    && from.host_str() == to.host_str()
                    && from.port_or_known_default() == to.port_or_known_default()
            });
            if same_origin && attempt.previous().len() < 5 {
                attempt.follow()
            } else {
                attempt.stop()
            }
        })
    }
}

fn private(host: &str) -> Refused {
    Refused(format!(
        "organizationUrl: `{host}` is a private, loopback, link-local or unspecified address, which this service \
         does not call (LATHE_AZURE_ALLOW_PRIVATE_ADDRESSES)"
    ))
}

/// `dev.azure.com` and `{org}.visualstudio.com`: Azure DevOps Services.
fn is_azure_devops_services(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "dev.azure.com"
        || name
            .strip_suffix(".visualstudio.com")
            .is_some_and(|org| !org.is_empty())
}

/// Whether an address is reachable on the public internet: not private, loopback, link-local, unspecified,
/// shared (carrier-grade NAT), documentation, benchmarking, multicast or broadcast.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_public_v4(ip),
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(ip),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (18..20).contains(&b))
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // unique local fc00::/7, link-local fe80::/10, site-local fec0::/10
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || (first & 0xffc0) == 0xfec0
        // documentation 2001:db8::/32, NAT64 64:ff9b::/96 (could embed a private IPv4 address)
        || (first == 0x2001 && ip.segments()[1] == 0x0db8)
        || (first == 0x0064 && ip.segments()[1] == 0xff9b))
}

/// Resolves names with the system resolver and keeps only the addresses the rules allow.
pub struct CheckedResolver {
    egress: Arc<Egress>,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let egress = self.egress.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = resolved
                .iter()
                .copied()
                .filter(|addr| egress.allows(addr.ip()))
                .collect();
            if allowed.is_empty() && !resolved.is_empty() {
                return Err(Box::new(private(&host)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(egress: &Egress, url: &str) -> Result<(), Refused> {
        egress.check_url(&Url::parse(url).unwrap())
    }

    #[test]
    fn azure_devops_services_is_allowed_over_https_only() {
        let egress = Egress::default();
        for allowed in [
            "https://dev.azure.com/fabrikam",
            "https://DEV.azure.com:443/fabrikam",
            "https://fabrikam.visualstudio.com/",
            "https://fabrikam.visualstudio.com./DefaultCollection",
        ] {
            assert_eq!(check(&egress, allowed), Ok(()), "{allowed}");
        }
        for refused in [
            "http://dev.azure.com/fabrikam",
            "https://dev.azure.com:8443/fabrikam",
            "https://dev.azure.com.evil.example/fabrikam",
            "https://evil-dev.azure.com/fabrikam",
            "https://visualstudio.com/fabrikam",
            "https://fabrikam.visualstudio.com.evil.example/",
            "https://example.com/fabrikam",
            "ftp://dev.azure.com/fabrikam",
            "http://127.0.0.1:8080/fabrikam",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/x",
        ] {
            assert!(check(&egress, refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn configured_servers_are_allowed_on_their_port_and_private_ones_only_when_allowed() {
        let hosts = [
            "tfs.fabrikam.example:8080".to_owned(),
            "10.1.2.3".to_owned(),
            " ".to_owned(),
        ];
        let egress = Egress::new(&hosts, false).unwrap();
        assert_eq!(
            check(
                &egress,
                "http://tfs.fabrikam.example:8080/tfs/DefaultCollection"
            ),
            Ok(())
        );
        assert!(check(&egress, "http://tfs.fabrikam.example/tfs").is_err());
        assert!(check(&egress, "http://tfs.fabrikam.example:8081/tfs").is_err());
        let refused = check(&egress, "http://10.1.2.3:8080/tfs").unwrap_err();
        assert!(
            refused.0.contains("LATHE_AZURE_ALLOW_PRIVATE_ADDRESSES"),
            "{refused}"
        );
        let egress = Egress::new(&hosts, true).unwrap();
        assert_eq!(check(&egress, "http://10.1.2.3:8080/tfs"), Ok(()));
        assert!(Egress::new(&["host/path".to_owned()], false).is_err());
        assert!(Egress::new(&["[fd00::1]:8080".to_owned()], false).is_ok());
    }

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in [
            "13.107.42.20",
            "8.8.8.8",
            "2620:1ec:4::1",
            "::ffff:13.107.42.20",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }
}
