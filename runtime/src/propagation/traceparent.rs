//! The W3C `traceparent` header value: a strict, allocation-free parser and
//! formatter.
//!
//! Format: `version-traceid-parentid-flags`, all lowercase hex, for example
//! `00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01`. Version `00`
//! is exactly 55 bytes; a later version may append fields after a `-`,
//! which are ignored. Version `ff`, all-zero ids, upper-case or non-hex
//! digits and a wrong length are all rejected.

use opentelemetry::trace::{SpanId, TraceFlags, TraceId};

/// Length of a version-00 `traceparent` value.
pub(crate) const LEN: usize = 55;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The ids and sampling flag a valid `traceparent` carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TraceParent {
    pub(crate) trace_id: TraceId,
    pub(crate) span_id: SpanId,
    pub(crate) flags: TraceFlags,
}

/// Parses a `traceparent` value, or returns `None` when it is malformed.
pub(crate) fn parse(value: &[u8]) -> Option<TraceParent> {
    let value = trim_ows(value);
    if value.len() < LEN {
        return None;
    }
    let version = hex_byte(&value[0..2])?;
    let length_ok = match version {
        0x00 => value.len() == LEN,
        0xff => false,
        _ => value.len() == LEN || value[LEN] == b'-',
    };
    if !length_ok || value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    let trace_id = u128::from_be_bytes(hex_array::<16>(&value[3..35])?);
    let span_id = u64::from_be_bytes(hex_array::<8>(&value[36..52])?);
    let flags = hex_byte(&value[53..55])?;
    if trace_id == 0 || span_id == 0 {
        return None;
    }
    Some(TraceParent {
        trace_id: TraceId::from(trace_id),
        span_id: SpanId::from(span_id),
        flags: TraceFlags::new(flags) & TraceFlags::SAMPLED,
    })
}

/// Formats a version-00 `traceparent` value.
pub(crate) fn format(parent: &TraceParent) -> [u8; LEN] {
    let mut out = [b'-'; LEN];
    out[0] = b'0';
    out[1] = b'0';
    write_hex(&mut out[3..35], &parent.trace_id.to_bytes());
    write_hex(&mut out[36..52], &parent.span_id.to_bytes());
    write_hex(
        &mut out[53..55],
        &[(parent.flags & TraceFlags::SAMPLED).to_u8()],
    );
    out
}

/// Strips the optional whitespace HTTP allows around a field value.
fn trim_ows(value: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ows(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    &value[start..end]
}

/// Marks a byte that is not a lowercase hex digit in [`HEX_VALUE`]; digit
/// values (0 to 15) never have this bit.
const NOT_HEX: u8 = 0x10;

/// The value of each lowercase hex digit, [`NOT_HEX`] for every other
/// byte: one table load per digit and no branch, so an id is decoded in
/// one straight loop and checked once at its end.
const HEX_VALUE: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut digit = 0;
    while digit < 16 {
        table[HEX[digit] as usize] = digit as u8;
        digit += 1;
    }
    table
};

fn hex_byte(pair: &[u8]) -> Option<u8> {
    hex_array::<1>(pair).map(|[byte]| byte)
}

fn hex_array<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    if digits.len() != 2 * N {
        return None;
    }
    let mut seen = 0;
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let high = HEX_VALUE[usize::from(pair[0])];
        let low = HEX_VALUE[usize::from(pair[1])];
        seen |= high | low;
        *byte = high << 4 | low;
    }
    (seen & NOT_HEX == 0).then_some(out)
}

fn write_hex(out: &mut [u8], bytes: &[u8]) {
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0x0f)];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn parsed(value: &str) -> Option<TraceParent> {
        parse(value.as_bytes())
    }

    #[test]
    fn parses_a_valid_value() {
        let parent = parsed(VALID).expect("valid");
        assert_eq!(
            parent.trace_id,
            TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736)
        );
        assert_eq!(parent.span_id, SpanId::from(0x00f0_67aa_0ba9_02b7));
        assert_eq!(parent.flags, TraceFlags::SAMPLED);
    }

    #[test]
    fn formats_what_it_parses() {
        for value in [
            VALID,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        ] {
            let parent = parsed(value).expect("valid");
            assert_eq!(&format(&parent)[..], value.as_bytes());
        }
    }

    #[test]
    fn keeps_only_the_sampled_flag() {
        let parent =
            parsed("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff").expect("valid");
        assert_eq!(parent.flags, TraceFlags::SAMPLED);
        let parent =
            parsed("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-fe").expect("valid");
        assert_eq!(parent.flags, TraceFlags::NOT_SAMPLED);
    }

    #[test]
    fn accepts_later_versions_with_extra_fields_and_surrounding_whitespace() {
        assert!(parsed("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra").is_some());
        assert!(parsed("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").is_some());
        assert!(parsed(" \t00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 ").is_some());
    }

    #[test]
    fn rejects_malformed_values() {
        for (value, why) in [
            ("", "empty"),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
                "no flags",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-",
                "empty flags",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
                "version 00 with extra field",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
                "trace id one short",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e47366-0f067aa0ba902b7-01",
                "trace id one long",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-701",
                "span id one short",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
                "short flags",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-011",
                "long flags",
            ),
            (
                "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01a",
                "short version",
            ),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "forbidden version ff",
            ),
            (
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
                "later version, no dash",
            ),
            (
                "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "non-hex version",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
                "non-hex trace id",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01",
                "non-hex span id",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
                "non-hex flags",
            ),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                "upper-case trace id",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
                "upper-case span id",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
                "upper-case flags",
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                "zero trace id",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                "zero span id",
            ),
            (
                "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
                "wrong separators",
            ),
            (
                "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "sign in trace id",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\u{e9}",
                "non-ascii tail",
            ),
        ] {
            assert_eq!(parsed(value), None, "{why}: {value:?}");
        }
    }
}
