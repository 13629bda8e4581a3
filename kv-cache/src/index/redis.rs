//! The Redis index, for several scheduler replicas sharing one view.
//!
//! Layout (all names start with the configured prefix):
//! - `<prefix>b:<block key hex>`: sorted set of `<tier>:<pod>` members
//!   scored by insertion time, trimmed to the newest `max_pods_per_key`;
//! - `<prefix>e:<pod>`: hash of engine hash (hex) -> block key name.
//!
//! Every operation is one Lua script call, so a lookup of a whole prompt is
//! one round trip whatever its length, and the script stops at the first
//! block no candidate holds. Needs a standalone Redis (a cluster would need
//! all of a prompt's keys in one slot). The connection is made lazily and
//! re-established by the connection manager after failures; calls made
//! while Redis is down fail with [`IndexError::Redis`].

use super::{
    BlockHit, IndexConfigError, IndexError, KvBlockIndex, MAX_PODS_PER_KEY, StoredBlock,
    check_range,
};
use crate::block_key::BlockKey;
use crate::pod::{PodId, Tier};
use arc_swap::ArcSwapOption;
use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Settings of the Redis index.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// Server URL, e.g. `redis://127.0.0.1:6379/0`.
    pub url: String,
    /// Prefix of every key the index writes.
    pub key_prefix: String,
    /// Most (pod, tier) entries kept per key, at most [`MAX_PODS_PER_KEY`].
    pub max_pods_per_key: usize,
    /// Timeout of one connection attempt, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Timeout of one call, in milliseconds.
    pub response_timeout_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> RedisConfig {
        RedisConfig {
            url: "redis://127.0.0.1:6379".into(),
            key_prefix: "llmd:kv:".into(),
            max_pods_per_key: MAX_PODS_PER_KEY,
            connect_timeout_ms: 1000,
            response_timeout_ms: 1000,
        }
    }
}

const LOOKUP: &str = r"
local candidates = {}
for i = 1, #ARGV do candidates[ARGV[i]] = true end
local out = {}
for i = 1, #KEYS do
  local held = {}
  for _, member in ipairs(redis.call('ZRANGE', KEYS[i], 0, -1)) do
    local sep = string.find(member, ':', 1, true)
    if sep and candidates[string.sub(member, sep + 1)] then held[#held + 1] = member end
  end
  if #held == 0 then break end
  out[#out + 1] = held
end
return out
";

const ADD: &str = r"
local member, max, now = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 2, #KEYS do
  redis.call('ZADD', KEYS[i], now, member)
  redis.call('ZREMRANGEBYRANK', KEYS[i], 0, -(max + 1))
  redis.call('HSET', KEYS[1], ARGV[i + 2], KEYS[i])
end
return #KEYS - 1
";

const EVICT: &str = r"
local removed = 0
for i = 5, #ARGV do
  local key = redis.call('HGET', KEYS[1], ARGV[i])
  if key then
    removed = removed + redis.call('ZREM', key, ARGV[1])
    if not (redis.call('ZSCORE', key, ARGV[2]) or redis.call('ZSCORE', key, ARGV[3])
        or redis.call('ZSCORE', key, ARGV[4])) then
      redis.call('HDEL', KEYS[1], ARGV[i])
    end
  end
end
return removed
";

const CLEAR: &str = r"
local keys = redis.call('HVALS', KEYS[1])
for _, key in ipairs(keys) do redis.call('ZREM', key, ARGV[1], ARGV[2], ARGV[3]) end
redis.call('DEL', KEYS[1])
return #keys
";

struct Scripts {
    lookup: Script,
    add: Script,
    evict: Script,
    clear: Script,
}

/// The Redis-backed KV block index.
pub struct RedisIndex {
    client: redis::Client,
    manager_config: ConnectionManagerConfig,
    connection: ArcSwapOption<ConnectionManager>,
    prefix: String,
    max_pods_per_key: usize,
    scripts: Scripts,
}

impl std::fmt::Debug for RedisIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisIndex")
            .field("prefix", &self.prefix)
            .field("max_pods_per_key", &self.max_pods_per_key)
            .finish_non_exhaustive()
    }
}

fn member(tier: Tier, pod: &PodId) -> String {
    format!("{}:{}", tier.as_str(), pod.as_str())
}

