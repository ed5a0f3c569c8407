//! Where a tenant may make Tenet send requests: the guard on webhook URLs against
//! server-side request forgery.
//!
//! A webhook URL is refused unless it is `http://` or `https://`, carries no user
//! info, and names a host that is a DNS name other than `localhost` (and its
//! subdomains) or the cloud metadata service, or a public IP literal. Loopback,
//! private, shared (CGNAT), link-local, unspecified, multicast and reserved
//! addresses are refused, in IPv4 and IPv6, including IPv4 addresses embedded in
//! IPv6 ones (`::ffff:127.0.0.1`) and the forms a WHATWG URL parser — what the
//! webhook sender uses — reads as IPv4 (`2130706433`, `0x7f.1`, `0177.0.0.1`).
//!
//! The check reads the URL's text; it cannot see what a DNS name resolves to, so a
//! public name pointing at a private address (or one rebound to it later) passes
//! here. Stopping that is the sender's network's job: the relay follows no
//! redirects, and a deployment should deny its egress to private ranges.
//!
//! This module must never put the URL in an error: refusals name the rule broken.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use axum::http::Uri;

/// Why a webhook URL is refused. The messages name the rule, never the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefusal {
    #[error("must be an absolute http:// or https:// URL of visible ASCII characters")]
    Malformed,
    #[error("must not carry user info (`user:password@`); authenticate with the signature")]
    UserInfo,
    #[error("must name a host by DNS name or IP address")]
    BadHost,
    #[error(
        "must name a public host: localhost, loopback, private, link-local, unspecified and cloud metadata addresses are refused"
    )]
    PrivateHost,
}

/// Host names that always mean this machine or the cloud's metadata service.
const METADATA_HOSTS: &[&str] = &["metadata.google.internal", "metadata.goog", "metadata"];

/// Checks that `url` may receive webhooks. With `allow_private_hosts` (development
/// setups that post to a receiver on the same machine), only the host's kind is not
/// checked; the scheme and user info still are.
pub fn check_webhook_url(url: &str, allow_private_hosts: bool) -> Result<(), UrlRefusal> {
    // A WHATWG parser treats `\` like `/`, skips tabs and newlines, and maps Unicode;
    // http::Uri does not. Refusing all of them keeps both parsers on the same host.
    if url.is_empty() || !url.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') {
        return Err(UrlRefusal::Malformed);
    }
    let uri: Uri = url.parse().map_err(|_| UrlRefusal::Malformed)?;
    match uri.scheme_str() {
        Some(scheme)
            if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") => {}
        _ => return Err(UrlRefusal::Malformed),
    }
    let authority = uri.authority().ok_or(UrlRefusal::Malformed)?;
    if authority.as_str().contains('@') {
        return Err(UrlRefusal::UserInfo);
    }
    let host = Host::parse(authority.host())?;
    if allow_private_hosts || host.is_public() {
        Ok(())
    } else {
        Err(UrlRefusal::PrivateHost)
    }
}

/// A URL's host, read the way a WHATWG URL parser reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    /// Lowercase, without a trailing dot.
    Name(String),
    Ip(IpAddr),
}

impl Host {
    fn parse(host: &str) -> Result<Self, UrlRefusal> {
        if let Some(inner) = host.strip_prefix('[') {
            // Zone ids (`%25eth0`) are refused with everything else that is not an
            // address.
            let inner = inner.strip_suffix(']').ok_or(UrlRefusal::BadHost)?;
            return inner
                .parse::<Ipv6Addr>()
                .map(|ip| Host::Ip(IpAddr::V6(ip)))
                .map_err(|_| UrlRefusal::BadHost);
        }
        let name = host.to_ascii_lowercase();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        {
            return Err(UrlRefusal::BadHost);
        }
        match whatwg_ipv4(&name) {
            Ipv4Form::Address(ip) => Ok(Host::Ip(IpAddr::V4(ip))),
            Ipv4Form::Invalid => Err(UrlRefusal::BadHost),
            Ipv4Form::NotIpv4 => {
                let name = name.strip_suffix('.').unwrap_or(&name);
                if name.is_empty() || name.split('.').any(str::is_empty) {
                    return Err(UrlRefusal::BadHost);
                }
                Ok(Host::Name(name.to_owned()))
            }
        }
    }

