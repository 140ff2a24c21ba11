//! The node on the network (DESIGN §5): tlog-tiles reads, dynamic proofs,
//! status proofs and zero-merge-delay submission with group commit.
//!
//! Architecture Invariant: handlers never write; every write goes through
//! the one sequencer thread, which owns the only `&mut Ledger`. A response
//! to `POST /events` is sent only after the batch holding its events is
//! durable and covered by a signed checkpoint.

pub mod listen;
pub mod metrics;
pub mod ratelimit;
mod sequencer;

use crate::entry::CredentialId;
use crate::hash::Hash;
use crate::ledger::{Ledger, LedgerError, LedgerReader, Refusal};
use crate::store::Store;
use crate::tile::TilePath;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use sequencer::{
    now_ms as sequencer_now_ms, ItemResult, Sequenced, Sequencer, SequencerConfig,
    DEFAULT_NICE as DEFAULT_SEQUENCER_NICE,
};

/// The writer, owned by the sequencer thread (behind a mutex only so that
/// tests can stall it).
pub type SharedLedger = Arc<Mutex<Ledger<Arc<dyn Store>>>>;

/// What handlers read through: never waits for a batch being committed.
pub type Reader = LedgerReader<Arc<dyn Store>>;

/// Largest `POST /events` body.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
/// Requests declaring a body longer than this are refused (413) without
/// reading it.
pub const MAX_DECLARED_BODY_BYTES: usize = 16 * MAX_BODY_BYTES;
/// Most events in one `POST /events`.
pub const MAX_EVENTS_PER_REQUEST: usize = 1000;
/// Answers about at most this many events get their inclusion proofs on
/// the handler's own async thread; larger ones on a blocking thread.
const INLINE_PROOFS: usize = 64;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub ledger: Reader,
    pub sequencer: Sequencer,
    pub metrics: Arc<metrics::Metrics>,
    /// Per-submitter rate limit on `POST /events`.
    pub limiter: Arc<ratelimit::RateLimiter>,
}

/// Every error a handler returns: a status and the JSON body
/// `{"error": <stable code>, "message": <text>}` (DESIGN §5). Internal
/// details are logged, not sent.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 503 with `Retry-After`.
    pub fn unavailable(code: &'static str, message: impl Into<String>, retry: u64) -> ApiError {
        ApiError {
            retry_after: Some(retry),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
        }
    }

    fn from_refusal(r: &Refusal) -> ApiError {
        let status = StatusCode::from_u16(r.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
        ApiError::new(status, r.code(), r.to_string())
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> ApiError {
        match e {
            LedgerError::OutOfRange { .. } => ApiError::bad_request("out_of_range", e.to_string()),
            LedgerError::Store(_) | LedgerError::Poisoned(_) => {
                tracing::error!(error = %e, "storage unavailable");
                ApiError::unavailable("unavailable", "storage is unavailable", 5)
            }
            _ => {
                tracing::error!(error = %e, "internal error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; see the node's log",
                )
            }
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code,
            message: &self.message,
        };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(s) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

fn read_ledger(state: &AppState) -> &Reader {
    &state.ledger
}

/// The node's HTTP API.
pub fn router(state: AppState) -> Router {
    let entries = Router::new()
        .route("/tile/entries/{*rest}", get(entry_bundle))
        .layer(tower_http::compression::CompressionLayer::new().gzip(true));
    Router::new()
        .route("/checkpoint", get(checkpoint))
        .route("/tile/{*rest}", get(hash_tile))
        .merge(entries)
        .route("/proof/inclusion", get(inclusion))
        .route("/proof/consistency", get(consistency))
        .route("/status/{credential}", get(status))
        .route("/events", post(submit))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .fallback(|| async { ApiError::not_found("no such resource") })
        // A declared Content-Length far over the limit is refused at once,
        // before the body is read: DefaultBodyLimit alone would wait for it.
        // Up to that, the body is read and refused at MAX_BODY_BYTES, so a
        // client that writes its whole body before reading (most do) still
        // gets its 413 rather than a reset connection.
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            MAX_DECLARED_BODY_BYTES,
        ))
        .layer(axum::middleware::map_response(json_errors))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Request spans and response logs (RUST_LOG=tower_http=debug).
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ))
        .with_state(state)
}

