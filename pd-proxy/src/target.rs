//! The prefill target named by the scheduler in `x-prefiller-host-port`
//! (or `x-llm-d-prefiller-host-port`, its new name in llm-d), and the
//! SSRF allowlist it is checked against.

use crate::errors::ProxyError;
use crate::pool::PoolTargets;
use http::HeaderMap;
use http::uri::Authority;
use llmd_runtime::Identifier;
use llmd_runtime::routing::PREFILLER_HEADERS;

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

/// Which target is called when the header lists several.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selection {
    /// The first, as llm-d's sidecar does by default.
    First,
    /// One at random, each as likely (`--enable-prefiller-sampling`).
    Sampled,
}

/// Reads the prefill target from the request headers (the legacy spelling
/// of the header when present, else the new one, as llm-d's sidecar reads
/// them): of a comma-separated list (or of several header lines), the
/// first or, with [`Selection::Sampled`], one at random; a leading
/// `http://` is tolerated. When sampling, every listed target must be well
/// formed, so that a bad header fails whichever target is drawn.
/// `Ok(None)` when the header is absent or empty.
pub fn prefill_target(
    headers: &HeaderMap,
    selection: Selection,
) -> Result<Option<PrefillTarget>, ProxyError> {
    prefill_target_drawn(headers, selection, |count| rand::random_range(0..count))
}

/// [`prefill_target`], with `draw(count)` picking the index of the sampled
/// target.
fn prefill_target_drawn(
    headers: &HeaderMap,
    selection: Selection,
    draw: impl FnOnce(usize) -> usize,
) -> Result<Option<PrefillTarget>, ProxyError> {
    let Some((name, values)) = PREFILLER_HEADERS
        .into_iter()
        .map(|name| (name, headers.get_all(name)))
        .find(|(_, values)| values.iter().next().is_some())
    else {
        return Ok(None);
    };
    let mut candidates = Vec::new();
    for value in values {
        let text = value.to_str().map_err(|_| bad(name, "not visible ASCII"))?;
        candidates.extend(text.split(',').map(str::trim).filter(|s| !s.is_empty()));
    }
    let chosen = match (selection, candidates.len()) {
        (_, 0) => return Ok(None),
        (Selection::First, _) | (_, 1) => authority(name, candidates[0])?,
        (Selection::Sampled, count) => {
            let mut parsed = candidates
                .iter()
                .map(|candidate| authority(name, candidate))
                .collect::<Result<Vec<_>, _>>()?;
            parsed.swap_remove(draw(count).min(count - 1))
        }
    };
    Ok(Some(PrefillTarget {
        authority: chosen,
        candidates: candidates.len(),
    }))
}

/// A target listed in header `name` as an authority: `host[:port]`, a
/// leading `http://` tolerated.
fn authority(name: &'static str, candidate: &str) -> Result<Authority, ProxyError> {
    let bare = candidate.strip_prefix("http://").unwrap_or(candidate);
    let bad_target = || bad(name, "expected host:port");
    if bare.contains(['/', '@', '?', '#']) {
        return Err(bad_target());
    }
    let authority: Authority = bare.parse().map_err(|_| bad_target())?;
    let after_host = authority
        .as_str()
        .strip_prefix(authority.host())
        .unwrap_or_default();
    if authority.host().is_empty() || (!after_host.is_empty() && authority.port_u16().is_none()) {
        return Err(bad_target());
    }
    Ok(authority)
}

fn bad(name: &'static str, reason: &'static str) -> ProxyError {
    ProxyError::BadHeader { name, reason }
}

/// Which prefill targets may be called.
#[derive(Clone, Debug)]
pub enum Allowlist {
    /// SSRF protection off: any target.
    AllowAll,
    /// Only these.
    Only {
        /// Static hosts (`host` matches any port, `host:port` only that
        /// port).
        hosts: Vec<String>,
        /// The targets of an InferencePool's pods, kept up to date by its
        /// watch.
        pool: Option<PoolTargets>,
    },
}

impl Allowlist {
    /// The allowlist of SSRF protection with the static `hosts` and, when
    /// given, the targets of a watched pool; `None`: protection off.
    pub fn new(hosts: Option<&[String]>, pool: Option<PoolTargets>) -> Allowlist {
        match hosts {
            None => Allowlist::AllowAll,
            Some(hosts) => Allowlist::Only {
                hosts: hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
                pool,
            },
        }
    }

    /// The pool targets this allowlist reads, if any.
    pub fn pool(&self) -> Option<&PoolTargets> {
        match self {
            Allowlist::Only {
                pool: Some(pool), ..
            } => Some(pool),
            _ => None,
        }
    }

