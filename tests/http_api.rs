//! The HTTP API driven without a socket (`tower::ServiceExt::oneshot`):
//! every status code, error code and header of DESIGN §5.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use base64::Engine as _;
use http_body_util::BodyExt;
use revledger::checkpoint::verify_checkpoint;
use revledger::entry::{Action, CredentialId, Event, HolderTag, KindSet, Reason};
use revledger::hash::leaf_hash;
use revledger::ledger::{Ledger, Submitter};
use revledger::merkle;
use revledger::note::{KeyName, NoteSigner};
use revledger::server::{metrics::Metrics, router, AppState, Sequencer, SequencerConfig};
use revledger::status::{verify_status, Policy, StatusProof, Verdict};
use revledger::store::{MemStore, Store};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::ServiceExt;

const NOW: u64 = 1_767_225_600_000;

fn log_signer() -> NoteSigner {
    NoteSigner::from_seed(KeyName::new("example.com/revledger-http").unwrap(), [3; 32])
}
fn issuer() -> NoteSigner {
    NoteSigner::from_seed(KeyName::new("issuer.example").unwrap(), [4; 32])
}

struct Node {
    state: AppState,
    writer: revledger::server::SharedLedger,
}

fn node(config: SequencerConfig) -> Node {
    node_limited(config, 0.0)
}

fn node_limited(config: SequencerConfig, rate: f64) -> Node {
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let mut ledger = Ledger::open(store, log_signer(), NOW).unwrap();
    ledger
        .reconcile_submitters(
            &[Submitter {
                key: issuer().verifier(),
                kinds: KindSet::ALL,
            }],
            NOW,
        )
        .unwrap();
    let reader = ledger.reader_handle();
    let writer = Arc::new(Mutex::new(ledger));
    let metrics = Arc::new(Metrics::default());
    let (sequencer, _thread) = Sequencer::start(writer.clone(), config, metrics.clone());
    Node {
        state: AppState {
            ledger: reader,
            sequencer,
            metrics,
            limiter: Arc::new(revledger::server::ratelimit::RateLimiter::new(rate, rate)),
        },
        writer,
    }
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }
    fn header(&self, h: header::HeaderName) -> &str {
        self.headers
            .get(h)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }
}

async fn call(n: &Node, req: Request<Body>) -> Reply {
    let resp = router(n.state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

async fn get(n: &Node, uri: &str) -> Reply {
    call(n, Request::get(uri).body(Body::empty()).unwrap()).await
}

async fn post_events(n: &Node, events: &[Vec<u8>]) -> Reply {
    let b64: Vec<String> = events
        .iter()
        .map(|e| base64::engine::general_purpose::STANDARD.encode(e))
        .collect();
    post_raw(n, serde_json::json!({ "events": b64 }).to_string()).await
}

async fn post_raw(n: &Node, body: impl Into<Body>) -> Reply {
    call(
        n,
        Request::post("/events")
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.into())
            .unwrap(),
    )
    .await
}

fn event(c: u8, h: u8, action: Action) -> Vec<u8> {
    Event {
        action,
        credential: CredentialId([c; 32]),
        holder: HolderTag([h; 32]),
        issuer_key_id: issuer().id(),
        issued_at_ms: NOW,
    }
    .sign(issuer().signing_key())
    .encode()
}

fn issue(c: u8, h: u8) -> Vec<u8> {
    event(
        c,
        h,
        Action::Issue {
            not_before_ms: NOW,
            not_after_ms: NOW + 365 * 86_400_000,
            replaces: None,
        },
    )
}

fn assert_error(r: &Reply, status: StatusCode, code: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.header(header::CONTENT_TYPE), "application/json");
    let j = r.json();
    assert_eq!(j["error"], code, "{j}");
    assert!(j["message"].as_str().is_some_and(|m| !m.is_empty()));
}

async fn size(n: &Node) -> u64 {
    let text = get(n, "/checkpoint").await.text();
    verify_checkpoint(&text, &log_signer().verifier())
        .unwrap()
        .size()
}

#[tokio::test]
async fn checkpoint_is_signed_and_never_cached() {
    let n = node(SequencerConfig::default());
    let r = get(&n, "/checkpoint").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header(header::CONTENT_TYPE), "text/plain; charset=utf-8");
    assert_eq!(r.header(header::CACHE_CONTROL), "no-store");
    let c = verify_checkpoint(&r.text(), &log_signer().verifier()).unwrap();
    // open (1 head) + registry add + head
    assert_eq!(c.size(), 3);
}

