//! The local stack, as real processes: one prefill and N decode simulated
//! vLLM pods (publishing KV events), an `llmd-pd-proxy` beside each decode
//! pod, and the `llmd-scheduler` gateway in front of them, its KV block
//! index fed by every pod's events. Each child has its own
//! `OTEL_SERVICE_NAME` and exports its spans over OTLP gRPC.
//!
//! Every component listens on an ephemeral loopback port it reports on
//! stdout (the gateway may be given a fixed port); the stack waits until
//! each one answers `/health`, and until the scheduler has fresh metrics
//! of every pod, before it is returned.

mod files;
pub mod readiness;

use crate::component::Component;
use crate::process::{ComponentProcess, Launch, ProcessError};
use crate::sampling::Sampling;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The model every pod serves unless told otherwise.
pub const DEFAULT_MODEL: &str = "meta-llama/Llama-3.1-8B-Instruct";

/// The decider's default `nonCachedTokens`: prompts with at least this many
/// tokens not cached on the chosen decode pod go through a prefill pod.
pub const DEFAULT_NON_CACHED_TOKENS: usize = 128;

/// The gateway port of `llmd-stack --serve` unless `--port` says otherwise.
pub const DEFAULT_SERVE_PORT: u16 = 8080;

/// `OTEL_BSP_SCHEDULE_DELAY` of the children, in milliseconds: spans reach
/// the receiver a fraction of a second after they end.
pub const SCHEDULE_DELAY_MS: u64 = 100;

/// How long one component may take to start and become healthy (debug
/// builds on a loaded 2-core machine are slow).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Tokens per KV block, the vLLM default (pods and index agree).
const BLOCK_SIZE: usize = 16;

/// Service names (`OTEL_SERVICE_NAME`) of the components.
pub mod services {
    /// The scheduler gateway.
    pub const SCHEDULER: &str = "llm-d-scheduler";
    /// Every pd-proxy.
    pub const PD_PROXY: &str = "llm-d-pd-proxy";
    /// The prefill vLLM pod.
    pub const PREFILL: &str = "vllm-prefill";

    /// What the name of every decode pod starts with.
    pub const DECODE_PREFIX: &str = "vllm-decode-";

    /// Decode pod `n` (from 1).
    pub fn decode(n: usize) -> String {
        format!("{DECODE_PREFIX}{n}")
    }
}

/// Why the stack did not start.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// A component process failed.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// A component reported an address that does not parse.
    #[error("{name} reported an unusable address {reported:?}")]
    Address {
        /// The component.
        name: String,
        /// What it printed.
        reported: String,
    },
    /// A component did not become healthy.
    #[error(
        "{name} at {address} is not ready after {timeout:?} (last answer: {last}); its log: {log}"
    )]
    NotReady {
        /// The component.
        name: String,
        /// Where it was probed.
        address: SocketAddr,
        /// How long it was given.
        timeout: Duration,
        /// The last probe's result.
        last: String,
        /// Its log file.
        log: String,
    },
    /// The fixed gateway port is taken.
    #[error(
        "port {port} on 127.0.0.1 is already in use ({source}); stop what uses it or choose another port with --port"
    )]
    PortInUse {
        /// The port.
        port: u16,
        /// The bind error.
        source: std::io::Error,
    },
    /// The log directory or a configuration file could not be written.
    #[error("{path}: {source}")]
    File {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Where the children's spans go.
#[derive(Clone, Debug)]
pub enum Tracing {
    /// No telemetry at all (`OTEL_SDK_DISABLED=true`, and no
    /// `--otlp-traces-endpoint` for the simulated vLLM pods).
    Off,
    /// OTLP gRPC export to `endpoint` with `sampling`.
    Otlp {
        /// The OTLP gRPC endpoint, e.g. `http://127.0.0.1:4317`.
        endpoint: String,
        /// The children's sampler.
        sampling: Sampling,
    },
}

/// The simulated model latencies of every vLLM pod.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SimLatency {
    /// Fixed part of the time to first token.
    pub time_to_first_token: Duration,
    /// Prefill cost of each uncached prompt token.
    pub prefill_time_per_token: Duration,
    /// Time between generated tokens.
    pub inter_token_latency: Duration,
}

