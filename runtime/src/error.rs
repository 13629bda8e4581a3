//! [`ErrorType`]: the low-cardinality `error.type` of an error.

/// Gives the `error.type` recorded when an instrumented function returns
/// `Err`. It is a static label (a variant name, a class), never the error's
/// message, which often echoes the request.
///
/// `#[derive(ErrorType)]` from this crate implements it for enums with the
/// variant names in snake case.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no `error.type` label, so `err` cannot record it",
    label = "does not implement `llmd_runtime::ErrorType`",
    note = "`err` records a static label, never the error's message: add `#[derive(llmd_runtime::ErrorType)]` \
            to the error enum, or implement `ErrorType::error_type` returning a `&'static str`"
)]
pub trait ErrorType {
    /// The label recorded as `error.type`.
    fn error_type(&self) -> &'static str;
}

impl<T: ErrorType + ?Sized> ErrorType for &T {
    fn error_type(&self) -> &'static str {
        (**self).error_type()
    }
}

impl<T: ErrorType + ?Sized> ErrorType for Box<T> {
    fn error_type(&self) -> &'static str {
        (**self).error_type()
    }
}

impl ErrorType for std::convert::Infallible {
    fn error_type(&self) -> &'static str {
        match *self {}
    }
}

impl ErrorType for std::io::Error {
    fn error_type(&self) -> &'static str {
        use std::io::ErrorKind::*;
        match self.kind() {
            NotFound => "not_found",
            PermissionDenied => "permission_denied",
            ConnectionRefused => "connection_refused",
            ConnectionReset => "connection_reset",
            ConnectionAborted => "connection_aborted",
            NotConnected => "not_connected",
            AddrInUse => "addr_in_use",
            AddrNotAvailable => "addr_not_available",
            BrokenPipe => "broken_pipe",
            AlreadyExists => "already_exists",
            WouldBlock => "would_block",
            InvalidInput => "invalid_input",
            InvalidData => "invalid_data",
            TimedOut => "timeout",
            UnexpectedEof => "unexpected_eof",
            Interrupted => "interrupted",
            Unsupported => "unsupported",
            OutOfMemory => "out_of_memory",
            _ => "io",
        }
    }
}