    fn is_public(&self) -> bool {
        match self {
            Host::Name(name) => {
                name != "localhost"
                    && !name.ends_with(".localhost")
                    && !METADATA_HOSTS.contains(&name.as_str())
            }
            Host::Ip(IpAddr::V4(ip)) => is_public_v4(*ip),
            Host::Ip(IpAddr::V6(ip)) => is_public_v6(*ip),
        }
    }
}

enum Ipv4Form {
    Address(Ipv4Addr),
    /// Looks like an IPv4 address (its last label is a number) but is none: a WHATWG
    /// parser fails on it.
    Invalid,
    NotIpv4,
}

/// The WHATWG URL standard's "ends in a number" check and IPv4 parser: `127.1`,
/// `2130706433`, `0x7f.0.0.1` and `0177.0.0.1` all mean 127.0.0.1 to it.
fn whatwg_ipv4(host: &str) -> Ipv4Form {
    let mut parts: Vec<&str> = host.split('.').collect();
    if parts.last() == Some(&"") && parts.len() > 1 {
        parts.pop();
    }
    let last = parts.last().copied().unwrap_or("");
    let ends_in_number = !last.is_empty()
        && (last.bytes().all(|b| b.is_ascii_digit()) || parse_ipv4_number(last).is_some());
    if !ends_in_number {
        return Ipv4Form::NotIpv4;
    }
    if parts.len() > 4 {
        return Ipv4Form::Invalid;
    }
    let Some(numbers) = parts
        .iter()
        .map(|part| parse_ipv4_number(part))
        .collect::<Option<Vec<u64>>>()
    else {
        return Ipv4Form::Invalid;
    };
    let (last, init) = numbers.split_last().expect("BUG: a host has a label");
    if init.iter().any(|&n| n > 255) {
        return Ipv4Form::Invalid;
    }
    let n_init = u32::try_from(init.len()).expect("BUG: at most 3 labels");
    if *last >= 256_u64.pow(4 - n_init) {
        return Ipv4Form::Invalid;
    }
    let mut address = *last;
    for (i, n) in init.iter().enumerate() {
        address += n << (8 * (3 - i));
    }
    Ipv4Form::Address(Ipv4Addr::from(
        u32::try_from(address).expect("BUG: bounded above"),
    ))
}

