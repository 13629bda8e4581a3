//! TLS on the listener (self-signed or from --cert-path) and towards the
//! prefiller and the decoder; upstream redirects, over TLS and plain HTTP.

mod common;

use common::*;
use llmd_pd_proxy::config::{ListenerTls, UpstreamTls};
use serde_json::Value;

fn tls_client(trusted_pem: Option<&str>) -> reqwest::Client {
    llmd_runtime::http::install_crypto_provider();
    let builder = reqwest::Client::builder().no_proxy();
    let builder = match trusted_pem {
        Some(pem) => {
            builder.tls_certs_only([reqwest::Certificate::from_pem(pem.as_bytes()).unwrap()])
        }
        None => builder.tls_danger_accept_invalid_certs(true),
    };
    builder.build().unwrap()
}

#[tokio::test]
async fn self_signed_listener_serves_https_p_d_requests() {
    let prefill = Fake::start(prefiller()).await;
    let decoder = Fake::start(decoder()).await;
    let mut c = config(&decoder);
    c.listener_tls = ListenerTls::SelfSigned;
    let proxy = start_proxy(c).await;
    let response = tls_client(None)
        .post(format!(
            "https://localhost:{}/v1/chat/completions",
            proxy.address().port()
        ))
        .header("x-prefiller-host-port", prefill.host_port())
        .body(chat_body(true).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let events = sse_events(&response.text().await.unwrap());
    assert_eq!(
        events[3]["usage"]["prompt_tokens_details"]["cached_tokens"],
        48
    );

    let plain = client()
        .get(format!("http://{}/health", proxy.address()))
        .send()
        .await;
    assert!(
        plain.map(|r| !r.status().is_success()).unwrap_or(true),
        "plain HTTP is not served"
    );
}

#[tokio::test]
async fn listener_uses_the_certificate_in_cert_path() {
    let decoder = Fake::start(decoder()).await;
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = std::env::temp_dir().join(format!("pd-proxy-tls-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tls.crt"), certified.cert.pem()).unwrap();
    std::fs::write(dir.join("tls.key"), certified.signing_key.serialize_pem()).unwrap();
    let mut c = config(&decoder);
    c.listener_tls = ListenerTls::CertDir(dir);
    let proxy = start_proxy(c).await;
    let response = tls_client(Some(&certified.cert.pem()))
        .get(format!(
            "https://localhost:{}/health",
            proxy.address().port()
        ))
        .send()
        .await
        .expect("the client trusting only the cert-path certificate connects");
    assert_eq!(response.status(), 200);

    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let refused = tls_client(Some(&other.cert.pem()))
        .get(format!(
            "https://localhost:{}/health",
            proxy.address().port()
        ))
        .send()
        .await;
    assert!(refused.is_err(), "a different certificate is not accepted");
}

#[tokio::test]
async fn upstreams_are_called_over_tls_when_enabled() {
    let prefill = Fake::start_tls(prefiller()).await;
    let decoder = Fake::start_tls(decoder()).await;
    let mut c = config(&decoder);
    c.prefiller_tls = INSECURE_TLS;
    c.decoder_tls = INSECURE_TLS;
    let proxy = start_proxy(c).await;
    let response = post_pd_chat(&proxy, &prefill, false).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(
        answer["usage"]["prompt_tokens_details"]["cached_tokens"],
        48
    );
    assert_eq!(
        decoder.seen()[0].json()["kv_transfer_params"],
        prefiller_params()
    );
    let decode_only = post(&proxy, "/v1/chat/completions", None, &chat_body(true)).await;
    assert_eq!(decode_only.status(), 200);
    assert_eq!(sse_events(&decode_only.text().await.unwrap()).len(), 4);
    assert_eq!(
        decoder.seen().len(),
        2,
        "the pass-through also goes over TLS"
    );

    let mut c = config(&decoder);
    c.prefiller_tls = UpstreamTls {
        enabled: true,
        insecure_skip_verify: false,
    };
    c.decoder_tls = INSECURE_TLS;
    c.prefill_retry.max_retries = 0;
    let verifying = start_proxy(c).await;
    let response = post_pd_chat(&verifying, &prefill, false).await;
    assert_vllm_error(response, 502).await;
    assert_eq!(
        prefill.seen().len(),
        1,
        "the untrusted prefiller got no request"
    );
}

#[tokio::test]
async fn a_tls_decoder_that_never_answers_the_handshake_is_a_502_after_the_connect_timeout() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut connections = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            connections.push(stream);
        }
    });
    let decoder = Fake::start(decoder()).await;
    let mut c = config(&decoder);
    c.vllm_port = port;
    c.decoder_tls = INSECURE_TLS;
    c.connect_timeout = std::time::Duration::from_millis(200);
    let proxy = start_proxy(c).await;
    let response = tokio::time::timeout(
        UNLESS_CONNECT_TIMES_OUT,
        post(&proxy, "/v1/models", None, &serde_json::json!({})),
    )
    .await
    .expect("the connect timeout covers the TLS handshake");
    assert_vllm_error(response, 502).await;
    held.abort();
}

