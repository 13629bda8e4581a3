//! Assembles the running scheduler from its options: pool, metrics
//! polling, KV block index and event subscription, tokenizers, plugins and
//! the gateway; reloads the pool when its file changes.

use crate::cli::Options;
use crate::config::{ConfigError, EndpointPickerConfig};
use crate::gateway::{self, Gateway, metrics::GatewayMetrics};
use crate::kv_index::{KvIndexError, PrefixCache, Subscription};
use crate::metrics_scraper::{ScrapeSettings, Scraper};
use crate::plugins::registry;
use crate::pool::{self, Pool, PoolError};
use crate::tokenize::{LocalTokenizer, TokenizeError, Tokenizers, VllmTokenizer};
use llmd_runtime::http::OriginPools;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How often the pool file is checked for changes.
const POOL_RELOAD_PERIOD: Duration = Duration::from_secs(1);

/// Timeout of a vLLM `/tokenize` call.
const REMOTE_TOKENIZE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the scheduler could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The pool file is unusable.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// The scheduler configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The KV block index or its event subscription could not start.
    #[error(transparent)]
    KvIndex(#[from] KvIndexError),
    /// A local tokenizer could not be loaded.
    #[error("tokenizer for model {model:?}: {source}")]
    Tokenizer {
        /// The model.
        model: String,
        /// What failed.
        source: TokenizeError,
    },
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// A started scheduler. Dropping it stops its background tasks.
#[derive(Debug)]
pub struct App {
    gateway: Arc<Gateway>,
    prefix_cache: Option<Arc<PrefixCache>>,
    keeper: JoinHandle<()>,
}

impl Drop for App {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

impl App {
    /// Loads everything `options` name and starts metrics polling and the
    /// KV-event subscription. Must be called inside a Tokio runtime.
    pub fn start(options: &Options) -> Result<App, StartError> {
        let config = match &options.config_file {
            Some(path) => EndpointPickerConfig::load(path)?,
            None => EndpointPickerConfig::default_config(),
        };
        let specs = pool::load_pool(&options.pool_file)?;
        let pool = Arc::new(Pool::new(specs));
        let prefix_cache = registry::prefix_cache_settings(&config)?
            .map(|settings| PrefixCache::new(&settings).map(Arc::new))
            .transpose()?;
        let scheduler = Arc::new(registry::build(&config, prefix_cache.clone())?);
        let client = http_client()?;
        let upstream = OriginPools::new(Some(CONNECT_TIMEOUT));
        let tokenizers = Arc::new(load_tokenizers(options, &upstream)?);
        let subscription = prefix_cache
            .as_ref()
            .map(|cache| cache.subscribe(&pool.snapshot()))
            .transpose()?;
        let scraper = Scraper::start(&pool, client.clone(), options.scrape.clone());
        let keeper = PoolKeeper {
            pool: pool.clone(),
            client: client.clone(),
            scrape: options.scrape.clone(),
            scraper,
            prefix_cache: prefix_cache.clone(),
            subscription,
        };
        let keeper =
            tokio::spawn(keeper.run(options.reload_pool.then(|| options.pool_file.clone())));
        let gateway = Arc::new(Gateway {
            pool,
            scheduler,
            tokenizers,
            client: upstream,
            metrics: GatewayMetrics::default(),
            body_limit: options.body_limit,
        });
        Ok(App {
            gateway,
            prefix_cache,
            keeper,
        })
    }

    /// The gateway's shared state.
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// The KV block index, when a prefix scorer is configured.
    pub fn prefix_cache(&self) -> Option<&Arc<PrefixCache>> {
        self.prefix_cache.as_ref()
    }

    /// Serves the gateway on `listener` until the task is cancelled.
    pub async fn serve(&self, listener: TcpListener) -> std::io::Result<()> {
        self.serve_until(listener, std::future::pending())
            .await
            .map(drop)
    }

    /// Serves the gateway on `listener` until `stop` resolves, with how
    /// long the requests in flight (streamed answers included) may still
    /// take; gives whether all of them finished in time. See
    /// [`llmd_runtime::shutdown::serve_draining`].
    pub async fn serve_until(
        &self,
        listener: TcpListener,
        stop: impl Future<Output = Duration> + Send + 'static,
    ) -> std::io::Result<bool> {
        let local = listener.local_addr()?;
        let router = gateway::router(self.gateway.clone(), local);
        llmd_runtime::shutdown::serve_draining(listener, router, stop).await
    }
}

/// How long connecting to a pod may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The HTTP client for pods' metrics: plain HTTP/1.1, connect timeout
/// [`CONNECT_TIMEOUT`]. (Requests on the serving path go through
/// [`llmd_runtime::http::OriginPools`] instead.) Installs ring as the
/// process's rustls provider if none is set, as reqwest requires one to
/// build any client.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    llmd_runtime::http::install_crypto_provider();
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
}

fn load_tokenizers(options: &Options, client: &OriginPools) -> Result<Tokenizers, StartError> {
    let remote = options
        .remote_tokenize
        .then(|| VllmTokenizer::new(client.clone(), REMOTE_TOKENIZE_TIMEOUT));
    let mut tokenizers = Tokenizers::new(remote);
    for (model, dir) in &options.tokenizers {
        let local = LocalTokenizer::from_dir(dir).map_err(|source| StartError::Tokenizer {
            model: model.clone(),
            source,
        })?;
        tokenizers = tokenizers.with_local(model, local);
    }
    Ok(tokenizers)
}

/// Owns what follows the pool: the metrics polling tasks and the KV-event
/// subscription, restarted or resynchronised when the pool file changes.
struct PoolKeeper {
    pool: Arc<Pool>,
    client: reqwest::Client,
    scrape: ScrapeSettings,
    scraper: Scraper,
    prefix_cache: Option<Arc<PrefixCache>>,
    subscription: Option<Subscription>,
}

impl PoolKeeper {
    async fn run(mut self, watched: Option<PathBuf>) {
        let Some(path) = watched else {
            return std::future::pending().await;
        };
        let mut last = modified(&path);
        let mut ticker = tokio::time::interval(POOL_RELOAD_PERIOD);
        loop {
            ticker.tick().await;
            let now = modified(&path);
            if now == last {
                continue;
            }
            last = now;
            match pool::load_pool(&path) {
                Ok(specs) => {
                    tracing::info!(endpoints = specs.len(), "pool file reloaded");
                    self.pool.replace(specs);
                    self.scraper =
                        Scraper::start(&self.pool, self.client.clone(), self.scrape.clone());
                    if let (Some(cache), Some(subscription)) =
                        (&self.prefix_cache, &mut self.subscription)
                    {
                        subscription.sync(cache, &self.pool.snapshot());
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "pool file change rejected; keeping the previous pool")
                }
            }
        }
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
