//! `ExportTraceServiceRequest` in the OTLP/JSON encoding: the proto3 JSON
//! mapping with lowerCamelCase names, hex trace and span ids, enums as
//! numbers and 64-bit integers as strings. Fields at their default value
//! are left out, as the mapping allows.

use super::{ScopeGroups, span_flags, span_kind_number, status_code, unix_nanos};
use opentelemetry::trace::{SpanContext, SpanId, Status};
use opentelemetry::{Array, KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SpanData;
use std::io::Write as _;

/// Appends the request carrying `spans` under `resource` to `buf`.
pub(crate) fn encode_request(resource: &Resource, spans: &[SpanData], buf: &mut Vec<u8>) {
    let mut request = Object::open(buf);
    request.array("resourceSpans", |list| {
        list.object(|resource_spans| {
            resource_spans.object("resource", |fields| {
                fields.array("attributes", |list| {
                    for (key, value) in resource.iter() {
                        list.object(|key_value| attribute(key_value, key.as_str(), value));
                    }
                });
            });
            resource_spans.array("scopeSpans", |list| {
                for (scope, spans) in ScopeGroups::new(spans) {
                    list.object(|scope_spans| {
                        scope_spans.object("scope", |fields| {
                            fields.string("name", scope.name());
                            fields.string("version", scope.version().unwrap_or_default());
                            attributes(fields, scope.attributes());
                        });
                        scope_spans.array("spans", |list| {
                            for span in spans {
                                list.object(|fields| encode_span(fields, span));
                            }
                        });
                        scope_spans.string("schemaUrl", scope.schema_url().unwrap_or_default());
                    });
                }
            });
            resource_spans.string("schemaUrl", resource.schema_url().unwrap_or_default());
        });
    });
    request.close();
}

fn encode_span(fields: &mut Object<'_>, span: &SpanData) {
    let context = &span.span_context;
    ids(fields, context);
    if span.parent_span_id != SpanId::INVALID {
        fields.hex("parentSpanId", format_args!("{:016x}", span.parent_span_id));
    }
    fields.number(
        "flags",
        u64::from(span_flags(context, span.parent_span_is_remote)),
    );
    fields.string("name", &span.name);
    fields.number("kind", span_kind_number(&span.span_kind));
    fields.quoted_number("startTimeUnixNano", unix_nanos(span.start_time));
    fields.quoted_number("endTimeUnixNano", unix_nanos(span.end_time));
    attributes(fields, &span.attributes);
    fields.number(
        "droppedAttributesCount",
        u64::from(span.dropped_attributes_count),
    );
    if !span.events.is_empty() {
        fields.array("events", |list| {
            for event in span.events.iter() {
                list.object(|event_fields| {
                    event_fields.quoted_number("timeUnixNano", unix_nanos(event.timestamp));
                    event_fields.string("name", &event.name);
                    attributes(event_fields, &event.attributes);
                    event_fields.number(
                        "droppedAttributesCount",
                        u64::from(event.dropped_attributes_count),
                    );
                });
            }
        });
    }
    fields.number("droppedEventsCount", u64::from(span.events.dropped_count));
    if !span.links.is_empty() {
        fields.array("links", |list| {
            for link in span.links.iter() {
                list.object(|link_fields| {
                    let linked = &link.span_context;
                    ids(link_fields, linked);
                    attributes(link_fields, &link.attributes);
                    link_fields.number(
                        "droppedAttributesCount",
                        u64::from(link.dropped_attributes_count),
                    );
                    link_fields.number("flags", u64::from(span_flags(linked, linked.is_remote())));
                });
            }
        });
    }
    fields.number("droppedLinksCount", u64::from(span.links.dropped_count));
    fields.object("status", |status| {
        if let Status::Error { description } = &span.status {
            status.string("message", description);
        }
        status.number("code", status_code(&span.status));
    });
}

/// `traceId`, `spanId` and `traceState` of a span or link.
fn ids(fields: &mut Object<'_>, context: &SpanContext) {
    fields.hex("traceId", format_args!("{:032x}", context.trace_id()));
    fields.hex("spanId", format_args!("{:016x}", context.span_id()));
    fields.string("traceState", &context.trace_state().header());
}

fn attributes<'a>(fields: &mut Object<'_>, attributes: impl IntoIterator<Item = &'a KeyValue>) {
    let mut attributes = attributes.into_iter().peekable();
    if attributes.peek().is_none() {
        return;
    }
    fields.array("attributes", |list| {
        for key_value in attributes {
            list.object(|fields| attribute(fields, key_value.key.as_str(), &key_value.value));
        }
    });
}

fn attribute(fields: &mut Object<'_>, key: &str, value: &Value) {
    // Written even when empty: decoders such as opentelemetry-proto's
    // reject a KeyValue without its key.
    fields.string_always("key", key);
    fields.object("value", |any| any_value(any, value));
}

