//! Go's syntax for flags, durations and booleans, as llm-d's sidecar (a
//! Go program) reads its command line and environment.

use std::ffi::OsString;
use std::time::Duration;

/// Rewrites Go-style single-dash long flags (`-port=8000`, `-secure-proxy`)
/// as `--port=8000`: Go's flag package reads one dash and two alike, and
/// llm-d's older manifests and documents use one. Single-letter flags
/// (`-v=5`), values and everything after `--` are left as they are.
pub(super) fn go_style_flags<I, T>(args: I) -> Vec<OsString>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let mut rest_are_values = false;
    args.into_iter()
        .enumerate()
        .map(|(index, arg)| {
            let arg: OsString = arg.into();
            if index == 0 || rest_are_values {
                return arg;
            }
            let Some(text) = arg.to_str() else {
                return arg;
            };
            if text == "--" {
                rest_are_values = true;
                return arg;
            }
            let name = text
                .strip_prefix('-')
                .filter(|name| !name.starts_with('-'))
                .map(|name| name.split_once('=').map_or(name, |(name, _)| name));
            match name {
                Some(name)
                    if name.len() > 1
                        && name.starts_with(|c: char| c.is_ascii_alphabetic())
                        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') =>
                {
                    OsString::from(format!("-{text}"))
                }
                _ => arg,
            }
        })
        .collect()
}

/// A duration as Go's `time.ParseDuration` reads it (`300ms`, `1.5h`,
/// `2h45m`; units ns, us, µs, ms, s, m, h), not negative.
pub(super) fn go_duration(text: &str) -> Option<Duration> {
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest.is_empty() {
        return None;
    }
    let mut nanos = 0f64;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        nanos += number * unit;
        rest = &rest[unit_end..];
    }
    (nanos < u64::MAX as f64).then(|| Duration::from_nanos(nanos as u64))
}

/// A boolean as Go's `strconv.ParseBool` reads it.
pub(super) fn go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style_single_dash_flags_are_read_as_go_reads_them() {
        let argv = [
            "prog",
            "-port=1",
            "-v=5",
            "-vllm-port",
            "2",
            "--x",
            "-",
            "--",
            "-y",
        ];
        let rewritten: Vec<String> = go_style_flags(argv)
            .into_iter()
            .map(|arg| arg.into_string().unwrap())
            .collect();
        assert_eq!(
            rewritten,
            [
                "prog",
                "--port=1",
                "-v=5",
                "--vllm-port",
                "2",
                "--x",
                "-",
                "--",
                "-y"
            ]
        );
    }

    #[test]
    fn go_durations_are_read_as_go_reads_them() {
        let ms = |text: &str| go_duration(text).map(|d| d.as_secs_f64() * 1000.0);
        assert_eq!(ms("200ms"), Some(200.0));
        assert_eq!(ms("1.5s"), Some(1500.0));
        assert_eq!(ms("1m30s"), Some(90_000.0));
        assert_eq!(ms("0"), Some(0.0));
        assert_eq!(ms("250us"), Some(0.25));
        assert_eq!(ms(".5s"), Some(500.0));
        for bad in ["", "200", "-1s", "1x", "1..2s", "s", "1e3s"] {
            assert_eq!(go_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn booleans_are_read_as_go_reads_them() {
        for text in ["1", "t", "T", "true", "TRUE", "True"] {
            assert_eq!(go_bool(text), Some(true), "{text}");
        }
        for text in ["0", "f", "F", "false", "FALSE", "False"] {
            assert_eq!(go_bool(text), Some(false), "{text}");
        }
        for text in ["yes", "tRUE", "", "2"] {
            assert_eq!(go_bool(text), None, "{text}");
        }
    }
}