/// A reverse proxy hands a redirect to its client: following it would let
/// a prefiller send the proxy's request (with the client's headers and
/// prompt) to a host SSRF protection never checked.
async fn redirects_are_passed_back_not_followed(tls: bool) {
    let start = |behaviour| async move {
        if tls {
            Fake::start_tls(behaviour).await
        } else {
            Fake::start(behaviour).await
        }
    };
    let internal = start(prefiller()).await;
    let scheme = if tls { "https" } else { "http" };
    let elsewhere = format!("{scheme}://{}/v1/chat/completions", internal.host_port());
    let redirecting: Behaviour = {
        let elsewhere = elsewhere.clone();
        std::sync::Arc::new(move |_| Reply::Redirect(elsewhere.clone()))
    };
    let prefill = start(redirecting.clone()).await;
    let decoder = start(redirecting).await;
    let upstream_tls = if tls {
        INSECURE_TLS
    } else {
        UpstreamTls::default()
    };
    let mut c = config(&decoder);
    c.prefiller_tls = upstream_tls;
    c.decoder_tls = upstream_tls;
    c.allowed_prefill_hosts = Some(vec![prefill.host_port()]);
    let proxy = start_proxy(c).await;

    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = format!("http://{}/v1/chat/completions", proxy.address());
    let body = chat_body(false).to_string();
    let pd = client
        .post(&url)
        .header("x-prefiller-host-port", prefill.host_port())
        .body(body.clone())
        .send()
        .await
        .unwrap();
    let decode_only = client.post(&url).body(body).send().await.unwrap();
    for response in [pd, decode_only] {
        assert_eq!(response.status(), 307);
        assert_eq!(response.headers()["location"], elsewhere.as_str());
    }
    assert_eq!(prefill.seen().len(), 1);
    assert_eq!(decoder.seen().len(), 1, "only the decode-only request");
    assert!(internal.seen().is_empty(), "the redirect was followed");
}

#[tokio::test]
async fn redirects_from_tls_upstreams_are_passed_back_not_followed() {
    redirects_are_passed_back_not_followed(true).await;
}

#[tokio::test]
async fn redirects_from_plain_upstreams_are_passed_back_not_followed() {
    redirects_are_passed_back_not_followed(false).await;
}

/// Sends `request` (raw HTTP/1.1, `connection: close`) to `proxy` and
/// returns the status line.
async fn raw_request(proxy: &llmd_pd_proxy::Proxy, request: String) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(proxy.address())
        .await
        .unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    answer.lines().next().unwrap_or_default().to_owned()
}

/// The header names an upstream received, sorted.
fn header_names(seen: &Seen) -> Vec<String> {
    let mut names: Vec<String> = seen.headers.keys().map(|n| n.to_string()).collect();
    names.sort();
    names
}

#[tokio::test]
async fn tls_upstreams_get_the_same_headers_as_plain_ones_on_kept_alive_connections() {
    let body = chat_body(false).to_string();
    let requests = |prefiller: &Fake| {
        let pd = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: proxy\r\ncontent-type: application/json\r\n\
             x-prefiller-host-port: {}\r\nx-request-id: r-1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            prefiller.host_port(),
            body.len()
        );
        let pass_through =
            "GET /v1/models HTTP/1.1\r\nhost: proxy\r\nx-custom: 1\r\nconnection: close\r\n\r\n"
                .to_owned();
        [pd, pass_through]
    };
    let mut received = Vec::new();
    for tls in [false, true] {
        let (prefill, decoder) = if tls {
            (
                Fake::start_tls(prefiller()).await,
                Fake::start_tls(decoder()).await,
            )
        } else {
            (Fake::start(prefiller()).await, Fake::start(decoder()).await)
        };
        let mut c = config(&decoder);
        if tls {
            c.prefiller_tls = INSECURE_TLS;
            c.decoder_tls = INSECURE_TLS;
        }
        let proxy = start_proxy(c).await;
        for request in requests(&prefill) {
            let status = raw_request(&proxy, request).await;
            assert!(status.starts_with("HTTP/1.1 200"), "tls {tls}: {status}");
        }
        assert_eq!(
            decoder.connections(),
            1,
            "tls {tls}: one kept-alive connection"
        );
        let seen = decoder.seen();
        received.push((
            header_names(&prefill.seen()[0]),
            header_names(&seen[0]),
            header_names(&seen[1]),
            seen[1].header("host") == Some(decoder.host_port().as_str()),
        ));
    }
    assert_eq!(received[1].0, received[0].0, "prefill leg");
    assert_eq!(received[1].1, received[0].1, "decode leg");
    assert_eq!(received[1].2, received[0].2, "pass-through");
    assert!(
        !received[1].2.contains(&"accept".to_owned()),
        "no header the client did not send: {:?}",
        received[1].2
    );
    assert!(
        received.iter().all(|(_, _, _, own_host)| *own_host),
        "the pass-through names the decoder's own authority as host"
    );
}
