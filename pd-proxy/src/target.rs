//! The prefill target named by the scheduler in `x-prefiller-host-port`,
//! and the static SSRF allowlist it is checked against.

use crate::errors::ProxyError;
use http::HeaderMap;
use http::uri::Authority;
use llmd_runtime::Identifier;

/// The header the scheduler puts the prefill target(s) in.
pub const PREFILLER_HEADER: &str = "x-prefiller-host-port";

/// A prefill target: `host[:port]` as the scheduler sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrefillTarget {
    authority: Authority,
    /// Number of targets the header offered.
    pub candidates: usize,
}

impl PrefillTarget {
    /// `host:port` (or `host`) to connect to, as an authority.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// `host:port` (or `host`) to connect to.
    pub fn host_port(&self) -> &str {
        self.authority.as_str()
    }

    /// The host without the port (and without IPv6 brackets).
    pub fn host(&self) -> &str {
        self.authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
    }

    /// The target as a span attribute value.
    pub fn identifier(&self) -> Identifier {
        Identifier::new(self.host_port())
    }
}

/// Reads the prefill target from the request headers: the first of a
/// comma-separated list (or of several header lines), a leading `http://`
/// tolerated. `Ok(None)` when the header is absent or empty.
pub fn prefill_target(headers: &HeaderMap) -> Result<Option<PrefillTarget>, ProxyError> {
    let mut candidates = Vec::new();
    for value in headers.get_all(PREFILLER_HEADER) {
        let text = value.to_str().map_err(|_| bad("not visible ASCII"))?;
        candidates.extend(text.split(',').map(str::trim).filter(|s| !s.is_empty()));
    }
    let Some(first) = candidates.first() else {
        return Ok(None);
    };
    let bare = first.strip_prefix("http://").unwrap_or(first);
    if bare.contains(['/', '@', '?', '#']) {
        return Err(bad("expected host:port"));
    }
    let authority: Authority = bare.parse().map_err(|_| bad("expected host:port"))?;
    let after_host = authority
        .as_str()
        .strip_prefix(authority.host())
        .unwrap_or_default();
    if authority.host().is_empty() || (!after_host.is_empty() && authority.port_u16().is_none()) {
        return Err(bad("expected host:port"));
    }
    Ok(Some(PrefillTarget {
        authority,
        candidates: candidates.len(),
    }))
}

fn bad(reason: &'static str) -> ProxyError {
    ProxyError::BadHeader {
        name: PREFILLER_HEADER,
        reason,
    }
}

/// Which prefill targets may be called.
#[derive(Clone, Debug)]
pub enum Allowlist {
    /// SSRF protection off: any target.
    AllowAll,
    /// Only these hosts (`host` matches any port, `host:port` only that port).
    Only(Vec<String>),
}

impl Allowlist {
    /// Builds the allowlist from the configuration.
    pub fn new(hosts: Option<&[String]>) -> Allowlist {
        match hosts {
            None => Allowlist::AllowAll,
            Some(hosts) => Allowlist::Only(hosts.iter().map(|h| h.to_ascii_lowercase()).collect()),
        }
    }

    /// Whether `target` may be called.
    pub fn allows(&self, target: &PrefillTarget) -> bool {
        match self {
            Allowlist::AllowAll => true,
            Allowlist::Only(hosts) => {
                let host = target.host().to_ascii_lowercase();
                let host_port = target.host_port().to_ascii_lowercase();
                hosts
                    .iter()
                    .any(|allowed| *allowed == host || *allowed == host_port)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(PREFILLER_HEADER, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn takes_the_first_target_and_counts_candidates() {
        let t = prefill_target(&headers(&["10.0.0.1:8000, 10.0.0.2:8000"]))
            .unwrap()
            .unwrap();
        assert_eq!(t.host_port(), "10.0.0.1:8000");
        assert_eq!(t.candidates, 2);
        let t = prefill_target(&headers(&["http://p:1", "q:2"]))
            .unwrap()
            .unwrap();
        assert_eq!((t.host_port(), t.host(), t.candidates), ("p:1", "p", 2));
        let t = prefill_target(&headers(&["[::1]:8000"])).unwrap().unwrap();
        assert_eq!(t.host(), "::1");
    }

    #[test]
    fn absent_or_empty_header_means_decode_only() {
        assert_eq!(prefill_target(&HeaderMap::new()).unwrap(), None);
        assert_eq!(prefill_target(&headers(&[" , "])).unwrap(), None);
    }

    #[test]
    fn malformed_targets_are_rejected() {
        for bad in [
            "h:1/path",
            "user@h:1",
            "h:port",
            "https://h:1",
            ":80",
            "h:1?x",
        ] {
            assert!(prefill_target(&headers(&[bad])).is_err(), "{bad}");
        }
        let mut map = HeaderMap::new();
        map.insert(
            PREFILLER_HEADER,
            HeaderValue::from_bytes(b"h\xff:1").unwrap(),
        );
        assert!(prefill_target(&map).is_err());
    }

    #[test]
    fn allowlist_matches_host_or_exact_host_port() {
        let list = Allowlist::new(Some(&[
            "10.0.0.1".into(),
            "pod-b:9000".into(),
            "::1".into(),
        ]));
        let target = |s: &str| prefill_target(&headers(&[s])).unwrap().unwrap();
        assert!(list.allows(&target("10.0.0.1:8000")));
        assert!(list.allows(&target("POD-B:9000")));
        assert!(!list.allows(&target("pod-b:9001")));
        assert!(!list.allows(&target("10.0.0.2:8000")));
        assert!(list.allows(&target("[::1]:8000")));
        assert!(Allowlist::new(None).allows(&target("anything:1")));
    }
}
