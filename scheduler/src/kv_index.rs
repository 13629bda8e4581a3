//! The KV block index behind the prefix scorer (`llmd-kv-cache`), and the
//! KV-event subscription to every pod of the pool that keeps it current.

use crate::pool::PoolSnapshot;
use llmd_kv_cache::events::{EventSubscriber, SubscriberConfig, SubscriberError};
use llmd_kv_cache::index::RedisConfig;
use llmd_kv_cache::{IndexConfig, KvCacheConfig, KvCacheIndexer};
use std::collections::BTreeSet;

/// How the index must be set up, from the prefix scorer's parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrefixCacheSettings {
    /// Tokens per block (vLLM `--block-size`, default 16).
    pub block_size: usize,
    /// Seed of the index's block keys (`hashSeed`); replicas sharing a Redis
    /// index must agree on it.
    pub hash_seed: u64,
    /// The default port of each pod's KV-event publisher (default 5557).
    pub events_port: u16,
    /// Redis URL, when the index is shared between replicas.
    pub redis_url: Option<String>,
    /// Prefix of the KV-event topics subscribed to (default `kv@`).
    pub topic_filter: String,
}

impl Default for PrefixCacheSettings {
    fn default() -> PrefixCacheSettings {
        PrefixCacheSettings {
            block_size: 16,
            hash_seed: 0,
            events_port: 5557,
            redis_url: None,
            topic_filter: "kv@".to_owned(),
        }
    }
}

/// Why the index or its subscription could not start.
#[derive(Debug, thiserror::Error)]
pub enum KvIndexError {
    /// The index settings are invalid.
    #[error("KV block index: {0}")]
    Config(#[from] llmd_kv_cache::ConfigError),
    /// The KV-event subscriber could not start.
    #[error("KV-event subscriber: {0}")]
    Subscriber(#[from] SubscriberError),
}

/// The index with its block size.
#[derive(Debug, Clone)]
pub struct PrefixCache {
    indexer: KvCacheIndexer,
    settings: PrefixCacheSettings,
}

impl PrefixCache {
    /// Builds the index `settings` describe (a Redis index connects lazily).
    pub fn new(settings: &PrefixCacheSettings) -> Result<PrefixCache, KvIndexError> {
        let index = match &settings.redis_url {
            Some(url) => IndexConfig::Redis(RedisConfig {
                url: url.clone(),
                ..RedisConfig::default()
            }),
            None => IndexConfig::default(),
        };
        let indexer = KvCacheIndexer::new(&KvCacheConfig {
            block_size: settings.block_size,
            hash_seed: settings.hash_seed,
            index,
            ..KvCacheConfig::default()
        })?;
        Ok(PrefixCache {
            indexer,
            settings: settings.clone(),
        })
    }

    /// The indexer.
    pub fn indexer(&self) -> &KvCacheIndexer {
        &self.indexer
    }

    /// Tokens per block.
    pub fn block_size(&self) -> usize {
        self.settings.block_size
    }

    /// The ZMQ endpoints of the KV-event publishers of `pool`'s pods.
    pub fn publishers(&self, pool: &PoolSnapshot) -> BTreeSet<String> {
        pool.endpoints()
            .iter()
            .map(|e| {
                let port = e.spec().kv_events_port.unwrap_or(self.settings.events_port);
                format!("tcp://{}:{port}", e.spec().address.ip())
            })
            .collect()
    }

    /// Starts a subscriber connected to every pod of `pool`. Must be called
    /// inside a Tokio runtime.
    pub fn subscribe(&self, pool: &PoolSnapshot) -> Result<Subscription, KvIndexError> {
        let connected = self.publishers(pool);
        let subscriber = self.indexer.start_events(&SubscriberConfig {
            connect: connected.iter().cloned().collect(),
            topic_filter: self.settings.topic_filter.clone(),
            ..SubscriberConfig::default()
        })?;
        Ok(Subscription {
            subscriber,
            connected,
        })
    }
}

/// A running KV-event subscription; dropping it stops it.
#[derive(Debug)]
pub struct Subscription {
    subscriber: EventSubscriber,
    connected: BTreeSet<String>,
}

impl Subscription {
    /// Connects to the publishers of pods added to the pool and disconnects
    /// from those of pods removed.
    pub fn sync(&mut self, cache: &PrefixCache, pool: &PoolSnapshot) {
        let wanted = cache.publishers(pool);
        for gone in self.connected.difference(&wanted) {
            self.subscriber.disconnect(gone);
        }
        for new in wanted.difference(&self.connected) {
            self.subscriber.connect(new);
        }
        self.connected = wanted;
    }

    /// The publishers connected to.
    pub fn connected(&self) -> &BTreeSet<String> {
        &self.connected
    }
}
