//! Bounded values of the HTTP semantic-convention attributes: method
//! labels, `error.type` of server errors, and the host and port a request
//! was addressed to.

use crate::attributes::Identifier;
use crate::recent::Recent;
use ::http::{Method, StatusCode};
use std::cell::RefCell;
use std::rc::Rc;

/// The registry keys the HTTP layers record.
pub(crate) mod keys {
    pub(crate) const HTTP_REQUEST_METHOD: &str = "http.request.method";
    pub(crate) const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
    pub(crate) const HTTP_ROUTE: &str = "http.route";
    pub(crate) const SERVER_ADDRESS: &str = "server.address";
    pub(crate) const SERVER_PORT: &str = "server.port";
    pub(crate) const URL_SCHEME: &str = "url.scheme";
}

/// The `http.request.method` label: the method for the well-known methods,
/// `_OTHER` for anything else (which keeps the attribute's cardinality
/// bounded).
pub(crate) fn method_label(method: &Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        "PATCH" => "PATCH",
        "TRACE" => "TRACE",
        "CONNECT" => "CONNECT",
        _ => "_OTHER",
    }
}

const FIRST_SERVER_ERROR: u16 = 500;
const SERVER_ERROR_COUNT: usize = 100;

/// The three digits of every status code from 500 to 599, back to back.
static SERVER_ERROR_DIGITS: [u8; 3 * SERVER_ERROR_COUNT] = server_error_digits();

const fn server_error_digits() -> [u8; 3 * SERVER_ERROR_COUNT] {
    let mut out = [0u8; 3 * SERVER_ERROR_COUNT];
    let mut i = 0;
    while i < SERVER_ERROR_COUNT {
        let code = FIRST_SERVER_ERROR as usize + i;
        out[3 * i] = b'0' + (code / 100) as u8;
        out[3 * i + 1] = b'0' + (code / 10 % 10) as u8;
        out[3 * i + 2] = b'0' + (code % 10) as u8;
        i += 1;
    }
    out
}

/// The `error.type` of a response: its status code as text ("500", "503",
/// ...) for a server error, `None` otherwise (a 4xx is the client's error,
/// not the server span's).
pub fn server_error_type(status: StatusCode) -> Option<&'static str> {
    if !status.is_server_error() {
        return None;
    }
    let start = 3 * usize::from(status.as_u16() - FIRST_SERVER_ERROR);
    let digits: &'static [u8] = SERVER_ERROR_DIGITS.get(start..start + 3)?;
    std::str::from_utf8(digits).ok()
}

/// How many parsed authorities each thread keeps.
const RECENT_AUTHORITIES: usize = 4;

/// An authority as a request gave it, and its parts.
#[derive(Clone)]
struct Authority {
    raw: Rc<str>,
    host: Identifier,
    port: Option<u16>,
}

thread_local! {
    /// The authorities with a valid host most recently parsed by
    /// [`recurring_host_port`] on this thread, newest first.
    static RECENT: RefCell<Recent<Authority, RECENT_AUTHORITIES>> = const {
        RefCell::new(Recent::new())
    };
}

/// The host, as an [`Identifier`], and the port of an authority given as
/// the raw bytes of a URI's authority or a `Host` header. Requests on one
/// connection or listener name the same authority, so the last few parsed
/// on each thread are kept and a repeat costs a comparison. `None` when
/// the bytes are not visible ASCII or not a plain authority (see
/// [`split_host_port`]).
pub(crate) fn recurring_host_port(raw: &[u8]) -> Option<(Identifier, Option<u16>)> {
    let authority = RECENT
        .try_with(|recent| {
            recent.borrow_mut().find_or_make(
                |seen| seen.raw.as_bytes() == raw,
                || parse_authority(raw),
                |made| made.host.is_valid(),
            )
        })
        .unwrap_or_else(|_| parse_authority(raw))?;
    Some((authority.host, authority.port))
}

fn parse_authority(raw: &[u8]) -> Option<Authority> {
    let visible = raw
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b));
    let text = std::str::from_utf8(raw).ok().filter(|_| visible)?;
    let (host, port) = split_host_port(text)?;
    Some(Authority {
        raw: Rc::from(text),
        host: Identifier::new(host),
        port,
    })
}

/// Splits an authority (`host`, `host:port`, `[v6]` or `[v6]:port`) into
/// the host, without brackets, and the port if present. `None` when it is
/// not a plain authority.
fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    // Byte scans: the delimiters are ASCII, so every split is on a char
    // boundary, and this runs for every traced request.
    let (host, port) = match authority.strip_prefix('[') {
        Some(bracketed) => {
            let close = bracketed.bytes().position(|b| b == b']')?;
            match &bracketed[close + 1..] {
                "" => (&bracketed[..close], None),
                rest => (&bracketed[..close], Some(rest.strip_prefix(':')?)),
            }
        }
        None => match authority.bytes().position(|b| b == b':') {
            Some(colon) => (&authority[..colon], Some(&authority[colon + 1..])),
            None => (authority, None),
        },
    };
    if host.is_empty() || host.bytes().any(|b| b == b'@') {
        return None;
    }
    let port = match port {
        Some(digits) => Some(parse_port(digits)?),
        None => None,
    };
    Some((host, port))
}

