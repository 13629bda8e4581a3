//! The tracer that spans are started on, installed once by telemetry init
//! (or by a test capture) and read lock-free on every span start.

use arc_swap::ArcSwapOption;
use opentelemetry_sdk::trace::SdkTracer;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// How the installed sampler treats a child whose parent is not sampled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnsampledParent {
    /// The child is never sampled (every `parentbased_*` sampler, and
    /// `always_off`): such a child is skipped without touching the SDK.
    Respected,
    /// The sampler may still sample the child (`always_on`, `traceidratio`):
    /// it must be asked.
    Ignored,
}

pub(crate) struct Installed {
    pub(crate) tracer: SdkTracer,
}

static INSTALLED: ArcSwapOption<Installed> = ArcSwapOption::const_empty();
static ENABLED: AtomicBool = AtomicBool::new(false);
static RESPECTS_UNSAMPLED_PARENT: AtomicBool = AtomicBool::new(true);

/// Makes `tracer` the one every `#[traced_span]` and HTTP layer span is
/// started on, replacing any earlier one.
pub fn install(tracer: SdkTracer, unsampled_parent: UnsampledParent) {
    RESPECTS_UNSAMPLED_PARENT.store(
        unsampled_parent == UnsampledParent::Respected,
        Ordering::Release,
    );
    INSTALLED.store(Some(Arc::new(Installed { tracer })));
    ENABLED.store(true, Ordering::Release);
}

/// Removes the installed tracer: from now on no span is started.
pub fn uninstall() {
    ENABLED.store(false, Ordering::Release);
    INSTALLED.store(None);
}

/// Whether a tracer is installed.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

#[inline]
pub(crate) fn respects_unsampled_parent() -> bool {
    RESPECTS_UNSAMPLED_PARENT.load(Ordering::Relaxed)
}

/// The installed tracer, borrowed without touching its reference count.
#[inline]
pub(crate) fn installed() -> arc_swap::Guard<Option<Arc<Installed>>> {
    INSTALLED.load()
}

impl UnsampledParent {
    /// How `sampler` treats a child of an unsampled parent.
    pub fn of(sampler: &opentelemetry_sdk::trace::Sampler) -> UnsampledParent {
        use opentelemetry_sdk::trace::Sampler;
        match sampler {
            Sampler::ParentBased(_) | Sampler::AlwaysOff => UnsampledParent::Respected,
            _ => UnsampledParent::Ignored,
        }
    }
}
