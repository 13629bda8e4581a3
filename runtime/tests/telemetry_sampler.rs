//! Sampling decisions of the six `OTEL_TRACES_SAMPLER` values with known
//! trace ids. The SDK's ratio sampler keeps a trace when the low 8 bytes of
//! its id, shifted right by one, are below `ratio * 2^63`.

use llmd_runtime::state::UnsampledParent;
use llmd_runtime::telemetry::{SamplerSetting, TelemetryConfig};
use opentelemetry::Context;
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState,
};
use opentelemetry_sdk::trace::{SamplingDecision, ShouldSample};

/// Low 8 bytes = 1: below every ratio but 0. The high bytes are all ones to
/// show that only the low half counts.
const LOW_ID: TraceId = TraceId::from_bytes([
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 1,
]);
/// Low 8 bytes all ones: above every ratio but 1.
const HIGH_ID: TraceId = TraceId::from_bytes([
    0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
]);

fn sampler_for(name: &str) -> SamplerSetting {
    let config = TelemetryConfig::from_lookup("svc", |variable| {
        (variable == "OTEL_TRACES_SAMPLER").then(|| name.to_owned())
    });
    assert!(config.warnings().is_empty());
    config.sampler
}

fn remote_parent(sampled: bool) -> Context {
    let flags = if sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    Context::new().with_remote_span_context(SpanContext::new(
        TraceId::from(7u128),
        SpanId::from(7u64),
        flags,
        true,
        TraceState::default(),
    ))
}

/// Whether `setting` samples a span of trace `trace_id` under `parent`.
fn sampled(setting: SamplerSetting, parent: Option<&Context>, trace_id: TraceId) -> bool {
    let result = setting.sampler().should_sample(
        parent,
        trace_id,
        "llmd.test",
        &SpanKind::Internal,
        &[],
        &[],
    );
    result.decision == SamplingDecision::RecordAndSample
}

/// Decisions for: root with LOW_ID, root with HIGH_ID, sampled parent with
/// HIGH_ID, unsampled parent with LOW_ID.
fn decisions(setting: SamplerSetting) -> [bool; 4] {
    let sampled_parent = remote_parent(true);
    let unsampled_parent = remote_parent(false);
    [
        sampled(setting, None, LOW_ID),
        sampled(setting, None, HIGH_ID),
        sampled(setting, Some(&sampled_parent), HIGH_ID),
        sampled(setting, Some(&unsampled_parent), LOW_ID),
    ]
}

#[test]
fn always_on() {
    assert_eq!(
        decisions(sampler_for("always_on")),
        [true, true, true, true]
    );
}

#[test]
fn always_off() {
    assert_eq!(
        decisions(sampler_for("always_off")),
        [false, false, false, false]
    );
}

#[test]
fn traceidratio_ignores_the_parent() {
    assert_eq!(
        decisions(sampler_for("traceidratio")),
        [true, false, false, true]
    );
}

#[test]
fn parentbased_always_on() {
    assert_eq!(
        decisions(sampler_for("parentbased_always_on")),
        [true, true, true, false]
    );
}

#[test]
fn parentbased_always_off() {
    assert_eq!(
        decisions(sampler_for("parentbased_always_off")),
        [false, false, true, false]
    );
}

#[test]
fn parentbased_traceidratio_is_the_default() {
    assert_eq!(sampler_for("parentbased_traceidratio"), sampler_for(""));
    assert_eq!(
        decisions(sampler_for("parentbased_traceidratio")),
        [true, false, true, false]
    );
}

#[test]
fn ratio_boundary_follows_the_low_half_of_the_trace_id() {
    // ratio 0.5: kept when (low >> 1) < 2^62, that is low < 2^63.
    let half = SamplerSetting::TraceIdRatio(0.5);
    let just_below = TraceId::from((1u128 << 63) - 1);
    let at = TraceId::from(1u128 << 63);
    assert!(sampled(half, None, just_below));
    assert!(!sampled(half, None, at));
    assert!(!sampled(SamplerSetting::TraceIdRatio(0.0), None, LOW_ID));
    assert!(sampled(SamplerSetting::TraceIdRatio(1.0), None, HIGH_ID));
}

#[test]
fn fast_path_knows_which_samplers_respect_an_unsampled_parent() {
    for (name, expected) in [
        ("always_on", UnsampledParent::Ignored),
        ("always_off", UnsampledParent::Respected),
        ("traceidratio", UnsampledParent::Ignored),
        ("parentbased_always_on", UnsampledParent::Respected),
        ("parentbased_always_off", UnsampledParent::Respected),
        ("parentbased_traceidratio", UnsampledParent::Respected),
    ] {
        assert_eq!(
            UnsampledParent::of(&sampler_for(name).sampler()),
            expected,
            "{name}"
        );
    }
}
