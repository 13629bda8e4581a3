//! Live load from each pod's vLLM `/metrics` (Prometheus text format),
//! polled on a fixed period. A pod that does not answer, answers with an
//! error or with a body lacking the series is marked unreachable; one whose
//! last good scrape is too old is marked stale. The loop never stops on a
//! bad pod.

use crate::pool::{Endpoint, Load, Pool};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

/// `vllm:num_requests_waiting`.
pub const WAITING: &str = "vllm:num_requests_waiting";
/// `vllm:num_requests_running`.
pub const RUNNING: &str = "vllm:num_requests_running";
/// `vllm:kv_cache_usage_perc` (0..1).
pub const KV_CACHE_USAGE: &str = "vllm:kv_cache_usage_perc";
/// The name older vLLM versions used for the KV-cache usage.
pub const KV_CACHE_USAGE_LEGACY: &str = "vllm:gpu_cache_usage_perc";

/// Why a metrics body gave no load.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum MetricsError {
    /// A needed series is absent.
    #[error("series {0} is missing")]
    Missing(&'static str),
}

/// Extracts the load series from a Prometheus text body. Lines that do not
/// parse are skipped; series with several label sets (several engines) are
/// summed, except the usage, which is averaged.
pub fn parse_load(body: &str) -> Result<Load, MetricsError> {
    let mut waiting = None::<f64>;
    let mut running = None::<f64>;
    let mut usage = (0.0f64, 0u32);
    let mut legacy_usage = (0.0f64, 0u32);
    for line in body.lines() {
        let Some((name, value)) = sample(line) else {
            continue;
        };
        match name {
            WAITING => *waiting.get_or_insert(0.0) += value,
            RUNNING => *running.get_or_insert(0.0) += value,
            KV_CACHE_USAGE => usage = (usage.0 + value, usage.1 + 1),
            KV_CACHE_USAGE_LEGACY => legacy_usage = (legacy_usage.0 + value, legacy_usage.1 + 1),
            _ => {}
        }
    }
    let (sum, n) = if usage.1 > 0 { usage } else { legacy_usage };
    if n == 0 {
        return Err(MetricsError::Missing(KV_CACHE_USAGE));
    }
    Ok(Load {
        waiting: count(waiting.ok_or(MetricsError::Missing(WAITING))?),
        running: count(running.ok_or(MetricsError::Missing(RUNNING))?),
        kv_cache_usage: (sum / f64::from(n)).clamp(0.0, 1.0),
    })
}

fn count(value: f64) -> u64 {
    // Saturating float-to-int cast: NaN and negatives give 0.
    value.round() as u64
}

/// Splits a sample line into its metric name and finite value.
fn sample(line: &str) -> Option<(&str, f64)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    let rest = &line[name_end..];
    let after_labels = if rest.starts_with('{') {
        &rest[label_block_end(rest)?..]
    } else {
        rest
    };
    let value: f64 = after_labels.split_whitespace().next()?.parse().ok()?;
    value.is_finite().then_some((name, value))
}

/// The index just past the `}` closing the label block at the start of
/// `rest`, honouring quoted label values with escapes.
fn label_block_end(rest: &str) -> Option<usize> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in rest.char_indices() {
        match (in_quotes, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (_, false, '"') => in_quotes = !in_quotes,
            (false, _, '}') => return Some(i + 1),
            _ => {}
        }
    }
    None
}

/// How the scraper polls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScrapeSettings {
    /// Time between two scrapes of a pod (llm-d: 50 ms).
    pub interval: Duration,
    /// Longest wait for one scrape.
    pub timeout: Duration,
    /// Age after which a pod's last good scrape no longer counts.
    pub stale_after: Duration,
    /// Path of the metrics endpoint.
    pub path: String,
}

impl Default for ScrapeSettings {
    fn default() -> ScrapeSettings {
        ScrapeSettings {
            interval: Duration::from_millis(50),
            timeout: Duration::from_millis(500),
            stale_after: Duration::from_secs(2),
            path: "/metrics".to_owned(),
        }
    }
}

/// Scrapes `endpoint` once and records the outcome on it.
pub async fn scrape_once(client: &reqwest::Client, endpoint: &Endpoint, settings: &ScrapeSettings) {
    let url = format!("http://{}{}", endpoint.id(), settings.path);
    let body = async {
        let response = client
            .get(&url)
            .timeout(settings.timeout)
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.text().await.ok()
    };
    match body.await.map(|text| parse_load(&text)) {
        Some(Ok(load)) => endpoint.record_load(load),
        Some(Err(error)) => {
            tracing::debug!(pod = endpoint.id(), %error, "metrics body unusable");
            endpoint.record_failure();
        }
        None => endpoint.record_failure(),
    }
}

/// Polls one endpoint until the task is aborted.
async fn poll_endpoint(client: reqwest::Client, endpoint: Arc<Endpoint>, settings: ScrapeSettings) {
    let mut ticker = tokio::time::interval(settings.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        scrape_once(&client, &endpoint, &settings).await;
        endpoint.expire(settings.stale_after);
    }
}

/// The polling tasks of one pool snapshot; dropping it stops them.
#[derive(Debug)]
pub struct Scraper {
    tasks: JoinSet<()>,
}

impl Scraper {
    /// Starts one polling task per endpoint of the pool's current snapshot.
    pub fn start(pool: &Pool, client: reqwest::Client, settings: ScrapeSettings) -> Scraper {
        let mut tasks = JoinSet::new();
        for endpoint in pool.snapshot().endpoints() {
            tasks.spawn(poll_endpoint(
                client.clone(),
                endpoint.clone(),
                settings.clone(),
            ));
        }
        Scraper { tasks }
    }

    /// Number of endpoints polled.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether no endpoint is polled.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VLLM: &str = r#"# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 7.0
vllm:num_requests_waiting{engine="1",model_name="m"} 1.0
vllm:kv_cache_usage_perc{engine="0",model_name="a } b \" c"} 0.25
vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.75
vllm:prefix_cache_hits_total{engine="0",model_name="m"} 1.2e3
"#;

    #[test]
    fn parses_vllm_series_across_engines() {
        let load = parse_load(VLLM).unwrap();
        assert_eq!(
            load,
            Load {
                waiting: 8,
                running: 3,
                kv_cache_usage: 0.5
            }
        );
    }

    #[test]
    fn garbage_lines_are_skipped_and_missing_series_reported() {
        let body = "garbage {{{ \nvllm:num_requests_waiting{x=\"1\"} NaN\nvllm:num_requests_waiting 2\n\
                    vllm:num_requests_running not-a-number\nvllm:num_requests_running 1 1700000000\n";
        assert_eq!(parse_load(body), Err(MetricsError::Missing(KV_CACHE_USAGE)));
        let body = format!("{body}vllm:gpu_cache_usage_perc 0.5\n");
        assert_eq!(
            parse_load(&body).unwrap(),
            Load {
                waiting: 2,
                running: 1,
                kv_cache_usage: 0.5
            }
        );
        assert_eq!(
            parse_load("\u{0}\u{1}binary"),
            Err(MetricsError::Missing(KV_CACHE_USAGE))
        );
        assert_eq!(
            parse_load("vllm:kv_cache_usage_perc 0.1\nvllm:num_requests_running 0\n"),
            Err(MetricsError::Missing(WAITING))
        );
    }
}
