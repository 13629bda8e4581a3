//! `ExportTraceServiceRequest` in the protobuf encoding, written straight
//! from the SDK's span data (no intermediate message structs).

use super::wire::{ProtoWriter, varint_len};
use super::{ScopeGroups, span_flags, span_kind_number, status_code, unix_nanos};
use opentelemetry::trace::{Status, TraceState};
use opentelemetry::{Array, KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SpanData;

/// Appends the request carrying `spans` under `resource` to `buf`.
pub(crate) fn encode_request(resource: &Resource, spans: &[SpanData], buf: &mut Vec<u8>) {
    let mut request = ProtoWriter::new(buf);
    // ExportTraceServiceRequest.resource_spans; a batch's resource and
    // scope messages take 3-byte length prefixes (16 KiB to 2 MiB), its
    // spans 2-byte ones, so that none is moved after it is written.
    request.message_sized(1, 3, |resource_spans| {
        // ResourceSpans.resource
        resource_spans.message(1, |fields| {
            for (key, value) in resource.iter() {
                attribute(fields, 1, key.as_str(), value);
            }
        });
        for (scope, spans) in ScopeGroups::new(spans) {
            // ResourceSpans.scope_spans
            resource_spans.message_sized(2, 3, |scope_spans| {
                // ScopeSpans.scope
                scope_spans.message(1, |fields| {
                    fields.string(1, scope.name());
                    fields.string(2, scope.version().unwrap_or_default());
                    attributes(fields, 3, scope.attributes());
                });
                for span in spans {
                    scope_spans.message_sized(2, 2, |fields| encode_span(fields, span));
                }
                scope_spans.string(3, scope.schema_url().unwrap_or_default());
            });
        }
        resource_spans.string(3, resource.schema_url().unwrap_or_default());
    });
}

/// The fields of one `Span`.
fn encode_span(fields: &mut ProtoWriter<'_>, span: &SpanData) {
    let context = &span.span_context;
    fields.bytes(1, &context.trace_id().to_bytes());
    fields.bytes(2, &context.span_id().to_bytes());
    if *context.trace_state() != TraceState::NONE {
        fields.string(3, &context.trace_state().header());
    }
    if span.parent_span_id != opentelemetry::trace::SpanId::INVALID {
        fields.bytes(4, &span.parent_span_id.to_bytes());
    }
    fields.string(5, &span.name);
    fields.uint(6, span_kind_number(&span.span_kind));
    fields.fixed64(7, unix_nanos(span.start_time));
    fields.fixed64(8, unix_nanos(span.end_time));
    attributes(fields, 9, &span.attributes);
    fields.uint(10, u64::from(span.dropped_attributes_count));
    for event in span.events.iter() {
        fields.message(11, |event_fields| {
            event_fields.fixed64(1, unix_nanos(event.timestamp));
            event_fields.string(2, &event.name);
            attributes(event_fields, 3, &event.attributes);
            event_fields.uint(4, u64::from(event.dropped_attributes_count));
        });
    }
    fields.uint(12, u64::from(span.events.dropped_count));
    for link in span.links.iter() {
        fields.message(13, |link_fields| {
            let linked = &link.span_context;
            link_fields.bytes(1, &linked.trace_id().to_bytes());
            link_fields.bytes(2, &linked.span_id().to_bytes());
            link_fields.string(3, &linked.trace_state().header());
            attributes(link_fields, 4, &link.attributes);
            link_fields.uint(5, u64::from(link.dropped_attributes_count));
            link_fields.fixed32(6, span_flags(linked, linked.is_remote()));
        });
    }
    fields.uint(14, u64::from(span.links.dropped_count));
    fields.message(15, |status| {
        if let Status::Error { description } = &span.status {
            status.string(2, description);
        }
        status.uint(3, status_code(&span.status));
    });
    fields.fixed32(16, span_flags(context, span.parent_span_is_remote));
}

fn attributes<'a>(
    fields: &mut ProtoWriter<'_>,
    field: u32,
    attributes: impl IntoIterator<Item = &'a KeyValue>,
) {
    for attribute_kv in attributes {
        attribute(
            fields,
            field,
            attribute_kv.key.as_str(),
            &attribute_kv.value,
        );
    }
}

/// One `KeyValue` as field `field`. A scalar value's sizes are known
/// before writing, so both messages get their length prefixes first;
/// arrays are patched in afterwards.
fn attribute(fields: &mut ProtoWriter<'_>, field: u32, key: &str, value: &Value) {
    match scalar_any_value_len(value) {
        Some(any_len) => {
            let key_len = if key.is_empty() {
                0
            } else {
                1 + varint_len(key.len() as u64) + key.len()
            };
            let len = key_len + 1 + varint_len(any_len as u64) + any_len;
            fields.message_exact(field, len, |key_value| {
                key_value.string(1, key);
                key_value.message_exact(2, any_len, |any| any_value(any, value));
            });
        }
        None => fields.message(field, |key_value| {
            key_value.string(1, key);
            key_value.message(2, |any| any_value(any, value));
        }),
    }
}

/// The encoded size of the `AnyValue` holding `value`, for scalar values
/// (a one-byte tag and the value; see [`any_value`]).
fn scalar_any_value_len(value: &Value) -> Option<usize> {
    match value {
        Value::String(text) => {
            Some(1 + varint_len(text.as_str().len() as u64) + text.as_str().len())
        }
        Value::Bool(_) => Some(2),
        Value::I64(number) => Some(1 + varint_len(*number as u64)),
        Value::F64(_) => Some(9),
        _ => None,
    }
}

/// The `oneof value` of an `AnyValue`.
#[inline(always)]
fn any_value(any: &mut ProtoWriter<'_>, value: &Value) {
    match value {
        Value::String(text) => any.string_always(1, text.as_str()),
        Value::Bool(flag) => any.bool_always(2, *flag),
        Value::I64(number) => any.int64_always(3, *number),
        Value::F64(number) => any.double_always(4, *number),
        Value::Array(array) => any.message(5, |values| array_values(values, array)),
        // A value kind added to the API after this encoder: sent as an
        // empty AnyValue rather than guessed at.
        _ => {}
    }
}

/// The `values` of an `ArrayValue`, each an `AnyValue`.
fn array_values(values: &mut ProtoWriter<'_>, array: &Array) {
    match array {
        Array::Bool(items) => {
            for item in items {
                values.message(1, |any| any_value(any, &Value::Bool(*item)));
            }
        }
        Array::I64(items) => {
            for item in items {
                values.message(1, |any| any_value(any, &Value::I64(*item)));
            }
        }
        Array::F64(items) => {
            for item in items {
                values.message(1, |any| any_value(any, &Value::F64(*item)));
            }
        }
        Array::String(items) => {
            for item in items {
                values.message(1, |any| any.string_always(1, item.as_str()));
            }
        }
        _ => {}
    }
}
