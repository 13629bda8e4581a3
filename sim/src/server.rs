//! Starting and stopping a simulator: what the `vllm-sim` binary runs and
//! what other crates embed in their tests.

use crate::api::{self, AppState};
use crate::config::{ConfigError, SimConfig};
use crate::engine::{Engine, EngineIdentity};
use crate::kv_events::{self, PublisherEndpoints, PublisherError};
use crate::pd::SideChannel;
use llmd_kv_cache::vllm_hash::VllmBlockHasher;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Why a simulator did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The KV events publisher did not start.
    #[error(transparent)]
    Publisher(#[from] PublisherError),
    /// The listener's address is unknown.
    #[error("listener: {0}")]
    Io(#[from] io::Error),
}

/// A running simulator.
#[derive(Debug)]
pub struct SimServer {
    addr: SocketAddr,
    kv_events: Option<PublisherEndpoints>,
    shutdown: oneshot::Sender<Duration>,
    task: JoinHandle<io::Result<bool>>,
}

impl SimServer {
    /// Serves `config` on `listener`. `env` looks up environment variables
    /// (`PYTHONHASHSEED` seeds block hashes as in vLLM,
    /// `VLLM_NIXL_SIDE_CHANNEL_HOST`/`_PORT` are reported to decoders,
    /// `POD_IP` names this server in the default KV events topic).
    pub async fn start(
        config: SimConfig,
        listener: TcpListener,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<SimServer, StartError> {
        config.validate()?;
        let addr = listener.local_addr()?;
        let enabled_events = config
            .kv_events
            .as_ref()
            .filter(|c| c.enable_kv_cache_events);
        let (events, kv_events) = match enabled_events {
            Some(events_config) => {
                let topic = if events_config.topic.is_empty() {
                    default_topic(&env, addr, config.served_model_name())
                } else {
                    events_config.topic.clone()
                };
                let (sink, endpoints) =
                    kv_events::start(events_config, topic, config.event_encoding)?;
                (Some(sink), Some(endpoints))
            }
            None => (None, None),
        };
        let hasher = VllmBlockHasher::from_env(&env, config.block_size)
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let identity = EngineIdentity {
            engine_id: config
                .kv_transfer
                .as_ref()
                .and_then(|t| t.engine_id.clone())
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            side_channel: SideChannel::from_lookup(&env),
            hasher,
        };
        let engine = Arc::new(Engine::new(Arc::new(config), identity, events));
        let app = api::router(AppState { engine });
        let (shutdown, stop) = oneshot::channel::<Duration>();
        // A dropped sender also stops the server, with no drain.
        let stopped = async move { stop.await.unwrap_or_default() };
        let task = tokio::spawn(llmd_runtime::shutdown::serve_draining(
            listener, app, stopped,
        ));
        Ok(SimServer {
            addr,
            kv_events,
            shutdown,
            task,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The KV events endpoints (wildcard ports resolved), when publishing.
    pub fn kv_events(&self) -> Option<&PublisherEndpoints> {
        self.kv_events.as_ref()
    }

    /// Stops accepting requests, closes idle kept-alive connections and
    /// waits up to `drain` for the requests in flight to finish (a streamed
    /// answer included); gives whether all did. Those left are cut off when
    /// the runtime stops.
    pub async fn shutdown(self, drain: Duration) -> io::Result<bool> {
        // The server may already have stopped on its own.
        let _ = self.shutdown.send(drain);
        self.task.await.map_err(io::Error::other)?
    }
}

/// llm-d's topic convention, `kv@<host:port>@<model>`: the host is `POD_IP`,
/// else the listening address unless it is a wildcard, else 127.0.0.1.
fn default_topic(env: &impl Fn(&str) -> Option<String>, addr: SocketAddr, model: &str) -> String {
    let host = env("POD_IP").unwrap_or_else(|| {
        let ip = if addr.ip().is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            addr.ip()
        };
        ip.to_string()
    });
    format!("kv@{host}:{}@{model}", addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_topic_names_pod_or_address_and_model() {
        let addr: SocketAddr = "0.0.0.0:8000".parse().unwrap();
        assert_eq!(default_topic(&|_| None, addr, "m"), "kv@127.0.0.1:8000@m");
        let pod = |k: &str| (k == "POD_IP").then(|| "10.1.2.3".to_owned());
        assert_eq!(default_topic(&pod, addr, "m"), "kv@10.1.2.3:8000@m");
    }
}
