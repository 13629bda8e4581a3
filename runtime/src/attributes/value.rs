//! Attribute values that are metadata by construction.
//!
//! A value can be recorded under a key of kind `K` only if its type
//! implements [`MetadataValue<K>`]. The implementations are deliberately
//! few: integers, floats, bools, `&'static str`, [`Identifier`], enums that
//! implement [`AttributeEnum`], and arrays of strings. `String`, borrowed
//! `&str`, [`Sensitive`](crate::attributes::Sensitive) and any type that only
//! has `Debug`/`Display` implement none of them, so code that tries to record
//! them does not compile. There are no integer arrays on purpose: a slice of
//! integers cannot be told apart from a slice of token ids.

use super::Identifier;
use opentelemetry::{Array, StringValue, Value};

/// Marker types naming the value kind of an attribute key.
pub mod kind {
    /// Marker for the kind of a key, as named in error messages.
    pub trait Kind: sealed::Sealed {
        /// The kind's name in documentation.
        const NAME: &'static str;
    }

    mod sealed {
        pub trait Sealed {}
    }

    macro_rules! kinds {
        ($($(#[$doc:meta])* $name:ident = $text:literal;)*) => {$(
            $(#[$doc])*
            #[derive(Debug)]
            pub enum $name {}
            impl sealed::Sealed for $name {}
            impl Kind for $name {
                const NAME: &'static str = $text;
            }
        )*};
    }

    kinds! {
        /// A signed 64-bit integer: counts, sizes, ports, status codes.
        Int = "int";
        /// A 64-bit float: ratios, scores, durations.
        Float = "float";
        /// A boolean flag or decision.
        Bool = "bool";
        /// A bounded string: `&'static str`, an enum label or an `Identifier`.
        Str = "string";
        /// An array of bounded strings.
        StrArray = "string[]";
    }
}

use kind::Kind;

/// A value that may be recorded under an attribute key of kind `K`.
///
/// Implemented only for types that cannot carry request or response content.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be recorded as a `{K}` span attribute",
    label = "not a metadata value of this kind",
    note = "span attributes are metadata only: integers, floats and bools for counts and timings; \
            `&'static str`, an `AttributeEnum` or `llmd_runtime::Identifier` for names and ids",
    note = "a `String`, a borrowed `&str` or a `Sensitive<T>` may carry prompt or response text and is \
            never recorded; wrap ids and names in `Identifier::new(..)`"
)]
pub trait MetadataValue<K: Kind> {
    /// Converts the value to an OpenTelemetry attribute value.
    fn into_value(self) -> Value;
}

macro_rules! int_values {
    ($($t:ty),*) => {$(
        impl MetadataValue<kind::Int> for $t {
            #[inline]
            fn into_value(self) -> Value {
                Value::I64(i64::try_from(self).unwrap_or(i64::MAX))
            }
        }
        impl MetadataValue<kind::Int> for &$t {
            #[inline]
            fn into_value(self) -> Value {
                MetadataValue::<kind::Int>::into_value(*self)
            }
        }
    )*};
}
int_values!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize);

macro_rules! float_values {
    ($($t:ty),*) => {$(
        impl MetadataValue<kind::Float> for $t {
            #[inline]
            fn into_value(self) -> Value {
                Value::F64(f64::from(self))
            }
        }
        impl MetadataValue<kind::Float> for &$t {
            #[inline]
            fn into_value(self) -> Value {
                Value::F64(f64::from(*self))
            }
        }
    )*};
}
float_values!(f32, f64);

impl MetadataValue<kind::Bool> for bool {
    #[inline]
    fn into_value(self) -> Value {
        Value::Bool(self)
    }
}

impl MetadataValue<kind::Bool> for &bool {
    #[inline]
    fn into_value(self) -> Value {
        Value::Bool(*self)
    }
}

impl MetadataValue<kind::Str> for &'static str {
    #[inline]
    fn into_value(self) -> Value {
        Value::String(StringValue::from(self))
    }
}

impl MetadataValue<kind::Str> for Identifier {
    #[inline]
    fn into_value(self) -> Value {
        Value::String(self.into_string_value())
    }
}

impl MetadataValue<kind::Str> for &Identifier {
    #[inline]
    fn into_value(self) -> Value {
        Value::String(self.clone().into_string_value())
    }
}

/// An enum (or any type) whose values map to a fixed set of static labels,
/// recordable as a string attribute.
///
/// ```
/// use llmd_runtime::attributes::AttributeEnum;
///
/// enum Decision { DecodeOnly, PrefillDecode }
///
/// impl AttributeEnum for Decision {
///     fn label(&self) -> &'static str {
///         match self {
///             Decision::DecodeOnly => "decode_only",
///             Decision::PrefillDecode => "prefill_decode",
///         }
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be recorded as a string span attribute",
    label = "not a metadata value",
    note = "string attributes are `&'static str`, an `AttributeEnum` or `llmd_runtime::Identifier`",
    note = "a `String`, a borrowed `&str` or a `Sensitive<T>` may carry prompt or response text and is \
            never recorded; wrap ids and names in `Identifier::new(..)`"
)]
pub trait AttributeEnum {
    /// The static label recorded for this value.
    fn label(&self) -> &'static str;
}

impl<T: AttributeEnum + ?Sized> AttributeEnum for &T {
    #[inline]
    fn label(&self) -> &'static str {
        (**self).label()
    }
}

impl<T: AttributeEnum> MetadataValue<kind::Str> for T {
    #[inline]
    fn into_value(self) -> Value {
        Value::String(StringValue::from(self.label()))
    }
}

/// An element of a string array attribute.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an element of a `string[]` span attribute",
    note = "elements must be `&'static str`, an `AttributeEnum` or `llmd_runtime::Identifier`"
)]
pub trait MetadataStr {
    /// The element as an OpenTelemetry string.
    fn to_string_value(&self) -> StringValue;
}

impl MetadataStr for &'static str {
    fn to_string_value(&self) -> StringValue {
        StringValue::from(*self)
    }
}

impl MetadataStr for Identifier {
    fn to_string_value(&self) -> StringValue {
        self.clone().into_string_value()
    }
}

impl<T: AttributeEnum> MetadataStr for T {
    fn to_string_value(&self) -> StringValue {
        StringValue::from(self.label())
    }
}

impl<T: MetadataStr> MetadataValue<kind::StrArray> for &[T] {
    fn into_value(self) -> Value {
        Value::Array(Array::String(
            self.iter().map(MetadataStr::to_string_value).collect(),
        ))
    }
}

impl<T: MetadataStr> MetadataValue<kind::StrArray> for &Vec<T> {
    fn into_value(self) -> Value {
        MetadataValue::<kind::StrArray>::into_value(self.as_slice())
    }
}

impl<T: MetadataStr, const N: usize> MetadataValue<kind::StrArray> for [T; N] {
    fn into_value(self) -> Value {
        MetadataValue::<kind::StrArray>::into_value(&self[..])
    }
}

/// Builds a key-value pair, checking at compile time that `value` is
/// metadata of kind `K`. This is what `#[traced_span]`, `record!` and
/// `event!` expand to.
#[inline]
pub fn key_value<K: Kind, V: MetadataValue<K>>(
    key: &'static str,
    value: V,
) -> opentelemetry::KeyValue {
    opentelemetry::KeyValue::new(key, value.into_value())
}
