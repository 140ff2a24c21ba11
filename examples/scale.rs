//! Scale run: N events (default 10 million) through the real ledger code
//! path (`Ledger::append_events`: decode, strict signature check, status
//! rules, Merkle log, status map, head record, atomic durable commit,
//! signed checkpoint) into one data dir laid out as `revledger serve`
//! expects (`DIR/db`, `DIR/log.key`, `DIR/log.vkey`, `DIR/submitter.key`,
//! `DIR/submitter.vkey`).
//!
//! ```sh
//! cargo run --release --example scale -- --data DIR --events 10000000 --report scale.md
//! ```
//!
//! Events are mostly issues of fresh credentials with distinct holder tags,
//! plus a minority (`--mutate-pct`, default 7) of suspend / resume / revoke
//! of earlier credentials, all signed by the local submitter key that
//! `serve` would use. Events are planned and signed on every core in chunks
//! *before* the ledger sees them (never concurrently with it), so the
//! ledger's own time is measured alone and reported apart from signing.
//!
//! At each milestone (10^4, 10^5, 10^6, 10^7 events, and the last) the run
//! pauses and records proof latencies (inclusion, status for known and
//! unknown credentials, offline verification), RSS, disk use and the
//! segment's ingest rate. At the end it closes the ledger, reopens it
//! (in-process and in fresh processes, `--reopen-only`), starts the real
//! `revledger serve` on the data dir and checks `/checkpoint` and one
//! `/status/<hex>`, and writes a markdown report (`--report FILE`).
//!
//! The data dir's `db/` is the node's `DiskStore`: the log (entries,
//! tree hashes) in append-only files, the mutable indexes in fjall under
//! `db/keys`.

use clap::Parser;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use revledger::checkpoint::verify_checkpoint;
use revledger::entry::{Action, CredentialId, Entry, Event, HolderTag, KindSet, Reason};
use revledger::ledger::{Ledger, Outcome, Submitter};
use revledger::note::{KeyName, NoteSigner, NoteVerifier};
use revledger::status::{verify_status, Policy, StatusProof, Verdict};
use revledger::store::{DiskStore, SpaceBytes, Store};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::io::{BufRead, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Parser, Clone)]
#[command(about = "revledger scale run through Ledger::append_events")]
struct Args {
    /// Data directory (created; must not already hold a log unless
    /// --reopen-only).
    #[arg(long)]
    data: PathBuf,
    /// Events to append.
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Events per `append_events` call (the node's default --max-batch).
    #[arg(long, default_value_t = 4096)]
    batch: usize,
    /// Percent of events that suspend / resume / revoke an earlier
    /// credential (the rest issue fresh ones).
    #[arg(long, default_value_t = 7.0)]
    mutate_pct: f64,
    /// Batches planned and signed ahead (on every core) before the ledger
    /// appends them.
    #[arg(long, default_value_t = 16)]
    sign_ahead: usize,
    /// Samples per latency measurement at each milestone.
    #[arg(long, default_value_t = 5000)]
    samples: usize,
    /// Milestones (events); default 10^4, 10^5, 10^6, 10^7 up to --events,
    /// and --events itself.
    #[arg(long, value_delimiter = ',')]
    milestones: Vec<u64>,
    /// Write the summary as markdown here (rewritten at every milestone).
    #[arg(long)]
    report: Option<PathBuf>,
    /// Only reopen DIR in this (fresh) process and print one `REOPEN {json}`
    /// line: open times, RSS after open, first status proofs.
    #[arg(long)]
    reopen_only: bool,
    /// In-process reopens at the end.
    #[arg(long, default_value_t = 5)]
    reopens: usize,
    /// Fresh-process reopens at the end (this binary with --reopen-only).
    #[arg(long, default_value_t = 3)]
    fresh_reopens: usize,
    /// The revledger binary for the serve check (default: next to this
    /// example's directory, i.e. target/release/revledger).
    #[arg(long)]
    serve_bin: Option<PathBuf>,
    /// `revledger serve` starts at the end (the first also checks
    /// /checkpoint and /status); 0 skips the serve check.
    #[arg(long, default_value_t = 3)]
    serve_starts: usize,
    /// Block cache of the index in MiB (`serve --cache-mb`).
    #[arg(long, default_value_t = revledger::store::INDEX_CACHE_BYTES >> 20)]
    cache_mb: u64,
    /// Only print (and append to --report) the logical bytes per key space
    /// of DIR/db, read by iterating every key (the node must be stopped).
    #[arg(long)]
    breakdown_only: bool,
    /// Only run the end of a run (reopens, serve check, breakdown) on an
    /// existing DIR and append it to --report.
    #[arg(long)]
    finish_only: bool,
    /// Continue an earlier run on DIR (give the same --seed and
    /// --mutate-pct): count the events already logged, replay the plan up to
    /// there without signing, and go on to --events. Milestones already
    /// passed are not measured again (the earlier report has them). The
    /// earlier run must have had no refusals or duplicates (its report
    /// says), so that the logged events are exactly the first planned ones.
    #[arg(long)]
    resume: bool,
    /// Seed for ids and the mix of events.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

// ---------------------------------------------------------------------------
// Storage: the node's DiskStore.
// ---------------------------------------------------------------------------

/// A second handle on the open store, for `size_on_disk`.
type Handle = DiskStore;

type Db = Arc<dyn Store>;

/// `--cache-mb`, set once at start.
static CACHE_MB: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

fn open_store(dir: &Path) -> Result<(Db, Handle), String> {
    let mb = CACHE_MB
        .get()
        .copied()
        .unwrap_or(revledger::store::INDEX_CACHE_BYTES >> 20);
    let s = DiskStore::open_with_cache(dir, mb << 20).map_err(|e| e.to_string())?;
    Ok((Arc::new(s.clone()), s))
}

// ---------------------------------------------------------------------------
// Keys, in the node's data-dir layout (see main.rs `serve`).
// ---------------------------------------------------------------------------

fn write_new(path: &Path, mode: u32, text: &str) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| format!("creating {}: {e}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

fn write_key_pair(signer: &NoteSigner, dir: &Path, stem: &str) -> Result<(), String> {
    write_new(
        &dir.join(format!("{stem}.key")),
        0o600,
        &format!("{}\n", signer.to_private_key_string()),
    )?;
    write_new(
        &dir.join(format!("{stem}.vkey")),
        0o644,
        &format!("{}\n", signer.verifier().to_vkey_string()),
    )
}

fn read_signer(path: &Path) -> Result<NoteSigner, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    NoteSigner::parse_private_key(text.trim()).map_err(|e| format!("{}: {e}", path.display()))
}

// ---------------------------------------------------------------------------
// The event mix.
// ---------------------------------------------------------------------------

const ACTIVE: u8 = 0;
const SUSPENDED: u8 = 1;
const REVOKED: u8 = 2;

fn derive(seed: u64, what: &[u8], k: u64) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"revledger-scale/");
    h.update(what);
    h.update(seed.to_be_bytes());
    h.update(k.to_be_bytes());
    h.finalize().into()
}

