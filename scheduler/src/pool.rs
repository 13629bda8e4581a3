//! The endpoint pool: the vLLM pods the scheduler routes to, read from a
//! YAML file, with each pod's live load kept in lock-free cells.
//!
//! ```yaml
//! endpoints:
//!   - address: 10.0.0.1:8001        # the vLLM server (metrics, KV events, pod id)
//!     model: meta-llama/Llama-3.1-8B-Instruct
//!     labels: { llm-d.ai/role: decode }
//!     sidecarPort: 8000             # the pd-proxy in front of it, if any
//!     kvEventsPort: 5557            # its KV-event publisher, if not the default
//! ```

use arc_swap::ArcSwap;
use llmd_kv_cache::PodId;
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The label that gives a pod its P/D role.
pub const ROLE_LABEL: &str = "llm-d.ai/role";

/// A pod's role in prefill/decode disaggregation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Runs prefill only.
    Prefill,
    /// Runs decode only (also the role of an unlabeled pod).
    Decode,
    /// Runs both.
    Both,
}

impl Role {
    fn from_labels(labels: &BTreeMap<String, String>) -> Result<Role, String> {
        match labels.get(ROLE_LABEL).map(String::as_str) {
            None => Ok(Role::Decode),
            Some("prefill") => Ok(Role::Prefill),
            Some("decode") => Ok(Role::Decode),
            Some("both") => Ok(Role::Both),
            Some(other) => Err(format!(
                "label {ROLE_LABEL} must be prefill, decode or both, not {other:?}"
            )),
        }
    }
}

/// Why a pool file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The file could not be read.
    #[error("cannot read pool file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML is malformed or a field has a bad value.
    #[error("pool file {path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, which names the line and column.
        message: String,
    },
    /// The file parses but describes an unusable pool.
    #[error("pool file {path}: endpoint #{index} ({address}): {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Position of the endpoint in the list, from 1.
        index: usize,
        /// The endpoint's address.
        address: SocketAddr,
        /// What is wrong.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolFile {
    endpoints: Vec<EndpointEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct EndpointEntry {
    address: SocketAddr,
    model: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    sidecar_port: Option<u16>,
    #[serde(default)]
    kv_events_port: Option<u16>,
}

/// One endpoint of the pool, as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointSpec {
    /// The vLLM server's address; `ip:port` is also the pod id of KV events.
    pub address: SocketAddr,
    /// The model it serves.
    pub model: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// The port requests are sent to (the pd-proxy sidecar), if not the vLLM port.
    pub sidecar_port: Option<u16>,
    /// The port of the pod's KV-event publisher, if not the configured default.
    pub kv_events_port: Option<u16>,
}

impl EndpointSpec {
    /// A decode endpoint serving `model` at `address`, with no sidecar.
    pub fn new(address: SocketAddr, model: &str) -> EndpointSpec {
        EndpointSpec {
            address,
            model: model.to_owned(),
            labels: BTreeMap::new(),
            sidecar_port: None,
            kv_events_port: None,
        }
    }

    /// Sets the role label.
    pub fn with_role(mut self, role: &str) -> EndpointSpec {
        self.labels.insert(ROLE_LABEL.to_owned(), role.to_owned());
        self
    }

    /// Sets the KV-event publisher's port.
    pub fn with_kv_events_port(mut self, port: u16) -> EndpointSpec {
        self.kv_events_port = Some(port);
        self
    }

    /// Sets the sidecar port.
    pub fn with_sidecar_port(mut self, port: u16) -> EndpointSpec {
        self.sidecar_port = Some(port);
        self
    }
}

/// Parses a pool file's text; `origin` names it in errors.
pub fn parse_pool(text: &str, origin: &Path) -> Result<Vec<EndpointSpec>, PoolError> {
    let file: PoolFile = serde_yaml_ng::from_str(text).map_err(|e| PoolError::Syntax {
        path: origin.to_owned(),
        message: e.to_string(),
    })?;
    let mut seen = HashSet::new();
    let mut specs = Vec::with_capacity(file.endpoints.len());
    for (i, entry) in file.endpoints.into_iter().enumerate() {
        let invalid = |message: String| PoolError::Invalid {
            path: origin.to_owned(),
            index: i + 1,
            address: entry.address,
            message,
        };
        Role::from_labels(&entry.labels).map_err(invalid)?;
        if entry.model.trim().is_empty() {
            return Err(invalid("model is empty".to_owned()));
        }
        if !seen.insert(entry.address) {
            return Err(invalid("address listed twice".to_owned()));
        }
        specs.push(EndpointSpec {
            address: entry.address,
            model: entry.model,
            labels: entry.labels,
            sidecar_port: entry.sidecar_port,
            kv_events_port: entry.kv_events_port,
        });
    }
    Ok(specs)
}