#[tokio::test]
async fn submit_answers_after_the_checkpoint_with_a_proof() {
    let n = node(SequencerConfig::default());
    let before = size(&n).await;
    let ev = issue(1, 1);
    let r = post_events(&n, std::slice::from_ref(&ev)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let item = &r.json()["results"][0];
    assert_eq!(item["index"], before);
    assert_eq!(item["duplicate"], false);
    assert_eq!(item["leaf_hash"], leaf_hash(&ev).to_base64());
    let c = verify_checkpoint(
        item["checkpoint"].as_str().unwrap(),
        &log_signer().verifier(),
    )
    .unwrap();
    assert_eq!(c.size(), before + 2);
    let proof: Vec<revledger::hash::Hash> =
        serde_json::from_value(item["inclusion"]["hashes"].clone()).unwrap();
    merkle::verify_inclusion(&leaf_hash(&ev), before, c.size(), &proof, c.root()).unwrap();
    // The same event again: same index, not logged twice.
    let r = post_events(&n, &[ev]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["results"][0]["index"], before);
    assert_eq!(r.json()["results"][0]["duplicate"], true);
    assert_eq!(size(&n).await, before + 2);
}

#[tokio::test]
async fn refusals_have_their_status_and_change_nothing() {
    let n = node(SequencerConfig::default());
    post_events(&n, &[issue(1, 1)]).await;
    let before = size(&n).await;
    // 409: rules
    let r = post_events(&n, &[event(1, 1, Action::Resume)]).await;
    assert_error(&r, StatusCode::CONFLICT, "invalid_transition");
    let r = post_events(&n, &[issue(2, 1)]).await;
    assert_error(&r, StatusCode::CONFLICT, "holder_has_live_credential");
    let r = post_events(&n, &[issue(1, 5)]).await;
    assert_error(&r, StatusCode::CONFLICT, "already_issued");
    // 403: unknown key, bad signature
    let stranger = NoteSigner::from_seed(KeyName::new("stranger").unwrap(), [5; 32]);
    let forged = Event {
        action: Action::Revoke {
            reason: Reason::Administrative,
        },
        credential: CredentialId([1; 32]),
        holder: HolderTag([1; 32]),
        issuer_key_id: stranger.id(),
        issued_at_ms: NOW,
    }
    .sign(stranger.signing_key())
    .encode();
    assert_error(
        &post_events(&n, &[forged]).await,
        StatusCode::FORBIDDEN,
        "unknown_issuer",
    );
    let mut bad = event(
        1,
        1,
        Action::Suspend {
            reason: Reason::Lost,
        },
    );
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert_error(
        &post_events(&n, &[bad]).await,
        StatusCode::FORBIDDEN,
        "bad_signature",
    );
    // 400: malformed
    assert_error(
        &post_events(&n, &[vec![1, 1, 9]]).await,
        StatusCode::BAD_REQUEST,
        "malformed",
    );
    assert_error(
        &post_raw(&n, "{").await,
        StatusCode::BAD_REQUEST,
        "malformed",
    );
    assert_error(
        &post_raw(&n, r#"{"events":["***"]}"#).await,
        StatusCode::BAD_REQUEST,
        "malformed",
    );
    assert_error(
        &post_raw(&n, r#"{"events":[]}"#).await,
        StatusCode::BAD_REQUEST,
        "malformed",
    );
    assert_error(
        &post_raw(&n, r#"{"events":[],"extra":1}"#).await,
        StatusCode::BAD_REQUEST,
        "malformed",
    );
    // 413: an entry over 1 KiB, too many events, a body over the limit
    assert_error(
        &post_events(&n, &[vec![1; 1025]]).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
    );
    let many = vec![vec![1u8, 1]; 1001];
    assert_error(
        &post_events(&n, &many).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
    );
    let huge = format!(r#"{{"events":["{}"]}}"#, "A".repeat(3 << 20));
    assert_error(
        &post_raw(&n, huge).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
    );
    // A declared length over the limit is refused before the body is read:
    // this body never ends, and the answer still comes.
    let endless = Body::from_stream(futures_never());
    let declared = Request::post("/events")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, (100u64 << 20).to_string())
        .body(endless)
        .unwrap();
    assert_error(
        &call(&n, declared).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
    );
    assert_eq!(size(&n).await, before);
}

/// A request body stream that never yields.
fn futures_never() -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send {
    struct Never;
    impl futures_core::Stream for Never {
        type Item = Result<Vec<u8>, std::io::Error>;
        fn poll_next(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Pending
        }
    }
    Never
}

#[tokio::test]
async fn multi_event_requests_answer_per_event() {
    let n = node(SequencerConfig::default());
    let before = size(&n).await;
    let r = post_events(&n, &[issue(1, 1), event(9, 9, Action::Resume), issue(2, 2)]).await;
    assert_eq!(r.status, StatusCode::OK);
    let res = r.json()["results"].clone();
    assert_eq!(res[0]["index"], before);
    assert_eq!(res[1]["error"], "unknown_credential");
    assert_eq!(res[2]["index"], before + 1);
    assert_eq!(size(&n).await, before + 3);
}

#[tokio::test]
async fn proofs_validate_queries_strictly() {
    let n = node(SequencerConfig::default());
    post_events(&n, &[issue(1, 1), issue(2, 2), issue(3, 3)]).await;
    let s = size(&n).await;
    let r = get(&n, &format!("/proof/inclusion?index=2&size={s}")).await;
    assert_eq!(r.status, StatusCode::OK);
    let j = r.json();
    assert_eq!(j["index"], 2);
    assert_eq!(j["size"], s);
    assert!(j["leaf_hash"].is_string());
    let r = get(&n, &format!("/proof/consistency?old=2&new={s}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["old"], 2);
    for bad in [
        "/proof/inclusion?index=1".to_string(),
        "/proof/inclusion?index=01&size=3".to_string(),
        "/proof/inclusion?index=-1&size=3".to_string(),
        "/proof/inclusion?index=1&size=3&size=3".to_string(),
        "/proof/inclusion?index=1&size=3&x=1".to_string(),
        "/proof/inclusion?index=1&size=99999999999999999999".to_string(),
        format!("/proof/inclusion?index={s}&size={s}"),
        format!("/proof/inclusion?index=0&size={}", s + 1),
        "/proof/consistency?old=3&new=2".to_string(),
        format!("/proof/consistency?old=1&new={}", s + 1),
        "/proof/consistency".to_string(),
    ] {
        let r = get(&n, &bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text());
        assert!(r.json()["error"].is_string());
    }
}

#[tokio::test]
async fn tiles_follow_tlog_tiles() {
    let n = node(SequencerConfig::default());
    let s = size(&n).await; // 3
    let r = get(&n, &format!("/tile/0/000.p/{s}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body.len(), 32 * s as usize);
    assert_eq!(r.header(header::CONTENT_TYPE), "application/octet-stream");
    // narrower partial tiles of the same tile stay available
    assert_eq!(get(&n, "/tile/0/000.p/1").await.body.len(), 32);
    assert_eq!(get(&n, "/tile/0/000").await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        get(&n, &format!("/tile/0/000.p/{}", s + 1)).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&n, "/tile/1/000.p/1").await.status,
        StatusCode::NOT_FOUND
    );
    for bad in [
        "/tile/0/0",
        "/tile/0/x000/000",
        "/tile/0/000.p/256",
        "/tile/0/000.p/0",
        "/tile/00/000",
        "/tile/64/000",
        "/tile/entries/000.p/",
        "/tile/0/000/",
    ] {
        let r = get(&n, bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let r = call(
        &n,
        Request::get(format!("/tile/entries/000.p/{s}"))
            .header(header::ACCEPT_ENCODING, "gzip")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header(header::CONTENT_ENCODING), "gzip");
    let plain = get(&n, &format!("/tile/entries/000.p/{s}")).await;
    assert_eq!(plain.header(header::CONTENT_ENCODING), "");
    let entries = revledger::tile::decode_entry_bundle(&plain.body).unwrap();
    assert_eq!(entries.len() as u64, s);
    let hashes = get(&n, &format!("/tile/0/000.p/{s}")).await.body;
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(&hashes[32 * i..32 * i + 32], leaf_hash(e).as_bytes());
    }
    // Fill a whole tile: full tiles are immutable for a year.
    let evs: Vec<Vec<u8>> = (0..=255u8).map(|i| issue(i, i)).collect();
    assert_eq!(post_events(&n, &evs).await.status, StatusCode::OK);
    let r = get(&n, "/tile/0/000").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body.len(), 8192);
    assert_eq!(
        r.header(header::CACHE_CONTROL),
        "public, max-age=31536000, immutable"
    );
}

#[tokio::test]
async fn status_proofs_verify_for_known_and_unknown_credentials() {
    let n = node(SequencerConfig::default());
    post_events(&n, &[issue(1, 1)]).await;
    post_events(
        &n,
        &[event(
            1,
            1,
            Action::Revoke {
                reason: Reason::KeyCompromise,
            },
        )],
    )
    .await;
    let vkey = log_signer().verifier();
    let now = revledger::server::sequencer_now_ms();
    for (c, want) in [
        (
            1u8,
            Verdict::Revoked {
                reason: Reason::KeyCompromise,
            },
        ),
        (7u8, Verdict::Unknown),
    ] {
        let id = CredentialId([c; 32]);
        let r = get(&n, &format!("/status/{}", id.to_hex())).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header(header::CACHE_CONTROL), "no-store");
        let p = StatusProof::from_json(&r.text()).unwrap();
        assert_eq!(
            verify_status(&p, &id, &vkey, now, Policy::with_max_age_ms(60_000)),
            want
        );
    }
    assert_error(
        &get(&n, "/status/xyz").await,
        StatusCode::BAD_REQUEST,
        "bad_credential",
    );
    assert_error(&get(&n, "/nope").await, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn health_and_metrics() {
    let n = node(SequencerConfig::default());
    post_events(&n, &[issue(1, 1)]).await;
    post_events(&n, &[event(1, 1, Action::Resume)]).await;
    let r = get(&n, "/healthz").await;
    assert_eq!(r.status, StatusCode::OK);
    let m = get(&n, "/metrics").await.text();
    assert!(m.contains("revledger_events_accepted_total 1\n"), "{m}");
    assert!(m.contains("revledger_events_refused_total{reason=\"invalid_transition\"} 1\n"));
    assert!(m.contains("revledger_batch_size_count 1\n"));
    assert!(m.contains("revledger_tree_size 5\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Holding the ledger lock across awaits is the point: it stalls the sequencer.
#[allow(clippy::await_holding_lock)]
async fn a_full_queue_sheds_load_with_retry_after() {
    let n = node(SequencerConfig {
        queue_requests: 1,
        ..SequencerConfig::default()
    });
    // Hold the writer so the sequencer blocks on its first batch; reads
    // must go on meanwhile.
    let writer = n.writer.clone();
    let guard = writer.lock().unwrap();
    let n = Arc::new(n);
    let first = {
        let n = n.clone();
        tokio::spawn(async move { post_events(&n, &[issue(1, 1)]).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await; // taken by the sequencer
    let second = {
        let n = n.clone();
        tokio::spawn(async move { post_events(&n, &[issue(2, 2)]).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await; // waiting in the queue
    assert_eq!(get(&n, "/checkpoint").await.status, StatusCode::OK);
    let id = CredentialId([7; 32]).to_hex();
    assert_eq!(
        get(&n, &format!("/status/{id}")).await.status,
        StatusCode::OK
    );
    let third = post_events(&n, &[issue(3, 3)]).await;
    assert_error(&third, StatusCode::SERVICE_UNAVAILABLE, "overloaded");
    assert_eq!(third.header(header::RETRY_AFTER), "1");
    drop(guard);
    assert_eq!(first.await.unwrap().status, StatusCode::OK);
    assert_eq!(second.await.unwrap().status, StatusCode::OK);
    assert!(get(&n, "/metrics")
        .await
        .text()
        .contains("revledger_requests_shed_total 1\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_others_are_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let n = node(SequencerConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = revledger::server::listen::Limits {
        header_timeout: Duration::from_millis(300),
        max_connections: 64,
        ..Default::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(revledger::server::listen::serve(
        listener,
        router(n.state.clone()),
        limits,
        async {
            let _ = stopped.await;
        },
    ));
    // A slowloris: headers never finished.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /checkpoint HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // A normal client meanwhile.
    let mut ok = tokio::net::TcpStream::connect(addr).await.unwrap();
    ok.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut resp = String::new();
    ok.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    // The slow one is closed after the header deadline, without a 200.
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "slow connection still open after 5 s");
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server stops")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn each_submitter_is_rate_limited() {
    let n = node_limited(SequencerConfig::default(), 2.0);
    assert_eq!(
        post_events(&n, &[issue(1, 1), issue(2, 2)]).await.status,
        StatusCode::OK
    );
    let before = size(&n).await;
    let r = post_events(&n, &[issue(3, 3)]).await;
    assert_error(&r, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert_eq!(r.header(header::RETRY_AFTER), "1");
    assert_eq!(size(&n).await, before);
    // Another submitter is not affected by the first one's limit.
    let stranger = NoteSigner::from_seed(KeyName::new("stranger").unwrap(), [5; 32]);
    let ev = Event {
        action: Action::Resume,
        credential: CredentialId([9; 32]),
        holder: HolderTag([9; 32]),
        issuer_key_id: stranger.id(),
        issued_at_ms: NOW,
    }
    .sign(stranger.signing_key())
    .encode();
    assert_error(
        &post_events(&n, &[ev]).await,
        StatusCode::FORBIDDEN,
        "unknown_issuer",
    );
}

/// A store whose commits fail while `broken` is set (nothing applied).
struct Flaky {
    inner: MemStore,
    broken: std::sync::atomic::AtomicBool,
}

impl revledger::store::ReadStore for Flaky {
    fn get(
        &self,
        space: revledger::store::Space,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, revledger::store::StoreError> {
        self.inner.get(space, key)
    }
}

impl Store for Flaky {
    fn commit(&self, batch: revledger::store::Batch) -> Result<(), revledger::store::StoreError> {
        if self.broken.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(revledger::store::StoreError::Injected("disk full"));
        }
        self.inner.commit(batch)
    }
}

#[tokio::test]
async fn storage_faults_make_the_node_unhealthy_until_they_clear() {
    use std::sync::atomic::Ordering;
    let flaky = Arc::new(Flaky {
        inner: MemStore::new(),
        broken: Default::default(),
    });
    let store: Arc<dyn Store> = flaky.clone();
    let mut ledger = Ledger::open(store, log_signer(), NOW).unwrap();
    ledger
        .reconcile_submitters(
            &[Submitter {
                key: issuer().verifier(),
                kinds: KindSet::ALL,
            }],
            NOW,
        )
        .unwrap();
    let reader = ledger.reader_handle();
    let writer = Arc::new(Mutex::new(ledger));
    let metrics = Arc::new(Metrics::default());
    let (sequencer, _t) =
        Sequencer::start(writer.clone(), SequencerConfig::default(), metrics.clone());
    let n = Node {
        state: AppState {
            ledger: reader,
            sequencer,
            metrics,
            limiter: Arc::new(revledger::server::ratelimit::RateLimiter::new(0.0, 0.0)),
        },
        writer,
    };
    let before = size(&n).await;
    flaky.broken.store(true, Ordering::SeqCst);
    let r = post_events(&n, &[issue(1, 1)]).await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert!(!r.header(header::RETRY_AFTER).is_empty());
    assert_eq!(
        get(&n, "/healthz").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // Reads go on, from the last published checkpoint.
    assert_eq!(size(&n).await, before);
    // Still broken: refused cleanly again, nothing acknowledged.
    assert_error(
        &post_events(&n, &[issue(1, 1)]).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
    );
    // The fault clears: the next batch reopens the ledger and succeeds.
    flaky.broken.store(false, Ordering::SeqCst);
    let r = post_events(&n, &[issue(1, 1)]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["results"][0]["index"], before);
    assert_eq!(get(&n, "/healthz").await.status, StatusCode::OK);
    assert_eq!(size(&n).await, before + 2);
}

/// The nice value in a `/proc/.../stat` line (field 19).
#[cfg(target_os = "linux")]
fn nice_in_stat(stat: &str) -> Option<i64> {
    // After the command in parentheses, the state is field 3.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(16)?.parse().ok()
}

/// The nice value of every thread of this process named `name`.
#[cfg(target_os = "linux")]
fn nice_of_threads(name: &str) -> Vec<i64> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == name {
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            out.extend(nice_in_stat(&stat));
        }
    }
    out
}

#[cfg(target_os = "linux")]
#[test]
fn the_sequencer_thread_takes_the_configured_priority() {
    // Raising one's own nice value needs no privilege. Other tests'
    // sequencers take the default (below this thread's, or this thread's
    // own where that is not permitted).
    let own = nice_in_stat(&std::fs::read_to_string("/proc/thread-self/stat").unwrap()).unwrap();
    let wanted = (own + 7).min(19);
    if wanted == own {
        return; // already at the lowest priority: nothing to raise to
    }
    assert!(!nice_of_threads("sequencer").contains(&wanted));
    let _node = node(SequencerConfig {
        nice: Some(wanted as i32),
        ..SequencerConfig::default()
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !nice_of_threads("sequencer").contains(&wanted) {
        assert!(
            std::time::Instant::now() < deadline,
            "no sequencer thread at nice {wanted}: {:?}",
            nice_of_threads("sequencer")
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