impl SimLatency {
    /// No simulated model time: what is measured is the stack itself.
    pub const NONE: SimLatency = SimLatency {
        time_to_first_token: Duration::ZERO,
        prefill_time_per_token: Duration::ZERO,
        inter_token_latency: Duration::ZERO,
    };

    /// Small but visible latencies, for the demo's traces.
    pub const DEMO: SimLatency = SimLatency {
        time_to_first_token: Duration::from_millis(15),
        prefill_time_per_token: Duration::from_micros(50),
        inter_token_latency: Duration::from_millis(2),
    };

    fn args(&self) -> Vec<String> {
        let micros = |d: Duration| format!("{}us", d.as_micros());
        vec![
            "--time-to-first-token".into(),
            micros(self.time_to_first_token),
            "--prefill-time-per-token".into(),
            micros(self.prefill_time_per_token),
            "--inter-token-latency".into(),
            micros(self.inter_token_latency),
        ]
    }
}

/// How to build the stack.
#[derive(Clone, Debug)]
pub struct StackOptions {
    /// The executable with the hidden `component` subcommand (`llmd-stack`).
    pub launcher: PathBuf,
    /// The model the pods serve.
    pub model: String,
    /// Number of decode pods (each with its pd-proxy).
    pub decode_pods: usize,
    /// The gateway's port on 127.0.0.1; 0 picks a free one.
    pub gateway_port: u16,
    /// The decider's `nonCachedTokens`.
    pub non_cached_tokens: usize,
    /// Span export.
    pub tracing: Tracing,
    /// Simulated model latencies.
    pub latency: SimLatency,
    /// Where the children's logs go; a new temporary directory (removed
    /// with the stack) when `None`.
    pub log_dir: Option<PathBuf>,
}

impl StackOptions {
    /// Two decode pods, the default model and threshold, an ephemeral
    /// gateway port, no simulated latency.
    pub fn new(launcher: PathBuf, tracing: Tracing) -> StackOptions {
        StackOptions {
            launcher,
            model: DEFAULT_MODEL.to_owned(),
            decode_pods: 2,
            gateway_port: 0,
            non_cached_tokens: DEFAULT_NON_CACHED_TOKENS,
            tracing,
            latency: SimLatency::NONE,
            log_dir: None,
        }
    }

    /// The telemetry environment of a child named `service`.
    pub fn telemetry_env(&self, service: &str) -> Vec<(String, String)> {
        let mut env = vec![("OTEL_SERVICE_NAME".to_owned(), service.to_owned())];
        match &self.tracing {
            Tracing::Off => env.push(("OTEL_SDK_DISABLED".into(), "true".into())),
            Tracing::Otlp { endpoint, sampling } => {
                env.extend([
                    ("OTEL_SDK_DISABLED".into(), "false".into()),
                    ("OTEL_TRACES_EXPORTER".into(), "otlp".into()),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL".into(), "grpc".into()),
                    ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL".into(), "grpc".into()),
                    ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint.clone()),
                    (
                        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT".into(),
                        endpoint.clone(),
                    ),
                    (
                        "OTEL_BSP_SCHEDULE_DELAY".into(),
                        SCHEDULE_DELAY_MS.to_string(),
                    ),
                ]);
                env.extend(sampling.env());
            }
        }
        env
    }

    /// The launch of a simulated vLLM pod named `name` in `role`: on an
    /// ephemeral loopback port, publishing KV events on another, exporting
    /// `llm_request` spans when tracing is on.
    pub fn vllm_launch(&self, name: &str, role: PodRole) -> Launch {
        let kv_role = match role {
            PodRole::Prefill => "kv_producer",
            PodRole::Decode => "kv_consumer",
        };
        let mut args: Vec<String> = vec![
            "--host".into(),
            "127.0.0.1".into(),
            "--port".into(),
            "0".into(),
            "--model".into(),
            self.model.clone(),
            "--block-size".into(),
            BLOCK_SIZE.to_string(),
            "--kv-transfer-config".into(),
            format!(
                r#"{{"kv_connector":"NixlConnector","kv_role":"{kv_role}","engine_id":"{name}"}}"#
            ),
            "--kv-events-config".into(),
            r#"{"enable_kv_cache_events":true,"publisher":"zmq","endpoint":"tcp://127.0.0.1:*"}"#
                .into(),
        ];
        args.extend(self.latency.args());
        if let Tracing::Otlp { endpoint, .. } = &self.tracing {
            args.extend(["--otlp-traces-endpoint".into(), endpoint.clone()]);
        }
        Launch {
            name: name.to_owned(),
            component: Component::VllmSim,
            args,
            env: self.telemetry_env(name),
        }
    }

    /// The launch of a pd-proxy named `name` (NIXL v2, plain HTTP, on an
    /// ephemeral loopback port) in front of the decoder on
    /// `127.0.0.1:<decoder_port>`.
    pub fn pd_proxy_launch(&self, name: &str, decoder_port: u16) -> Launch {
        Launch {
            name: name.to_owned(),
            component: Component::PdProxy,
            args: vec![
                "--port=0".into(),
                format!("--vllm-port={decoder_port}"),
                "--decoder-host=127.0.0.1".into(),
                "--bind-address=127.0.0.1".into(),
                "--secure-proxy=false".into(),
                "--kv-connector=nixlv2".into(),
            ],
            env: self.telemetry_env(services::PD_PROXY),
        }
    }
}