/// Reads and parses a pool file.
pub fn load_pool(path: &Path) -> Result<Vec<EndpointSpec>, PoolError> {
    let text = std::fs::read_to_string(path).map_err(|source| PoolError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_pool(&text, path)
}

/// Whether the scheduler may route to an endpoint, from its metrics scrapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Not scraped successfully yet.
    Unknown = 0,
    /// The last scrape succeeded recently.
    Ready = 1,
    /// The last successful scrape is too old.
    Stale = 2,
    /// The last scrape failed (connection, status or body).
    Unreachable = 3,
}

impl Health {
    fn from_u8(v: u8) -> Health {
        match v {
            1 => Health::Ready,
            2 => Health::Stale,
            3 => Health::Unreachable,
            _ => Health::Unknown,
        }
    }
}

/// The load figures scraped from a pod's `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Load {
    /// `vllm:num_requests_waiting`.
    pub waiting: u64,
    /// `vllm:num_requests_running`.
    pub running: u64,
    /// `vllm:kv_cache_usage_perc`, in 0..=1.
    pub kv_cache_usage: f64,
}

/// An endpoint with its live state. Shared between the scraper (writer)
/// and the scheduler (reader) without locks.
#[derive(Debug)]
pub struct Endpoint {
    spec: EndpointSpec,
    role: Role,
    id: String,
    pod_id: PodId,
    index: usize,
    waiting: AtomicU64,
    running: AtomicU64,
    kv_usage_bits: AtomicU64,
    health: AtomicU8,
    last_ok_nanos: AtomicU64,
    epoch: Instant,
}

impl Endpoint {
    fn new(spec: EndpointSpec, index: usize, epoch: Instant) -> Endpoint {
        let role = Role::from_labels(&spec.labels).unwrap_or(Role::Decode);
        Endpoint {
            id: spec.address.to_string(),
            pod_id: PodId::new(&spec.address.to_string()),
            spec,
            role,
            index,
            waiting: AtomicU64::new(0),
            running: AtomicU64::new(0),
            kv_usage_bits: AtomicU64::new(0f64.to_bits()),
            health: AtomicU8::new(Health::Unknown as u8),
            last_ok_nanos: AtomicU64::new(0),
            epoch,
        }
    }

    /// The configuration of this endpoint.
    pub fn spec(&self) -> &EndpointSpec {
        &self.spec
    }

    /// The pod id, `ip:port` of the vLLM server (as in KV-event topics).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The pod id as the KV block index knows it.
    pub fn pod_id(&self) -> &PodId {
        &self.pod_id
    }

    /// Position of the endpoint in its pool.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The P/D role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The model served.
    pub fn model(&self) -> &str {
        &self.spec.model
    }

    /// Where requests are sent: the sidecar port if set, else the vLLM port.
    pub fn target(&self) -> SocketAddr {
        SocketAddr::new(
            self.spec.address.ip(),
            self.spec.sidecar_port.unwrap_or(self.spec.address.port()),
        )
    }

    /// The last load scraped.
    pub fn load(&self) -> Load {
        Load {
            waiting: self.waiting.load(Ordering::Relaxed),
            running: self.running.load(Ordering::Relaxed),
            kv_cache_usage: f64::from_bits(self.kv_usage_bits.load(Ordering::Relaxed)),
        }
    }

    /// The health as last recorded.
    pub fn health(&self) -> Health {
        Health::from_u8(self.health.load(Ordering::Relaxed))
    }

    /// Whether the endpoint may receive requests.
    pub fn is_ready(&self) -> bool {
        self.health() == Health::Ready
    }

    /// Records a successful scrape.
    pub fn record_load(&self, load: Load) {
        self.waiting.store(load.waiting, Ordering::Relaxed);
        self.running.store(load.running, Ordering::Relaxed);
        self.kv_usage_bits.store(
            load.kv_cache_usage.clamp(0.0, 1.0).to_bits(),
            Ordering::Relaxed,
        );
        let nanos = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_ok_nanos.store(nanos, Ordering::Relaxed);
        self.health.store(Health::Ready as u8, Ordering::Relaxed);
    }

    /// Records a failed scrape.
    pub fn record_failure(&self) {
        self.health
            .store(Health::Unreachable as u8, Ordering::Relaxed);
    }

    /// Marks the endpoint stale if its last good scrape is older than `max_age`.
    pub fn expire(&self, max_age: Duration) {
        if self.health() != Health::Ready {
            return;
        }
        let last = Duration::from_nanos(self.last_ok_nanos.load(Ordering::Relaxed));
        if self.epoch.elapsed().saturating_sub(last) > max_age {
            self.health.store(Health::Stale as u8, Ordering::Relaxed);
        }
    }
}

