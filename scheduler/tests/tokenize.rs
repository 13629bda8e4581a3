//! Tokenization: a generated local tokenizer with a chat template, token-id
//! prompts, and vLLM's `/tokenize` on a (fake) pod.

mod common;

use common::{FakePod, TempDir, write_tokenizer};
use llmd_scheduler::tokenize::{LocalTokenizer, Prompt, TokenizeError, Tokenizers, VllmTokenizer};
use serde_json::json;
use std::time::Duration;

fn local() -> (TempDir, LocalTokenizer) {
    let dir = TempDir::new();
    write_tokenizer(&dir.0);
    let tokenizer = LocalTokenizer::from_dir(&dir.0).unwrap();
    (dir, tokenizer)
}

#[test]
fn chat_messages_are_rendered_with_the_template_then_encoded() {
    let (_dir, tokenizer) = local();
    let chat = Prompt::Chat(json!([
        {"role": "system", "content": "w1"},
        {"role": "user", "content": "w2 w3"},
    ]));
    let text =
        Prompt::Text("<s><|system|> w1 <|end|> <|user|> w2 w3 <|end|> <|assistant|>".to_owned());
    let from_chat = tokenizer.encode(&chat).unwrap();
    assert_eq!(from_chat, tokenizer.encode(&text).unwrap());
    assert_eq!(from_chat[0], 1, "<s> comes from the template's bos_token");
    assert_eq!(
        tokenizer.encode(&Prompt::TokenIds(vec![9, 8, 7])).unwrap(),
        [9, 8, 7]
    );
}

#[test]
fn bad_tokenizer_files_are_clear_errors() {
    let dir = TempDir::new();
    assert!(matches!(
        LocalTokenizer::from_dir(&dir.0),
        Err(TokenizeError::Load(_))
    ));
    write_tokenizer(&dir.0);
    dir.write(
        "tokenizer_config.json",
        r#"{"chat_template": "{% for m in messages %}"}"#,
    );
    assert!(matches!(
        LocalTokenizer::from_dir(&dir.0),
        Err(TokenizeError::Template(_))
    ));
    dir.write("tokenizer_config.json", "{}");
    let no_template = LocalTokenizer::from_dir(&dir.0).unwrap();
    assert!(matches!(
        no_template.encode(&Prompt::Chat(json!([]))),
        Err(TokenizeError::NoTemplate)
    ));
}

#[tokio::test]
async fn models_without_a_local_tokenizer_use_vllm_tokenize() {
    let pod = FakePod::start("t").await;
    let (_dir, tokenizer) = local();
    let client = llmd_runtime::http::OriginPools::new(None);
    let tokenizers = Tokenizers::new(Some(VllmTokenizer::new(client, Duration::from_secs(5))))
        .with_local("local", tokenizer);
    let prompt = Prompt::Text("w1 w22 w333".to_owned());
    assert_eq!(
        tokenizers
            .tokens("remote", &prompt, pod.addr)
            .await
            .unwrap(),
        [2, 3, 4]
    );
    assert_eq!(
        tokenizers.tokens("local", &prompt, pod.addr).await.unwrap(),
        [9, 30, 341]
    );
    let ids = Prompt::TokenIds(vec![5, 6]);
    assert_eq!(
        Tokenizers::new(None)
            .tokens("any", &ids, pod.addr)
            .await
            .unwrap(),
        [5, 6]
    );
    assert!(matches!(
        Tokenizers::new(None).tokens("any", &prompt, pod.addr).await,
        Err(TokenizeError::Remote("disabled"))
    ));
}

/// A `/tokenize` that answers with `status` and `body` after `delay`.
async fn tokenize_server(status: u16, body: &'static str, delay: Duration) -> std::net::SocketAddr {
    let app = axum::Router::new().route(
        "/tokenize",
        axum::routing::post(move || async move {
            tokio::time::sleep(delay).await;
            (axum::http::StatusCode::from_u16(status).unwrap(), body)
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test]
async fn vllm_tokenize_failures_are_named() {
    let tokenizer = VllmTokenizer::new(
        llmd_runtime::http::OriginPools::new(None),
        Duration::from_millis(300),
    );
    let prompt = Prompt::Text("w1".to_owned());
    let cases = [
        (500, "{}", Duration::ZERO, "status"),
        (200, "not json", Duration::ZERO, "body"),
        (200, "{\"count\":1}", Duration::ZERO, "body"),
        (200, "{\"tokens\":[1]}", Duration::from_secs(5), "timeout"),
    ];
    for (status, body, delay, expected) in cases {
        let pod = tokenize_server(status, body, delay).await;
        let result = tokenizer.tokenize(pod, "m", &prompt).await;
        assert!(
            matches!(result, Err(TokenizeError::Remote(reason)) if reason == expected),
            "{status} {body:?}: {result:?}"
        );
    }
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    assert!(matches!(
        tokenizer.tokenize(closed, "m", &prompt).await,
        Err(TokenizeError::Remote("connect"))
    ));
    let ok = tokenize_server(200, "{\"tokens\":[7,8]}", Duration::ZERO).await;
    assert_eq!(tokenizer.tokenize(ok, "m", &prompt).await.unwrap(), [7, 8]);
}