/// The one member of an `AnyValue` object.
fn any_value(any: &mut Object<'_>, value: &Value) {
    match value {
        Value::String(text) => any.string_always("stringValue", text.as_str()),
        Value::Bool(flag) => any.raw("boolValue", if *flag { "true" } else { "false" }),
        Value::I64(number) => any.quoted_int("intValue", *number),
        Value::F64(number) => any.double("doubleValue", *number),
        Value::Array(array) => any.object("arrayValue", |array_value| {
            array_value.array("values", |list| match array {
                Array::Bool(items) => {
                    for item in items {
                        list.object(|any| any_value(any, &Value::Bool(*item)));
                    }
                }
                Array::I64(items) => {
                    for item in items {
                        list.object(|any| any_value(any, &Value::I64(*item)));
                    }
                }
                Array::F64(items) => {
                    for item in items {
                        list.object(|any| any_value(any, &Value::F64(*item)));
                    }
                }
                Array::String(items) => {
                    for item in items {
                        list.object(|any| any.string_always("stringValue", item.as_str()));
                    }
                }
                _ => {}
            });
        }),
        // A value kind added to the API after this encoder: sent as an
        // empty AnyValue rather than guessed at.
        _ => {}
    }
}

/// A JSON object being written: members are separated as they are added.
struct Object<'a> {
    buf: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> Object<'a> {
    fn open(buf: &'a mut Vec<u8>) -> Object<'a> {
        buf.push(b'{');
        Object { buf, empty: true }
    }

    fn close(self) {
        self.buf.push(b'}');
    }

    fn key(&mut self, key: &str) {
        if !self.empty {
            self.buf.push(b',');
        }
        self.empty = false;
        self.buf.push(b'"');
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }

    fn raw(&mut self, key: &str, value: &str) {
        self.key(key);
        self.buf.extend_from_slice(value.as_bytes());
    }

    /// A string member, left out when empty.
    fn string(&mut self, key: &str, value: &str) {
        if !value.is_empty() {
            self.string_always(key, value);
        }
    }

    fn string_always(&mut self, key: &str, value: &str) {
        self.key(key);
        escaped(self.buf, value);
    }

    /// A hex id (formatting into a `Vec` cannot fail).
    fn hex(&mut self, key: &str, value: std::fmt::Arguments<'_>) {
        self.key(key);
        self.buf.push(b'"');
        let _ = self.buf.write_fmt(value);
        self.buf.push(b'"');
    }

    /// A 32-bit or enum number, left out when zero.
    fn number(&mut self, key: &str, value: u64) {
        if value != 0 {
            self.key(key);
            let _ = write!(self.buf, "{value}");
        }
    }

    /// A 64-bit unsigned number as a string, left out when zero.
    fn quoted_number(&mut self, key: &str, value: u64) {
        if value != 0 {
            self.key(key);
            let _ = write!(self.buf, "\"{value}\"");
        }
    }

    fn quoted_int(&mut self, key: &str, value: i64) {
        self.key(key);
        let _ = write!(self.buf, "\"{value}\"");
    }

    /// A double; NaN and the infinities as the mapping's strings.
    fn double(&mut self, key: &str, value: f64) {
        self.key(key);
        let _ = if value.is_nan() {
            write!(self.buf, "\"NaN\"")
        } else if value.is_infinite() {
            let sign = if value < 0.0 { "-" } else { "" };
            write!(self.buf, "\"{sign}Infinity\"")
        } else {
            write!(self.buf, "{value:?}")
        };
    }

    fn object(&mut self, key: &str, members: impl FnOnce(&mut Object<'_>)) {
        self.key(key);
        let mut inner = Object::open(self.buf);
        members(&mut inner);
        inner.close();
    }

    fn array(&mut self, key: &str, items: impl FnOnce(&mut List<'_>)) {
        self.key(key);
        self.buf.push(b'[');
        items(&mut List {
            buf: self.buf,
            empty: true,
        });
        self.buf.push(b']');
    }
}

/// A JSON array of objects being written.
struct List<'a> {
    buf: &'a mut Vec<u8>,
    empty: bool,
}

impl List<'_> {
    fn object(&mut self, members: impl FnOnce(&mut Object<'_>)) {
        if !self.empty {
            self.buf.push(b',');
        }
        self.empty = false;
        let mut inner = Object::open(self.buf);
        members(&mut inner);
        inner.close();
    }
}

/// `value` as a JSON string literal.
fn escaped(buf: &mut Vec<u8>, value: &str) {
    buf.push(b'"');
    let bytes = value.as_bytes();
    let mut clean_from = 0;
    for (index, &byte) in bytes.iter().enumerate() {
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        buf.extend_from_slice(&bytes[clean_from..index]);
        if escape.is_empty() {
            let _ = write!(buf, "\\u{byte:04x}");
        } else {
            buf.extend_from_slice(escape);
        }
        clean_from = index + 1;
    }
    buf.extend_from_slice(&bytes[clean_from..]);
    buf.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escape(value: &str) -> String {
        let mut buf = Vec::new();
        escaped(&mut buf, value);
        String::from_utf8(buf).unwrap_or_default()
    }

    #[test]
    fn strings_escape_quotes_backslashes_and_control_characters() {
        assert_eq!(escape("plain"), "\"plain\"");
        assert_eq!(escape("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(escape("line\nnext\ttab\u{1}"), r#""line\nnext\ttab\u0001""#);
        assert_eq!(escape("é✓"), "\"é✓\"");
    }

    #[test]
    fn doubles_follow_the_proto3_mapping() {
        let mut buf = Vec::new();
        let mut object = Object::open(&mut buf);
        object.double("a", 1.5);
        object.double("b", f64::NAN);
        object.double("c", f64::NEG_INFINITY);
        object.double("d", 1e300);
        object.close();
        assert_eq!(
            String::from_utf8(buf).unwrap_or_default(),
            r#"{"a":1.5,"b":"NaN","c":"-Infinity","d":1e300}"#
        );
    }
}