/// An immutable set of endpoints; a reload replaces it as a whole.
#[derive(Debug)]
pub struct PoolSnapshot {
    endpoints: Vec<Arc<Endpoint>>,
}

impl PoolSnapshot {
    /// Builds a snapshot from specs.
    pub fn new(specs: Vec<EndpointSpec>) -> PoolSnapshot {
        let epoch = Instant::now();
        PoolSnapshot {
            endpoints: specs
                .into_iter()
                .enumerate()
                .map(|(i, spec)| Arc::new(Endpoint::new(spec, i, epoch)))
                .collect(),
        }
    }

    /// All endpoints.
    pub fn endpoints(&self) -> &[Arc<Endpoint>] {
        &self.endpoints
    }

    /// Whether some endpoint serves `model`.
    pub fn serves(&self, model: &str) -> bool {
        self.endpoints.iter().any(|e| e.model() == model)
    }

    /// The ready endpoints serving `model`.
    pub fn ready_for(&self, model: &str) -> Vec<Arc<Endpoint>> {
        self.endpoints
            .iter()
            .filter(|e| e.model() == model && e.is_ready())
            .cloned()
            .collect()
    }

    /// The distinct models served, sorted.
    pub fn models(&self) -> Vec<&str> {
        let mut models: Vec<&str> = self.endpoints.iter().map(|e| e.model()).collect();
        models.sort_unstable();
        models.dedup();
        models
    }

    /// Number of ready endpoints.
    pub fn ready_count(&self) -> usize {
        self.endpoints.iter().filter(|e| e.is_ready()).count()
    }
}

/// The current pool, replaceable at run time.
#[derive(Debug)]
pub struct Pool {
    current: ArcSwap<PoolSnapshot>,
}

impl Pool {
    /// A pool of `specs`.
    pub fn new(specs: Vec<EndpointSpec>) -> Pool {
        Pool {
            current: ArcSwap::from_pointee(PoolSnapshot::new(specs)),
        }
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<PoolSnapshot> {
        self.current.load_full()
    }

    /// Replaces the endpoints.
    pub fn replace(&self, specs: Vec<EndpointSpec>) {
        self.current.store(Arc::new(PoolSnapshot::new(specs)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<EndpointSpec>, PoolError> {
        parse_pool(text, Path::new("pool.yaml"))
    }

    #[test]
    fn parses_roles_sidecar_and_defaults() {
        let specs = parse(
            "endpoints:\n\
             - address: 10.0.0.1:8001\n  model: m\n  labels: {llm-d.ai/role: prefill}\n\
             - address: 10.0.0.2:8001\n  model: m\n  sidecarPort: 8000\n",
        )
        .unwrap();
        let snap = PoolSnapshot::new(specs);
        let [p, d] = snap.endpoints() else { panic!() };
        assert_eq!(p.role(), Role::Prefill);
        assert_eq!(d.role(), Role::Decode);
        assert_eq!(d.target().to_string(), "10.0.0.2:8000");
        assert_eq!(p.target().to_string(), "10.0.0.1:8001");
        assert_eq!(d.id(), "10.0.0.2:8001");
    }

    #[test]
    fn bad_address_error_names_the_line() {
        let err = parse(
            "endpoints:\n- address: 10.0.0.1:8001\n  model: m\n- address: nowhere\n  model: m\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("line 4"), "{err}");
    }

    #[test]
    fn unknown_field_and_bad_role_are_rejected() {
        let err = parse("endpoints:\n- address: 10.0.0.1:8001\n  model: m\n  port: 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("port") && err.contains("line 4"), "{err}");
        let err = parse(
            "endpoints:\n- address: 10.0.0.1:8001\n  model: m\n  labels: {llm-d.ai/role: encode}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("encode") && err.contains("#1"), "{err}");
    }

    #[test]
    fn duplicate_addresses_are_rejected() {
        let err = parse("endpoints:\n- {address: 10.0.0.1:8001, model: m}\n- {address: 10.0.0.1:8001, model: m}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("#2") && err.contains("twice"), "{err}");
    }

    #[test]
    fn health_moves_with_scrapes_and_age() {
        let snap = PoolSnapshot::new(vec![EndpointSpec::new("127.0.0.1:1".parse().unwrap(), "m")]);
        let e = &snap.endpoints()[0];
        assert_eq!(e.health(), Health::Unknown);
        e.record_load(Load {
            waiting: 2,
            running: 1,
            kv_cache_usage: 1.5,
        });
        assert!(e.is_ready());
        assert_eq!(e.load().kv_cache_usage, 1.0);
        e.expire(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(2));
        e.expire(Duration::ZERO);
        assert_eq!(e.health(), Health::Stale);
        e.record_failure();
        assert_eq!(e.health(), Health::Unreachable);
        assert!(snap.ready_for("m").is_empty());
    }
}
