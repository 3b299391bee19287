//! Node addresses as people and launchers write them: `10.0.0.1:7700`, `[fe80::1]:7700` or
//! `node07:7700`. A host name is resolved once, when the node starts (its first IPv4 address,
//! or its first address when it has no IPv4 one); a name that does not resolve is an error naming it. A list is
//! comma-separated, spaces around the commas allowed, and may not name one address twice.
//!
//! ```
//! use memlink_dsm::peer_addr::{resolve, resolve_list};
//! assert_eq!(resolve("localhost:7700").unwrap().port(), 7700);
//! let peers = resolve_list("127.0.0.1:7700, 127.0.0.1:7701").unwrap();
//! assert_eq!(peers.len(), 2);
//! assert!(resolve_list("127.0.0.1:7700,localhost:7700").is_err()); // the same node twice
//! ```

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};

use crate::types::NodeId;

/// Why an address or a list of them cannot be used.
#[derive(Debug)]
pub enum AddrError {
    /// Not of the form `host:port`.
    Syntax {
        /// What was given.
        given: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The host name did not resolve.
    Unresolved {
        /// The host name.
        host: String,
        /// The resolver's answer.
        error: String,
    },
    /// Two entries of a list are the same address.
    Duplicate {
        /// The address.
        addr: SocketAddr,
        /// The first entry (node id) with it.
        first: NodeId,
        /// The second.
        second: NodeId,
    },
    /// The list names more nodes than a cluster may have.
    TooMany(usize),
}

impl fmt::Display for AddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddrError::Syntax { given, reason } => {
                write!(f, "{given:?} is not host:port ({reason})")
            }
            AddrError::Unresolved { host, error } => {
                write!(f, "cannot resolve host {host:?}: {error}")
            }
            AddrError::Duplicate {
                addr,
                first,
                second,
            } => write!(
                f,
                "nodes {first} and {second} have the same address {addr}: every node needs \
                 its own address (another port on a shared host)"
            ),
            AddrError::TooMany(n) => write!(
                f,
                "{n} addresses: a cluster has at most {} nodes",
                NodeId::MAX as usize + 1
            ),
        }
    }
}

impl std::error::Error for AddrError {}

/// Resolves one `host:port` (numeric IPv4, bracketed IPv6, or a host name).
pub fn resolve(given: &str) -> Result<SocketAddr, AddrError> {
    let given = given.trim();
    if let Ok(addr) = given.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let syntax = |reason| AddrError::Syntax {
        given: given.to_string(),
        reason,
    };
    let (host, port) = given.rsplit_once(':').ok_or_else(|| syntax("no :port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| syntax("the port is not a number from 0 to 65535"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(syntax("no host before the :port"));
    }
    if host.contains(':') || host.chars().any(char::is_whitespace) {
        return Err(syntax("not a host name or address"));
    }
    let found: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| AddrError::Unresolved {
            host: host.to_string(),
            error: e.to_string(),
        })?
        .collect();
    let first_v4 = found.iter().find(|a| a.is_ipv4());
    first_v4
        .or(found.first())
        .copied()
        .ok_or_else(|| AddrError::Unresolved {
            host: host.to_string(),
            error: "no address".into(),
        })
}

/// Resolves a comma-separated list, index = node id; two entries with the same address are
/// an error naming both.
pub fn resolve_list(list: &str) -> Result<Vec<SocketAddr>, AddrError> {
    let addrs = list
        .split(',')
        .map(resolve)
        .collect::<Result<Vec<_>, _>>()?;
    check_distinct(&addrs)?;
    Ok(addrs)
}

/// Checks that no address appears twice and that the list fits node ids.
pub fn check_distinct(addrs: &[SocketAddr]) -> Result<(), AddrError> {
    if addrs.len() > NodeId::MAX as usize + 1 {
        return Err(AddrError::TooMany(addrs.len()));
    }
    let mut seen: std::collections::HashMap<SocketAddr, usize> = Default::default();
    for (i, a) in addrs.iter().enumerate() {
        if let Some(first) = seen.insert(*a, i) {
            return Err(AddrError::Duplicate {
                addr: *a,
                first: first as NodeId,
                second: i as NodeId,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_and_named_addresses_resolve() {
        assert_eq!(
            resolve(" 10.0.0.1:7700").unwrap(),
            "10.0.0.1:7700".parse().unwrap()
        );
        assert_eq!(
            resolve("[::1]:7700").unwrap(),
            "[::1]:7700".parse().unwrap()
        );
        let local = resolve("localhost:7701").unwrap();
        assert!(local.ip().is_loopback() && local.port() == 7701, "{local}");
    }

    #[test]
    fn bad_addresses_say_what_is_wrong() {
        for (given, why) in [
            ("10.0.0.1", "no :port"),
            ("host:x", "port"),
            ("host:70000", "port"),
            (":7700", "no host"),
            ("a b:7700", "not a host"),
        ] {
            let e = resolve(given).unwrap_err().to_string();
            assert!(e.contains(why), "{given}: {e}");
        }
        let e = resolve("no-such-host.invalid:7700").unwrap_err();
        assert!(
            matches!(&e, AddrError::Unresolved { host, .. } if host == "no-such-host.invalid"),
            "{e}"
        );
        assert!(e.to_string().contains("\"no-such-host.invalid\""), "{e}");
    }

    #[test]
    fn lists_tolerate_spaces_and_refuse_duplicates() {
        let l = resolve_list("127.0.0.1:1, 127.0.0.1:2 ,127.0.0.1:3").unwrap();
        assert_eq!(l.len(), 3);
        let e = resolve_list("127.0.0.1:1,127.0.0.1:2,localhost:1").unwrap_err();
        assert!(
            matches!(
                e,
                AddrError::Duplicate {
                    first: 0,
                    second: 2,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("127.0.0.1:1"), "{e}");
    }
}
