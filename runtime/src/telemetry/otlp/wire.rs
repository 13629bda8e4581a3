//! The protobuf wire format, written straight into a byte buffer: varints,
//! tags, scalar fields and length-delimited nested messages.

/// Wire type of varint-encoded scalars (`int64`, `uint32`, `bool`, enums).
const VARINT: u32 = 0;
/// Wire type of 8-byte little-endian scalars (`fixed64`, `double`).
const FIXED64: u32 = 1;
/// Wire type of strings, bytes and nested messages.
const LENGTH_DELIMITED: u32 = 2;
/// Wire type of 4-byte little-endian scalars (`fixed32`).
const FIXED32: u32 = 5;

/// Appends protobuf fields to a buffer. Nested messages are written in
/// place and their length prefix patched afterwards, so nothing is
/// encoded twice and nothing but the buffer itself is allocated.
pub(crate) struct ProtoWriter<'a> {
    buf: &'a mut Vec<u8>,
}

impl<'a> ProtoWriter<'a> {
    /// A writer appending to `buf`.
    pub(crate) fn new(buf: &'a mut Vec<u8>) -> ProtoWriter<'a> {
        ProtoWriter { buf }
    }

    #[inline(always)]
    fn varint(&mut self, value: u64) {
        // Tags and most lengths take one byte.
        if value < 0x80 {
            self.buf.push(value as u8);
        } else {
            self.long_varint(value);
        }
    }

    fn long_varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.buf.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.buf.push(value as u8);
    }

    #[inline(always)]
    fn tag(&mut self, field: u32, wire_type: u32) {
        self.varint(u64::from((field << 3) | wire_type));
    }

    /// A `bytes` field, left out when empty (proto3 default).
    #[inline(always)]
    pub(crate) fn bytes(&mut self, field: u32, value: &[u8]) {
        if !value.is_empty() {
            self.bytes_always(field, value);
        }
    }

    /// A `bytes` field, written even when empty (a `oneof` member).
    #[inline(always)]
    pub(crate) fn bytes_always(&mut self, field: u32, value: &[u8]) {
        self.tag(field, LENGTH_DELIMITED);
        self.varint(value.len() as u64);
        self.buf.extend_from_slice(value);
    }

    /// A `string` field, left out when empty.
    #[inline(always)]
    pub(crate) fn string(&mut self, field: u32, value: &str) {
        self.bytes(field, value.as_bytes());
    }

    /// A `string` field, written even when empty (a `oneof` member).
    #[inline(always)]
    pub(crate) fn string_always(&mut self, field: u32, value: &str) {
        self.bytes_always(field, value.as_bytes());
    }

    /// An unsigned varint field (`uint32`, enums), left out when zero.
    #[inline(always)]
    pub(crate) fn uint(&mut self, field: u32, value: u64) {
        if value != 0 {
            self.tag(field, VARINT);
            self.varint(value);
        }
    }

    /// An `int64` field written even when zero (a `oneof` member).
    #[inline(always)]
    pub(crate) fn int64_always(&mut self, field: u32, value: i64) {
        self.tag(field, VARINT);
        self.varint(value as u64);
    }

    /// A `bool` field written even when false (a `oneof` member).
    #[inline(always)]
    pub(crate) fn bool_always(&mut self, field: u32, value: bool) {
        self.tag(field, VARINT);
        self.varint(u64::from(value));
    }

