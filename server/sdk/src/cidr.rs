//! CIDR blocks as Vault accepts them (`10.0.0.0/8`, or a bare address meaning a single
//! host) and the checks made against a request's remote address.
//!
//! Remote addresses are taken as the HTTP layer gives them: a bare IP (`127.0.0.1`,
//! `::1`) or a socket address (`127.0.0.1:51000`, `[::1]:51000`). IPv4-mapped IPv6
//! addresses count as their IPv4 address. An address that does not parse matches no
//! block, so a bound login from an unknown address fails closed.

use std::net::{IpAddr, SocketAddr};

use crate::SdkError;
use ipnet::IpNet;

/// Parse one block: a CIDR, or a bare address (a /32 or /128 host block).
pub fn parse_block(text: &str) -> Option<IpNet> {
    let text = text.trim();
    if text.contains('/') {
        text.parse::<IpNet>().ok()
    } else {
        text.parse::<IpAddr>().ok().map(IpNet::from)
    }
}

/// Validate a list of blocks for `field`; 400 naming the first bad one. Returns the
/// blocks printed as Vault prints parsed addresses: a single host as a bare address,
/// anything else as `addr/prefix`.
pub fn parse_list(field: &str, items: &[String]) -> Result<Vec<String>, SdkError> {
    items
        .iter()
        .map(|item| {
            let block = parse_block(item).ok_or_else(|| {
                SdkError::bad(format!(
                    "failed to parse {field}: invalid CIDR block {item:?}"
                ))
            })?;
            Ok(if block.prefix_len() == block.max_prefix_len() {
                block.addr().to_string()
            } else {
                block.to_string()
            })
        })
        .collect()
}

/// The IP of a remote address as the HTTP layer reports it, if it parses.
pub fn remote_ip(remote: &str) -> Option<IpAddr> {
    let remote = remote.trim();
    let ip = remote
        .parse::<IpAddr>()
        .ok()
        .or_else(|| remote.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            remote
                .strip_prefix('[')
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|r| r.parse::<IpAddr>().ok())
        })?;
    Some(ip.to_canonical())
}

/// Whether `remote` lies inside at least one of `blocks`. An unknown or unparsable remote
/// address is never inside.
pub fn remote_allowed(remote: Option<&str>, blocks: &[String]) -> bool {
    let Some(ip) = remote.and_then(remote_ip) else {
        return false;
    };
    blocks
        .iter()
        .filter_map(|b| parse_block(b))
        .any(|block| block.contains(&ip))
}

/// Validate blocks kept as given (trimmed), as Vault keeps `secret_id_bound_cidrs` and
/// `cidr_list`; `None` when any does not parse.
pub fn validate_blocks(items: &[String]) -> Option<Vec<String>> {
    items
        .iter()
        .map(|item| parse_block(item).map(|_| item.trim().to_string()))
        .collect()
}

/// Whether every block of `inner` lies inside some block of `outer` (Vault's
/// `SubsetBlocks`); always true when `outer` is empty (no restriction to stay within).
pub fn is_subset(inner: &[String], outer: &[String]) -> bool {
    if outer.is_empty() {
        return true;
    }
    let outer: Vec<IpNet> = outer.iter().filter_map(|b| parse_block(b)).collect();
    inner.iter().all(|block| {
        parse_block(block).is_some_and(|block| outer.iter().any(|o| o.contains(&block)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_and_remotes() {
        let blocks = vec!["10.0.0.0/8".to_string(), "192.168.1.7".to_string()];
        let cases = [
            (Some("10.1.2.3"), true),
            (Some("10.1.2.3:4444"), true),
            (Some("192.168.1.7"), true),
            (Some("192.168.1.8"), false),
            (Some("::ffff:10.0.0.1"), true),
            (Some("[::ffff:10.0.0.1]:80"), true),
            (Some("not an address"), false),
            (None, false),
        ];
        for (remote, want) in cases {
            assert_eq!(remote_allowed(remote, &blocks), want, "{remote:?}");
        }
    }

    #[test]
    fn list_normalises_hosts() {
        let items = vec![
            " 127.0.0.1/32".to_string(),
            "10.0.0.0/8".to_string(),
            "::1".into(),
        ];
        assert_eq!(
            parse_list("token_bound_cidrs", &items).ok(),
            Some(vec!["127.0.0.1".into(), "10.0.0.0/8".into(), "::1".into()])
        );
        assert!(parse_list("token_bound_cidrs", &["10.0.0.0/33".to_string()]).is_err());
        assert!(parse_list("token_bound_cidrs", &["nope".to_string()]).is_err());
    }

    #[test]
    fn subsets() {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(is_subset(
            &v(&["10.1.0.0/16", "10.2.3.4"]),
            &v(&["10.0.0.0/8"])
        ));
        assert!(is_subset(&v(&["10.1.0.0/16"]), &v(&[])));
        assert!(is_subset(&v(&[]), &v(&["10.0.0.0/8"])));
        assert!(!is_subset(&v(&["10.0.0.0/7"]), &v(&["10.0.0.0/8"])));
        assert!(!is_subset(
            &v(&["11.0.0.1"]),
            &v(&["10.0.0.0/8", "12.0.0.0/8"])
        ));
        assert_eq!(
            validate_blocks(&v(&[" 10.0.0.0/8", "1.2.3.4"])),
            Some(v(&["10.0.0.0/8", "1.2.3.4"]))
        );
        assert_eq!(validate_blocks(&v(&["10.0.0.0/8", "x"])), None);
    }
}