/// Errors produced by the framework itself (a body over the limit, a path
/// that is not UTF-8, a wrong method, a timeout) become the same JSON body
/// as ours: `{"error", "message"}` (DESIGN §5).
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let code = match status {
        StatusCode::BAD_REQUEST => "malformed",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        _ => "error",
    };
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    let mut out = ApiError::new(status, code, message).into_response();
    for name in [header::RETRY_AFTER, header::ALLOW] {
        if let Some(v) = parts.headers.get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    out
}

async fn checkpoint(State(state): State<AppState>) -> Response {
    let text = read_ledger(&state).checkpoint().note_text().to_string();
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        text,
    )
        .into_response()
}

fn tile_response(state: &AppState, path: &str) -> Result<Response, ApiError> {
    let tile =
        TilePath::parse(path).map_err(|e| ApiError::bad_request("bad_tile_path", e.to_string()))?;
    let body = read_ledger(state)
        .read_tile(&tile)?
        .ok_or_else(|| ApiError::not_found(format!("{tile} does not exist yet")))?;
    let cache = if tile.is_partial() {
        // A partial tile never changes either, but it is superseded by
        // the full tile soon; keep caches short.
        "public, max-age=60"
    } else {
        "public, max-age=31536000, immutable"
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, cache),
        ],
        body,
    )
        .into_response())
}

async fn hash_tile(
    State(state): State<AppState>,
    Path(rest): Path<String>,
) -> Result<Response, ApiError> {
    tile_response(&state, &format!("tile/{rest}"))
}

async fn entry_bundle(
    State(state): State<AppState>,
    Path(rest): Path<String>,
) -> Result<Response, ApiError> {
    tile_response(&state, &format!("tile/entries/{rest}"))
}

/// Parses `a=1&b=2` strictly: exactly the named unsigned integers, once each.
fn query_u64s<const N: usize>(raw: Option<String>, names: [&str; N]) -> Result<[u64; N], ApiError> {
    let raw = raw.unwrap_or_default();
    let mut out: [Option<u64>; N] = [None; N];
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            ApiError::bad_request("bad_query", format!("`{pair}` is not name=value"))
        })?;
        let i = names.iter().position(|n| *n == k).ok_or_else(|| {
            ApiError::bad_request("bad_query", format!("unknown parameter `{k}`"))
        })?;
        if out[i].is_some() {
            return Err(ApiError::bad_request(
                "bad_query",
                format!("`{k}` given twice"),
            ));
        }
        let canonical = !v.is_empty()
            && v.bytes().all(|b| b.is_ascii_digit())
            && (v == "0" || !v.starts_with('0'));
        let n = v.parse::<u64>().ok().filter(|_| canonical).ok_or_else(|| {
            ApiError::bad_request("bad_query", format!("`{k}` must be a decimal integer"))
        })?;
        out[i] = Some(n);
    }
    let mut res = [0u64; N];
    for (i, v) in out.iter().enumerate() {
        res[i] =
            v.ok_or_else(|| ApiError::bad_request("bad_query", format!("missing `{}`", names[i])))?;
    }
    Ok(res)
}

/// `{"index", "size", "leaf_hash", "hashes"}` (DESIGN §5).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct InclusionJson {
    pub index: u64,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub leaf_hash: Option<Hash>,
    pub hashes: Vec<Hash>,
}

/// `{"old", "new", "hashes"}` (DESIGN §5).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyJson {
    pub old: u64,
    pub new: u64,
    pub hashes: Vec<Hash>,
}

async fn inclusion(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<InclusionJson>, ApiError> {
    let [index, size] = query_u64s(q, ["index", "size"])?;
    let ledger = read_ledger(&state);
    let hashes = ledger.inclusion_proof(index, size)?;
    Ok(Json(InclusionJson {
        index,
        size,
        leaf_hash: Some(ledger.leaf_hash(index)?),
        hashes,
    }))
}

async fn consistency(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<ConsistencyJson>, ApiError> {
    let [old, new] = query_u64s(q, ["old", "new"])?;
    let hashes = read_ledger(&state).consistency_proof(old, new)?;
    Ok(Json(ConsistencyJson { old, new, hashes }))
}

async fn status(
    State(state): State<AppState>,
    Path(credential): Path<String>,
) -> Result<Response, ApiError> {
    let id = CredentialId::from_hex(&credential).ok_or_else(|| {
        ApiError::bad_request("bad_credential", "credential id must be 64 hex digits")
    })?;
    let proof = read_ledger(&state).status_proof(&id)?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        proof.to_json(),
    )
        .into_response())
}

