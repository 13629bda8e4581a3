//! The subset of canonical CBOR (RFC 8949 §4.2.1, as written by Python's
//! `cbor2.dumps(..., canonical=True)`) that vLLM's `sha256_cbor` block
//! hashing needs: integers in their shortest form, byte and text strings,
//! arrays and null.

const UNSIGNED: u8 = 0;
const NEGATIVE: u8 = 1;
const BYTES: u8 = 2;
const TEXT: u8 = 3;
const ARRAY: u8 = 4;
const NULL: u8 = 0xf6;

/// Appends the head of a data item: major type and argument, shortest form.
fn head(out: &mut Vec<u8>, major: u8, argument: u64) {
    let major = major << 5;
    if argument < 24 {
        out.push(major | argument as u8);
    } else if let Ok(v) = u8::try_from(argument) {
        out.extend_from_slice(&[major | 24, v]);
    } else if let Ok(v) = u16::try_from(argument) {
        out.push(major | 25);
        out.extend_from_slice(&v.to_be_bytes());
    } else if let Ok(v) = u32::try_from(argument) {
        out.push(major | 26);
        out.extend_from_slice(&v.to_be_bytes());
    } else {
        out.push(major | 27);
        out.extend_from_slice(&argument.to_be_bytes());
    }
}

/// Appends an unsigned integer.
pub(crate) fn unsigned(out: &mut Vec<u8>, value: u64) {
    head(out, UNSIGNED, value);
}

/// Appends a signed integer (major type 1 for negative values).
pub(crate) fn signed(out: &mut Vec<u8>, value: i64) {
    match u64::try_from(value) {
        Ok(v) => head(out, UNSIGNED, v),
        // -1 - value, computed without overflow for i64::MIN.
        Err(_) => head(out, NEGATIVE, !(value as u64)),
    }
}

/// Appends a byte string.
pub(crate) fn bytes(out: &mut Vec<u8>, value: &[u8]) {
    head(out, BYTES, value.len() as u64);
    out.extend_from_slice(value);
}

/// Appends a UTF-8 text string.
pub(crate) fn text(out: &mut Vec<u8>, value: &str) {
    head(out, TEXT, value.len() as u64);
    out.extend_from_slice(value.as_bytes());
}

/// Appends the head of an array of `len` items (the items follow).
pub(crate) fn array(out: &mut Vec<u8>, len: usize) {
    head(out, ARRAY, len as u64);
}

/// Appends null (Python's `None`).
pub(crate) fn null(out: &mut Vec<u8>) {
    out.push(NULL);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut out = Vec::new();
        f(&mut out);
        out
    }

    #[test]
    fn integers_use_the_shortest_form() {
        assert_eq!(encoded(|o| unsigned(o, 0)), [0x00]);
        assert_eq!(encoded(|o| unsigned(o, 23)), [0x17]);
        assert_eq!(encoded(|o| unsigned(o, 24)), [0x18, 24]);
        assert_eq!(encoded(|o| unsigned(o, 255)), [0x18, 255]);
        assert_eq!(encoded(|o| unsigned(o, 256)), [0x19, 1, 0]);
        assert_eq!(encoded(|o| unsigned(o, 65_536)), [0x1a, 0, 1, 0, 0]);
        assert_eq!(
            encoded(|o| unsigned(o, u64::MAX)),
            [0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
    }

    #[test]
    fn negative_integers_use_major_type_one() {
        assert_eq!(encoded(|o| signed(o, -1)), [0x20]);
        assert_eq!(encoded(|o| signed(o, -100)), [0x38, 99]);
        assert_eq!(encoded(|o| signed(o, 5)), [0x05]);
        assert_eq!(
            encoded(|o| signed(o, i64::MIN)),
            [0x3b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
    }

    #[test]
    fn strings_arrays_and_null() {
        assert_eq!(encoded(|o| text(o, "ab")), [0x62, b'a', b'b']);
        assert_eq!(encoded(|o| bytes(o, &[1, 2])), [0x42, 1, 2]);
        assert_eq!(encoded(|o| array(o, 3)), [0x83]);
        assert_eq!(encoded(null), [0xf6]);
    }
}
