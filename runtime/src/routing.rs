//! The routing headers the scheduler sets for a decode pod's P/D proxy, as
//! llm-d names them (its `routing` package, shared by the endpoint picker
//! and the sidecar).
//!
//! llm-d renamed the prefill header `x-prefiller-host-port` to
//! `x-llm-d-prefiller-host-port`; its endpoint picker writes both
//! spellings with the same value, and its sidecar reads the old spelling
//! first and removes both. This project does the same, so that its
//! scheduler and its P/D proxy each work with llm-d's other half, old or new.

/// The prefill target(s) of a disaggregated request, `host:port[,...]`.
pub const PREFILLER_HEADER: &str = "x-llm-d-prefiller-host-port";

/// The name [`PREFILLER_HEADER`] had before llm-d's rename.
pub const LEGACY_PREFILLER_HEADER: &str = "x-prefiller-host-port";

/// Both spellings of the prefill header, in the order their values are
/// trusted: the legacy one first, as llm-d's sidecar does, because every
/// llm-d endpoint picker strips a client-supplied legacy header while one
/// that predates the rename would pass a client's new-style header on.
pub const PREFILLER_HEADERS: [&str; 2] = [LEGACY_PREFILLER_HEADER, PREFILLER_HEADER];
