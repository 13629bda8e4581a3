//! Telling a refused connection (nothing listens at the upstream's
//! address) from other failures, whichever client reports it.

use std::error::Error;
use std::io::ErrorKind;

/// Whether `error`, or any error in its chain of sources, is an I/O error
/// of kind `ConnectionRefused`.
pub fn is_connection_refused(error: &(dyn Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && io.kind() == ErrorKind::ConnectionRefused
        {
            return true;
        }
        cause = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("wrapped")]
    struct Wrapped(#[source] std::io::Error);

    #[test]
    fn a_refusal_is_found_anywhere_in_the_chain() {
        let refused = || std::io::Error::from(ErrorKind::ConnectionRefused);
        assert!(is_connection_refused(&refused()));
        assert!(is_connection_refused(&Wrapped(refused())));
        assert!(!is_connection_refused(&Wrapped(std::io::Error::from(
            ErrorKind::ConnectionReset
        ))));
    }
}