/// The `POST /events` body: signed entries, standard base64.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    pub events: Vec<String>,
}

/// One accepted (or already logged) event: DESIGN §5's object, which
/// `revledger submit` prints.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct AcceptedJson {
    pub index: u64,
    pub leaf_hash: Hash,
    /// True when the identical event was already logged earlier.
    pub duplicate: bool,
    pub checkpoint: String,
    pub inclusion: InclusionJson,
}

/// One item of a multi-event answer.
#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum ItemJson {
    Accepted(AcceptedJson),
    Refused { error: String, message: String },
}

/// The `POST /events` answer: one item per submitted event, in order.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct SubmitResponse {
    pub results: Vec<ItemJson>,
}

async fn submit(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let req: SubmitRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("malformed", format!("request body: {e}")))?;
    if req.events.is_empty() {
        return Err(ApiError::bad_request("malformed", "no events"));
    }
    if req.events.len() > MAX_EVENTS_PER_REQUEST {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("at most {MAX_EVENTS_PER_REQUEST} events per request"),
        ));
    }
    let mut entries = Vec::with_capacity(req.events.len());
    for (i, e) in req.events.iter().enumerate() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(e)
            .map_err(|_| ApiError::bad_request("malformed", format!("event {i} is not base64")))?;
        entries.push(bytes);
    }
    // Per-submitter rate limit, by the issuer key id each event names
    // (undecodable events are refused by the ledger anyway).
    let mut wants = std::collections::HashMap::new();
    for e in &entries {
        if let Ok(crate::entry::Entry::Event(ev)) = crate::entry::Entry::decode(e) {
            *wants.entry(ev.event.issuer_key_id).or_insert(0usize) += 1;
        }
    }
    if let Err(wait) = state.limiter.take(&wants, std::time::Instant::now()) {
        state.metrics.refused("rate_limited");
        return Err(ApiError {
            retry_after: Some(wait.as_secs().max(1)),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "this submitter's rate limit is exceeded; retry later",
            )
        });
    }
    let single = entries.len() == 1;
    // A place in the queue first: a full queue costs no signature checks.
    let slot = state.sequencer.reserve()?;
    // The signature checks, off the sequencer: requests are checked in
    // parallel with each other and with the batch being committed.
    let reader = state.ledger.clone();
    let checked = tokio::task::spawn_blocking(move || reader.authorize(entries))
        .await
        .map_err(|e| {
            // Cancelled at shutdown, or a bug (a panic).
            tracing::error!(error = %e, "signature checks did not finish");
            ApiError::unavailable("stopping", "the node is stopping", 5)
        })?;
    let sequenced = slot.submit(checked).await?;
    // The inclusion proofs, here rather than on the sequencer: small
    // answers on this thread, large ones where they hold up no other
    // request.
    let results = if sequenced.len() <= INLINE_PROOFS {
        sequenced.answer(&state.ledger)?
    } else {
        let reader = state.ledger.clone();
        tokio::task::spawn_blocking(move || sequenced.answer(&reader))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "inclusion proofs did not finish");
                ApiError::unavailable("stopping", "the node is stopping", 5)
            })??
    };
    if single {
        if let Some(Err(r)) = results.first() {
            return Err(ApiError::from_refusal(r));
        }
    }
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        submit_response_json(&results),
    )
        .into_response())
}

