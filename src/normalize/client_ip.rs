//! The client's address: the socket peer, or, when the peer is a trusted proxy,
//! the right-most `X-Forwarded-For` entry that is not itself trusted. The
//! left-most entry is whatever the client claimed and is never taken blindly.

use std::net::IpAddr;

use ipnet::IpNet;

/// Parses `1.2.3.4`, `1.2.3.4:5678`, `[::1]:80`, `::1`.
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if s.is_empty() || s == "-" {
        return None;
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    if let Some((host, port)) = s.rsplit_once(':') {
        if port.bytes().all(|c| c.is_ascii_digit()) {
            return host.parse().ok();
        }
    }
    None
}

#[derive(Clone, Debug, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    pub fn new(cidrs: &[String]) -> Self {
        let nets = cidrs
            .iter()
            .filter_map(|c| c.parse::<IpNet>().ok().or_else(|| c.parse::<IpAddr>().ok().map(IpNet::from)))
            .collect();
        TrustedProxies { nets }
    }

    pub fn is_trusted(&self, ip: &IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(ip))
    }

    /// `peer`: the address the gateway saw (or logged as the client); `xff`: the header.
    pub fn client_ip(&self, peer: Option<IpAddr>, xff: Option<&str>) -> Option<IpAddr> {
        let xff = xff.filter(|x| !x.trim().is_empty() && x.trim() != "-");
        match (peer, xff) {
            (Some(p), Some(x)) if self.is_trusted(&p) => {
                let mut last_good = Some(p);
                for entry in x.rsplit(',') {
                    match parse_ip(entry) {
                        Some(ip) if self.is_trusted(&ip) => last_good = Some(ip),
                        Some(ip) => return Some(ip),
                        None => return last_good,
                    }
                }
                last_good
            }
            (Some(p), _) => Some(p),
            // No peer logged: the right-most entry was appended by the proxy nearest us.
            (None, Some(x)) => {
                for entry in x.rsplit(',') {
                    match parse_ip(entry) {
                        Some(ip) if self.is_trusted(&ip) => continue,
                        Some(ip) => return Some(ip),
                        None => return None,
                    }
                }
                None
            }
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_ports_and_brackets() {
        assert_eq!(parse_ip("10.244.2.3:34226"), Some(ip("10.244.2.3")));
        assert_eq!(parse_ip("[2001:db8::1]:443"), Some(ip("2001:db8::1")));
        assert_eq!(parse_ip("2001:db8::1"), Some(ip("2001:db8::1")));
        assert_eq!(parse_ip("-"), None);
    }

    #[test]
    fn never_trusts_leftmost_blindly() {
        let t = TrustedProxies::new(&["10.0.0.0/8".into()]);
        // spoofed left-most entry, real client appended by our proxy
        assert_eq!(t.client_ip(Some(ip("10.0.0.5")), Some("6.6.6.6, 203.0.113.9, 10.0.0.7")), Some(ip("203.0.113.9")));
        // untrusted peer: its XFF is ignored
        assert_eq!(t.client_ip(Some(ip("198.51.100.1")), Some("6.6.6.6")), Some(ip("198.51.100.1")));
        // no peer: right-most untrusted
        assert_eq!(t.client_ip(None, Some("6.6.6.6, 198.51.100.2")), Some(ip("198.51.100.2")));
    }
}
