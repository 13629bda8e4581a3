//! The tracer that spans are started on, installed by telemetry init (or by
//! a test capture) and read with one plain load on every span start.

use opentelemetry_sdk::trace::SdkTracer;
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

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

/// An installed tracer and what the span path needs to know about its
/// sampler.
pub(crate) struct Installed {
    pub(crate) tracer: SdkTracer,
    /// Whether a child of a valid, unsampled parent is never sampled, so
    /// that it can be skipped without asking the SDK.
    pub(crate) respects_unsampled_parent: bool,
}

/// The installed tracer, or null when none is.
///
/// Every value stored here comes from [`Box::leak`] and is never freed, so
/// a span that read it keeps a valid reference after a later `install` or
/// `uninstall`, and reading it costs one load: no reference count, no lock,
/// no per-thread hazard slot. What leaks is one tracer handle (a few hundred
/// bytes, and its provider) per `install`: once per process when telemetry
/// starts, once per capture in tests. Telemetry and captures shut their
/// provider down explicitly, so a leaked handle keeps no export running.
static INSTALLED: AtomicPtr<Installed> = AtomicPtr::new(ptr::null_mut());

/// Makes `tracer` the one every `#[traced_span]` and HTTP layer span is
/// started on, replacing any earlier one. Meant for start-up and tests: each
/// call keeps its tracer handle for the life of the process (see above).
pub fn install(tracer: SdkTracer, unsampled_parent: UnsampledParent) {
    let installed: &'static mut Installed = Box::leak(Box::new(Installed {
        tracer,
        respects_unsampled_parent: unsampled_parent == UnsampledParent::Respected,
    }));
    INSTALLED.store(installed, Ordering::Release);
}

/// Removes the installed tracer: from now on no span is started.
pub fn uninstall() {
    INSTALLED.store(ptr::null_mut(), Ordering::Release);
}

/// Whether a tracer is installed.
#[inline]
pub fn enabled() -> bool {
    !INSTALLED.load(Ordering::Relaxed).is_null()
}

/// The installed tracer, if any.
#[inline]
pub(crate) fn installed() -> Option<&'static Installed> {
    let installed = INSTALLED.load(Ordering::Acquire);
    // SAFETY: INSTALLED is either null or a pointer from `Box::leak` in
    // `install`, which is never freed or mutated, so it is valid and shared
    // for `'static`; the Acquire load pairs with the Release store, so the
    // pointee is fully initialised when seen here.
    unsafe { installed.as_ref() }
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
