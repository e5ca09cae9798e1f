//! Who a request came through: the trusted-proxy list of `[balancer] trusted_proxies`, and
//! RFC 7239 `Forwarded` elements, written by the balancer and read by the nodes (the tus
//! `Location` of an upload must name the address the client used).

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The networks whose `X-Forwarded-*` and `Forwarded` headers the balancer believes
/// (typically a TLS terminator in front of it). Written as CIDRs (`"10.0.0.0/8"`,
/// `"::1/128"`) or single addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses each entry, naming the first one that is neither a CIDR nor an address.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        entries
            .iter()
            .map(|entry| parse_net(entry.as_ref()))
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    /// True when `peer` lies in one of the networks. An IPv4 peer seen on a dual-stack
    /// socket (`::ffff:10.0.0.1`) matches the IPv4 networks.
    pub fn contains(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.0.iter().any(|net| net.contains(&peer))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn parse_net(entry: &str) -> Result<IpNet, String> {
    let entry = entry.trim();
    match (entry.parse::<IpNet>(), entry.parse::<IpAddr>()) {
        // The host bits of `10.1.2.3/8` mean nothing: match on the network.
        (Ok(net), _) => Ok(net.trunc()),
        (_, Ok(addr)) => Ok(IpNet::from(addr.to_canonical())),
        (Err(e), Err(_)) => Err(format!(
            "{entry:?} is not a CIDR like \"10.0.0.0/8\" or \"::1/128\" ({e})"
        )),
    }
}

impl<'de> Deserialize<'de> for TrustedProxies {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let entries = Vec::<String>::deserialize(deserializer)?;
        Self::parse(&entries).map_err(serde::de::Error::custom)
    }
}

impl Serialize for TrustedProxies {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(ToString::to_string))
    }
}

/// The client a request comes from: `peer`, or when `peer` is a trusted proxy, the
/// nearest address in its `X-Forwarded-For` chain that is not one (read right to left,
/// as each proxy appends the peer it saw). Entries that are not addresses end the walk.
pub fn client_addr(peer: IpAddr, headers: &http::HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    if !trusted.contains(peer) {
        return peer;
    }
    let mut client = peer;
    let chain = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>();
    for entry in chain.iter().rev().flat_map(|v| v.rsplit(',')) {
        let Ok(addr) = entry.trim().parse::<IpAddr>() else {
            break;
        };
        client = addr;
        if !trusted.contains(addr) {
            break;
        }
    }
    client
}

/// One `Forwarded` element (RFC 7239 §4) describing the hop a proxy received a request
/// on: `for=` the peer, `proto=` the scheme, `host=` the `Host` it was sent to.
#[derive(Debug, Clone, Copy)]
pub struct Element<'a> {
    pub peer: IpAddr,
    pub proto: &'a str,
    pub host: Option<&'a str>,
}

impl fmt::Display for Element<'_> {
    /// IPv6 nodes are bracketed and quoted (RFC 7239 §6); values that are not tokens
    /// (a `host:port`) are quoted strings (RFC 7230 §3.2.6).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.peer.to_canonical() {
            IpAddr::V4(v4) => write!(f, "for={v4}")?,
            IpAddr::V6(v6) => write!(f, "for=\"[{v6}]\"")?,
        }
        write!(f, ";proto={}", Value(self.proto))?;
        if let Some(host) = self.host {
            write!(f, ";host={}", Value(host))?;
        }
        Ok(())
    }
}

/// A parameter value: a token as is, anything else as a quoted string.
struct Value<'a>(&'a str);

impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.0.is_empty() && self.0.bytes().all(is_tchar) {
            return f.write_str(self.0);
        }
        f.write_str("\"")?;
        for c in self.0.chars() {
            if c == '"' || c == '\\' {
                f.write_str("\\")?;
            }
            write!(f, "{c}")?;
        }
        f.write_str("\"")
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The value of parameter `name` in the first element of a `Forwarded` field value that
/// has it: the hop nearest the client that states it. Quoted strings are unquoted.
pub fn first_param(value: &str, name: &str) -> Option<String> {
    split_unquoted(value, ',').into_iter().find_map(|element| {
        split_unquoted(element, ';').into_iter().find_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| unquote(value.trim()))
                .filter(|v| !v.is_empty())
        })
    })
}

