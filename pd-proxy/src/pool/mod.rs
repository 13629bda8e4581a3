//! SSRF protection from an InferencePool, as llm-d's sidecar has it: the
//! prefill targets allowed are the pool's pods, each pod's IP and name on
//! each of the pool's target ports. The pool and its pods are watched
//! through the Kubernetes API, so the allowlist follows pods as they come
//! and go, and a change of the pool's selector or ports.
//!
//! Each round lists the pool, lists its pods, publishes the allowlist, then
//! follows both watches until one ends (the API server closes them every
//! few minutes, or says the resource version is too old) or the pool's
//! selector or ports change, and starts over. A failure keeps the
//! allowlist as it was (as an informer keeps its cache), is logged once
//! until a round succeeds again, and is retried with backoff; a pool that
//! is deleted or not there yet allows nothing, and its watch notices it
//! coming back. The proxy listens once the pool has been listed, as
//! llm-d's sidecar waits for its pool informer to sync.

mod kube;
mod resources;

pub use kube::{KubeApi, KubeError, SERVICE_ACCOUNT_DIR_ENV};

use crate::config::InferencePool;
use crate::stop::StopListener;
use arc_swap::ArcSwap;
use kube::WatchStream;
use resources::{EventKind, PodAddress, PoolSpec, WatchEvent, resource_version};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// First pause after a failed round; doubled up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A round that ends sooner than this, even without an error, is followed
/// by a pause of [`MIN_BACKOFF`], so that an API server (or a proxy before
/// it) that ends every watch at once is not listed in a tight loop.
const SHORTEST_ROUND: Duration = Duration::from_secs(1);

/// The prefill targets an InferencePool allows, as lower-case `host:port`:
/// written by the watch, read by every P/D request (one atomic load and a
/// hash lookup).
#[derive(Clone, Debug)]
pub struct PoolTargets(Arc<ArcSwap<HashSet<String>>>);

impl PoolTargets {
    /// No target allowed (until the first round publishes the pool's).
    pub fn new() -> PoolTargets {
        PoolTargets(Arc::new(ArcSwap::from_pointee(HashSet::new())))
    }

    /// Whether `host_port` (in any case) is one of the pool's targets;
    /// copies it only if it has upper-case letters.
    pub fn contains(&self, host_port: &str) -> bool {
        let targets = self.0.load();
        if host_port.bytes().any(|byte| byte.is_ascii_uppercase()) {
            targets.contains(&host_port.to_ascii_lowercase())
        } else {
            targets.contains(host_port)
        }
    }

    /// Replaces the targets with those of `pods` on `ports`; gives how many.
    fn publish(&self, pods: &HashMap<String, PodAddress>, ports: &[u16]) -> usize {
        let targets: HashSet<String> = pods.values().flat_map(|pod| pod.targets(ports)).collect();
        let count = targets.len();
        self.0.store(Arc::new(targets));
        count
    }

    fn clear(&self) {
        self.0.store(Arc::new(HashSet::new()));
    }
}

impl Default for PoolTargets {
    fn default() -> PoolTargets {
        PoolTargets::new()
    }
}