    /// Whether `target` may be called.
    pub fn allows(&self, target: &PrefillTarget) -> bool {
        match self {
            Allowlist::AllowAll => true,
            Allowlist::Only { hosts, pool } => {
                let (host, host_port) = (target.host(), target.host_port());
                hosts.iter().any(|allowed| {
                    allowed.eq_ignore_ascii_case(host) || allowed.eq_ignore_ascii_case(host_port)
                }) || pool.as_ref().is_some_and(|pool| pool.contains(host_port))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use llmd_runtime::routing::{LEGACY_PREFILLER_HEADER, PREFILLER_HEADER};

    #[test]
    fn either_spelling_names_the_target_and_the_legacy_one_is_trusted_first() {
        let mut renamed = HeaderMap::new();
        renamed.insert(PREFILLER_HEADER, HeaderValue::from_static("p:1"));
        assert_eq!(first(&renamed).unwrap().unwrap().host_port(), "p:1");
        let mut both = renamed.clone();
        both.insert(LEGACY_PREFILLER_HEADER, HeaderValue::from_static("q:2"));
        assert_eq!(first(&both).unwrap().unwrap().host_port(), "q:2");
        renamed.insert(PREFILLER_HEADER, HeaderValue::from_static("h:port"));
        let error = first(&renamed).unwrap_err();
        assert!(error.to_string().contains(PREFILLER_HEADER), "{error}");
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(LEGACY_PREFILLER_HEADER, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    fn first(headers: &HeaderMap) -> Result<Option<PrefillTarget>, ProxyError> {
        prefill_target(headers, Selection::First)
    }

    fn drawn(values: &[&str], index: usize) -> Result<Option<PrefillTarget>, ProxyError> {
        prefill_target_drawn(&headers(values), Selection::Sampled, |count| {
            assert_eq!(count, 3, "drawn among every listed target");
            index
        })
    }

    #[test]
    fn sampling_calls_the_drawn_target_and_checks_them_all() {
        let listed = ["p:1, http://q:2", "r:3"];
        for (index, expected) in ["p:1", "q:2", "r:3"].into_iter().enumerate() {
            let target = drawn(&listed, index).unwrap().unwrap();
            assert_eq!((target.host_port(), target.candidates), (expected, 3));
        }
        assert!(
            drawn(&["p:1, h:port, r:3"], 0).is_err(),
            "a bad target fails every draw"
        );
        let only = prefill_target_drawn(&headers(&["p:1"]), Selection::Sampled, |_| {
            unreachable!("one target needs no draw")
        });
        assert_eq!(only.unwrap().unwrap().host_port(), "p:1");
        let first = first(&headers(&["p:1, h:port"])).unwrap().unwrap();
        assert_eq!(
            first.host_port(),
            "p:1",
            "without sampling only the first is read"
        );
    }

    #[test]
    fn random_draws_reach_every_target() {
        let listed = headers(&["p:1,q:2"]);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let target = prefill_target(&listed, Selection::Sampled)
                .unwrap()
                .unwrap();
            seen.insert(target.host_port().to_owned());
        }
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["p:1", "q:2"]);
    }

    #[test]
    fn takes_the_first_target_and_counts_candidates() {
        let t = first(&headers(&["10.0.0.1:8000, 10.0.0.2:8000"]))
            .unwrap()
            .unwrap();
        assert_eq!(t.host_port(), "10.0.0.1:8000");
        assert_eq!(t.candidates, 2);
        let t = first(&headers(&["http://p:1", "q:2"])).unwrap().unwrap();
        assert_eq!((t.host_port(), t.host(), t.candidates), ("p:1", "p", 2));
        let t = first(&headers(&["[::1]:8000"])).unwrap().unwrap();
        assert_eq!(t.host(), "::1");
    }

    #[test]
    fn absent_or_empty_header_means_decode_only() {
        assert_eq!(first(&HeaderMap::new()).unwrap(), None);
        assert_eq!(first(&headers(&[" , "])).unwrap(), None);
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
            assert!(first(&headers(&[bad])).is_err(), "{bad}");
        }
        let mut map = HeaderMap::new();
        map.insert(
            LEGACY_PREFILLER_HEADER,
            HeaderValue::from_bytes(b"h\xff:1").unwrap(),
        );
        assert!(first(&map).is_err());
    }

    #[test]
    fn allowlist_matches_host_or_exact_host_port() {
        let list = Allowlist::new(
            Some(&["10.0.0.1".into(), "pod-b:9000".into(), "::1".into()]),
            None,
        );
        let target = |s: &str| first(&headers(&[s])).unwrap().unwrap();
        assert!(list.allows(&target("10.0.0.1:8000")));
        assert!(list.allows(&target("POD-B:9000")));
        assert!(!list.allows(&target("pod-b:9001")));
        assert!(!list.allows(&target("10.0.0.2:8000")));
        assert!(list.allows(&target("[::1]:8000")));
        assert!(Allowlist::new(None, None).allows(&target("anything:1")));
        let unsynced_pool = Allowlist::new(Some(&[]), Some(PoolTargets::new()));
        assert!(!unsynced_pool.allows(&target("10.0.0.1:8000")));
    }
}
