//! [`Sensitive`]: a wrapper for prompt, message and completion fields.

use std::fmt;

/// Wraps a value that may carry request or response content (a prompt, a
/// chat message, a completion, token ids).
///
/// It implements none of the attribute value traits, so it cannot be
/// recorded on a span, and its `Debug` and `Display` print only a
/// placeholder, so it cannot leak through logs or error messages either.
/// Use [`Sensitive::expose`] where the content is really needed.
#[derive(Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
pub struct Sensitive<T>(T);

/// What `Debug` and `Display` print for a [`Sensitive`] value.
pub const REDACTED: &str = "<redacted>";

impl<T> Sensitive<T> {
    /// Wraps a value.
    pub const fn new(value: T) -> Self {
        Sensitive(value)
    }

    /// The content, for the code that must use it.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Unwraps the content.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Sensitive<T> {
    fn from(value: T) -> Self {
        Sensitive(value)
    }
}

impl<T> fmt::Debug for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T> fmt::Display for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_never_shows_the_content() {
        let prompt = Sensitive::new(String::from("my bank password is hunter2"));
        assert_eq!(format!("{prompt}"), REDACTED);
        assert_eq!(format!("{prompt:?}"), REDACTED);
        assert_eq!(format!("{:#?}", Some(&prompt)), "Some(\n    <redacted>,\n)");
        assert_eq!(prompt.expose(), "my bank password is hunter2");
    }
}
