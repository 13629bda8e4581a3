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

    /// The spans the collector says it rejected, if any.
    pub(crate) fn rejected(&self) -> Option<&PartialSuccess> {
        self.partial_success
            .as_ref()
            .filter(|partial| partial.rejected_spans > 0 || !partial.error_message.is_empty())
    }
}
