//! The Kubernetes API, reached from inside a pod as client-go's in-cluster
//! configuration does: `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`,
//! the server verified with the service account's `ca.crt` alone, each
//! request carrying its (rotated, so re-read) token.

use super::resources::WatchEvent;
use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where Kubernetes mounts the pod's service account.
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Overrides [`SERVICE_ACCOUNT_DIR`] (for a service account mounted
/// elsewhere, and for tests).
pub const SERVICE_ACCOUNT_DIR_ENV: &str = "LLMD_SERVICE_ACCOUNT_DIR";

/// Time limit of a get or a list.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Time limit of opening a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the API server keeps a watch open (`timeoutSeconds`); the
/// client gives up a little later, so that a connection that died without
/// a word does not hold the watch forever.
const WATCH_SECONDS: u64 = 290;
const WATCH_GRACE: Duration = Duration::from_secs(30);

/// Longest line of a watch stream (one object).
const MAX_EVENT_BYTES: usize = 8 << 20;

/// Why the API could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// Not in a pod: a variable of the in-cluster configuration is unset.
    #[error("not running in Kubernetes: {0} is not set")]
    NotInCluster(&'static str),
    /// A service account file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The API's address or the client is unusable.
    #[error("cannot set up the Kubernetes API client: {0}")]
    Client(String),
    /// The request failed (connection, timeout, a body cut short).
    #[error("{what}: {source}")]
    Request {
        /// What was asked for.
        what: String,
        /// Why.
        source: reqwest::Error,
    },
    /// The API answered with an error status (403: the service account
    /// lacks the permission; 404: no such object).
    #[error("{what}: HTTP {status}")]
    Status {
        /// What was asked for.
        what: String,
        /// The status.
        status: StatusCode,
    },
    /// The answer is not the JSON expected.
    #[error("{what}: unexpected answer: {reason}")]
    Decode {
        /// What was asked for.
        what: String,
        /// Why.
        reason: String,
    },
}

impl KubeError {
    /// Makes the error of a failed request for `what`.
    fn request(what: &str) -> impl FnOnce(reqwest::Error) -> KubeError + '_ {
        move |source| KubeError::Request {
            what: what.to_owned(),
            source,
        }
    }

    /// The error of an answer to `what` that is not the JSON expected.
    fn decode(what: &str, reason: impl ToString) -> KubeError {
        KubeError::Decode {
            what: what.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// A client of the cluster's API server.
#[derive(Clone, Debug)]
pub struct KubeApi {
    client: reqwest::Client,
    base: Url,
    token_file: PathBuf,
}

impl KubeApi {
    /// The in-cluster client: the API server from `KUBERNETES_SERVICE_HOST`
    /// and `KUBERNETES_SERVICE_PORT`, the service account from
    /// `/var/run/secrets/kubernetes.io/serviceaccount` (or
    /// `LLMD_SERVICE_ACCOUNT_DIR`), read through `env`.
    pub fn in_cluster(env: impl Fn(&str) -> Option<String>) -> Result<KubeApi, KubeError> {
        let host = env("KUBERNETES_SERVICE_HOST")
            .ok_or(KubeError::NotInCluster("KUBERNETES_SERVICE_HOST"))?;
        let port = env("KUBERNETES_SERVICE_PORT")
            .ok_or(KubeError::NotInCluster("KUBERNETES_SERVICE_PORT"))?;
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        let base = Url::parse(&format!("https://{host}:{port}/")).map_err(|error| {
            KubeError::Client(format!("API server https://{host}:{port}: {error}"))
        })?;
        let account = env(SERVICE_ACCOUNT_DIR_ENV).unwrap_or_else(|| SERVICE_ACCOUNT_DIR.into());
        let account = Path::new(&account);
        let ca = read(&account.join("ca.crt"))?;
        let token_file = account.join("token");
        read(&token_file)?;
        llmd_runtime::http::install_crypto_provider();
        let certificates = reqwest::Certificate::from_pem_bundle(&ca)
            .map_err(|error| KubeError::Client(format!("{}: {error}", account.display())))?;
        let client = reqwest::Client::builder()
            .tls_certs_only(certificates)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|error| KubeError::Client(error.to_string()))?;
        Ok(KubeApi {
            client,
            base,
            token_file,
        })
    }

    /// The URL of `path` with `query`.
    pub fn url(&self, path: &str, query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        url.set_path(path);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// Gets `url` as JSON.
    pub async fn get<T: DeserializeOwned>(&self, url: Url) -> Result<T, KubeError> {
        let what = format!("GET {}", url.path());
        let response = self.send(url, REQUEST_TIMEOUT, &what).await?;
        let body = response.bytes().await.map_err(KubeError::request(&what))?;
        serde_json::from_slice(&body).map_err(|error| KubeError::decode(&what, error))
    }

    /// Watches `url` (a list URL; `watch` and `timeoutSeconds` are added)
    /// from `resource_version`.
    pub async fn watch(
        &self,
        mut url: Url,
        resource_version: &str,
    ) -> Result<WatchStream, KubeError> {
        url.query_pairs_mut()
            .append_pair("watch", "true")
            .append_pair("allowWatchBookmarks", "true")
            .append_pair("resourceVersion", resource_version)
            .append_pair("timeoutSeconds", &WATCH_SECONDS.to_string());
        let what = format!("watch {}", url.path());
        let limit = Duration::from_secs(WATCH_SECONDS) + WATCH_GRACE;
        let response = self.send(url, limit, &what).await?;
        Ok(WatchStream {
            response,
            lines: Lines::default(),
            what,
        })
    }

    async fn send(
        &self,
        url: Url,
        timeout: Duration,
        what: &str,
    ) -> Result<reqwest::Response, KubeError> {
        let token = read(&self.token_file)?;
        let token = String::from_utf8_lossy(&token);
        let response = self
            .client
            .get(url)
            .bearer_auth(token.trim())
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(timeout)
            .send()
            .await
            .map_err(KubeError::request(what))?;
        if !response.status().is_success() {
            return Err(KubeError::Status {
                what: what.to_owned(),
                status: response.status(),
            });
        }
        Ok(response)
    }
}

fn read(path: &Path) -> Result<Vec<u8>, KubeError> {
    std::fs::read(path).map_err(|source| KubeError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The events of a watch, one JSON object per line.
#[derive(Debug)]
pub struct WatchStream {
    response: reqwest::Response,
    lines: Lines,
    what: String,
}

impl WatchStream {
    /// The next event; `None` when the server ended the watch.
    pub async fn next(&mut self) -> Result<Option<WatchEvent>, KubeError> {
        loop {
            if let Some(line) = self.lines.next_line() {
                return self.event(&line).map(Some);
            }
            let chunk = self.response.chunk().await;
            match chunk.map_err(KubeError::request(&self.what))? {
                Some(chunk) => self
                    .lines
                    .push(&chunk)
                    .map_err(|reason| KubeError::decode(&self.what, reason))?,
                None => {
                    return match self.lines.rest() {
                        Some(line) => self.event(&line).map(Some),
                        None => Ok(None),
                    };
                }
            }
        }
    }

    fn event(&self, line: &[u8]) -> Result<WatchEvent, KubeError> {
        serde_json::from_slice(line).map_err(|error| KubeError::decode(&self.what, error))
    }
}

/// Splits a byte stream into its non-blank lines.
#[derive(Debug, Default)]
struct Lines {
    buffer: Vec<u8>,
}

impl Lines {
    /// Appends `chunk`; fails when a line grows past [`MAX_EVENT_BYTES`].
    fn push(&mut self, chunk: &[u8]) -> Result<(), &'static str> {
        self.buffer.extend_from_slice(chunk);
        let unfinished = match memchr::memrchr(b'\n', &self.buffer) {
            Some(end) => self.buffer.len() - end - 1,
            None => self.buffer.len(),
        };
        if unfinished > MAX_EVENT_BYTES {
            return Err("a watch event is over 8 MiB");
        }
        Ok(())
    }

    /// The next complete non-blank line, without its end.
    fn next_line(&mut self) -> Option<Vec<u8>> {
        while let Some(end) = memchr::memchr(b'\n', &self.buffer) {
            let line: Vec<u8> = self.buffer.drain(..=end).collect();
            if !line.trim_ascii().is_empty() {
                return Some(line);
            }
        }
        None
    }

    /// What is left after the stream ended, if it is not blank.
    fn rest(&mut self) -> Option<Vec<u8>> {
        let rest = std::mem::take(&mut self.buffer);
        (!rest.trim_ascii().is_empty()).then_some(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_across_chunks_and_blank_ones_skipped() {
        let mut lines = Lines::default();
        lines.push(b"{\"a\":1}\n\n{\"b\"").unwrap();
        assert_eq!(lines.next_line().as_deref(), Some(&b"{\"a\":1}\n"[..]));
        assert_eq!(lines.next_line(), None);
        lines.push(b":2}\n{\"c\":3}").unwrap();
        assert_eq!(lines.next_line().as_deref(), Some(&b"{\"b\":2}\n"[..]));
        assert_eq!(lines.next_line(), None);
        assert_eq!(lines.rest().as_deref(), Some(&b"{\"c\":3}"[..]));
        assert_eq!(lines.rest(), None);
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut lines = Lines::default();
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..8 {
            lines.push(&chunk).unwrap();
        }
        assert!(lines.push(b"x").is_err());
    }

    #[test]
    fn the_in_cluster_client_needs_the_service_variables_and_account() {
        let none = |_: &str| None;
        assert!(matches!(
            KubeApi::in_cluster(none),
            Err(KubeError::NotInCluster("KUBERNETES_SERVICE_HOST"))
        ));
        let missing_account = |name: &str| match name {
            "KUBERNETES_SERVICE_HOST" => Some("10.0.0.1".to_owned()),
            "KUBERNETES_SERVICE_PORT" => Some("443".to_owned()),
            SERVICE_ACCOUNT_DIR_ENV => Some("/nonexistent/account".to_owned()),
            _ => None,
        };
        let error = KubeApi::in_cluster(missing_account)
            .unwrap_err()
            .to_string();
        assert!(error.contains("/nonexistent/account/ca.crt"), "{error}");
    }
}