/// A port of ASCII digits only (no sign), at most 65535.
fn parse_port(digits: &str) -> Option<u16> {
    if digits.is_empty() {
        return None;
    }
    digits.bytes().try_fold(0u16, |port, b| {
        let digit = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        port.checked_mul(10)?.checked_add(u16::from(digit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attributes::registry::{ATTRIBUTES, ValueKind};

    #[test]
    fn recorded_keys_are_registered_with_their_kind() {
        for (key, kind) in [
            (keys::HTTP_REQUEST_METHOD, ValueKind::Str),
            (keys::HTTP_RESPONSE_STATUS_CODE, ValueKind::Int),
            (keys::HTTP_ROUTE, ValueKind::Str),
            (keys::SERVER_ADDRESS, ValueKind::Str),
            (keys::SERVER_PORT, ValueKind::Int),
            (keys::URL_SCHEME, ValueKind::Str),
        ] {
            let registered = ATTRIBUTES.iter().find(|def| def.name == key);
            assert_eq!(registered.map(|def| def.kind), Some(kind), "{key}");
        }
    }

    #[test]
    fn every_server_error_has_its_code_as_error_type() {
        for code in 500..=599 {
            let status = StatusCode::from_u16(code).expect("valid code");
            assert_eq!(server_error_type(status), Some(status.as_str()));
        }
    }

    #[test]
    fn other_statuses_are_not_errors() {
        for code in [200, 204, 301, 400, 404, 499, 600, 999] {
            let status = StatusCode::from_u16(code).expect("valid code");
            assert_eq!(server_error_type(status), None, "{code}");
        }
    }

    #[test]
    fn unknown_methods_collapse_to_other() {
        assert_eq!(method_label(&Method::POST), "POST");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        let custom = Method::from_bytes(b"PURGE").expect("valid method");
        assert_eq!(method_label(&custom), "_OTHER");
    }

    #[test]
    fn splits_authorities() {
        assert_eq!(split_host_port("example.com"), Some(("example.com", None)));
        assert_eq!(
            split_host_port("10.0.0.1:8000"),
            Some(("10.0.0.1", Some(8000)))
        );
        assert_eq!(split_host_port("[::1]:8080"), Some(("::1", Some(8080))));
        assert_eq!(split_host_port("[fe80::1]"), Some(("fe80::1", None)));
        assert_eq!(split_host_port("h:0080"), Some(("h", Some(80))));
        assert_eq!(split_host_port("h:65535"), Some(("h", Some(65535))));
        assert_eq!(split_host_port("h:0"), Some(("h", Some(0))));
        assert_eq!(split_host_port("名前:1"), Some(("名前", Some(1))));
    }

    #[test]
    fn rejects_malformed_authorities() {
        for bad in [
            "",
            ":80",
            "host:",
            "host:+80",
            "host:65536",
            "host:99999",
            "host:-1",
            "host:8 0",
            "host:8a",
            "a:b:c",
            "[::1",
            "[::1]x",
            "user@host",
        ] {
            assert_eq!(split_host_port(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn recurring_authorities_parse_like_split_host_port() {
        for _ in 0..2 {
            let (host, port) = recurring_host_port(b"decoder.local:8200").unwrap();
            assert_eq!((host.as_str(), port), ("decoder.local", Some(8200)));
            let (host, port) = recurring_host_port(b"[::1]").unwrap();
            assert_eq!((host.as_str(), port), ("::1", None));
        }
        assert_eq!(recurring_host_port(b"host:99999"), None);
        assert_eq!(recurring_host_port(b"user@host"), None);
    }

    #[test]
    fn recurring_authorities_must_be_visible_ascii() {
        assert_eq!(recurring_host_port("名前:1".as_bytes()), None);
        assert_eq!(recurring_host_port(b"host\x7f:1"), None);
        assert_eq!(recurring_host_port(b"ho\xffst:1"), None);
    }

    #[test]
    fn an_authority_is_not_confused_with_one_seen_before() {
        for i in 0..2 * RECENT_AUTHORITIES {
            let raw = format!("pod-{i}:{}", 8000 + i);
            let (host, port) = recurring_host_port(raw.as_bytes()).unwrap();
            assert_eq!(host.as_str(), format!("pod-{i}"));
            assert_eq!(port, Some(8000 + i as u16));
        }
        let (host, port) = recurring_host_port(b"pod-0").unwrap();
        assert_eq!((host.as_str(), port), ("pod-0", None));
    }

    #[test]
    fn a_host_that_is_not_an_identifier_is_the_placeholder() {
        let (host, port) = recurring_host_port(b"bad\thost:80").unwrap();
        assert!(!host.is_valid());
        assert_eq!(port, Some(80));
    }
}