fn cred_id(seed: u64, k: u64) -> CredentialId {
    CredentialId(derive(seed, b"credential", k))
}

fn holder_tag(seed: u64, k: u64) -> HolderTag {
    HolderTag(derive(seed, b"holder", k))
}

fn unknown_id(seed: u64, k: u64) -> CredentialId {
    CredentialId(derive(seed, b"never-issued", k))
}

/// Plans the event sequence. Credential `k` is the k-th issued; its state
/// is kept in 2 bits so that mutations always obey the rules.
struct Planner {
    seed: u64,
    issuer_id: u32,
    base_ms: u64,
    seq: u64,
    issued: u64,
    states: Vec<u8>,
    suspended: Vec<u64>,
    rng: ChaCha8Rng,
    mutate: f64,
    /// issue, suspend, resume, revoke
    counts: [u64; 4],
}

impl Planner {
    fn new(seed: u64, issuer_id: u32, base_ms: u64, mutate: f64) -> Planner {
        Planner {
            seed,
            issuer_id,
            base_ms,
            seq: 0,
            issued: 0,
            states: Vec::new(),
            suspended: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            mutate,
            counts: [0; 4],
        }
    }

    fn state(&self, k: u64) -> u8 {
        (self.states[(k / 4) as usize] >> ((k % 4) * 2)) & 3
    }

    fn set_state(&mut self, k: u64, s: u8) {
        let b = &mut self.states[(k / 4) as usize];
        let shift = (k % 4) * 2;
        *b = (*b & !(3 << shift)) | (s << shift);
    }

    fn event(&self, action: Action, k: u64) -> Event {
        Event {
            action,
            credential: cred_id(self.seed, k),
            holder: holder_tag(self.seed, k),
            issuer_key_id: self.issuer_id,
            // Unique per event, so a repeated suspend of one credential is
            // never a duplicate.
            issued_at_ms: self.base_ms + self.seq,
        }
    }

    /// A random earlier credential in state `want`, if a few tries find one.
    fn pick(&mut self, want: impl Fn(u8) -> bool) -> Option<u64> {
        for _ in 0..8 {
            let k = self.rng.gen_range(0..self.issued);
            if want(self.state(k)) {
                return Some(k);
            }
        }
        None
    }

    fn mutation(&mut self) -> Option<Event> {
        if self.issued == 0 {
            return None;
        }
        let r: f64 = self.rng.gen();
        if r < 0.40 {
            let k = self.pick(|s| s == ACTIVE)?;
            self.set_state(k, SUSPENDED);
            self.suspended.push(k);
            self.counts[1] += 1;
            return Some(self.event(
                Action::Suspend {
                    reason: Reason::Lost,
                },
                k,
            ));
        }
        if r < 0.65 && !self.suspended.is_empty() {
            let i = self.rng.gen_range(0..self.suspended.len());
            let k = self.suspended.swap_remove(i);
            self.set_state(k, ACTIVE);
            self.counts[2] += 1;
            return Some(self.event(Action::Resume, k));
        }
        let reason = [
            Reason::HolderRequest,
            Reason::KeyCompromise,
            Reason::Administrative,
        ][self.rng.gen_range(0..3)];
        let k = if self.rng.gen_bool(0.2) && !self.suspended.is_empty() {
            let i = self.rng.gen_range(0..self.suspended.len());
            self.suspended.swap_remove(i)
        } else {
            // Suspended ones are revoked only through the list above, so the
            // list stays exact.
            self.pick(|s| s == ACTIVE)?
        };
        self.set_state(k, REVOKED);
        self.counts[3] += 1;
        Some(self.event(Action::Revoke { reason }, k))
    }

    fn next(&mut self) -> Event {
        let ev = if self.rng.gen_bool(self.mutate) {
            self.mutation()
        } else {
            None
        };
        let ev = ev.unwrap_or_else(|| {
            let k = self.issued;
            if k.is_multiple_of(4) {
                self.states.push(0);
            }
            self.issued += 1;
            self.counts[0] += 1;
            self.event(
                Action::Issue {
                    not_before_ms: self.base_ms - 86_400_000,
                    not_after_ms: self.base_ms + 5 * 365 * 86_400_000,
                    replaces: None,
                },
                k,
            )
        });
        self.seq += 1;
        ev
    }

    fn heap_bytes(&self) -> usize {
        self.states.capacity() + self.suspended.capacity() * 8
    }
}

