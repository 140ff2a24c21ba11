//! `revledger loadgen`: a load generator for a running node. Events are
//! signed before the timed part; then C client threads drive `POST /events`
//! (B events per request) and, optionally, `GET /status/…` and tile reads,
//! and the figures are printed: rate and latency percentiles.

use crate::entry::{Action, CredentialId, Event, HolderTag};
use crate::note::NoteSigner;
use base64::Engine as _;
use rand_core::{OsRng, RngCore};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What to run.
pub struct LoadConfig {
    pub node: String,
    pub events: usize,
    pub concurrency: usize,
    pub per_request: usize,
    pub status_reads: usize,
    pub tile_reads: usize,
}

/// Latency and rate of one phase.
pub struct PhaseReport {
    pub name: &'static str,
    pub ops: usize,
    pub items: usize,
    pub errors: usize,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl std::fmt::Display for PhaseReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        write!(
            f,
            "{}: {} items in {} requests, {:.2}s: {:.0} items/s, {:.0} requests/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} errors",
            self.name,
            self.items,
            self.ops,
            secs,
            self.items as f64 / secs,
            self.ops as f64 / secs,
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3,
            self.max.as_secs_f64() * 1e3,
            self.errors
        )
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs `op(i)` for i in 0..ops on `threads` threads; `op` returns the
/// number of items done, or an error.
fn phase(
    name: &'static str,
    ops: usize,
    threads: usize,
    op: &(dyn Fn(usize) -> Result<usize, String> + Sync),
) -> PhaseReport {
    let next = AtomicUsize::new(0);
    let lat = Mutex::new(Vec::with_capacity(ops));
    let items = AtomicUsize::new(0);
    let errors = AtomicUsize::new(0);
    let first_error = Mutex::new(None::<String>);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= ops {
                        break;
                    }
                    let t = Instant::now();
                    match op(i) {
                        Ok(n) => {
                            items.fetch_add(n, Ordering::Relaxed);
                        }
                        Err(e) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            first_error
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .get_or_insert(e);
                        }
                    }
                    mine.push(t.elapsed());
                }
                lat.lock().unwrap_or_else(|p| p.into_inner()).extend(mine);
            });
        }
    });
    let elapsed = start.elapsed();
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        eprintln!("{name}: first error: {e}");
    }
    let mut lat = lat.into_inner().unwrap_or_else(|p| p.into_inner());
    lat.sort();
    PhaseReport {
        name,
        ops,
        items: items.into_inner(),
        errors: errors.into_inner(),
        elapsed,
        p50: percentile(&lat, 0.50),
        p99: percentile(&lat, 0.99),
        max: lat.last().copied().unwrap_or_default(),
    }
}

/// What the submit phase reads of a `POST /events` answer: which events
/// were given an index. The rest (proofs, the checkpoint) is skipped.
#[derive(serde::Deserialize)]
struct SubmitAnswer {
    results: Vec<SubmitResult>,
}

#[derive(serde::Deserialize)]
struct SubmitResult {
    index: Option<u64>,
}

/// Signs `n` issue events for fresh credentials and holders (random ids,
/// so runs never collide).
pub fn presign(key: &NoteSigner, n: usize) -> (Vec<Vec<u8>>, Vec<CredentialId>) {
    let mut run = [0u8; 16];
    OsRng.fill_bytes(&mut run);
    let mut events = Vec::with_capacity(n);
    let mut ids = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let mut id = [0u8; 32];
        id[..16].copy_from_slice(&run);
        id[16..24].copy_from_slice(&i.to_be_bytes());
        let mut holder = id;
        holder[31] = 0xff;
        let ev = Event {
            action: Action::Issue {
                not_before_ms: 0,
                not_after_ms: 4_102_444_800_000, // 2100-01-01
                replaces: None,
            },
            credential: CredentialId(id),
            holder: HolderTag(holder),
            issuer_key_id: key.id(),
            issued_at_ms: 1,
        }
        .sign(key.signing_key());
        events.push(ev.encode());
        ids.push(CredentialId(id));
    }
    (events, ids)
}

/// Runs the configured phases and returns their reports.
pub fn run(cfg: &LoadConfig, key: &NoteSigner) -> Vec<PhaseReport> {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .max_idle_connections_per_host(cfg.concurrency.max(1) * 2)
        .build();
    let base = cfg.node.trim_end_matches('/');
    let (events, ids) = presign(key, cfg.events);
    let per = cfg.per_request.max(1);
    let requests: Vec<String> = events
        .chunks(per)
        .map(|c| {
            let b64: Vec<String> = c
                .iter()
                .map(|e| base64::engine::general_purpose::STANDARD.encode(e))
                .collect();
            serde_json::json!({ "events": b64 }).to_string()
        })
        .collect();
    let mut reports = Vec::new();
    let url = format!("{base}/events");
    reports.push(phase("submit", requests.len(), cfg.concurrency, &|i| {
        let resp = agent
            .post(&url)
            .set("content-type", "application/json")
            .send_string(&requests[i])
            .map_err(|e| e.to_string())?;
        // The whole body first, then one typed parse that skips the proofs
        // and the checkpoint without building them: ureq's reader fed to
        // serde_json a byte at a time, and building a `Value` for every
        // proof hash made this client spend about 36 µs per event, a
        // quarter of the machine, on the cores the node runs on.
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut resp.into_reader(), &mut body)
            .map_err(|e| e.to_string())?;
        let answer: SubmitAnswer = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        Ok(answer.results.iter().filter(|r| r.index.is_some()).count())
    }));
    if cfg.status_reads > 0 && !ids.is_empty() {
        reports.push(phase("status", cfg.status_reads, cfg.concurrency, &|i| {
            let id = ids[(i * 7919) % ids.len()];
            agent
                .get(&format!("{base}/status/{}", id.to_hex()))
                .call()
                .map_err(|e| e.to_string())?
                .into_string()
                .map_err(|e| e.to_string())?;
            Ok(1)
        }));
    }
    if cfg.tile_reads > 0 {
        let full = (cfg.events as u64 / 256).max(1);
        reports.push(phase("tiles", cfg.tile_reads, cfg.concurrency, &|i| {
            let n = (i as u64 * 7919) % full;
            let path = crate::tile::TilePath::hash(0, n, 256).map_err(|e| e.to_string())?;
            let mut body = Vec::new();
            std::io::Read::read_to_end(
                &mut agent
                    .get(&format!("{base}/{}", path.to_path()))
                    .call()
                    .map_err(|e| e.to_string())?
                    .into_reader(),
                &mut body,
            )
            .map_err(|e| e.to_string())?;
            Ok(1)
        }));
    }
    reports
}