fn all_tier_members(pod: &PodId) -> [String; 3] {
    Tier::ALL.map(|t| member(t, pod))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl RedisIndex {
    /// A client for `config`; no connection is made until first use.
    pub fn new(config: &RedisConfig) -> Result<RedisIndex, IndexConfigError> {
        check_range(
            "max_pods_per_key",
            config.max_pods_per_key,
            1,
            MAX_PODS_PER_KEY,
            "1..=8",
        )?;
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| IndexConfigError::RedisUrl(e.to_string()))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(config.connect_timeout_ms)))
            .set_response_timeout(Some(Duration::from_millis(config.response_timeout_ms)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        Ok(RedisIndex {
            client,
            manager_config,
            connection: ArcSwapOption::empty(),
            prefix: config.key_prefix.clone(),
            max_pods_per_key: config.max_pods_per_key,
            scripts: Scripts {
                lookup: Script::new(LOOKUP),
                add: Script::new(ADD),
                evict: Script::new(EVICT),
                clear: Script::new(CLEAR),
            },
        })
    }

    /// The connection manager, created on first use (it needs the Tokio
    /// runtime) and reconnecting by itself afterwards.
    fn connection(&self) -> Result<ConnectionManager, IndexError> {
        if let Some(existing) = self.connection.load_full() {
            return Ok((*existing).clone());
        }
        let manager = ConnectionManager::new_lazy_with_config(
            self.client.clone(),
            self.manager_config.clone(),
        )?;
        self.connection.store(Some(Arc::new(manager.clone())));
        Ok(manager)
    }

    fn block_name(&self, key: BlockKey) -> String {
        format!("{}b:{key}", self.prefix)
    }

    fn engine_map_name(&self, pod: &PodId) -> String {
        format!("{}e:{}", self.prefix, pod.as_str())
    }
}

fn engine_field(hash: u64) -> String {
    format!("{hash:016x}")
}

/// Parses the key out of a block key name (`...b:<hex>`).
fn key_of_name(name: &str) -> Option<BlockKey> {
    let hex = name.rsplit(':').next()?;
    u64::from_str_radix(hex, 16).ok().map(BlockKey)
}

impl KvBlockIndex for RedisIndex {
    async fn add(&self, pod: &PodId, tier: Tier, blocks: &[StoredBlock]) -> Result<(), IndexError> {
        if blocks.is_empty() {
            return Ok(());
        }
        let mut call = self.scripts.add.prepare_invoke();
        call.key(self.engine_map_name(pod));
        call.arg(member(tier, pod))
            .arg(self.max_pods_per_key)
            .arg(now_ms());
        for b in blocks {
            call.key(self.block_name(b.key));
            call.arg(engine_field(b.engine_hash));
        }
        let _: i64 = call.invoke_async(&mut self.connection()?).await?;
        Ok(())
    }

    async fn block_key(
        &self,
        pod: &PodId,
        engine_hash: u64,
    ) -> Result<Option<BlockKey>, IndexError> {
        let name: Option<String> = redis::cmd("HGET")
            .arg(self.engine_map_name(pod))
            .arg(engine_field(engine_hash))
            .query_async(&mut self.connection()?)
            .await?;
        Ok(name.as_deref().and_then(key_of_name))
    }

    async fn evict(
        &self,
        pod: &PodId,
        tier: Tier,
        engine_hashes: &[u64],
    ) -> Result<usize, IndexError> {
        if engine_hashes.is_empty() {
            return Ok(0);
        }
        let mut call = self.scripts.evict.prepare_invoke();
        call.key(self.engine_map_name(pod));
        call.arg(member(tier, pod)).arg(&all_tier_members(pod)[..]);
        for &h in engine_hashes {
            call.arg(engine_field(h));
        }
        let removed: usize = call.invoke_async(&mut self.connection()?).await?;
        Ok(removed)
    }

    async fn clear_pod(&self, pod: &PodId) -> Result<(), IndexError> {
        let mut call = self.scripts.clear.prepare_invoke();
        call.key(self.engine_map_name(pod))
            .arg(&all_tier_members(pod)[..]);
        let _: i64 = call.invoke_async(&mut self.connection()?).await?;
        Ok(())
    }

    async fn lookup(
        &self,
        keys: &[BlockKey],
        candidates: &[PodId],
        hits: &mut Vec<BlockHit>,
    ) -> Result<usize, IndexError> {
        if keys.is_empty() || candidates.is_empty() {
            return Ok(0);
        }
        let mut call = self.scripts.lookup.prepare_invoke();
        for key in keys {
            call.key(self.block_name(*key));
        }
        for pod in candidates {
            call.arg(pod.as_str());
        }
        let blocks: Vec<Vec<String>> = call.invoke_async(&mut self.connection()?).await?;
        let candidate_of: HashMap<&str, u16> = candidates
            .iter()
            .enumerate()
            .map(|(i, p)| (p.as_str(), i as u16))
            .collect();
        for (block, members) in blocks.iter().enumerate() {
            for m in members {
                let Some((tier, pod)) = m.split_once(':') else {
                    continue;
                };
                let (Some(tier), Some(&candidate)) = (Tier::from_name(tier), candidate_of.get(pod))
                else {
                    continue;
                };
                hits.push(BlockHit {
                    block: block as u32,
                    candidate,
                    tier,
                });
            }
        }
        Ok(blocks.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_key_names_round_trip() {
        let index = RedisIndex::new(&RedisConfig::default()).unwrap();
        let key = BlockKey(0x00ab_cdef_0123_4567);
        assert_eq!(key_of_name(&index.block_name(key)), Some(key));
        assert_eq!(key_of_name("garbage"), None);
    }

    #[test]
    fn bad_url_is_a_config_error() {
        let config = RedisConfig {
            url: "not a url".into(),
            ..RedisConfig::default()
        };
        assert!(matches!(
            RedisIndex::new(&config),
            Err(IndexConfigError::RedisUrl(_))
        ));
    }
}