/// One label of a WHATWG IPv4 address: decimal, `0x` hex or `0` octal. `None` when
/// it is not a number (or one too large to matter: it fails the range check anyway).
fn parse_ipv4_number(part: &str) -> Option<u64> {
    let (digits, radix) =
        if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            (hex, 16)
        } else if part.len() > 1 && part.starts_with('0') {
            (&part[1..], 8)
        } else {
            (part, 10)
        };
    if digits.is_empty() {
        // `0x` alone is zero to the standard.
        return (radix == 16).then_some(0);
    }
    if !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    // Too large for a u64 is too large for an address: saturate, the range check fails.
    Some(u64::from_str_radix(digits, radix).unwrap_or(u64::MAX))
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_unspecified()
        || a == 0 // "this network"
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // 169.254/16, the metadata address among them
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || ip.is_multicast()
        || a >= 240 // reserved, and the broadcast address
        || ip.is_documentation())
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    // IPv4 carried inside IPv6: mapped (::ffff:a.b.c.d), compatible (::a.b.c.d),
    // NAT64 (64:ff9b::a.b.c.d) and 6to4 (2002:AABB:CCDD::).
    let embedded_v4 = |high: u16, low: u16| {
        let ([a, b], [c, d]) = (high.to_be_bytes(), low.to_be_bytes());
        Ipv4Addr::new(a, b, c, d)
    };
    if segments[..5] == [0; 5] && (segments[5] == 0xffff || segments[5] == 0) {
        if ip.is_unspecified() || ip.is_loopback() {
            return false;
        }
        return is_public_v4(embedded_v4(segments[6], segments[7]));
    }
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_public_v4(embedded_v4(segments[6], segments[7]));
    }
    if segments[0] == 0x2002 {
        return is_public_v4(embedded_v4(segments[1], segments[2]));
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || (segments[0] & 0xfe00) == 0xfc00 // unique local, fc00::/7 (AWS metadata: fd00:ec2::254)
        || (segments[0] & 0xffc0) == 0xfe80 // link-local, fe80::/10
        || (segments[0] & 0xffc0) == 0xfec0 // site-local (deprecated), fec0::/10
        || ip.is_multicast()
        || (segments[0] == 0x2001 && segments[1] == 0x0db8)) // documentation
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(url: &str) -> Result<(), UrlRefusal> {
        check_webhook_url(url, false)
    }

    #[test]
    fn public_http_and_https_urls_pass() {
        for url in [
            "https://hooks.example.com/tenet",
            "http://hooks.example.com:8080/a/b?c=d",
            "https://HOOKS.Example.COM./x",
            "https://93.184.216.34/hook",
            "https://[2606:2800:220:1:248:1893:25c8:1946]/hook",
            "https://[2002:5db8:d822::1]/", // 6to4 of a public address
            "https://8.8.8.8:443/",
            "https://my_host.example.com/",
            "https://1.example.com/", // a name whose first label is a number
            "https://example.com/@127.0.0.1", // an `@` in the path is not user info
        ] {
            assert_eq!(check(url), Ok(()), "{url}");
        }
    }

    #[test]
    fn other_schemes_and_garbage_are_malformed() {
        for url in [
            "",
            "ftp://example.com/",
            "file:///etc/passwd",
            "gopher://example.com/",
            "javascript:alert(1)",
            "//example.com/hook",
            "/relative/path",
            "example.com/hook",
            "https://example.com/a b",
            "https://example.com\\@127.0.0.1/",
            "https://exa\tmple.com/",
            "https://exämple.com/",
            "https://１２７.０.０.１/", // full-width digits a WHATWG parser maps to ASCII
        ] {
            assert_eq!(check(url), Err(UrlRefusal::Malformed), "{url:?}");
        }
    }

    #[test]
    fn user_info_is_refused() {
        for url in [
            "https://user:secret@example.com/",
            "https://user@example.com/",
            "https://@example.com/",
            "https://example.com@127.0.0.1/",
        ] {
            assert_eq!(check(url), Err(UrlRefusal::UserInfo), "{url}");
        }
    }

    #[test]
    fn localhost_in_any_spelling_is_refused() {
        for url in [
            "http://localhost/",
            "http://localhost:8080/hook",
            "http://LOCALHOST/",
            "http://LocalHost./",
            "http://localhost./",
            "http://api.localhost/",
            "http://a.b.LOCALHOST./",
            "http://metadata.google.internal/computeMetadata/v1/",
            "http://METADATA.GOOGLE.INTERNAL./",
        ] {
            assert_eq!(check(url), Err(UrlRefusal::PrivateHost), "{url}");
        }
    }

    #[test]
    fn private_ipv4_literals_are_refused() {
        for url in [
            "http://127.0.0.1/",
            "http://127.0.0.1:9000/",
            "http://127.255.255.254/",
            "http://127.0.0.1./",
            "http://10.0.0.1/",
            "http://10.255.255.255/",
            "http://172.16.0.1/",
            "http://172.31.255.255/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://169.254.0.1/",
            "http://0.0.0.0/",
            "http://0.1.2.3/",
            "http://100.64.0.1/",
            "http://100.100.100.200/", // a cloud metadata address in shared space
            "http://224.0.0.1/",
            "http://255.255.255.255/",
            "http://240.0.0.1/",
            "http://192.0.0.170/",
            "http://198.18.0.1/",
        ] {
            assert_eq!(check(url), Err(UrlRefusal::PrivateHost), "{url}");
        }
    }

    #[test]
    fn ipv4_in_the_forms_a_whatwg_parser_accepts_is_read_as_ipv4() {
        for url in [
            "http://2130706433/",        // decimal 127.0.0.1
            "http://0x7f000001/",        // hex
            "http://0X7F.0.0.1/",        // hex label, uppercase
            "http://0177.0.0.1/",        // octal label
            "http://017700000001/",      // octal whole
            "http://127.1/",             // short form
            "http://127.0.1/",           // short form
            "http://10.1/",              // short private
            "http://0/",                 // 0.0.0.0
            "http://0x0/",               // 0.0.0.0
            "http://0x/",                // 0.0.0.0 too: `0x` alone is zero
            "http://0xa9fea9fe/",        // 169.254.169.254
            "http://169.254.43518/",     // 169.254.169.254
            "http://2852039166/",        // 169.254.169.254
            "http://3232235777/",        // 192.168.1.1
            "http://0300.0250.0.1/",     // 192.168.0.1 in octal
            "http://0x7f.0x0.0x0.0x1./", // trailing dot
        ] {
            assert_eq!(check(url), Err(UrlRefusal::PrivateHost), "{url}");
        }
        // Public addresses in odd forms still pass: they are what they say.
        assert_eq!(check("http://134744072/"), Ok(())); // 8.8.8.8
        assert_eq!(check("http://0x08.0x08.0x08.0x08/"), Ok(()));
    }

    #[test]
    fn hosts_a_whatwg_parser_fails_on_are_refused() {
        for url in [
            "http://256.0.0.1/",
            "http://1.2.3.4.5/",
            "http://4294967296/",
            "http://1.2.3.09/", // 09 is not octal
            "http://example..com/",
            "http://.example.com/",
            "http://[::1/",
            "http://[fe80::1%25eth0]/",
            "http://[127.0.0.1]/",
            "http://exa%6dple.com/",
            "http://127.0.0.1%2f/",
        ] {
            assert!(
                matches!(check(url), Err(UrlRefusal::BadHost | UrlRefusal::Malformed)),
                "{url}: {:?}",
                check(url)
            );
        }
    }

    #[test]
    fn private_ipv6_literals_are_refused() {
        for url in [
            "http://[::1]/",
            "http://[::1]:8080/",
            "http://[0:0:0:0:0:0:0:1]/",
            "http://[::]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[::FFFF:10.0.0.1]/",
            "http://[::ffff:169.254.169.254]/",
            "http://[::127.0.0.1]/",
            "http://[::ffff:0.0.0.0]/",
            "http://[64:ff9b::127.0.0.1]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[2002:7f00:1::]/",
            "http://[2002:c0a8:101::1]/",
            "http://[fc00::1]/",
            "http://[fd00:ec2::254]/",
            "http://[FD12:3456::1]/",
            "http://[fe80::1]/",
            "http://[FEBF::1]/",
            "http://[fec0::1]/",
            "http://[ff02::1]/",
            "http://[2001:db8::1]/",
        ] {
            assert_eq!(check(url), Err(UrlRefusal::PrivateHost), "{url}");
        }
        assert_eq!(check("http://[::ffff:8.8.8.8]/"), Ok(()));
    }

    #[test]
    fn the_setting_admits_private_hosts_but_not_other_schemes_or_user_info() {
        for url in [
            "http://localhost:8080/hook",
            "http://127.0.0.1/",
            "http://[::1]/",
            "http://192.168.1.20/",
        ] {
            assert_eq!(check_webhook_url(url, true), Ok(()), "{url}");
        }
        assert_eq!(
            check_webhook_url("ftp://localhost/", true),
            Err(UrlRefusal::Malformed)
        );
        assert_eq!(
            check_webhook_url("http://u:p@localhost/", true),
            Err(UrlRefusal::UserInfo)
        );
    }

    #[test]
    fn refusals_never_echo_the_url() {
        for url in [
            "http://secret-token-123@localhost/",
            "http://localhost/secret-token-123",
            "ftp://secret-token-123/",
        ] {
            let text = check(url).unwrap_err().to_string();
            assert!(!text.contains("secret-token-123"), "{text}");
        }
    }
}