/// The [`SubmitResponse`] of `results`, byte for byte as `serde_json`
/// writes it, written faster: a batch's items all carry the same
/// checkpoint text, escaped once here instead of once per item, and
/// hashes go into the output as base64 directly (its alphabet needs no
/// escaping). Half of every proof-carrying answer is these strings.
fn submit_response_json(results: &[sequencer::ItemResult]) -> Vec<u8> {
    use std::io::Write as _;
    fn hash(out: &mut Vec<u8>, h: &Hash) {
        let mut b64 = [0u8; 44];
        // 32 bytes are 44 base64 characters: the buffer always fits.
        let n = base64::engine::general_purpose::STANDARD
            .encode_slice(h.0, &mut b64)
            .unwrap_or(0);
        out.push(b'"');
        out.extend_from_slice(&b64[..n]);
        out.push(b'"');
    }
    let per_item = results.first().map_or(0, |r| match r {
        Ok(a) => 300 + a.checkpoint.len() + 48 * a.inclusion.hashes.len(),
        Err(_) => 100,
    });
    let mut out = Vec::with_capacity(16 + per_item * results.len());
    // The last checkpoint text escaped, and its escaped form.
    let mut escaped: Option<(&str, Vec<u8>)> = None;
    out.extend_from_slice(b"{\"results\":[");
    for (i, r) in results.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let a = match r {
            Ok(a) => a,
            Err(r) => {
                let item = ItemJson::Refused {
                    error: r.code().to_string(),
                    message: r.to_string(),
                };
                // Writing into a Vec fails only for a value that cannot be
                // JSON, and this one can.
                let _ = serde_json::to_writer(&mut out, &item);
                continue;
            }
        };
        let _ = write!(out, "{{\"index\":{},\"leaf_hash\":", a.index);
        hash(&mut out, &a.leaf_hash);
        let _ = write!(out, ",\"duplicate\":{},\"checkpoint\":", a.duplicate);
        match &escaped {
            Some((text, bytes)) if *text == a.checkpoint.as_str() => out.extend_from_slice(bytes),
            _ => {
                let bytes = serde_json::to_vec(&a.checkpoint).unwrap_or_default();
                out.extend_from_slice(&bytes);
                escaped = Some((a.checkpoint.as_str(), bytes));
            }
        }
        let inc = &a.inclusion;
        let _ = write!(
            out,
            ",\"inclusion\":{{\"index\":{},\"size\":{}",
            inc.index, inc.size
        );
        if let Some(h) = &inc.leaf_hash {
            out.extend_from_slice(b",\"leaf_hash\":");
            hash(&mut out, h);
        }
        out.extend_from_slice(b",\"hashes\":[");
        for (j, h) in inc.hashes.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            hash(&mut out, h);
        }
        out.extend_from_slice(b"]}}");
    }
    out.extend_from_slice(b"]}");
    out
}

async fn healthz(State(state): State<AppState>) -> Response {
    let poisoned = read_ledger(&state).poisoned();
    match (poisoned, state.sequencer.is_running()) {
        (None, true) => (StatusCode::OK, "ok\n").into_response(),
        (Some(why), _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: {why}\n"),
        )
            .into_response(),
        (None, false) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "unhealthy: sequencer stopped\n",
        )
            .into_response(),
    }
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Refusal;

    fn accepted(index: u64, checkpoint: &str, hashes: usize, leaf: bool) -> AcceptedJson {
        let h = |b: u64| Hash::of(&b.to_be_bytes());
        AcceptedJson {
            index,
            leaf_hash: h(index),
            duplicate: index % 2 == 1,
            checkpoint: checkpoint.to_string(),
            inclusion: InclusionJson {
                index,
                size: 1 << 40,
                leaf_hash: leaf.then(|| h(index)),
                hashes: (0..hashes as u64).map(|j| h(1000 + j)).collect(),
            },
        }
    }

    /// The hand-written answer is serde_json's, byte for byte: accepted
    /// and refused items, a checkpoint text that needs escaping (newlines,
    /// a quote, a backslash, a control byte, non-ASCII) and changes midway,
    /// an empty proof and an absent leaf hash.
    #[test]
    fn submit_answer_is_serde_jsons_byte_for_byte() {
        let one = "example.org/log\n7\nq3w=\n\n\u{2014} example.org/log AAAA\n";
        let two = "say \"hi\" \\ \u{1} \t\u{7f}\n";
        let results: Vec<sequencer::ItemResult> = vec![
            Ok(accepted(0, one, 0, true)),
            Ok(accepted(u64::MAX, one, 17, true)),
            Err(Refusal::BadSignature),
            Err(Refusal::UnknownIssuer(0xdead_beef)),
            Ok(accepted(5, one, 3, false)),
            Ok(accepted(6, two, 1, true)),
            Ok(accepted(7, one, 2, true)),
        ];
        let items: Vec<ItemJson> = results
            .iter()
            .cloned()
            .map(|r| match r {
                Ok(a) => ItemJson::Accepted(a),
                Err(r) => ItemJson::Refused {
                    error: r.code().to_string(),
                    message: r.to_string(),
                },
            })
            .collect();
        let want = serde_json::to_vec(&SubmitResponse { results: items }).expect("json");
        let got = submit_response_json(&results);
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want)
        );
        assert_eq!(submit_response_json(&[]), b"{\"results\":[]}".to_vec());
    }
}
