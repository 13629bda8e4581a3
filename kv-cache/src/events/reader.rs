//! A bounds-checked msgpack reader over a byte slice, built on `rmp`'s
//! marker parsing: no intermediate value tree, no panics on garbage.

use rmp::Marker;
use thiserror::Error;

/// Deepest nesting the reader accepts (vLLM payloads nest 4 levels).
const MAX_DEPTH: usize = 16;

/// Why a payload did not decode.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The payload ended inside a value.
    #[error("payload truncated")]
    Truncated,
    /// A value had the wrong type.
    #[error("expected {0}")]
    Unexpected(&'static str),
    /// An integer did not fit its field.
    #[error("integer out of range for {0}")]
    OutOfRange(&'static str),
    /// A required field was absent.
    #[error("missing field {0}")]
    Missing(&'static str),
    /// A string was not UTF-8.
    #[error("invalid utf-8")]
    Utf8,
    /// Values nested too deep.
    #[error("nesting too deep")]
    TooDeep,
}

/// An integer as read, before range checks.
enum Int {
    Unsigned(u64),
    Signed(i64),
}

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn rewind(&mut self, pos: usize) {
        self.pos = pos;
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated)?;
        let bytes = self.buf.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn peek(&self) -> Result<Marker, DecodeError> {
        self.buf
            .get(self.pos)
            .map(|&b| Marker::from_u8(b))
            .ok_or(DecodeError::Truncated)
    }

    fn marker(&mut self) -> Result<Marker, DecodeError> {
        let m = self.peek()?;
        self.pos += 1;
        Ok(m)
    }

    /// Consumes a nil if one is next.
    pub(crate) fn nil(&mut self) -> Result<bool, DecodeError> {
        if self.peek()? == Marker::Null {
            self.pos += 1;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn length(&mut self, m: Marker) -> Result<Option<usize>, DecodeError> {
        Ok(Some(match m {
            Marker::U8 | Marker::Str8 | Marker::Bin8 | Marker::Ext8 => {
                usize::from(self.fixed::<1>()?[0])
            }
            Marker::U16
            | Marker::Str16
            | Marker::Bin16
            | Marker::Array16
            | Marker::Map16
            | Marker::Ext16 => usize::from(u16::from_be_bytes(self.fixed()?)),
            Marker::U32
            | Marker::Str32
            | Marker::Bin32
            | Marker::Array32
            | Marker::Map32
            | Marker::Ext32 => u32::from_be_bytes(self.fixed()?) as usize,
            _ => return Ok(None),
        }))
    }

    fn int(&mut self) -> Result<Int, DecodeError> {
        Ok(match self.marker()? {
            Marker::FixPos(v) => Int::Unsigned(u64::from(v)),
            Marker::FixNeg(v) => Int::Signed(i64::from(v)),
            Marker::U8 => Int::Unsigned(u64::from(self.fixed::<1>()?[0])),
            Marker::U16 => Int::Unsigned(u64::from(u16::from_be_bytes(self.fixed()?))),
            Marker::U32 => Int::Unsigned(u64::from(u32::from_be_bytes(self.fixed()?))),
            Marker::U64 => Int::Unsigned(u64::from_be_bytes(self.fixed()?)),
            Marker::I8 => Int::Signed(i64::from(i8::from_be_bytes(self.fixed()?))),
            Marker::I16 => Int::Signed(i64::from(i16::from_be_bytes(self.fixed()?))),
            Marker::I32 => Int::Signed(i64::from(i32::from_be_bytes(self.fixed()?))),
            Marker::I64 => Int::Signed(i64::from_be_bytes(self.fixed()?)),
            _ => return Err(DecodeError::Unexpected("an integer")),
        })
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        match self.int()? {
            Int::Unsigned(v) => Ok(v),
            Int::Signed(v) => u64::try_from(v).map_err(|_| DecodeError::OutOfRange(what)),
        }
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        u32::try_from(self.u64(what)?).map_err(|_| DecodeError::OutOfRange(what))
    }

    pub(crate) fn i64(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        match self.int()? {
            Int::Unsigned(v) => i64::try_from(v).map_err(|_| DecodeError::OutOfRange(what)),
            Int::Signed(v) => Ok(v),
        }
    }

    /// A float, or an integer read as one.
    pub(crate) fn f64(&mut self) -> Result<f64, DecodeError> {
        match self.peek()? {
            Marker::F64 => {
                self.pos += 1;
                Ok(f64::from_be_bytes(self.fixed()?))
            }
            Marker::F32 => {
                self.pos += 1;
                Ok(f64::from(f32::from_be_bytes(self.fixed()?)))
            }
            _ => self.i64("a timestamp").map(|v| v as f64),
        }
    }

    pub(crate) fn str(&mut self) -> Result<&'a str, DecodeError> {
        let len = match self.marker()? {
            Marker::FixStr(n) => usize::from(n),
            m @ (Marker::Str8 | Marker::Str16 | Marker::Str32) => self.length(m)?.unwrap_or(0),
            _ => return Err(DecodeError::Unexpected("a string")),
        };
        std::str::from_utf8(self.take(len)?).map_err(|_| DecodeError::Utf8)
    }

    pub(crate) fn bin(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = match self.marker()? {
            m @ (Marker::Bin8 | Marker::Bin16 | Marker::Bin32) => self.length(m)?.unwrap_or(0),
            _ => return Err(DecodeError::Unexpected("bytes")),
        };
        self.take(len)
    }

    /// Whether the next value is a byte string.
    pub(crate) fn at_bin(&self) -> Result<bool, DecodeError> {
        Ok(matches!(
            self.peek()?,
            Marker::Bin8 | Marker::Bin16 | Marker::Bin32
        ))
    }

    /// Whether the next value is a string.
    pub(crate) fn at_str(&self) -> Result<bool, DecodeError> {
        Ok(matches!(
            self.peek()?,
            Marker::FixStr(_) | Marker::Str8 | Marker::Str16 | Marker::Str32
        ))
    }

    /// Whether the next value is an array.
    pub(crate) fn at_array(&self) -> Result<bool, DecodeError> {
        Ok(matches!(
            self.peek()?,
            Marker::FixArray(_) | Marker::Array16 | Marker::Array32
        ))
    }

    /// The length of the array that follows; capped by the bytes left, so
    /// a lying header cannot make callers over-allocate.
    pub(crate) fn array_len(&mut self) -> Result<usize, DecodeError> {
        let len = match self.marker()? {
            Marker::FixArray(n) => usize::from(n),
            m @ (Marker::Array16 | Marker::Array32) => self.length(m)?.unwrap_or(0),
            _ => return Err(DecodeError::Unexpected("an array")),
        };
        self.check_room(len)
    }

    pub(crate) fn map_len(&mut self) -> Result<usize, DecodeError> {
        let len = match self.marker()? {
            Marker::FixMap(n) => usize::from(n),
            m @ (Marker::Map16 | Marker::Map32) => self.length(m)?.unwrap_or(0),
            _ => return Err(DecodeError::Unexpected("a map")),
        };
        self.check_room(len)
    }

    /// Whether the next value is a map.
    pub(crate) fn at_map(&self) -> Result<bool, DecodeError> {
        Ok(matches!(
            self.peek()?,
            Marker::FixMap(_) | Marker::Map16 | Marker::Map32
        ))
    }

    fn check_room(&self, items: usize) -> Result<usize, DecodeError> {
        if items > self.buf.len() - self.pos {
            Err(DecodeError::Truncated)
        } else {
            Ok(items)
        }
    }

    /// Skips one value of any type.
    pub(crate) fn skip(&mut self) -> Result<(), DecodeError> {
        self.skip_at(0)
    }

    fn skip_at(&mut self, depth: usize) -> Result<(), DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        let m = self.marker()?;
        let (bytes, items) = match m {
            Marker::FixPos(_) | Marker::FixNeg(_) | Marker::Null | Marker::True | Marker::False => {
                (0, 0)
            }
            Marker::U8 | Marker::I8 => (1, 0),
            Marker::U16 | Marker::I16 => (2, 0),
            Marker::U32 | Marker::I32 | Marker::F32 => (4, 0),
            Marker::U64 | Marker::I64 | Marker::F64 => (8, 0),
            Marker::FixStr(n) => (usize::from(n), 0),
            Marker::Str8
            | Marker::Str16
            | Marker::Str32
            | Marker::Bin8
            | Marker::Bin16
            | Marker::Bin32 => (self.length(m)?.unwrap_or(0), 0),
            Marker::FixExt1 => (2, 0),
            Marker::FixExt2 => (3, 0),
            Marker::FixExt4 => (5, 0),
            Marker::FixExt8 => (9, 0),
            Marker::FixExt16 => (17, 0),
            Marker::Ext8 | Marker::Ext16 | Marker::Ext32 => (self.length(m)?.unwrap_or(0) + 1, 0),
            Marker::FixArray(n) => (0, usize::from(n)),
            Marker::Array16 | Marker::Array32 => (0, self.length(m)?.unwrap_or(0)),
            Marker::FixMap(n) => (0, 2 * usize::from(n)),
            Marker::Map16 | Marker::Map32 => (0, 2 * self.length(m)?.unwrap_or(0)),
            Marker::Reserved => return Err(DecodeError::Unexpected("a msgpack value")),
        };
        self.take(bytes)?;
        self.check_room(items)?;
        for _ in 0..items {
            self.skip_at(depth + 1)?;
        }
        Ok(())
    }

    /// Nesting guard for recursive readers.
    pub(crate) fn check_depth(depth: usize) -> Result<(), DecodeError> {
        if depth > MAX_DEPTH {
            Err(DecodeError::TooDeep)
        } else {
            Ok(())
        }
    }
}