/// Splits on `sep` outside quoted strings.
fn split_unquoted(text: &str, sep: char) -> Vec<&str> {
    let (mut parts, mut start, mut quoted, mut escaped) = (Vec::new(), 0, false, false);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn unquote(value: &str) -> String {
    let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
        return value.to_string();
    };
    let mut out = String::with_capacity(inner.len());
    let mut escaped = false;
    for c in inner.chars() {
        if c == '\\' && !escaped {
            escaped = true;
        } else {
            out.push(c);
            escaped = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_client_is_the_nearest_untrusted_address_of_a_trusted_chain() {
        let trusted = TrustedProxies::parse(&["10.0.0.0/8"]).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let headers = |xff: &[&str]| {
            let mut h = http::HeaderMap::new();
            for v in xff {
                h.append("x-forwarded-for", v.parse().unwrap());
            }
            h
        };
        let cases: [(&str, &[&str], &str); 6] = [
            ("203.0.113.9", &["1.2.3.4"], "203.0.113.9"),
            ("10.0.0.1", &["1.2.3.4"], "1.2.3.4"),
            ("10.0.0.1", &["6.6.6.6, 1.2.3.4, 10.0.0.2"], "1.2.3.4"),
            ("10.0.0.1", &["6.6.6.6", "1.2.3.4"], "1.2.3.4"),
            ("10.0.0.1", &["10.0.0.3"], "10.0.0.3"),
            ("10.0.0.1", &["junk, 10.0.0.3"], "10.0.0.3"),
        ];
        for (peer, xff, want) in cases {
            assert_eq!(
                client_addr(ip(peer), &headers(xff), &trusted),
                ip(want),
                "{peer} {xff:?}"
            );
        }
    }

    use super::*;

    #[test]
    fn cidrs_and_addresses_parse_and_match() {
        let t = TrustedProxies::parse(&["10.0.0.0/8", "127.0.0.1", "::1/128", "fd00::/8"]).unwrap();
        for inside in [
            "10.200.0.1",
            "127.0.0.1",
            "::1",
            "fd12::5",
            "::ffff:10.0.0.1",
        ] {
            assert!(t.contains(inside.parse().unwrap()), "{inside}");
        }
        for outside in ["11.0.0.1", "127.0.0.2", "::2", "fe80::1"] {
            assert!(!t.contains(outside.parse().unwrap()), "{outside}");
        }
        assert!(TrustedProxies::default().is_empty());
        let host_bits = TrustedProxies::parse(&["10.1.2.3/8"]).unwrap();
        assert!(host_bits.contains("10.9.9.9".parse().unwrap()));
    }

    #[test]
    fn bad_entries_are_named() {
        for bad in ["10.0.0.0/33", "localhost", "10.0.0/8", "", "::1/129"] {
            let err = TrustedProxies::parse(&["127.0.0.1/32", bad]).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn elements_quote_ipv6_and_ports() {
        let v4 = Element {
            peer: "10.1.2.3".parse().unwrap(),
            proto: "http",
            host: Some("files.example"),
        };
        assert_eq!(v4.to_string(), "for=10.1.2.3;proto=http;host=files.example");
        let v6 = Element {
            peer: "2001:db8::1".parse().unwrap(),
            proto: "http",
            host: Some("127.0.0.1:3000"),
        };
        assert_eq!(
            v6.to_string(),
            "for=\"[2001:db8::1]\";proto=http;host=\"127.0.0.1:3000\""
        );
        let odd = Element {
            peer: "::ffff:10.0.0.1".parse().unwrap(),
            proto: "http",
            host: Some("a\"b"),
        };
        assert_eq!(odd.to_string(), "for=10.0.0.1;proto=http;host=\"a\\\"b\"");
    }

    #[test]
    fn first_param_reads_the_hop_nearest_the_client() {
        let v = "for=192.0.2.60;proto=https;host=\"public.example:443\", for=10.0.0.1;proto=http";
        assert_eq!(first_param(v, "proto").as_deref(), Some("https"));
        assert_eq!(
            first_param(v, "host").as_deref(),
            Some("public.example:443")
        );
        assert_eq!(
            first_param("for=\"[::1]\", For=1.2.3.4;PROTO=https", "proto").as_deref(),
            Some("https")
        );
        assert_eq!(
            first_param("host=\"a;b,c\";proto=https", "host").as_deref(),
            Some("a;b,c")
        );
        assert_eq!(first_param("for=1.2.3.4", "proto"), None);
        assert_eq!(first_param("", "host"), None);
    }
}