/// Why a round of the watch ended.
#[derive(Debug, thiserror::Error)]
enum RoundError {
    #[error(transparent)]
    Api(#[from] KubeError),
    #[error(transparent)]
    Spec(#[from] resources::SpecError),
    #[error("the API's answer has no resource version")]
    NoResourceVersion,
}

/// What a round found when it listed the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Listing {
    /// The pool exists; this many targets are allowed.
    Targets(usize),
    /// No such pool (not created yet, or deleted): nothing is allowed.
    NoPool,
}

/// Keeps `targets` to the pods of `pool` through `api` until `stopped`;
/// sends on `ready` once the pool has been listed for the first time.
pub async fn watch(
    api: KubeApi,
    pool: InferencePool,
    targets: PoolTargets,
    stopped: StopListener,
    ready: oneshot::Sender<()>,
) {
    let mut ready = Some(ready);
    let mut backoff = MIN_BACKOFF;
    let mut failing = false;
    let mut last = None;
    loop {
        let mut listed = |listing: Listing| {
            match listing {
                Listing::NoPool if last != Some(Listing::NoPool) => tracing::warn!(
                    %pool,
                    "InferencePool not found: no pool target is allowed until it exists"
                ),
                Listing::Targets(count) if failing => {
                    tracing::info!(%pool, targets = count, "InferencePool watch recovered");
                }
                Listing::Targets(count) if last.is_none() => {
                    tracing::info!(%pool, targets = count, "InferencePool prefill targets synced");
                }
                _ => tracing::debug!(%pool, ?listing, "InferencePool listed again"),
            }
            last = Some(listing);
            failing = false;
            backoff = MIN_BACKOFF;
            if let Some(ready) = ready.take() {
                let _ = ready.send(());
            }
        };
        let started = Instant::now();
        let round = tokio::select! {
            round = follow(&api, &pool, &targets, &mut listed) => round,
            () = stopped.stopped() => return,
        };
        let Err(error) = round else {
            if started.elapsed() < SHORTEST_ROUND && !pause(MIN_BACKOFF, &stopped).await {
                return;
            }
            continue;
        };
        if failing {
            tracing::debug!(%pool, %error, "InferencePool watch still failing");
        } else if last.is_none() {
            tracing::warn!(
                %pool,
                %error,
                "InferencePool cannot be listed yet; retrying (the proxy listens once it is)"
            );
            failing = true;
        } else {
            tracing::warn!(
                %pool,
                %error,
                "InferencePool watch failed; retrying, with the prefill targets allowed so far"
            );
            failing = true;
        }
        if !pause(backoff, &stopped).await {
            return;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Sleeps for `duration`; false when the proxy stopped first.
async fn pause(duration: Duration, stopped: &StopListener) -> bool {
    tokio::select! {
        () = tokio::time::sleep(duration) => true,
        () = stopped.stopped() => false,
    }
}

/// One round: lists the pool (by name, as an informer does, so that a pool
/// not there yet is an empty list to watch rather than an error) and its
/// pods, publishes the targets (and tells `listed`), then follows both
/// watches. `Ok` when the round should simply start over.
async fn follow(
    api: &KubeApi,
    pool: &InferencePool,
    targets: &PoolTargets,
    listed: &mut impl FnMut(Listing),
) -> Result<(), RoundError> {
    let pools_path = format!(
        "/apis/{}/{}/namespaces/{}/inferencepools",
        pool.group.group(),
        pool.group.version(),
        pool.namespace
    );
    let by_name = format!("metadata.name={}", pool.name);
    let pools_url = api.url(&pools_path, &[("fieldSelector", by_name.as_str())]);
    let pools: Value = api.get(pools_url.clone()).await?;
    let pools_version = resource_version(&pools)
        .ok_or(RoundError::NoResourceVersion)?
        .to_owned();
    let Some(object) = items(&pools).next() else {
        targets.clear();
        listed(Listing::NoPool);
        let mut pool_events = api.watch(pools_url, &pools_version).await?;
        pool_changed(&mut pool_events, pool, None).await?;
        return Ok(());
    };
    let spec = PoolSpec::from_object(object, pool.group)?;
    let pods_path = format!("/api/v1/namespaces/{}/pods", pool.namespace);
    let selector = [("labelSelector", spec.selector.as_str())];
    let list: Value = api.get(api.url(&pods_path, &selector)).await?;
    let pods_version = resource_version(&list)
        .ok_or(RoundError::NoResourceVersion)?
        .to_owned();
    let mut pods: HashMap<String, PodAddress> = items(&list)
        .filter_map(PodAddress::from_object)
        .map(|pod| (pod.name.clone(), pod))
        .collect();
    listed(Listing::Targets(targets.publish(&pods, &spec.ports)));

    let mut pod_events = api
        .watch(api.url(&pods_path, &selector), &pods_version)
        .await?;
    let mut pool_events = api.watch(pools_url, &pools_version).await?;
    loop {
        tokio::select! {
            event = pod_events.next() => {
                let Some(event) = event? else { return Ok(()) };
                if !apply_pod_event(&mut pods, event) {
                    return Ok(());
                }
                targets.publish(&pods, &spec.ports);
            }
            change = pool_changed(&mut pool_events, pool, Some(&spec)) => {
                if change? == PoolChange::Deleted {
                    targets.clear();
                    tracing::info!(%pool, "InferencePool deleted: no pool target is allowed");
                } else {
                    tracing::info!(%pool, "InferencePool changed: listing it again");
                }
                return Ok(());
            }
        }
    }
}

/// The `items` of a list.
fn items(list: &Value) -> impl Iterator<Item = &Value> {
    list.get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// How the watched pool no longer is what the round listed.
#[derive(Debug, PartialEq, Eq)]
enum PoolChange {
    /// The pool was deleted.
    Deleted,
    /// The pool appeared or its selector or ports changed, or the watch
    /// ended: list again.
    Relist,
}

/// Follows the pool's watch until the pool differs from `spec` (`None`: no
/// pool). Cancel-safe: each event is read whole or not at all.
async fn pool_changed(
    events: &mut WatchStream,
    pool: &InferencePool,
    spec: Option<&PoolSpec>,
) -> Result<PoolChange, RoundError> {
    loop {
        let Some(WatchEvent { kind, object }) = events.next().await? else {
            return Ok(PoolChange::Relist);
        };
        match kind {
            EventKind::Added | EventKind::Modified => {
                let changed = match spec {
                    Some(spec) => PoolSpec::from_object(&object, pool.group)? != *spec,
                    None => true,
                };
                if changed {
                    return Ok(PoolChange::Relist);
                }
            }
            EventKind::Deleted if spec.is_some() => return Ok(PoolChange::Deleted),
            EventKind::Deleted | EventKind::Bookmark => {}
            EventKind::Error => return Ok(PoolChange::Relist),
        }
    }
}

/// Applies a pod event to `pods`; false when the watch must start over (an
/// `ERROR` event, such as a resource version that expired).
fn apply_pod_event(pods: &mut HashMap<String, PodAddress>, event: WatchEvent) -> bool {
    match event.kind {
        EventKind::Added | EventKind::Modified => {
            if let Some(pod) = PodAddress::from_object(&event.object) {
                pods.insert(pod.name.clone(), pod);
            }
        }
        EventKind::Deleted => {
            if let Some(pod) = PodAddress::from_object(&event.object) {
                pods.remove(&pod.name);
            }
        }
        EventKind::Bookmark => {}
        EventKind::Error => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(kind: EventKind, name: &str, ip: Option<&str>) -> WatchEvent {
        WatchEvent {
            kind,
            object: json!({"metadata": {"name": name}, "status": {"podIP": ip}}),
        }
    }

    #[test]
    fn pod_events_add_move_and_remove_targets() {
        let targets = PoolTargets::new();
        let mut pods = HashMap::new();
        let ports = [8000];
        assert!(apply_pod_event(
            &mut pods,
            event(EventKind::Added, "p", None)
        ));
        targets.publish(&pods, &ports);
        assert!(!targets.contains("p:8000"), "no IP yet, not allowed");
        assert!(apply_pod_event(
            &mut pods,
            event(EventKind::Modified, "p", Some("10.0.0.1"))
        ));
        targets.publish(&pods, &ports);
        assert!(targets.contains("10.0.0.1:8000") && targets.contains("p:8000"));
        assert!(targets.contains("P:8000"), "host names match in any case");
        assert!(!targets.contains("10.0.0.1:8001"));
        assert!(apply_pod_event(
            &mut pods,
            event(EventKind::Modified, "p", Some("10.0.0.2"))
        ));
        targets.publish(&pods, &ports);
        assert!(!targets.contains("10.0.0.1:8000") && targets.contains("10.0.0.2:8000"));
        assert!(apply_pod_event(
            &mut pods,
            event(EventKind::Deleted, "p", Some("10.0.0.2"))
        ));
        targets.publish(&pods, &ports);
        assert!(!targets.contains("10.0.0.2:8000") && !targets.contains("p:8000"));
        assert!(!apply_pod_event(
            &mut pods,
            event(EventKind::Error, "", None)
        ));
    }
}
