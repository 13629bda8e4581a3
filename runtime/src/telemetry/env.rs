//! Reading settings through an environment lookup, turning every bad value
//! into a [`Warning`] and a fallback.

use super::warning::Warning;
use std::fmt::Display;
use std::str::FromStr;
use std::time::Duration;

/// Reads variables through `lookup` and collects the warnings.
pub(crate) struct EnvReader<F> {
    lookup: F,
    warnings: Vec<Warning>,
}

impl<F: Fn(&str) -> Option<String>> EnvReader<F> {
    pub(crate) fn new(lookup: F) -> Self {
        EnvReader {
            lookup,
            warnings: Vec::new(),
        }
    }

    /// The trimmed value of `name`; an empty value counts as unset.
    pub(crate) fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|value| value.trim().to_owned())
            .filter(|value| !value.is_empty())
    }

    /// The first of `names` that is set, with its name (signal-specific
    /// variables come before generic ones).
    pub(crate) fn first(&self, names: &[&'static str]) -> Option<(&'static str, String)> {
        names
            .iter()
            .find_map(|name| self.get(name).map(|value| (*name, value)))
    }

    /// Records a warning about `subject` having `value`.
    pub(crate) fn warn(&mut self, subject: &'static str, value: &str, message: impl Into<String>) {
        self.warnings.push(Warning::new(subject, value, message));
    }

    /// Parses the value of the first set variable of `names` with `parse`;
    /// unset gives `default`, a value `parse` rejects gives `default` and a
    /// warning saying what was `expected`.
    pub(crate) fn parse_first<T: Display>(
        &mut self,
        names: &[&'static str],
        default: T,
        expected: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> T {
        let Some((name, value)) = self.first(names) else {
            return default;
        };
        match parse(&value) {
            Some(parsed) => parsed,
            None => {
                self.warn(
                    name,
                    &value,
                    format!("expected {expected}; using {default}"),
                );
                default
            }
        }
    }

    /// A boolean (`true`/`false`, any case).
    pub(crate) fn bool(&mut self, names: &[&'static str], default: bool) -> bool {
        self.parse_first(names, default, "true or false", |value| {
            if value.eq_ignore_ascii_case("true") {
                Some(true)
            } else if value.eq_ignore_ascii_case("false") {
                Some(false)
            } else {
                None
            }
        })
    }

    /// A duration in whole milliseconds.
    pub(crate) fn millis(&mut self, names: &[&'static str], default: Duration) -> Duration {
        let parsed = self.parse_first(
            names,
            Millis(default),
            "a whole number of milliseconds",
            |value| {
                u64::from_str(value)
                    .ok()
                    .map(Duration::from_millis)
                    .map(Millis)
            },
        );
        parsed.0
    }

    /// A count greater than zero.
    pub(crate) fn positive(&mut self, name: &'static str, default: usize) -> usize {
        self.parse_first(&[name], default, "an integer greater than 0", |value| {
            usize::from_str(value).ok().filter(|n| *n > 0)
        })
    }

    /// The warnings recorded so far.
    pub(crate) fn into_warnings(self) -> Vec<Warning> {
        self.warnings
    }
}

/// A duration shown as milliseconds in warnings.
struct Millis(Duration);

impl Display for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ms", self.0.as_millis())
    }
}

/// Splits a `key=value,key=value` list (the W3C baggage-like format of
/// `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_EXPORTER_OTLP_HEADERS`) into
/// percent-decoded pairs; an entry that is not `key=value` with a non-empty
/// key, or whose escapes are invalid, is returned as `Err(entry)`.
pub(crate) fn key_value_list(list: &str) -> impl Iterator<Item = Result<(String, String), &str>> {
    list.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let (key, value) = entry.split_once('=').ok_or(entry)?;
            let key = percent_decode(key.trim()).ok_or(entry)?;
            let value = percent_decode(value.trim()).ok_or(entry)?;
            if key.is_empty() {
                return Err(entry);
            }
            Ok((key, value))
        })
}

/// Decodes `%XX` escapes; `None` when an escape is malformed or the result
/// is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_list_decodes_and_reports_bad_entries() {
        let parsed: Vec<_> = key_value_list("a=1, b = x%20y ,broken,=v,c=%zz,d=").collect();
        assert_eq!(
            parsed,
            vec![
                Ok(("a".into(), "1".into())),
                Ok(("b".into(), "x y".into())),
                Err("broken"),
                Err("=v"),
                Err("c=%zz"),
                Ok(("d".into(), String::new())),
            ]
        );
    }

    #[test]
    fn empty_value_counts_as_unset() {
        let reader = EnvReader::new(|_: &str| Some("  ".to_owned()));
        assert_eq!(reader.get("X"), None);
    }
}
