//! The function shapes `#[traced_span]` supports: methods, generics,
//! `impl Trait` returns, `#[async_trait]` and native async trait methods.

use llmd_runtime::testing::{attribute, capture};
use llmd_runtime::{ErrorType, traced_span};
use opentelemetry::Value;
use opentelemetry::trace::Status;
use std::fmt::Display;

#[derive(Debug, ErrorType)]
enum IndexError {
    Empty,
}

struct Index {
    blocks: Vec<u64>,
}

impl Index {
    #[traced_span("llm_d.kv_cache.storage.lookup", attrs(llm_d.kv_cache.lookup.blocks_found = self.blocks.len()))]
    fn lookup(&self) -> &[u64] {
        &self.blocks
    }

    #[traced_span("llm_d.kv_cache.storage.lookup", err)]
    fn add(&mut self, block: u64) -> Result<&mut Self, IndexError> {
        if block == 0 {
            return Err(IndexError::Empty);
        }
        self.blocks.push(block);
        Ok(self)
    }

    #[traced_span("llm_d.kv_cache.get_scores", attrs(llm_d.kv_cache.pod_count = pods))]
    async fn score(&mut self, pods: usize) -> usize {
        tokio::task::yield_now().await;
        self.blocks.len() * pods
    }
}

#[tokio::test(flavor = "current_thread")]
async fn methods_with_self_references() {
    let cap = capture();
    let mut index = Index { blocks: vec![1, 2] };
    assert_eq!(index.lookup(), &[1, 2]);
    assert!(index.add(3).is_ok());
    assert!(index.add(0).is_err());
    assert_eq!(index.score(2).await, 6);
    let lookups = cap.named("llm_d.kv_cache.storage.lookup");
    assert_eq!(lookups.len(), 3);
    assert_eq!(
        attribute(&lookups[0], "llm_d.kv_cache.lookup.blocks_found"),
        Some(&Value::I64(2))
    );
    assert_eq!(lookups[2].status, Status::error("empty"));
    assert_eq!(
        attribute(
            &cap.one("llm_d.kv_cache.get_scores"),
            "llm_d.kv_cache.pod_count"
        ),
        Some(&Value::I64(2))
    );
}

#[traced_span("llm_d.epp.scorer.queue", attrs(llm_d.epp.scorer.candidate_endpoints = items.len()))]
fn generic_max<T>(items: &[T]) -> Option<T>
where
    T: Ord + Copy + std::fmt::Debug,
{
    items.iter().copied().max()
}

#[traced_span("llm_d.epp.scorer.load_aware")]
fn labels(n: usize) -> impl Iterator<Item = usize> + Clone {
    0..n
}

#[traced_span("llm_d.epp.scorer.kv_cache_utilization", err)]
async fn shown(n: u8) -> Result<impl Display, IndexError> {
    if n == 0 {
        Err(IndexError::Empty)
    } else {
        Ok(n)
    }
}

#[tokio::test(flavor = "current_thread")]
async fn generic_and_impl_trait_functions() {
    let cap = capture();
    assert_eq!(generic_max(&[3, 9, 4]), Some(9));
    assert_eq!(labels(3).count(), 3);
    assert_eq!(
        shown(4).await.map(|d| d.to_string()).ok(),
        Some("4".to_owned())
    );
    assert!(shown(0).await.is_err());
    let queue = cap.one("llm_d.epp.scorer.queue");
    assert_eq!(
        attribute(&queue, "llm_d.epp.scorer.candidate_endpoints"),
        Some(&Value::I64(3))
    );
    cap.one("llm_d.epp.scorer.load_aware");
    let shown = cap.named("llm_d.epp.scorer.kv_cache_utilization");
    assert_eq!(shown[0].status, Status::Unset);
    assert_eq!(shown[1].status, Status::error("empty"));
}

#[async_trait::async_trait]
trait Scorer {
    async fn score(&self, pods: usize) -> Result<f64, IndexError>;
}

struct PrefixScorer;

#[async_trait::async_trait]
impl Scorer for PrefixScorer {
    #[traced_span("llm_d.epp.scorer.prefix_cache", attrs(llm_d.epp.scorer.candidate_endpoints = pods), err)]
    async fn score(&self, pods: usize) -> Result<f64, IndexError> {
        tokio::task::yield_now().await;
        let inner = nested_lookup().await;
        if pods == 0 {
            return Err(IndexError::Empty);
        }
        Ok(inner / pods as f64)
    }
}

#[traced_span("llm_d.kv_cache.storage.lookup")]
async fn nested_lookup() -> f64 {
    1.0
}

#[tokio::test(flavor = "current_thread")]
async fn async_trait_methods_instrument_the_inner_future() {
    let cap = capture();
    let scorer: Box<dyn Scorer + Send + Sync> = Box::new(PrefixScorer);
    assert_eq!(scorer.score(2).await.ok(), Some(0.5));
    let span = cap.one("llm_d.epp.scorer.prefix_cache");
    let child = cap.one("llm_d.kv_cache.storage.lookup");
    assert_eq!(child.parent_span_id, span.span_context.span_id());
    assert_eq!(
        attribute(&span, "llm_d.epp.scorer.candidate_endpoints"),
        Some(&Value::I64(2))
    );
    cap.clear();
    assert!(scorer.score(0).await.is_err());
    assert_eq!(
        cap.one("llm_d.epp.scorer.prefix_cache").status,
        Status::error("empty")
    );
}

trait Picker {
    async fn pick(&self, n: u32) -> u32;

    #[traced_span("llm_d.epp.profile_handler.pick")]
    async fn pick_default(&self) -> u32 {
        self.pick(1).await
    }
}

struct MaxPicker;

impl Picker for MaxPicker {
    #[traced_span("llm_d.epp.prerequest.pd_disaggregation")]
    async fn pick(&self, n: u32) -> u32 {
        tokio::task::yield_now().await;
        n + 1
    }
}

#[tokio::test(flavor = "current_thread")]
async fn native_async_trait_methods() {
    let cap = capture();
    assert_eq!(MaxPicker.pick_default().await, 2);
    let outer = cap.one("llm_d.epp.profile_handler.pick");
    let inner = cap.one("llm_d.epp.prerequest.pd_disaggregation");
    assert_eq!(inner.parent_span_id, outer.span_context.span_id());
}
