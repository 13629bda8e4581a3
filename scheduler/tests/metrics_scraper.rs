//! Metrics scraping against a real HTTP `/metrics` that answers well,
//! answers garbage, fails, hangs, or is not there at all.

mod common;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::wait_until;
use llmd_scheduler::metrics_scraper::{ScrapeSettings, Scraper, scrape_once};
use llmd_scheduler::pool::{EndpointSpec, Health, Load, Pool};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

const GOOD: u8 = 0;
const GARBAGE: u8 = 1;
const FAILING: u8 = 2;
const HANGING: u8 = 3;

async fn metrics(State(mode): State<Arc<AtomicU8>>) -> Response {
    match mode.load(Ordering::Relaxed) {
        GOOD => "vllm:num_requests_waiting{model_name=\"m\"} 4\n\
                 vllm:num_requests_running{model_name=\"m\"} 2\n\
                 vllm:kv_cache_usage_perc{model_name=\"m\"} 0.5\n"
            .into_response(),
        GARBAGE => {
            "\u{1}\u{2} <html>not metrics</html>\nvllm:num_requests_waiting{{{ 4\n".into_response()
        }
        FAILING => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        _ => std::future::pending().await,
    }
}

async fn metrics_server() -> (SocketAddr, Arc<AtomicU8>) {
    let mode = Arc::new(AtomicU8::new(GOOD));
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(mode.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, mode)
}

fn settings() -> ScrapeSettings {
    ScrapeSettings {
        interval: Duration::from_millis(10),
        timeout: Duration::from_millis(100),
        ..ScrapeSettings::default()
    }
}

#[tokio::test]
async fn each_failure_marks_the_pod_unreachable_and_a_good_scrape_recovers_it() {
    let (addr, mode) = metrics_server().await;
    let closed: SocketAddr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let pool = Pool::new(vec![
        EndpointSpec::new(addr, "m"),
        EndpointSpec::new(closed, "m"),
    ]);
    let snapshot = pool.snapshot();
    let [pod, absent] = snapshot.endpoints() else {
        panic!()
    };
    let client = llmd_scheduler::app::http_client().unwrap();

    scrape_once(&client, pod, &settings()).await;
    assert_eq!(pod.health(), Health::Ready);
    assert_eq!(
        pod.load(),
        Load {
            waiting: 4,
            running: 2,
            kv_cache_usage: 0.5
        }
    );

    for failure in [GARBAGE, FAILING, HANGING] {
        mode.store(failure, Ordering::Relaxed);
        scrape_once(&client, pod, &settings()).await;
        assert_eq!(pod.health(), Health::Unreachable, "mode {failure}");
        assert_eq!(pod.load().waiting, 4, "the last good load is kept");
        mode.store(GOOD, Ordering::Relaxed);
        scrape_once(&client, pod, &settings()).await;
        assert_eq!(
            pod.health(),
            Health::Ready,
            "recovered after mode {failure}"
        );
    }

    scrape_once(&client, absent, &settings()).await;
    assert_eq!(absent.health(), Health::Unreachable);
    assert_eq!(snapshot.ready_for("m").len(), 1);
}

#[tokio::test]
async fn the_polling_loop_survives_bad_pods() {
    let (addr, mode) = metrics_server().await;
    let pool = Pool::new(vec![EndpointSpec::new(addr, "m")]);
    let client = llmd_scheduler::app::http_client().unwrap();
    let scraper = Scraper::start(&pool, client, settings());
    assert_eq!(scraper.len(), 1);
    let snapshot = pool.snapshot();
    let pod = snapshot.endpoints()[0].clone();
    wait_until("first scrape", || pod.is_ready()).await;
    mode.store(HANGING, Ordering::Relaxed);
    wait_until("the hanging pod is marked", || {
        pod.health() == Health::Unreachable
    })
    .await;
    mode.store(GARBAGE, Ordering::Relaxed);
    mode.store(GOOD, Ordering::Relaxed);
    wait_until("the pod recovers", || pod.is_ready()).await;
}