    /// A `double` field written even when zero (a `oneof` member).
    #[inline(always)]
    pub(crate) fn double_always(&mut self, field: u32, value: f64) {
        self.tag(field, FIXED64);
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    /// A `fixed64` field, left out when zero.
    #[inline(always)]
    pub(crate) fn fixed64(&mut self, field: u32, value: u64) {
        if value != 0 {
            self.tag(field, FIXED64);
            self.buf.extend_from_slice(&value.to_le_bytes());
        }
    }

    /// A `fixed32` field, left out when zero.
    #[inline(always)]
    pub(crate) fn fixed32(&mut self, field: u32, value: u32) {
        if value != 0 {
            self.tag(field, FIXED32);
            self.buf.extend_from_slice(&value.to_le_bytes());
        }
    }

    /// A nested message field whose body is known to take exactly `len`
    /// bytes: the length prefix is written first, so nothing is patched
    /// or moved. `body` must write exactly `len` bytes.
    #[inline(always)]
    pub(crate) fn message_exact(
        &mut self,
        field: u32,
        len: usize,
        body: impl FnOnce(&mut ProtoWriter<'_>),
    ) {
        self.tag(field, LENGTH_DELIMITED);
        self.varint(len as u64);
        let start = self.buf.len();
        body(&mut ProtoWriter { buf: self.buf });
        debug_assert_eq!(self.buf.len() - start, len, "message_exact: wrong length");
    }

    /// A nested message field (written even when empty, as a set optional
    /// or repeated message is): `body` writes its fields, then the length
    /// prefix is patched in front of them.
    pub(crate) fn message(&mut self, field: u32, body: impl FnOnce(&mut ProtoWriter<'_>)) {
        // One byte holds any length below 128, the common case for
        // attributes.
        self.message_sized(field, 1, body);
    }

    /// A nested message whose length prefix is given `reserved` bytes up
    /// front: the body is written once and moved only when its length
    /// needs a prefix of another width (the prefix stays the shortest
    /// encoding). For messages whose size is known roughly: 2 bytes hold
    /// 128 to 16,383, 3 bytes up to 2 MiB.
    pub(crate) fn message_sized(
        &mut self,
        field: u32,
        reserved: usize,
        body: impl FnOnce(&mut ProtoWriter<'_>),
    ) {
        self.tag(field, LENGTH_DELIMITED);
        let start = self.buf.len();
        self.buf.resize(start + reserved, 0);
        body(&mut ProtoWriter { buf: self.buf });
        let end = self.buf.len();
        let len = end - start - reserved;
        let prefix_len = varint_len(len as u64);
        if prefix_len != reserved {
            let body_start = start + prefix_len;
            self.buf.resize(end.max(body_start + len), 0);
            self.buf.copy_within(start + reserved..end, body_start);
            self.buf.truncate(body_start + len);
        }
        let mut value = len as u64;
        for slot in &mut self.buf[start..start + prefix_len] {
            *slot = (value as u8 & 0x7f) | if value >= 0x80 { 0x80 } else { 0 };
            value >>= 7;
        }
    }
}

/// How many bytes the varint encoding of `value` takes.
#[inline(always)]
pub(crate) fn varint_len(value: u64) -> usize {
    // ceil(bits / 7) for 1 to 64 significant bits, as a multiply and a
    // shift rather than a division: (highest bit index * 9 + 73) / 64.
    let highest_bit = 63 - (value | 1).leading_zeros() as usize;
    (highest_bit * 9 + 73) >> 6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(write: impl FnOnce(&mut ProtoWriter<'_>)) -> Vec<u8> {
        let mut buf = Vec::new();
        write(&mut ProtoWriter::new(&mut buf));
        buf
    }

    #[test]
    fn varints_use_seven_bits_per_byte() {
        assert_eq!(written(|w| w.uint(1, 1)), [0x08, 0x01]);
        assert_eq!(written(|w| w.uint(1, 300)), [0x08, 0xac, 0x02]);
        assert_eq!(
            written(|w| w.int64_always(3, -1)),
            [
                0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
            ]
        );
        // Every width, at both ends.
        let widths = (0..64).flat_map(|bit| [1u64 << bit, (1u64 << bit) - 1]);
        for value in widths.chain([u64::MAX]) {
            let mut buf = Vec::new();
            ProtoWriter::new(&mut buf).varint(value);
            assert_eq!(buf.len(), varint_len(value), "{value}");
        }
    }

    #[test]
    fn defaults_are_left_out_except_where_always_written() {
        assert!(written(|w| w.uint(1, 0)).is_empty());
        assert!(written(|w| w.string(1, "")).is_empty());
        assert!(written(|w| w.fixed64(7, 0)).is_empty());
        assert!(written(|w| w.fixed32(16, 0)).is_empty());
        assert_eq!(written(|w| w.string_always(1, "")), [0x0a, 0x00]);
        assert_eq!(written(|w| w.bool_always(2, false)), [0x10, 0x00]);
        assert_eq!(written(|w| w.message(15, |_| {})), [0x7a, 0x00]);
    }

    #[test]
    fn fixed_width_fields_are_little_endian() {
        assert_eq!(
            written(|w| w.fixed32(16, 0x101)),
            [0x85, 0x01, 0x01, 0x01, 0x00, 0x00]
        );
        assert_eq!(written(|w| w.fixed64(7, 1)), [0x39, 1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            written(|w| w.double_always(4, 1.5)),
            [0x21, 0, 0, 0, 0, 0, 0, 0xf8, 0x3f]
        );
    }

    #[test]
    fn a_reserved_prefix_width_never_changes_the_bytes() {
        for len in [0, 1, 127, 128, 16_383, 16_384, 70_000] {
            let text = "y".repeat(len);
            let plain = written(|w| {
                w.message(2, |w| w.string(1, &text));
                w.uint(3, 1);
            });
            for reserved in 0..=4 {
                let sized = written(|w| {
                    w.message_sized(2, reserved, |w| w.string(1, &text));
                    w.uint(3, 1);
                });
                assert_eq!(sized, plain, "length {len}, {reserved} bytes reserved");
            }
        }
    }

    #[test]
    fn long_nested_messages_get_a_multi_byte_length_prefix() {
        let text = "x".repeat(200);
        let buf = written(|w| {
            w.message(2, |w| w.string(1, &text));
            w.uint(3, 1);
        });
        // Tag, two-byte length 203, then the string field (tag, two-byte
        // length 200, the text), then the field after the message.
        assert_eq!(&buf[..3], [0x12, 0xcb, 0x01]);
        assert_eq!(&buf[3..6], [0x0a, 0xc8, 0x01]);
        assert!(buf[6..206].iter().all(|&b| b == b'x'));
        assert_eq!(&buf[206..], [0x18, 0x01]);
    }
}
