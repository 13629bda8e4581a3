//! What every request handler shares: the configuration, the prefillers'
//! upstream, the allowlist and the decoder ranks.

use crate::config::{Config, ConfigError, KvConnector};
use crate::errors::ProxyError;
use crate::pool::PoolTargets;
use crate::server::StartError;
use crate::target::{Allowlist, Selection};
use crate::upstream::{self, Origin, Upstream};
use http::HeaderMap;
use http::uri::Authority;
use llmd_runtime::Identifier;
use std::sync::Arc;

/// The header naming the data-parallel rank (`ip:port` of its listener).
pub const DATA_PARALLEL_HEADER: &str = "x-data-parallel-host-port";

/// One local decoder rank.
#[derive(Clone, Debug)]
pub struct Decoder {
    /// Where its requests go, and their connections.
    pub origin: Origin,
    /// `host:port`, as a span attribute.
    pub target: Identifier,
}

/// State shared by all listeners.
#[derive(Debug)]
pub struct Shared {
    /// The configuration.
    pub config: Config,
    /// How prefillers are called.
    pub prefillers: Upstream,
    /// The SSRF allowlist.
    pub allowlist: Allowlist,
    /// Decoder rank `i` at index `i`.
    pub decoders: Vec<Decoder>,
}

impl Shared {
    /// Builds the shared state for `config`.
    pub fn new(config: Config) -> Result<Shared, StartError> {
        let prefillers = Upstream::new(config.prefiller_tls, config.connect_timeout)?
            .with_max_idle(config.max_idle_conns_per_host);
        let pool = config
            .inference_pool
            .as_ref()
            .filter(|_| config.allowed_prefill_hosts.is_some())
            .map(|_| PoolTargets::new());
        let allowlist = Allowlist::new(config.allowed_prefill_hosts.as_deref(), pool);
        let decoder_tls = upstream::tls_config(config.decoder_tls)?;
        let decoders = (0..config.data_parallel_size)
            .map(|rank| {
                let host_port = format!("{}:{}", config.decoder_host, config.vllm_port + rank);
                let authority = Authority::try_from(host_port.as_str()).map_err(|_| {
                    ConfigError::Invalid(format!("decoder address {host_port:?} is not host:port"))
                })?;
                let origin = Origin::new(authority, config.connect_timeout, decoder_tls.clone())
                    .map_err(|error| ConfigError::Invalid(format!("decoder: {error}")))?
                    .with_max_idle(config.max_idle_conns_per_host);
                Ok(Decoder {
                    origin,
                    target: Identifier::new(&host_port),
                })
            })
            .collect::<Result<_, StartError>>()?;
        Ok(Shared {
            config,
            prefillers,
            allowlist,
            decoders,
        })
    }

    /// How a prefill target is chosen among several.
    pub fn selection(&self) -> Selection {
        if self.config.prefiller_sampling {
            Selection::Sampled
        } else {
            Selection::First
        }
    }

    /// The KV connector.
    pub fn connector(&self) -> KvConnector {
        self.config.connector
    }
}

/// The state of one listener: rank 0 routes by the data-parallel header,
/// the other ranks serve their own decoder only.
#[derive(Clone, Debug)]
pub struct Listener {
    /// Shared state.
    pub shared: Arc<Shared>,
    /// This listener's rank.
    pub rank: u16,
    /// The port of rank 0's listener, once bound.
    pub base_port: u16,
}

impl Listener {
    /// The decoder a request goes to, and whether data-parallel routing
    /// chose it.
    pub fn decoder_for(&self, headers: &HeaderMap) -> Result<(&Decoder, bool), ProxyError> {
        let decoders = &self.shared.decoders;
        let own = &decoders[usize::from(self.rank)];
        if self.rank != 0 || decoders.len() == 1 {
            return Ok((own, false));
        }
        let Some(value) = headers.get(DATA_PARALLEL_HEADER) else {
            return Ok((own, false));
        };
        let port = value
            .to_str()
            .ok()
            .and_then(|v| v.trim().rsplit_once(':'))
            .and_then(|(_, port)| port.parse::<u16>().ok())
            .ok_or(ProxyError::BadHeader {
                name: DATA_PARALLEL_HEADER,
                reason: "expected host:port",
            })?;
        let rank = port
            .checked_sub(self.base_port)
            .map(usize::from)
            .filter(|rank| *rank < decoders.len())
            .ok_or(ProxyError::UnknownDataParallelRank)?;
        Ok((&decoders[rank], rank != 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn listener(rank: u16, size: u16) -> Listener {
        let mut config = Config::defaults();
        config.data_parallel_size = size;
        config.vllm_port = 9001;
        Listener {
            shared: Arc::new(Shared::new(config).unwrap()),
            rank,
            base_port: 8000,
        }
    }

    fn with_header(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(DATA_PARALLEL_HEADER, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn data_parallel_header_picks_the_rank_by_port() {
        let l = listener(0, 3);
        let (d, dp) = l.decoder_for(&with_header("10.0.0.5:8002")).unwrap();
        assert_eq!((d.target.as_str(), dp), ("localhost:9003", true));
        assert!(!d.origin.is_tls());
        let (d, dp) = l.decoder_for(&HeaderMap::new()).unwrap();
        assert_eq!((d.target.as_str(), dp), ("localhost:9001", false));
        assert!(matches!(
            l.decoder_for(&with_header("10.0.0.5:8003")),
            Err(ProxyError::UnknownDataParallelRank)
        ));
        assert!(matches!(
            l.decoder_for(&with_header("nope")),
            Err(ProxyError::BadHeader { .. })
        ));
    }

    #[test]
    fn decoders_behind_tls_are_called_over_https() {
        let mut config = Config::defaults();
        config.vllm_port = 9001;
        config.decoder_tls.enabled = true;
        let shared = Shared::new(config).unwrap();
        assert!(shared.decoders[0].origin.is_tls());
        assert_eq!(shared.decoders[0].target.as_str(), "localhost:9001");
        assert!(!shared.prefillers.is_tls());
    }

    #[test]
    fn a_decoder_host_that_is_not_an_authority_is_a_config_error() {
        let mut config = Config::defaults();
        config.decoder_host = "decoder host/with a path".into();
        let error = Shared::new(config).expect_err("rejected");
        assert!(
            matches!(&error, StartError::Config(ConfigError::Invalid(m)) if m.contains("decoder address")),
            "{error}"
        );
    }

    #[test]
    fn other_ranks_serve_their_own_decoder() {
        let l = listener(2, 3);
        let (d, dp) = l.decoder_for(&with_header("10.0.0.5:8000")).unwrap();
        assert_eq!((d.target.as_str(), dp), ("localhost:9003", false));
    }
}
