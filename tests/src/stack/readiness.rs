//! Waiting until a component answers: `GET /health`, and for the
//! scheduler, every pod's metrics being fresh.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Pause between two readiness probes.
const PROBE_PERIOD: Duration = Duration::from_millis(25);

/// Timeout of one probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The status and body of `GET path` on `address` (plain HTTP/1.1, one
/// connection per call; enough for health and metrics probes, no async
/// runtime needed).
pub fn http_get(address: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&address, PROBE_TIMEOUT)?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_ascii_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP response"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or_else(String::new, |(_, body)| body.to_owned());
    Ok((status, body))
}

/// Polls `GET path` on `address` until `ready` accepts the answer or
/// `timeout` passes; returns the last answer (or probe error) on timeout.
pub fn wait_until(
    address: SocketAddr,
    path: &str,
    timeout: Duration,
    ready: impl Fn(u16, &str) -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match http_get(address, path) {
            Ok((status, body)) if ready(status, &body) => return Ok(()),
            Ok((status, _)) => format!("HTTP {status}"),
            Err(error) => error.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(last);
        }
        std::thread::sleep(PROBE_PERIOD);
    }
}

/// Whether the scheduler's Prometheus text says `pods` pods have fresh
/// metrics.
pub fn all_pods_ready(metrics: &str, pods: usize) -> bool {
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix("llmd_scheduler_pods_ready "))
        .any(|value| value.trim().parse::<f64>().is_ok_and(|n| n >= pods as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_pods_are_read_from_the_scheduler_metrics() {
        let text = "# TYPE llmd_scheduler_pods_ready gauge\nllmd_scheduler_pods_ready 3\nllmd_scheduler_pods 3\n";
        assert!(all_pods_ready(text, 3));
        assert!(!all_pods_ready(text, 4));
        assert!(!all_pods_ready("llmd_scheduler_pods 3\n", 1));
    }

    #[test]
    fn a_closed_port_is_an_error_not_a_panic() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        assert!(http_get(address, "/health").is_err());
        let waited = wait_until(address, "/health", Duration::from_millis(60), |s, _| {
            s == 200
        });
        assert!(waited.is_err());
    }
}