/// A pod's P/D role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodRole {
    /// Prefill only (vLLM `kv_producer`).
    Prefill,
    /// Decode (vLLM `kv_consumer`), behind a pd-proxy.
    Decode,
}

/// A running simulated vLLM pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pod {
    /// Its service name (`vllm-prefill`, `vllm-decode-N`).
    pub name: String,
    /// Its role.
    pub role: PodRole,
    /// The vLLM server's address.
    pub vllm: SocketAddr,
    /// Its pd-proxy's address (decode pods).
    pub proxy: Option<SocketAddr>,
    /// The port of its KV-event publisher on 127.0.0.1.
    pub kv_events_port: u16,
}

/// A running stack; every process is stopped when it is dropped.
#[derive(Debug)]
pub struct Stack {
    gateway: SocketAddr,
    model: String,
    non_cached_tokens: usize,
    pods: Vec<Pod>,
    // Field order is drop order: the gateway first, the pods last.
    scheduler: ComponentProcess,
    proxies: Vec<ComponentProcess>,
    sims: Vec<ComponentProcess>,
    log_dir: LogDir,
}

impl Stack {
    /// Starts every component and waits until the stack can take traffic;
    /// `progress` gets one line per step. Blocks; call it outside any
    /// async runtime.
    pub fn start(
        options: StackOptions,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Stack, StackError> {
        if options.gateway_port != 0 {
            check_port_free(options.gateway_port)?;
        }
        let log_dir = LogDir::create(options.log_dir.clone())?;
        let builder = Builder {
            options: &options,
            log_dir: log_dir.path.clone(),
        };
        progress(&format!("logs in {}", log_dir.path.display()));

        let (mut sims, mut pods) = builder.start_pods(progress)?;
        let mut proxies = builder.start_proxies(&mut pods, progress)?;
        let mut scheduler = builder.start_scheduler(&pods, progress)?;
        let gateway = reported_address(&mut scheduler, "llmd-scheduler listening on ")?;

        for (process, pod) in sims.iter().zip(&pods) {
            wait_healthy(process, pod.vllm, progress)?;
        }
        let proxied = pods.iter().filter_map(|pod| pod.proxy);
        for (process, proxy) in proxies.iter().zip(proxied) {
            wait_healthy(process, proxy, progress)?;
        }
        wait_healthy(&scheduler, gateway, progress)?;
        let pod_count = pods.len();
        readiness::wait_until(gateway, "/metrics", STARTUP_TIMEOUT, |status, body| {
            status == 200 && readiness::all_pods_ready(body, pod_count)
        })
        .map_err(|last| not_ready(&scheduler, gateway, last))?;
        progress(&format!(
            "{} sees fresh metrics of all {pod_count} pods",
            services::SCHEDULER
        ));
        for process in sims.iter_mut().chain(proxies.iter_mut()) {
            if let Some(error) = process.exited() {
                return Err(error.into());
            }
        }
        Ok(Stack {
            gateway,
            model: options.model.clone(),
            non_cached_tokens: options.non_cached_tokens,
            pods,
            scheduler,
            proxies,
            sims,
            log_dir,
        })
    }

    /// The gateway's base URL, e.g. `http://127.0.0.1:8080`.
    pub fn gateway_url(&self) -> String {
        format!("http://{}", self.gateway)
    }

    /// The gateway's address.
    pub fn gateway(&self) -> SocketAddr {
        self.gateway
    }

    /// The model the pods serve.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The decider's `nonCachedTokens`.
    pub fn non_cached_tokens(&self) -> usize {
        self.non_cached_tokens
    }

    /// The simulated vLLM pods.
    pub fn pods(&self) -> &[Pod] {
        &self.pods
    }

    /// The prefill pod.
    pub fn prefill_pod(&self) -> Option<&Pod> {
        self.pods.iter().find(|pod| pod.role == PodRole::Prefill)
    }

    /// The directory of the children's logs.
    pub fn log_dir(&self) -> &Path {
        &self.log_dir.path
    }

    /// Keeps the log directory after the stack stops.
    pub fn keep_logs(&mut self) {
        self.log_dir.remove_on_drop = false;
    }

    /// An error naming the first component process that has exited.
    pub fn check_running(&mut self) -> Result<(), ProcessError> {
        let processes = std::iter::once(&mut self.scheduler)
            .chain(self.proxies.iter_mut())
            .chain(self.sims.iter_mut());
        for process in processes {
            if let Some(error) = process.exited() {
                return Err(error);
            }
        }
        Ok(())
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // Ask every process at once; each is then reaped (or killed) as the
        // fields drop.
        let processes = std::iter::once(&mut self.scheduler)
            .chain(self.proxies.iter_mut())
            .chain(self.sims.iter_mut());
        for process in processes {
            process.interrupt();
        }
    }
}

/// Starts the children in order.
struct Builder<'a> {
    options: &'a StackOptions,
    log_dir: PathBuf,
}

