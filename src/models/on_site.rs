//! Where a local model server may be: on this machine or the operator's own network.
//!
//! `local()` sends whole documents, and nothing on that path is checked by the egress guard
//! or written to the audit log: it is meant to stay at home. A `[local] base_url` (or
//! `--local-url`) that points at the open internet — a cloud API pasted in the wrong place, a
//! hostname that resolves somewhere unexpected — would send every contract out unnoticed.
//! So at start the server's host is resolved and each address must be a loopback, private,
//! link-local, shared (carrier-grade NAT, as tailnets use) or unique-local one; a public
//! address is refused unless `allow_remote = true` says the server is the operator's own.
//! The addresses found are the only ones the client then connects to, and directly: neither a
//! later DNS answer nor an `HTTP_PROXY` can take the documents elsewhere.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// Resolves the host of `base_url` and checks that every address is on site.
///
/// Returns the host and its addresses, to pin the client to them; `None` when the host is an
/// address already (nothing to resolve) or the URL has none (it fails later, with its own
/// message).
pub fn check(base_url: &str) -> Result<Option<(String, Vec<SocketAddr>)>, String> {
    let Ok(url) = reqwest::Url::parse(base_url) else {
        return Ok(None);
    };
    let port = url.port_or_known_default().unwrap_or(80);
    let Some(host) = url.host_str() else {
        return Ok(None);
    };
    // An address written as one (`[::1]` for IPv6): nothing to resolve.
    if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
        return on_site_or_refused(base_url, None, ip).map(|()| None);
    }
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| {
            format!(
                "the local model server {base_url} cannot be checked: {host} does not resolve ({e})\nhint: start the server or fix the name; local() sends whole documents, so the host is checked to be on this network before anything is sent"
            )
        })?
        .collect();
    for addr in &addrs {
        on_site_or_refused(base_url, Some(host), addr.ip())?;
    }
    Ok(Some((host.to_owned(), addrs)))
}

/// `ip` if it is on site; `name` is the host name it was resolved from, if any.
fn on_site_or_refused(base_url: &str, name: Option<&str>, ip: IpAddr) -> Result<(), String> {
    if is_on_site(ip) {
        return Ok(());
    }
    let resolved = name.map_or_else(String::new, |name| format!(" ({name} is {ip})"));
    Err(format!(
        "the local model server {base_url} is at a public address{resolved}: local() sends whole documents there, without the egress guard or the audit log\nhint: point [local] base_url (or --local-url) at a server on this machine or your own network; if this server is yours, say so with `allow_remote = true` under [local] in hybrid.toml"
    ))
}

/// Loopback, private, link-local, shared (100.64.0.0/10) or unique-local addresses, and the
/// unspecified address (which reaches this machine).
pub fn is_on_site(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_on_site(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_addresses_are_on_site_and_public_ones_are_not() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.9",
            "172.31.255.1",
            "192.168.1.20",
            "169.254.3.4",
            "100.64.0.1",
            "100.127.255.254",
            "0.0.0.0",
            "::1",
            "fd12:3456::1",
            "fe80::1",
            "::ffff:192.168.0.1",
        ] {
            assert!(is_on_site(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "162.159.140.245",
            "2606:4700::6810:84e5",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_on_site(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn a_public_server_is_refused_with_the_way_out() {
        let err = check("http://8.8.8.8:11434/v1").unwrap_err();
        assert!(err.contains("8.8.8.8"), "{err}");
        assert!(err.contains("allow_remote = true"), "{err}");
        assert_eq!(check("http://127.0.0.1:11434/v1"), Ok(None));
        assert_eq!(check("http://[::1]:8080/v1"), Ok(None));
    }

    #[test]
    fn a_name_is_resolved_and_pinned() {
        let (host, addrs) = check("http://localhost:11434/v1").unwrap().unwrap();
        assert_eq!(host, "localhost");
        assert!(!addrs.is_empty());
        assert!(addrs
            .iter()
            .all(|a| a.port() == 11434 && a.ip().is_loopback()));
        let err = check("http://no-such-host.invalid/v1").unwrap_err();
        assert!(err.contains("does not resolve"), "{err}");
    }
}
