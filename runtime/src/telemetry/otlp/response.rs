//! The collector's answer to an export: `ExportTraceServiceResponse`.

use bytes::Bytes;

/// `ExportTraceServiceResponse`; an empty answer is a full success.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ExportTraceServiceResponse {
    /// Set when the collector rejected some of the spans.
    #[prost(message, optional, tag = "1")]
    pub(crate) partial_success: Option<PartialSuccess>,
}

/// `ExportTracePartialSuccess`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PartialSuccess {
    /// How many spans of the request the collector dropped.
    #[prost(int64, tag = "1")]
    pub(crate) rejected_spans: i64,
    /// Why, in the collector's words.
    #[prost(string, tag = "2")]
    pub(crate) error_message: String,
}

impl ExportTraceServiceResponse {
    /// Decodes a protobuf answer.
    pub(crate) fn decode(body: Bytes) -> Result<ExportTraceServiceResponse, prost::DecodeError> {
        <ExportTraceServiceResponse as prost::Message>::decode(body)
    }

    /// Decodes an OTLP/JSON answer: `partialSuccess` (or
    /// `partial_success`) with `rejectedSpans` as the proto3 JSON mapping
    /// writes an int64 (a string) or as a number, and `errorMessage`.
    pub(crate) fn decode_json(
        body: &[u8],
    ) -> Result<ExportTraceServiceResponse, serde_json::Error> {
        let answer: serde_json::Value = serde_json::from_slice(body)?;
        let field = |value: &'_ serde_json::Value, camel: &str, snake: &str| {
            value.get(camel).or_else(|| value.get(snake)).cloned()
        };
        let partial_success = field(&answer, "partialSuccess", "partial_success").map(|partial| {
            let rejected_spans = match field(&partial, "rejectedSpans", "rejected_spans") {
                Some(serde_json::Value::Number(n)) => n.as_i64().unwrap_or_default(),
                Some(serde_json::Value::String(text)) => text.trim().parse().unwrap_or_default(),
                _ => 0,
            };
            let error_message = field(&partial, "errorMessage", "error_message")
                .and_then(|message| message.as_str().map(str::to_owned))
                .unwrap_or_default();
            PartialSuccess {
                rejected_spans,
                error_message,
            }
        });
        Ok(ExportTraceServiceResponse { partial_success })
    }

    /// The spans the collector says it rejected, if any.
    pub(crate) fn rejected(&self) -> Option<&PartialSuccess> {
        self.partial_success
            .as_ref()
            .filter(|partial| partial.rejected_spans > 0 || !partial.error_message.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(body: &str) -> Option<(i64, String)> {
        ExportTraceServiceResponse::decode_json(body.as_bytes())
            .unwrap()
            .rejected()
            .map(|partial| (partial.rejected_spans, partial.error_message.clone()))
    }

    #[test]
    fn a_json_partial_success_is_read_in_either_int64_form_and_field_style() {
        let expected = Some((3, "quota".to_owned()));
        assert_eq!(
            rejected(r#"{"partialSuccess":{"rejectedSpans":"3","errorMessage":"quota"}}"#),
            expected
        );
        assert_eq!(
            rejected(r#"{"partialSuccess":{"rejectedSpans":3,"errorMessage":"quota"}}"#),
            expected
        );
        assert_eq!(
            rejected(r#"{"partial_success":{"rejected_spans":"3","error_message":"quota"}}"#),
            expected
        );
        assert_eq!(
            rejected(r#"{"partialSuccess":{"errorMessage":"slow down"}}"#),
            Some((0, "slow down".to_owned()))
        );
    }

    #[test]
    fn a_json_full_success_rejects_nothing() {
        assert_eq!(rejected("{}"), None);
        assert_eq!(rejected(r#"{"partialSuccess":{}}"#), None);
        assert_eq!(
            rejected(r#"{"partialSuccess":{"rejectedSpans":"0"}}"#),
            None
        );
        assert!(ExportTraceServiceResponse::decode_json(b"").is_err());
    }
}