impl Builder<'_> {
    fn spawn(
        &self,
        launch: Launch,
        progress: &mut dyn FnMut(&str),
    ) -> Result<ComponentProcess, StackError> {
        let process = ComponentProcess::spawn(&self.options.launcher, &launch, &self.log_dir)?;
        progress(&format!(
            "started {} ({}), pid {}",
            launch.name,
            launch.component.name(),
            process.id()
        ));
        Ok(process)
    }

    /// The prefill pod and the decode pods, started together.
    fn start_pods(
        &self,
        progress: &mut dyn FnMut(&str),
    ) -> Result<(Vec<ComponentProcess>, Vec<Pod>), StackError> {
        let mut planned = vec![(services::PREFILL.to_owned(), PodRole::Prefill)];
        planned
            .extend((1..=self.options.decode_pods).map(|n| (services::decode(n), PodRole::Decode)));
        let mut processes = Vec::new();
        for (name, role) in &planned {
            processes.push(self.spawn(self.options.vllm_launch(name, *role), progress)?);
        }
        let mut pods = Vec::new();
        for (process, (name, role)) in processes.iter_mut().zip(planned) {
            let vllm = reported_address(process, "vllm-sim listening on ")?;
            let events = process.wait_for_line("vllm-sim kv events on ", STARTUP_TIMEOUT)?;
            let kv_events_port = events
                .rsplit(':')
                .next()
                .and_then(|port| port.parse().ok())
                .ok_or_else(|| StackError::Address {
                    name: name.clone(),
                    reported: events.clone(),
                })?;
            progress(&format!(
                "{name} (vLLM simulator) on {vllm}, KV events on {events}"
            ));
            pods.push(Pod {
                name,
                role,
                vllm,
                proxy: None,
                kv_events_port,
            });
        }
        Ok((processes, pods))
    }

    /// A pd-proxy beside each decode pod, started together.
    fn start_proxies(
        &self,
        pods: &mut [Pod],
        progress: &mut dyn FnMut(&str),
    ) -> Result<Vec<ComponentProcess>, StackError> {
        let mut processes = Vec::new();
        let decode_pods: Vec<&mut Pod> = pods
            .iter_mut()
            .filter(|p| p.role == PodRole::Decode)
            .collect();
        for pod in &decode_pods {
            let launch = self
                .options
                .pd_proxy_launch(&format!("pd-proxy-{}", pod.name), pod.vllm.port());
            processes.push(self.spawn(launch, progress)?);
        }
        for (process, pod) in processes.iter_mut().zip(decode_pods) {
            let proxy = reported_address(process, "llmd-pd-proxy listening on ")?;
            progress(&format!(
                "{} (nixlv2) on {proxy}, in front of {}",
                process.name(),
                pod.name
            ));
            pod.proxy = Some(proxy);
        }
        Ok(processes)
    }

    fn start_scheduler(
        &self,
        pods: &[Pod],
        progress: &mut dyn FnMut(&str),
    ) -> Result<ComponentProcess, StackError> {
        let pool = self.write("pool.yaml", &files::pool_yaml(&self.options.model, pods))?;
        let config = self.write(
            "epp-config.yaml",
            &files::epp_config_yaml(self.options.non_cached_tokens),
        )?;
        let launch = Launch {
            name: services::SCHEDULER.to_owned(),
            component: Component::Scheduler,
            args: vec![
                "--pool".into(),
                pool.display().to_string(),
                "--config".into(),
                config.display().to_string(),
                "--listen".into(),
                format!("127.0.0.1:{}", self.options.gateway_port),
                "--no-reload".into(),
            ],
            env: self.options.telemetry_env(services::SCHEDULER),
        };
        let process = self.spawn(launch, progress)?;
        progress(&format!(
            "{} subscribes to the KV events of {} pods; P/D from {} uncached tokens",
            services::SCHEDULER,
            pods.len(),
            self.options.non_cached_tokens
        ));
        Ok(process)
    }

    fn write(&self, name: &str, text: &str) -> Result<PathBuf, StackError> {
        let path = self.log_dir.join(name);
        std::fs::write(&path, text).map_err(|source| StackError::File {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }
}

fn reported_address(
    process: &mut ComponentProcess,
    prefix: &str,
) -> Result<SocketAddr, StackError> {
    let reported = process.wait_for_line(prefix, STARTUP_TIMEOUT)?;
    reported.parse().map_err(|_| StackError::Address {
        name: process.name().to_owned(),
        reported,
    })
}

fn wait_healthy(
    process: &ComponentProcess,
    address: SocketAddr,
    progress: &mut dyn FnMut(&str),
) -> Result<(), StackError> {
    readiness::wait_until(address, "/health", STARTUP_TIMEOUT, |status, _| {
        status == 200
    })
    .map_err(|last| not_ready(process, address, last))?;
    progress(&format!("{} is healthy", process.name()));
    Ok(())
}

fn not_ready(process: &ComponentProcess, address: SocketAddr, last: String) -> StackError {
    StackError::NotReady {
        name: process.name().to_owned(),
        address,
        timeout: STARTUP_TIMEOUT,
        last,
        log: process.log_path().display().to_string(),
    }
}

fn check_port_free(port: u16) -> Result<(), StackError> {
    TcpListener::bind(("127.0.0.1", port))
        .map(drop)
        .map_err(|source| StackError::PortInUse { port, source })
}

/// The log directory, removed on drop when the stack created it.
#[derive(Debug)]
struct LogDir {
    path: PathBuf,
    remove_on_drop: bool,
}

impl LogDir {
    fn create(given: Option<PathBuf>) -> Result<LogDir, StackError> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let (path, remove_on_drop) = match given {
            Some(path) => (path, false),
            None => {
                let n = NEXT.fetch_add(1, Ordering::Relaxed);
                (
                    std::env::temp_dir().join(format!("llmd-stack-{}-{n}", std::process::id())),
                    true,
                )
            }
        };
        std::fs::create_dir_all(&path).map_err(|source| StackError::File {
            path: path.clone(),
            source,
        })?;
        Ok(LogDir {
            path,
            remove_on_drop,
        })
    }
}

impl Drop for LogDir {
    fn drop(&mut self) {
        if self.remove_on_drop {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
