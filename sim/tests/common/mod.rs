//! Helpers shared by the simulator's integration tests.
#![allow(dead_code)]

use llmd_sim::{SimConfig, SimServer};
use serde_json::Value;

/// A simulator serving on an ephemeral loopback port.
pub struct Sim {
    pub server: SimServer,
    pub base: String,
    pub client: reqwest::Client,
}

impl Sim {
    /// Starts `config` with an empty environment.
    pub async fn start(config: SimConfig) -> Sim {
        Sim::start_with_env(config, |_| None).await
    }

    /// Starts `config` with environment lookup `env`.
    pub async fn start_with_env(config: SimConfig, env: impl Fn(&str) -> Option<String>) -> Sim {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = SimServer::start(config, listener, env).await.unwrap();
        let base = format!("http://{}", server.local_addr());
        Sim {
            server,
            base,
            client: client(),
        }
    }

    /// POSTs `body` to `path`; returns the status and the JSON answer.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// GETs `path` as text.
    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// The value of one sample line of `/metrics` whose name and labels
    /// start with `prefix`.
    pub async fn metric(&self, prefix: &str) -> f64 {
        let (_, text) = self.get_text("/metrics").await;
        text.lines()
            .find(|line| line.starts_with(prefix))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("no sample {prefix} in:\n{text}"))
    }
}

/// An HTTP client (reqwest is built without a default TLS provider).
pub fn client() -> reqwest::Client {
    llmd_runtime::http::install_crypto_provider();
    reqwest::Client::new()
}

/// A prompt of `words` distinct words starting at `from`.
pub fn words(from: usize, count: usize) -> String {
    (from..from + count)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `data:` payloads of a server-sent-events body.
pub fn sse_data(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}