fn sign_all(key: &NoteSigner, events: &[Event], threads: usize) -> Vec<Vec<u8>> {
    let chunk = events.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| {
        let parts: Vec<_> = events
            .chunks(chunk)
            .map(|c| {
                s.spawn(move || {
                    c.iter()
                        .map(|e| e.sign(key.signing_key()).encode())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

// ---------------------------------------------------------------------------
// Process figures.
// ---------------------------------------------------------------------------

/// (VmRSS, VmHWM) in KiB of `pid` ("self" for this process).
fn rss_kb(pid: &str) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Bytes this process caused to be written to storage (/proc/self/io).
fn write_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("write_bytes: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// User + system CPU seconds of this process.
fn cpu_secs() -> f64 {
    let text = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which ends with ')').
    let rest = text.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat; rest starts at field 3.
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// (allocated bytes as du counts them, apparent bytes, files) under `dir`.
fn du(dir: &Path) -> (u64, u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut total = (0, 0, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total.0 += m.blocks() * 512;
                total.1 += m.len();
                total.2 += 1;
            }
        }
    }
    total
}

// ---------------------------------------------------------------------------
// Latency figures.
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Default)]
struct Lat {
    p50: f64,
    p99: f64,
    max: f64,
    n: usize,
}

/// Nearest-rank percentiles of durations, in microseconds.
fn lat(mut v: Vec<Duration>) -> Lat {
    if v.is_empty() {
        return Lat::default();
    }
    v.sort();
    let rank = |p: f64| {
        let i = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
        v[i].as_secs_f64() * 1e6
    };
    Lat {
        p50: rank(0.50),
        p99: rank(0.99),
        max: v[v.len() - 1].as_secs_f64() * 1e6,
        n: v.len(),
    }
}

fn median_usize(mut v: Vec<usize>) -> usize {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[(v.len() - 1) / 2]
}

// ---------------------------------------------------------------------------
// One milestone.
// ---------------------------------------------------------------------------

#[derive(Default, Clone)]
struct Row {
    events: u64,
    tree_size: u64,
    credentials: u64,
    counts: [u64; 4],
    seg_events: u64,
    seg_wall: f64,
    seg_plan_sign: f64,
    seg_ledger: f64,
    seg_cpu: f64,
    seg_write_bytes: u64,
    batch: Lat,
    rss_kb: u64,
    hwm_kb: u64,
    du_bytes: u64,
    apparent_bytes: u64,
    db_files: u64,
    store_size: u64,
    incl: Lat,
    st_known: Lat,
    st_unknown: Lat,
    ver_known: Lat,
    ver_unknown: Lat,
    known_json: usize,
    unknown_json: usize,
    verdicts: [u64; 4],
    mismatches: u64,
    first_mismatch: Option<String>,
    measure_secs: f64,
    loadavg: String,
}

struct Segment {
    start: Instant,
    cpu0: f64,
    wb0: u64,
    events: u64,
    plan_sign: Duration,
    ledger: Duration,
    batches: Vec<Duration>,
}

impl Segment {
    fn new() -> Segment {
        Segment {
            start: Instant::now(),
            cpu0: cpu_secs(),
            wb0: write_bytes(),
            events: 0,
            plan_sign: Duration::ZERO,
            ledger: Duration::ZERO,
            batches: Vec::new(),
        }
    }
}

fn expected_verdict(state: u8) -> &'static str {
    match state {
        ACTIVE => "valid",
        SUSPENDED => "suspended",
        _ => "revoked",
    }
}

#[allow(clippy::too_many_arguments)]
fn measure(
    ledger: &Ledger<Db>,
    handle: &Handle,
    planner: &Planner,
    seg: Segment,
    db_dir: &Path,
    samples: usize,
    rng: &mut ChaCha8Rng,
) -> Row {
    let mut row = Row {
        events: planner.seq,
        tree_size: ledger.checkpoint().size(),
        credentials: planner.issued,
        counts: planner.counts,
        seg_events: seg.events,
        seg_wall: seg.start.elapsed().as_secs_f64(),
        seg_plan_sign: seg.plan_sign.as_secs_f64(),
        seg_ledger: seg.ledger.as_secs_f64(),
        seg_cpu: cpu_secs() - seg.cpu0,
        seg_write_bytes: write_bytes().saturating_sub(seg.wb0),
        batch: lat(seg.batches),
        ..Row::default()
    };
    let t_measure = Instant::now();
    row.loadavg = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    (row.rss_kb, row.hwm_kb) = rss_kb("self");
    (row.du_bytes, row.apparent_bytes, row.db_files) = du(db_dir);
    row.store_size = handle.size_on_disk().unwrap_or(0);

    let size = row.tree_size;
    let vkey = ledger.verifier().clone();
    let policy = Policy::with_max_age_ms(24 * 3_600_000);

    // (a) inclusion proofs from storage, random index, at the checkpoint size.
    let mut v = Vec::with_capacity(samples);
    for _ in 0..samples {
        let i = rng.gen_range(0..size);
        let t = Instant::now();
        let p = ledger.inclusion_proof(i, size).expect("inclusion proof");
        v.push(t.elapsed());
        std::hint::black_box(p);
    }
    row.incl = lat(v);

    // (b)+(c) status proofs for known credentials, checked against the plan.
    let (mut gen, mut ver, mut sizes) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..samples {
        let k = rng.gen_range(0..planner.issued);
        let id = cred_id(planner.seed, k);
        let t = Instant::now();
        let proof = ledger.status_proof(&id).expect("status proof");
        gen.push(t.elapsed());
        let json = proof.to_json();
        sizes.push(json.len());
        let proof = StatusProof::from_json(&json).expect("own proof parses");
        let t = Instant::now();
        let verdict = verify_status(&proof, &id, &vkey, now_ms(), policy);
        ver.push(t.elapsed());
        match verdict {
            Verdict::Valid { .. } => row.verdicts[0] += 1,
            Verdict::Suspended { .. } => row.verdicts[1] += 1,
            Verdict::Revoked { .. } => row.verdicts[2] += 1,
            _ => row.verdicts[3] += 1,
        }
        let want = expected_verdict(planner.state(k));
        if verdict.name() != want {
            row.mismatches += 1;
            row.first_mismatch
                .get_or_insert_with(|| format!("credential #{k}: {verdict:?}, expected {want}"));
        }
    }
    row.st_known = lat(gen);
    row.ver_known = lat(ver);
    row.known_json = median_usize(sizes);

    let (mut gen, mut ver, mut sizes) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..samples {
        let id = unknown_id(planner.seed, rng.gen());
        let t = Instant::now();
        let proof = ledger.status_proof(&id).expect("status proof");
        gen.push(t.elapsed());
        let json = proof.to_json();
        sizes.push(json.len());
        let proof = StatusProof::from_json(&json).expect("own proof parses");
        let t = Instant::now();
        let verdict = verify_status(&proof, &id, &vkey, now_ms(), policy);
        ver.push(t.elapsed());
        if verdict != Verdict::Unknown {
            row.mismatches += 1;
            row.first_mismatch
                .get_or_insert_with(|| format!("unknown id: {verdict:?}, expected unknown"));
        }
    }
    row.st_unknown = lat(gen);
    row.ver_unknown = lat(ver);
    row.unknown_json = median_usize(sizes);
    row.measure_secs = t_measure.elapsed().as_secs_f64();
    row
}

// ---------------------------------------------------------------------------
// Reopen and serve.
// ---------------------------------------------------------------------------

#[derive(Default, Clone, serde::Serialize, serde::Deserialize)]
struct Reopen {
    lock_wait_ms: f64,
    store_open_ms: f64,
    ledger_open_ms: f64,
    rss_kb_after_open: u64,
    hwm_kb_after_open: u64,
    tree_size: u64,
    first_status_ms: f64,
    status: (f64, f64, usize),
    rss_kb_after_status: u64,
    /// From the store's open until its key filters were filled (their
    /// scans run beside everything above).
    #[serde(default)]
    filters_filled_ms: Option<f64>,
}

/// Opens DIR, times it, and takes status proofs for credentials read from
/// random log entries.
fn reopen(data: &Path, status_samples: usize, seed: u64, wait_filters: bool) -> Reopen {
    let signer = read_signer(&data.join("log.key")).expect("log key");
    // The index releases its lock only when its background threads let go
    // of the database, which can be a moment after the last handle is
    // dropped: retry on the lock, and report the wait apart.
    let t_wait = Instant::now();
    let (t, (store, handle)) = loop {
        let t = Instant::now();
        match open_store(&data.join("db")) {
            Ok(s) => break (t, s),
            Err(e) if e.contains("lock") && t_wait.elapsed() < Duration::from_secs(120) => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("open store: {e}"),
        }
    };
    let store_open = t.elapsed();
    let lock_wait = t.duration_since(t_wait);
    let store_started = t;
    let t = Instant::now();
    let ledger = Ledger::open(store, signer, now_ms()).expect("Ledger::open");
    let ledger_open = t.elapsed();
    let (rss, hwm) = rss_kb("self");
    let size = ledger.checkpoint().size();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut first = None;
    let mut v = Vec::new();
    while v.len() < status_samples {
        let i = rng.gen_range(0..size);
        let Ok(Entry::Event(e)) = Entry::decode(&ledger.entry(i).expect("entry")) else {
            continue;
        };
        let t = Instant::now();
        let p = ledger
            .status_proof(&e.event.credential)
            .expect("status proof");
        let d = t.elapsed();
        first.get_or_insert(d);
        v.push(d);
        std::hint::black_box(p);
    }
    let l = lat(v);
    let mut filters_filled_ms = None;
    if wait_filters {
        while !handle.key_filters_ready() && t_wait.elapsed() < Duration::from_secs(600) {
            std::thread::sleep(Duration::from_millis(5));
        }
        filters_filled_ms = Some(store_started.elapsed().as_secs_f64() * 1e3);
    }
    let r = Reopen {
        filters_filled_ms,
        lock_wait_ms: lock_wait.as_secs_f64() * 1e3,
        store_open_ms: store_open.as_secs_f64() * 1e3,
        ledger_open_ms: ledger_open.as_secs_f64() * 1e3,
        rss_kb_after_open: rss,
        hwm_kb_after_open: hwm,
        tree_size: size,
        first_status_ms: first.unwrap_or_default().as_secs_f64() * 1e3,
        status: (l.p50, l.p99, l.n),
        rss_kb_after_status: rss_kb("self").0,
    };
    drop(ledger);
    drop(handle);
    r
}

#[derive(Default, Clone)]
struct ServeRun {
    to_listening_ms: f64,
    to_checkpoint_ms: f64,
    checkpoint_size: u64,
    checks: Vec<String>,
    rss_kb: u64,
    exit: String,
}

fn http_get(url: &str) -> Result<String, String> {
    match ureq::get(url).timeout(Duration::from_secs(60)).call() {
        Ok(r) => r.into_string().map_err(|e| e.to_string()),
        Err(ureq::Error::Status(code, r)) => Err(format!(
            "HTTP {code}: {}",
            r.into_string().unwrap_or_default().trim()
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// Starts `revledger serve --data DIR --listen 127.0.0.1:0`, times it until
/// /checkpoint answers, optionally checks /checkpoint and /status, then
/// SIGTERMs it.
fn serve_once(
    bin: &Path,
    data: &Path,
    vkey: &NoteVerifier,
    want_size: u64,
    probes: &[(CredentialId, &'static str)],
) -> Result<ServeRun, String> {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data.join("serve-stderr.log"))
        .map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let mut child = std::process::Command::new(bin)
        .arg("serve")
        .arg("--data")
        .arg(data)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", bin.display()))?;
    let pid = child.id().to_string();
    let mut out = std::io::BufReader::new(child.stdout.take().ok_or("no stdout")?);
    let mut run = ServeRun::default();
    let mut base = None;
    let mut line = String::new();
    while out.read_line(&mut line).map_err(|e| e.to_string())? > 0 {
        if let Some(a) = line.trim().strip_prefix("listening on ") {
            base = Some(a.to_string());
            break;
        }
        line.clear();
    }
    run.to_listening_ms = t0.elapsed().as_secs_f64() * 1e3;
    let result = (|| {
        let base = base.ok_or("serve exited without listening (see serve-stderr.log)")?;
        let text = loop {
            match http_get(&format!("{base}/checkpoint")) {
                Ok(t) => break t,
                Err(e) if t0.elapsed() > Duration::from_secs(120) => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        };
        run.to_checkpoint_ms = t0.elapsed().as_secs_f64() * 1e3;
        let ckpt = verify_checkpoint(&text, vkey).map_err(|e| format!("/checkpoint: {e}"))?;
        run.checkpoint_size = ckpt.size();
        run.checks.push(format!(
            "/checkpoint verifies with DIR/log.vkey, size {} ({})",
            ckpt.size(),
            if ckpt.size() == want_size {
                "= the ledger's final size"
            } else {
                "DIFFERS from the ledger's final size"
            }
        ));
        for (id, want) in probes {
            let t = Instant::now();
            let body = http_get(&format!("{base}/status/{}", id.to_hex()))?;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            let proof = StatusProof::from_json(&body).map_err(|e| format!("/status: {e}"))?;
            let verdict = verify_status(
                &proof,
                id,
                vkey,
                now_ms(),
                Policy::with_max_age_ms(24 * 3_600_000),
            );
            run.checks.push(format!(
                "/status/{}…: {} bytes in {ms:.1} ms, verify_status → {} (expected {want}){}",
                &id.to_hex()[..12],
                body.len(),
                verdict.name(),
                if verdict.name() == *want {
                    ""
                } else {
                    " MISMATCH"
                }
            ));
        }
        run.rss_kb = rss_kb(&pid).0;
        Ok::<(), String>(())
    })();
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(&pid)
        .status();
    let status = child.wait().map_err(|e| e.to_string())?;
    run.exit = format!("{status}");
    result.map(|()| run)
}

// ---------------------------------------------------------------------------
// Report.
// ---------------------------------------------------------------------------

struct Report {
    header: String,
    rows: Vec<Row>,
    finish: String,
}

fn mb(kb: u64) -> String {
    format!("{:.0}", kb as f64 / 1024.0)
}

fn us(l: &Lat) -> String {
    format!("{:.0} / {:.0}", l.p50, l.p99)
}

impl Report {
    fn markdown(&self) -> String {
        let mut s = self.header.clone();
        if self.rows.is_empty() {
            return s;
        }
        let cols: Vec<String> = self.rows.iter().map(|r| format!("{}", r.events)).collect();
        let _ = writeln!(s, "\n## Per milestone\n");
        let _ = writeln!(s, "| | {} |", cols.join(" | "));
        let _ = writeln!(s, "|---|{}", "---:|".repeat(cols.len()));
        let mut line = |name: &str, f: &dyn Fn(&Row) -> String| {
            let vals: Vec<String> = self.rows.iter().map(f).collect();
            let _ = writeln!(s, "| {name} | {} |", vals.join(" | "));
        };
        line("tree size (entries, incl. head records + registry)", &|r| {
            r.tree_size.to_string()
        });
        line("credentials issued", &|r| r.credentials.to_string());
        line("suspend / resume / revoke so far", &|r| {
            format!("{} / {} / {}", r.counts[1], r.counts[2], r.counts[3])
        });
        line("segment events", &|r| r.seg_events.to_string());
        line("segment wall s", &|r| format!("{:.1}", r.seg_wall));
        line("  of which plan+sign s (all cores, ledger idle)", &|r| {
            format!("{:.1}", r.seg_plan_sign)
        });
        line("  of which Ledger::append_events s", &|r| {
            format!("{:.1}", r.seg_ledger)
        });
        line(
            "**ledger rate, events/s** (append_events time only)",
            &|r| format!("**{:.0}**", r.seg_events as f64 / r.seg_ledger.max(1e-9)),
        );
        line("end-to-end rate incl. signing, events/s", &|r| {
            format!("{:.0}", r.seg_events as f64 / r.seg_wall.max(1e-9))
        });
        line("append_events per batch p50 / p99 / max ms", &|r| {
            format!(
                "{:.0} / {:.0} / {:.0}",
                r.batch.p50 / 1e3,
                r.batch.p99 / 1e3,
                r.batch.max / 1e3
            )
        });
        line("process CPU s in segment (user+sys)", &|r| {
            format!("{:.1}", r.seg_cpu)
        });
        line(
            "bytes written to storage per event in segment (/proc/self/io)",
            &|r| {
                format!(
                    "{:.0}",
                    r.seg_write_bytes as f64 / r.seg_events.max(1) as f64
                )
            },
        );
        line("VmRSS MiB", &|r| mb(r.rss_kb));
        line("VmHWM MiB", &|r| mb(r.hwm_kb));
        line("du DIR/db MiB (allocated)", &|r| {
            format!("{:.1}", r.du_bytes as f64 / 1048576.0)
        });
        line("DIR/db apparent MiB / files", &|r| {
            format!(
                "{:.1} / {}",
                r.apparent_bytes as f64 / 1048576.0,
                r.db_files
            )
        });
        line("DiskStore::size_on_disk MiB", &|r| {
            format!("{:.1}", r.store_size as f64 / 1048576.0)
        });
        line("**disk bytes per event** (du)", &|r| {
            format!("**{:.0}**", r.du_bytes as f64 / r.events.max(1) as f64)
        });
        line("inclusion proof p50 / p99 µs", &|r| us(&r.incl));
        line("status_proof known p50 / p99 µs", &|r| us(&r.st_known));
        line("status_proof unknown p50 / p99 µs", &|r| us(&r.st_unknown));
        line("verify_status known p50 / p99 µs", &|r| us(&r.ver_known));
        line("verify_status unknown p50 / p99 µs", &|r| {
            us(&r.ver_unknown)
        });
        line("status proof JSON bytes known / unknown (median)", &|r| {
            format!("{} / {}", r.known_json, r.unknown_json)
        });
        line("known verdicts valid / suspended / revoked / other", &|r| {
            format!(
                "{} / {} / {} / {}",
                r.verdicts[0], r.verdicts[1], r.verdicts[2], r.verdicts[3]
            )
        });
        line("verdicts differing from the plan", &|r| {
            r.mismatches.to_string()
        });
        line("measurement pause s", &|r| format!("{:.1}", r.measure_secs));
        line("machine load average (1/5/15 min) at the milestone", &|r| {
            r.loadavg.clone()
        });
        for r in &self.rows {
            if let Some(m) = &r.first_mismatch {
                let _ = writeln!(s, "\nFIRST MISMATCH at {}: {m}", r.events);
            }
        }
        s.push_str(&self.finish);
        s
    }

    fn write(&self, path: Option<&Path>) {
        if let Some(p) = path {
            if let Err(e) = std::fs::write(p, self.markdown()) {
                eprintln!("writing {}: {e}", p.display());
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Main.
// ---------------------------------------------------------------------------

/// As the node (main.rs): mimalloc serves the per-event churn of small
/// buffers much faster than glibc malloc (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // As the node does (main.rs), so that its memory is the node's.
    let _ = revledger::priority::disable_transparent_huge_pages();
    let args = Args::parse();
    let _ = CACHE_MB.set(args.cache_mb);
    if args.reopen_only {
        // Not waiting for the key filters: the caller times the whole process.
        let r = reopen(&args.data, 200, args.seed, false);
        println!(
            "REOPEN {}",
            serde_json::to_string(&r).expect("serialise reopen figures")
        );
        return;
    }
    if args.finish_only {
        match finish_only(&args) {
            Ok(md) => {
                println!("{md}");
                if let Some(p) = &args.report {
                    let mut f = std::fs::OpenOptions::new()
                        .append(true)
                        .create(true)
                        .open(p)
                        .expect("opening the report");
                    f.write_all(md.as_bytes()).expect("appending to the report");
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    if args.breakdown_only {
        let md = breakdown(&args.data.join("db"));
        println!("{md}");
        if let Some(p) = &args.report {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(p)
                .expect("opening the report");
            f.write_all(md.as_bytes()).expect("appending to the report");
        }
        return;
    }
    if let Err(e) = run(&args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), String> {
    let data = &args.data;
    let (log_signer, submitter) = if args.resume {
        (
            read_signer(&data.join("log.key"))?,
            read_signer(&data.join("submitter.key"))?,
        )
    } else {
        if data.join("log.key").exists() || data.join("db").exists() {
            return Err(format!(
                "{} already holds a log; give a fresh directory (or --resume)",
                data.display()
            ));
        }
        std::fs::create_dir_all(data).map_err(|e| format!("creating {}: {e}", data.display()))?;
        let log_signer = NoteSigner::generate(
            KeyName::new("localhost/revledger").map_err(|e| e.to_string())?,
            &mut rand_core::OsRng,
        );
        write_key_pair(&log_signer, data, "log")?;
        let submitter = NoteSigner::generate(
            KeyName::new("local-submitter").map_err(|e| e.to_string())?,
            &mut rand_core::OsRng,
        );
        write_key_pair(&submitter, data, "submitter")?;
        (log_signer, submitter)
    };
    let vkey = log_signer.verifier();
    let db_dir = data.join("db");

    let mut milestones: Vec<u64> = if args.milestones.is_empty() {
        [10_000, 100_000, 1_000_000, 10_000_000]
            .into_iter()
            .filter(|m| *m < args.events)
            .collect()
    } else {
        args.milestones
            .iter()
            .copied()
            .filter(|m| *m < args.events)
            .collect()
    };
    milestones.push(args.events);
    milestones.sort_unstable();
    milestones.dedup();

    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let main_or_side = format!(
        "the node's `DiskStore::open` (log in append-only files; fjall index with a {} MiB block cache)",
        args.cache_mb
    );
    let mut report = Report {
        header: format!(
            "# revledger scale run\n\n\
             - command: `{}`\n\
             - store: {main_or_side}\n\
             - events: {} in batches of {} through `Ledger::append_events` (strict signature check, rules, Merkle log, status map, head record, log files fsynced then the index batch with its journal fsynced, signed checkpoint per batch)\n\
             - mix: {}% suspend/resume/revoke of random earlier credentials, the rest issues of fresh credentials with distinct holder tags; one registered submitter (kinds all)\n\
             - signing: events planned and signed on {threads} threads in chunks of {} batches *before* the ledger appends them (never concurrently), so the ledger time is its own\n\
             - machine: {threads} cores (shared), {} MiB RAM; latencies are nearest-rank over {} random samples per figure; status proofs are verified with `verify_status` and compared with the planned state\n",
            std::env::args().collect::<Vec<_>>().join(" "),
            args.events,
            args.batch,
            args.mutate_pct,
            args.sign_ahead,
            mem_total_mb(),
            args.samples,
        ),
        rows: Vec::new(),
        finish: String::new(),
    };
    println!("{}", report.header);

    let (store, handle) = open_store(&db_dir)?;
    let t_open = Instant::now();
    let mut ledger =
        Ledger::open(store, log_signer.clone(), now_ms()).map_err(|e| e.to_string())?;
    ledger
        .reconcile_submitters(
            &[Submitter {
                key: submitter.verifier(),
                kinds: KindSet::ALL,
            }],
            now_ms(),
        )
        .map_err(|e| e.to_string())?;
    println!(
        "{} {} (log key, submitter key, db) in {:.0} ms",
        if args.resume { "opened" } else { "created" },
        data.display(),
        t_open.elapsed().as_secs_f64() * 1e3
    );

    let base_ms = now_ms();
    let mut planner = Planner::new(
        args.seed,
        submitter.id(),
        base_ms,
        (args.mutate_pct / 100.0).clamp(0.0, 1.0),
    );
    if args.resume {
        // The plan depends only on the seed and the mix, not on times or
        // signatures: replaying it event by event restores the planner's
        // view of every credential.
        let t = Instant::now();
        let size = ledger.checkpoint().size();
        let mut done = 0u64;
        for i in 0..size {
            let bytes = ledger.entry(i).map_err(|e| e.to_string())?;
            if matches!(Entry::decode(&bytes), Ok(Entry::Event(_))) {
                done += 1;
            }
        }
        for _ in 0..done {
            planner.next();
        }
        let line = format!(
            "- resumed: {done} events already logged ({size} entries), plan replayed in {:.0} s; this report covers the milestones after them\n",
            t.elapsed().as_secs_f64()
        );
        println!("{line}");
        report.header.push_str(&line);
        milestones.retain(|m| *m > done);
    }
    let mut sample_rng = ChaCha8Rng::seed_from_u64(args.seed ^ 0x5ca1e);
    let mut seg = Segment::new();
    let mut refused = 0u64;
    let mut duplicates = 0u64;
    let mut first_refusal: Option<String> = None;
    let started = Instant::now();
    let mut last_print = Instant::now();
    let resumed_from = planner.seq;
    let mut last_print_events = planner.seq;
    let batch = args.batch.max(1);

    for &milestone in &milestones {
        while planner.seq < milestone {
            let n = ((args.sign_ahead.max(1) * batch) as u64).min(milestone - planner.seq);
            let t = Instant::now();
            let plans: Vec<Event> = (0..n).map(|_| planner.next()).collect();
            let signed = sign_all(&submitter, &plans, threads);
            drop(plans);
            seg.plan_sign += t.elapsed();
            for b in signed.chunks(batch) {
                let t = Instant::now();
                let r = ledger
                    .append_events(b, now_ms())
                    .map_err(|e| format!("append_events at event {}: {e}", seg.events))?;
                let d = t.elapsed();
                seg.ledger += d;
                seg.batches.push(d);
                for o in &r.outcomes {
                    match o {
                        Outcome::Accepted { .. } => {}
                        Outcome::Duplicate { .. } => duplicates += 1,
                        Outcome::Refused(why) => {
                            refused += 1;
                            first_refusal.get_or_insert_with(|| why.to_string());
                        }
                    }
                }
            }
            seg.events += n;
            if last_print.elapsed() >= Duration::from_secs(30) {
                let (rss, _) = rss_kb("self");
                println!(
                    "[{:>6.0}s] {} / {} events, {:.0} events/s over the last {:.0}s (wall, incl. signing), RSS {} MiB, refused {refused}",
                    started.elapsed().as_secs_f64(),
                    planner.seq,
                    args.events,
                    (planner.seq - last_print_events) as f64 / last_print.elapsed().as_secs_f64(),
                    last_print.elapsed().as_secs_f64(),
                    mb(rss),
                );
                let _ = std::io::stdout().flush();
                last_print = Instant::now();
                last_print_events = planner.seq;
            }
        }
        let row = measure(
            &ledger,
            &handle,
            &planner,
            std::mem::replace(&mut seg, Segment::new()),
            &db_dir,
            args.samples,
            &mut sample_rng,
        );
        println!(
            "milestone {}: tree {}, ledger {:.0} ev/s, wall {:.0} ev/s, RSS {} MiB (HWM {}), du {:.1} MiB = {:.0} B/event, incl {} µs, status known {} µs, unknown {} µs, verify {} µs, mismatches {}",
            row.events,
            row.tree_size,
            row.seg_events as f64 / row.seg_ledger.max(1e-9),
            row.seg_events as f64 / row.seg_wall.max(1e-9),
            mb(row.rss_kb),
            mb(row.hwm_kb),
            row.du_bytes as f64 / 1048576.0,
            row.du_bytes as f64 / row.events.max(1) as f64,
            us(&row.incl),
            us(&row.st_known),
            us(&row.st_unknown),
            us(&row.ver_known),
            row.mismatches,
        );
        let _ = std::io::stdout().flush();
        report.rows.push(row);
        // Reset the segment clock after the pause.
        seg = Segment::new();
        report.write(args.report.as_deref());
    }

    let total_ledger: f64 = report.rows.iter().map(|r| r.seg_ledger).sum();
    let this_run = planner.seq - resumed_from;
    let total_sign: f64 = report.rows.iter().map(|r| r.seg_plan_sign).sum();
    let mut fin = String::new();
    let _ = writeln!(
        fin,
        "\n## Totals\n\n- {} events (this run) in {:.0} s of ingest wall time ({:.0} s in append_events, {:.0} s planning+signing); overall ledger rate {:.0} events/s\n- outcomes: refused {refused}, duplicates {duplicates}{}\n- event mix: {} issue, {} suspend, {} resume, {} revoke\n- the example's own planning state: {:.1} MiB (2 bits per credential + suspended list), plus one signed chunk of {} events in flight",
        this_run,
        report.rows.iter().map(|r| r.seg_wall).sum::<f64>(),
        total_ledger,
        total_sign,
        this_run as f64 / total_ledger.max(1e-9),
        first_refusal.map(|r| format!(" (first: {r})")).unwrap_or_default(),
        planner.counts[0],
        planner.counts[1],
        planner.counts[2],
        planner.counts[3],
        planner.heap_bytes() as f64 / 1048576.0,
        args.sign_ahead * batch,
    );

    // Probes for the serve check: one active, one suspended if any, one unknown.
    let final_size = ledger.checkpoint().size();
    let mut probes: Vec<(CredentialId, &'static str)> = Vec::new();
    for want in [ACTIVE, SUSPENDED, REVOKED] {
        if let Some(k) = (0..planner.issued).find(|k| planner.state(*k) == want) {
            probes.push((cred_id(args.seed, k), expected_verdict(want)));
        }
    }
    probes.push((unknown_id(args.seed, 42), "unknown"));

    // Close.
    let t = Instant::now();
    drop(ledger);
    drop(handle);
    let close_ms = t.elapsed().as_secs_f64() * 1e3;
    let (rss_closed, hwm) = rss_kb("self");
    let _ = writeln!(
        fin,
        "\n## Close and restart\n\n- close (drop Ledger + DiskStore): {close_ms:.0} ms; this process's RSS after close {} MiB (HWM {} MiB)\n",
        mb(rss_closed),
        mb(hwm)
    );

    fin.push_str(&restart_and_serve(
        args,
        &vkey,
        final_size,
        &probes,
        planner.seq,
    )?);
    report.finish = fin;
    report.write(args.report.as_deref());
    println!("{}", report.finish);
    Ok(())
}

/// The end of a run: in-process and fresh-process reopens, `revledger
/// serve` starts with checks, disk use and the key-space breakdown.
fn restart_and_serve(
    args: &Args,
    vkey: &NoteVerifier,
    final_size: u64,
    probes: &[(CredentialId, &'static str)],
    events: u64,
) -> Result<String, String> {
    let data = &args.data;
    let db_dir = data.join("db");
    let mut fin = String::new();
    let _ = writeln!(fin, "| reopen | wait for the lock ms | DiskStore open ms | Ledger::open ms | RSS after open MiB | first status_proof ms | status_proof p50 / p99 µs (200, ids from random entries) | RSS after MiB | key filters filled ms after open |");
    let _ = writeln!(fin, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for i in 0..args.reopens {
        let r = reopen(data, 200, args.seed + i as u64, true);
        let _ = writeln!(
            fin,
            "| in-process #{} | {:.0} | {:.1} | {:.1} | {} | {:.2} | {:.0} / {:.0} | {} | {:.0} |",
            i + 1,
            r.lock_wait_ms,
            r.store_open_ms,
            r.ledger_open_ms,
            mb(r.rss_kb_after_open),
            r.first_status_ms,
            r.status.0,
            r.status.1,
            mb(r.rss_kb_after_status),
            r.filters_filled_ms.unwrap_or(f64::NAN)
        );
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    for i in 0..args.fresh_reopens {
        let t = Instant::now();
        let mut cmd = std::process::Command::new(&exe);
        cmd.arg("--data")
            .arg(data)
            .arg("--reopen-only")
            .arg("--cache-mb")
            .arg(args.cache_mb.to_string())
            .arg("--seed")
            .arg((args.seed + 100 + i as u64).to_string());
        let out = cmd.output().map_err(|e| e.to_string())?;
        let wall = t.elapsed().as_secs_f64() * 1e3;
        let text = String::from_utf8_lossy(&out.stdout);
        match text
            .lines()
            .find_map(|l| l.strip_prefix("REOPEN "))
            .and_then(|j| serde_json::from_str::<Reopen>(j).ok())
        {
            Some(r) => {
                let _ = writeln!(
                    fin,
                    "| fresh process #{} (whole process {wall:.0} ms) | {:.0} | {:.1} | {:.1} | {} (HWM {}) | {:.2} | {:.0} / {:.0} | {} | not waited for |",
                    i + 1,
                    r.lock_wait_ms,
                    r.store_open_ms,
                    r.ledger_open_ms,
                    mb(r.rss_kb_after_open),
                    mb(r.hwm_kb_after_open),
                    r.first_status_ms,
                    r.status.0,
                    r.status.1,
                    mb(r.rss_kb_after_status)
                );
            }
            None => {
                let _ = writeln!(
                    fin,
                    "| fresh process #{} FAILED: {} {} | | | | | | | | |",
                    i + 1,
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
    }
    let _ = writeln!(
        fin,
        "\n(The OS page cache is warm in every reopen: nothing here drops it.)"
    );

    if args.serve_starts > 0 {
        let bin = args
            .serve_bin
            .clone()
            .or_else(|| Some(exe.parent()?.parent()?.join("revledger")))
            .ok_or("no --serve-bin")?;
        let _ = writeln!(
            fin,
            "\n## `revledger serve --data DIR --listen 127.0.0.1:0` on the result\n\nbinary: `{}`\n",
            bin.display()
        );
        if !bin.exists() {
            let _ = writeln!(
                fin,
                "NOT RUN: {} does not exist (build it with `cargo build --release`)",
                bin.display()
            );
        } else {
            let _ = writeln!(fin, "| start | to 'listening' ms | to first /checkpoint 200 ms | checkpoint size | serve RSS MiB after requests | exit after SIGTERM |");
            let _ = writeln!(fin, "|---|---:|---:|---:|---:|---|");
            let mut checks = Vec::new();
            for i in 0..args.serve_starts {
                let p: &[(CredentialId, &str)] = if i == 0 { probes } else { &[] };
                match serve_once(&bin, data, vkey, final_size, p) {
                    Ok(r) => {
                        let _ = writeln!(
                            fin,
                            "| #{} | {:.0} | {:.0} | {} | {} | {} |",
                            i + 1,
                            r.to_listening_ms,
                            r.to_checkpoint_ms,
                            r.checkpoint_size,
                            if r.rss_kb > 0 {
                                mb(r.rss_kb)
                            } else {
                                "-".into()
                            },
                            r.exit
                        );
                        checks.extend(r.checks);
                    }
                    Err(e) => {
                        let _ = writeln!(fin, "| #{} FAILED: {e} | | | | | |", i + 1);
                    }
                }
            }
            let _ = writeln!(fin, "\nChecks on the first start:\n");
            for c in checks {
                let _ = writeln!(fin, "- {c}");
            }
            let _ = writeln!(
                fin,
                "\n(serve logs: `{}`)",
                data.join("serve-stderr.log").display()
            );
        }
    }
    let (du_b, app_b, files) = du(&db_dir);
    let _ = writeln!(
        fin,
        "\nFinal DIR/db: {:.1} MiB allocated, {:.1} MiB apparent, {files} files ({:.0} bytes per event)",
        du_b as f64 / 1048576.0,
        app_b as f64 / 1048576.0,
        du_b as f64 / events.max(1) as f64
    );
    fin.push_str(&breakdown(&db_dir));
    Ok(fin)
}

/// `--finish-only`: the end of a run on an existing DIR (e.g. after the
/// ingest was stopped): a first open (recovering if the ingest was killed),
/// probes found from random log entries with their verdicts from the local
/// ledger, then [`restart_and_serve`].
fn finish_only(args: &Args) -> Result<String, String> {
    let data = &args.data;
    let signer = read_signer(&data.join("log.key"))?;
    let vkey = signer.verifier();
    let t = Instant::now();
    let (store, handle) = open_store(&data.join("db"))?;
    let store_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let ledger = Ledger::open(store, signer, now_ms()).map_err(|e| e.to_string())?;
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    let (rss, _) = rss_kb("self");
    let final_size = ledger.checkpoint().size();
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed ^ 0xf1);
    let mut probes: Vec<(CredentialId, &'static str)> = Vec::new();
    for _ in 0..50_000 {
        if probes.len() == 3 {
            break;
        }
        let i = rng.gen_range(0..final_size);
        let Ok(Entry::Event(e)) = Entry::decode(&ledger.entry(i).map_err(|e| e.to_string())?)
        else {
            continue;
        };
        let id = e.event.credential;
        let p = ledger.status_proof(&id).map_err(|e| e.to_string())?;
        let v = verify_status(
            &p,
            &id,
            &vkey,
            now_ms(),
            Policy::with_max_age_ms(30 * 86_400_000),
        );
        let name = v.name();
        if !probes.iter().any(|(_, n)| *n == name) {
            probes.push((id, name));
        }
    }
    probes.push((unknown_id(args.seed, 42), "unknown"));
    // The number of events is not stored apart from head records and
    // registry changes; per-event figures divide by tree entries here.
    let events = final_size;
    drop(ledger);
    drop(handle);
    let mut fin = format!(
        "\n## Finish on the existing data dir (`--finish-only`)\n\n- first open after the ingest process stopped: DiskStore open {store_ms:.0} ms, Ledger::open {open_ms:.0} ms (recovery included), RSS {} MiB; checkpoint size {final_size}\n- probe verdicts taken from this ledger (verify_status, 30-day max age): {}\n- per-event figures below divide by tree entries ({events})\n",
        mb(rss),
        probes
            .iter()
            .map(|(id, n)| format!("{}… {n}", &id.to_hex()[..12]))
            .collect::<Vec<_>>()
            .join(", ")
    );
    fin.push_str(&restart_and_serve(
        args, &vkey, final_size, &probes, events,
    )?);
    Ok(fin)
}

/// Logical bytes per key space, by iterating every key of the stopped
/// store, against what each occupies on disk.
fn breakdown(db_dir: &Path) -> String {
    let t = Instant::now();
    let store = match DiskStore::open(db_dir) {
        Ok(s) => s,
        Err(e) => return format!("\nbreakdown: opening {}: {e}\n", db_dir.display()),
    };
    let spaces = match store.index_breakdown() {
        Ok(v) => v,
        Err(e) => return format!("\nbreakdown: {e}\n"),
    };
    drop(store);
    // The log files: entries (bytes + end offsets) and tree hashes.
    let file_len = |n: &str| std::fs::metadata(db_dir.join(n)).map_or(0, |m| m.len());
    let file = |name: &'static str, keys: u64, bytes: u64| SpaceBytes {
        name,
        keys,
        value_bytes: bytes,
        on_disk: bytes,
        ..SpaceBytes::default()
    };
    // Each row with the prefix the report shows before its name.
    let mut rows: Vec<(&str, SpaceBytes)> = spaces.into_iter().map(|r| ("index: ", r)).collect();
    rows.push((
        "",
        file(
            "file: entries + entries.idx",
            file_len("entries.idx") / 8,
            file_len("entries") + file_len("entries.idx"),
        ),
    ));
    rows.push((
        "",
        file("file: hashes", file_len("hashes") / 32, file_len("hashes")),
    ));
    let logical = |r: &SpaceBytes| r.key_bytes + r.value_bytes;
    let total: u64 = rows.iter().map(|(_, r)| logical(r)).sum();
    let on_disk: u64 = rows.iter().map(|(_, r)| r.on_disk).sum();
    let mut s = format!(
        "\n## Logical bytes per key space (iterated in {:.0} s)\n\n| space | keys | key bytes | value bytes | key+value MiB | share | on disk MiB | on disk / logical |\n|---|---:|---:|---:|---:|---:|---:|---:|\n",
        t.elapsed().as_secs_f64()
    );
    for (prefix, r) in &rows {
        let l = logical(r);
        let _ = writeln!(
            s,
            "| {prefix}{} | {} | {} | {} | {:.1} | {:.1}% | {:.1} | {} |",
            r.name,
            r.keys,
            r.key_bytes,
            r.value_bytes,
            l as f64 / 1048576.0,
            100.0 * l as f64 / total.max(1) as f64,
            r.on_disk as f64 / 1048576.0,
            if l > 0 {
                format!("x{:.2}", r.on_disk as f64 / l as f64)
            } else {
                "-".into()
            }
        );
    }
    let _ = writeln!(
        s,
        "\nLogical total {:.1} MiB; on disk (index sorted runs + journal + the log files) {:.1} MiB (x{:.2} of the logical bytes).",
        total as f64 / 1048576.0,
        on_disk as f64 / 1048576.0,
        on_disk as f64 / total.max(1) as f64
    );
    s
}

fn mem_total_mb() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}
