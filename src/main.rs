//! The `revledger` command line (DESIGN §7).
//!
//! Architecture Invariant: the edges only. Every rule, format and check
//! lives in the library; this file parses flags, reads and writes files,
//! and prints.

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use clap::{Parser, Subcommand};
use revledger::checkpoint::verify_checkpoint;
use revledger::entry::{Action, CredentialId, Entry, Event, EventKind, HolderTag, KindSet, Reason};
use revledger::hash::leaf_hash;
use revledger::ledger::{Ledger, Submitter};
use revledger::merkle;
use revledger::note::{KeyName, NoteSigner, NoteVerifier};
use revledger::server::{
    self, metrics::Metrics, AcceptedJson, AppState, ItemJson, Sequencer, SequencerConfig,
    SubmitResponse,
};
use revledger::status::{verify_status, Policy, StatusProof, Verdict};
use revledger::store::{DiskStore, Store};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "revledger",
    version,
    about = "Revocation-ledger node and tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node.
    Serve(ServeArgs),
    /// Write PREFIX.key (mode 0600) and PREFIX.vkey (signed-note verifier key).
    Keygen {
        /// The key name (for a log: its origin).
        #[arg(long)]
        name: String,
        /// Output path prefix.
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign an event, submit it, wait for its checkpoint and verify the
    /// inclusion proof received; print the node's answer for it as JSON.
    Submit(SubmitArgs),
    /// Fetch and verify a credential's status proof; exit 0 only when valid.
    Status {
        #[arg(long)]
        node: String,
        /// The log's verifier key file.
        #[arg(long)]
        vkey: PathBuf,
        /// Oldest acceptable head record, e.g. `10m`, `2h`.
        #[arg(long, default_value = "1h")]
        max_age: humantime::Duration,
        /// Also save the proof (to staple, or to verify offline later).
        #[arg(long)]
        save: Option<PathBuf>,
        /// Credential id, 64 hex digits.
        credential: String,
    },
    /// Check the log against the last checkpoint trusted in DIR: verify the
    /// new checkpoint, replay every new entry through tlog-tiles, recompute
    /// every tree and map root; exit non-zero with evidence on any
    /// inconsistency.
    Audit {
        #[arg(long)]
        node: String,
        /// The log's verifier key file.
        #[arg(long)]
        vkey: PathBuf,
        /// The auditor's state directory (trusted checkpoint, replayed state,
        /// evidence files).
        #[arg(long)]
        state: PathBuf,
        /// Keep polling and audit each new checkpoint.
        #[arg(long)]
        follow: bool,
        /// Seconds between polls with --follow.
        #[arg(long, default_value_t = 10)]
        interval_secs: u64,
    },
    /// Check a (stopped) node's data directory: replay every stored entry,
    /// recompute every tree hash, tile and status-map root, and compare them
    /// with what is stored and with the last signed checkpoint.
    Fsck {
        #[arg(long, default_value = "./revledger-data")]
        data: PathBuf,
    },
    /// Load generator: pre-signs events, then drives POST /events (and
    /// optionally status and tile reads) with concurrent clients and prints
    /// rates and latency percentiles.
    Loadgen {
        #[arg(long)]
        node: String,
        /// A registered submitter key allowed to issue.
        #[arg(long)]
        key: PathBuf,
        #[arg(long, default_value_t = 10_000)]
        events: usize,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Events per POST.
        #[arg(long, default_value_t = 1)]
        per_request: usize,
        /// GET /status requests after the submissions.
        #[arg(long, default_value_t = 0)]
        status_reads: usize,
        /// GET /tile/0/N requests after the submissions.
        #[arg(long, default_value_t = 0)]
        tile_reads: usize,
    },
    /// Offline verification.
    Verify {
        #[command(subcommand)]
        what: VerifyCommand,
    },
}

#[derive(Subcommand)]
enum VerifyCommand {
    /// Verify a saved status proof; exit 0 only when valid.
    Status {
        #[arg(long)]
        vkey: PathBuf,
        #[arg(long, default_value = "1h")]
        max_age: humantime::Duration,
        /// The status proof JSON file.
        proof: PathBuf,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Data directory (keys, the log files and the index).
    #[arg(long, default_value = "./revledger-data")]
    data: PathBuf,
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// Block cache of the index, in MiB: more serves more of the
    /// random-key indexes from memory instead of the kernel's page cache,
    /// for more RSS.
    #[arg(long, default_value_t = revledger::store::INDEX_CACHE_BYTES >> 20)]
    cache_mb: u64,
    /// The log's origin (= its key name); only used when creating the key.
    #[arg(long)]
    origin: Option<String>,
    /// Submitters file: one `<vkey> <kinds>` per line (kinds: `all` or a
    /// comma list of issue,suspend,resume,revoke).
    #[arg(long)]
    submitters: Option<PathBuf>,
    /// Wait this long for more submissions before sequencing a batch.
    #[arg(long, default_value_t = 0)]
    batch_interval_ms: u64,
    /// Most events per batch.
    #[arg(long, default_value_t = 4096)]
    max_batch: usize,
    /// Most submissions being checked or queued before answering 503.
    #[arg(long, default_value_t = 1024)]
    queue: usize,
    /// Append a head record alone after this many seconds without events.
    #[arg(long, default_value_t = 60)]
    heartbeat_secs: u64,
    /// Nice value of the sequencer thread, the one writer every submission
    /// waits on (Linux; below the process's own it needs CAP_SYS_NICE or
    /// RLIMIT_NICE, else a warning is logged). `keep` leaves it alone.
    #[arg(long, default_value_t = server::DEFAULT_SEQUENCER_NICE.to_string())]
    sequencer_nice: String,
    /// Nice value of the request handlers' threads (Linux). `auto`: 10 when
    /// the sequencer's nice value could not be set (no CAP_SYS_NICE), so
    /// that it still comes first, else the process's; `keep`: the
    /// process's. Raising it needs no privilege; below the process's own it
    /// needs CAP_SYS_NICE or RLIMIT_NICE, else a warning is logged once.
    #[arg(long, default_value = "auto")]
    handler_nice: String,
    /// Logs as JSON lines (for log collectors) instead of text.
    #[arg(long)]
    log_json: bool,
    /// Events per second each submitter may send (0: no limit); bursts of
    /// twice this are allowed.
    #[arg(long, default_value_t = 20_000)]
    submitter_rate: u32,
}

#[derive(clap::Args)]
struct SubmitArgs {
    #[arg(long)]
    node: String,
    /// The submitter's private key file (Go note private-key text).
    #[arg(long)]
    key: PathBuf,
    /// The log's verifier key: when given, the checkpoint's signature is
    /// checked too, not only the inclusion proof.
    #[arg(long)]
    vkey: Option<PathBuf>,
    kind: String,
    #[arg(long)]
    credential: String,
    /// Holder tag (64 hex digits). Required for issue; for other kinds it is
    /// read from the credential's last event when omitted.
    #[arg(long)]
    holder: Option<String>,
    /// Start of validity (RFC 3339 or YYYY-MM-DD); default now.
    #[arg(long)]
    not_before: Option<String>,
    /// End of validity (RFC 3339 or YYYY-MM-DD); default five years on.
    #[arg(long)]
    not_after: Option<String>,
    /// Reason: holder_request, lost, key_compromise, administrative.
    #[arg(long)]
    reason: Option<String>,
    /// The holder's previous credential that this issue replaces.
    #[arg(long)]
    replaces: Option<String>,
}

/// The node allocates and frees many small buffers per event (index
/// values, map pages, JSON); mimalloc served that churn much faster than
/// glibc malloc (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // Before the work allocates: see the function. A kernel that refuses
    // leaves huge pages as they were, which costs memory, not correctness.
    let _ = revledger::priority::disable_transparent_huge_pages();
    let code = match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Serve(args) => serve(args).map(|()| 0),
        Command::Keygen { name, out } => {
            let name = KeyName::new(name).context("invalid key name")?;
            let signer = NoteSigner::generate(name, &mut rand_core::OsRng);
            let (key, vkey) = write_key_pair(&signer, &out)?;
            println!("private key: {}", key.display());
            println!("verifier key: {}", vkey.display());
            println!("{}", signer.verifier().to_vkey_string());
            Ok(0)
        }
        Command::Submit(args) => submit(args).map(|()| 0),
        Command::Status {
            node,
            vkey,
            max_age,
            save,
            credential,
        } => {
            let vkey = read_vkey(&vkey)?;
            let id = parse_credential(&credential)?;
            let text = http_get(&format!(
                "{}/status/{}",
                node.trim_end_matches('/'),
                id.to_hex()
            ))?;
            if let Some(path) = save {
                std::fs::write(&path, &text)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            let proof = StatusProof::from_json(&text).context("the node's status proof")?;
            Ok(report(&proof, &id, &vkey, max_age.into()))
        }
        Command::Audit {
            node,
            vkey,
            state,
            follow,
            interval_secs,
        } => audit(
            &node,
            &vkey,
            &state,
            follow,
            Duration::from_secs(interval_secs.max(1)),
        ),
        Command::Fsck { data } => fsck(&data),
        Command::Loadgen {
            node,
            key,
            events,
            concurrency,
            per_request,
            status_reads,
            tile_reads,
        } => {
            let key = read_signer(&key)?;
            let cfg = revledger::loadgen::LoadConfig {
                node,
                events,
                concurrency,
                per_request,
                status_reads,
                tile_reads,
            };
            let reports = revledger::loadgen::run(&cfg, &key);
            for r in &reports {
                println!("{r}");
            }
            Ok(i32::from(reports.iter().any(|r| r.errors > 0)))
        }
        Command::Verify {
            what:
                VerifyCommand::Status {
                    vkey,
                    max_age,
                    proof,
                },
        } => {
            let vkey = read_vkey(&vkey)?;
            let text = std::fs::read_to_string(&proof)
                .with_context(|| format!("reading {}", proof.display()))?;
            let proof = StatusProof::from_json(&text).context("status proof file")?;
            Ok(report(&proof, &proof.credential, &vkey, max_age.into()))
        }
    }
}

/// Prints the verdict and returns the exit status: 0 valid, 2 suspended,
/// 3 revoked, 4 expired, 5 unknown, 6 stale, 7 invalid proof.
fn report(proof: &StatusProof, id: &CredentialId, vkey: &NoteVerifier, max_age: Duration) -> i32 {
    let policy = Policy::with_max_age_ms(max_age.as_millis() as u64);
    let verdict = verify_status(proof, id, vkey, server_now(), policy);
    let (code, detail) = match &verdict {
        Verdict::Valid {
            not_after_ms,
            head_time_ms,
        } => (
            0,
            format!(
                "active until {}, proof from {}",
                fmt_ms(*not_after_ms),
                fmt_ms(*head_time_ms)
            ),
        ),
        Verdict::Suspended { reason } => (2, format!("suspended ({reason})")),
        Verdict::Revoked { reason } => (3, format!("revoked ({reason})")),
        Verdict::Expired { not_after_ms } => (4, format!("expired at {}", fmt_ms(*not_after_ms))),
        Verdict::Unknown => (5, "the log has never seen this credential".to_string()),
        Verdict::Stale {
            head_time_ms,
            age_ms,
        } => (
            6,
            format!(
                "proof from {} is {}s old; fetch a fresh one",
                fmt_ms(*head_time_ms),
                age_ms / 1000
            ),
        ),
        Verdict::Invalid(why) => (7, format!("INVALID PROOF: {why}")),
    };
    println!("{} {}: {detail}", id.to_hex(), verdict.name());
    code
}

fn server_now() -> u64 {
    server::sequencer_now_ms()
}

fn fmt_ms(ms: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

fn parse_credential(s: &str) -> Result<CredentialId> {
    CredentialId::from_hex(s).ok_or_else(|| anyhow!("credential id must be 64 hex digits"))
}

fn read_vkey(path: &Path) -> Result<NoteVerifier> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    NoteVerifier::parse_vkey(text.trim())
        .with_context(|| format!("verifier key in {}", path.display()))
}

fn read_signer(path: &Path) -> Result<NoteSigner> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    NoteSigner::parse_private_key(text.trim())
        .with_context(|| format!("private key in {}", path.display()))
}

fn parse_date(s: &str) -> Result<u64> {
    let full = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_string()
    };
    let t = humantime::parse_rfc3339_weak(&full)
        .with_context(|| format!("`{s}` is not an RFC 3339 date"))?;
    Ok(t.duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| anyhow!("`{s}` is before 1970"))?
        .as_millis() as u64)
}

fn http_get(url: &str) -> Result<String> {
    match ureq::get(url).timeout(Duration::from_secs(30)).call() {
        Ok(r) => r.into_string().context("reading the response"),
        Err(ureq::Error::Status(code, r)) => {
            bail!(
                "{url}: HTTP {code}: {}",
                r.into_string().unwrap_or_default().trim()
            )
        }
        Err(e) => bail!("{url}: {e}"),
    }
}

fn submit(a: SubmitArgs) -> Result<()> {
    let signer = read_signer(&a.key)?;
    let node = a.node.trim_end_matches('/').to_string();
    let credential = parse_credential(&a.credential)?;
    let kind = EventKind::from_name(&a.kind)
        .ok_or_else(|| anyhow!("kind must be issue, suspend, resume or revoke"))?;
    let reason = match &a.reason {
        Some(r) => Some(Reason::from_name(r).ok_or_else(|| anyhow!("unknown reason `{r}`"))?),
        None => None,
    };
    let now = server_now();
    let holder = match &a.holder {
        Some(h) => HolderTag::from_hex(h).ok_or_else(|| anyhow!("holder must be 64 hex digits"))?,
        None if kind == EventKind::Issue => bail!("issue needs --holder"),
        None => holder_from_log(&node, &credential)?,
    };
    let action = match kind {
        EventKind::Issue => Action::Issue {
            not_before_ms: a
                .not_before
                .as_deref()
                .map(parse_date)
                .transpose()?
                .unwrap_or(now),
            not_after_ms: match a.not_after.as_deref() {
                Some(d) => parse_date(d)?,
                None => now + 5 * 365 * 86_400_000,
            },
            replaces: a.replaces.as_deref().map(parse_credential).transpose()?,
        },
        EventKind::Suspend => Action::Suspend {
            reason: reason.unwrap_or(Reason::Lost),
        },
        EventKind::Resume => Action::Resume,
        EventKind::Revoke => Action::Revoke {
            reason: reason.unwrap_or(Reason::HolderRequest),
        },
    };
    let event = Event {
        action,
        credential,
        holder,
        issuer_key_id: signer.id(),
        issued_at_ms: now,
    }
    .sign(signer.signing_key());
    let bytes = event.encode();
    let body =
        serde_json::json!({ "events": [base64::engine::general_purpose::STANDARD.encode(&bytes)] });
    let text = match ureq::post(&format!("{node}/events"))
        .timeout(Duration::from_secs(60))
        .send_json(body)
    {
        Ok(r) => r.into_string()?,
        Err(ureq::Error::Status(code, r)) => {
            bail!(
                "refused (HTTP {code}): {}",
                r.into_string().unwrap_or_default().trim()
            )
        }
        Err(e) => bail!("{node}: {e}"),
    };
    let resp: SubmitResponse = serde_json::from_str(&text).context("the node's answer")?;
    let item: AcceptedJson = match resp.results.into_iter().next() {
        Some(ItemJson::Accepted(a)) => a,
        Some(ItemJson::Refused { error, message }) => bail!("refused: {error}: {message}"),
        None => bail!("the node answered with no result"),
    };
    // Check what we got: our event's hash, and its inclusion in the
    // checkpoint (whose signature we check when we know the log's key).
    if item.leaf_hash != leaf_hash(&bytes) {
        bail!("the node acknowledged a different leaf hash");
    }
    let root = match &a.vkey {
        Some(p) => *verify_checkpoint(&item.checkpoint, &read_vkey(p)?)
            .context("the checkpoint received")?
            .root(),
        None => {
            let body = item.checkpoint.split("\n\n").next().unwrap_or_default();
            *revledger::checkpoint::Checkpoint::parse_body(&format!("{body}\n"))
                .context("the checkpoint received")?
                .root()
        }
    };
    merkle::verify_inclusion(
        &item.leaf_hash,
        item.index,
        item.inclusion.size,
        &item.inclusion.hashes,
        &root,
    )
    .context("the inclusion proof received does not verify")?;
    println!("{}", serde_json::to_string_pretty(&item)?);
    Ok(())
}

/// The holder tag of a known credential, from the event that last changed
/// it (its status proof carries it).
fn holder_from_log(node: &str, id: &CredentialId) -> Result<HolderTag> {
    let proof = StatusProof::from_json(&http_get(&format!("{node}/status/{}", id.to_hex()))?)?;
    let logged = proof
        .event
        .ok_or_else(|| anyhow!("the log does not know credential {}", id.to_hex()))?;
    match Entry::decode(&logged.entry) {
        Ok(Entry::Event(e)) if e.event.credential == *id => Ok(e.event.holder),
        Ok(Entry::Event(e)) => Ok(e.event.holder), // the issue that replaced it
        _ => bail!("the credential's last entry is not an event; give --holder"),
    }
}

/// The node over HTTP, as a tlog-tiles client.
struct HttpLog {
    base: String,
    agent: ureq::Agent,
}

impl revledger::audit::LogSource for HttpLog {
    fn checkpoint(&self) -> Result<String, String> {
        self.get(&format!("{}/checkpoint", self.base))
            .and_then(|b| String::from_utf8(b).map_err(|_| "checkpoint is not UTF-8".to_string()))
    }
    fn tile(&self, path: &revledger::tile::TilePath) -> Result<Vec<u8>, String> {
        self.get(&format!("{}/{}", self.base, path.to_path()))
    }
}

impl HttpLog {
    fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let resp = self
            .agent
            .get(url)
            .call()
            .map_err(|e| format!("{url}: {e}"))?;
        let mut body = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(resp.into_reader(), 64 << 20),
            &mut body,
        )
        .map_err(|e| format!("{url}: {e}"))?;
        Ok(body)
    }
}

fn audit(node: &str, vkey: &Path, state: &Path, follow: bool, interval: Duration) -> Result<i32> {
    use revledger::audit::{AuditError, Auditor};
    let vkey = read_vkey(vkey)?;
    std::fs::create_dir_all(state).with_context(|| format!("creating {}", state.display()))?;
    let store = DiskStore::open(&state.join("db"))?;
    let mut auditor = Auditor::open(store, vkey)?;
    let source = HttpLog {
        base: node.trim_end_matches('/').to_string(),
        agent: ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(60))
            .build(),
    };
    loop {
        let started = std::time::Instant::now();
        let mut last_print = started;
        let mut progress = |done: u64, total: u64| {
            if last_print.elapsed() >= Duration::from_secs(1) || done == total {
                let secs = started.elapsed().as_secs_f64().max(1e-3);
                let rate = done as f64 / secs;
                let eta = if rate > 0.0 {
                    (total - done) as f64 / rate
                } else {
                    0.0
                };
                eprint!(
                    "\r{done}/{total} entries ({:.1}%), {rate:.0}/s, ETA {eta:.0}s   ",
                    100.0 * done as f64 / total.max(1) as f64
                );
                last_print = std::time::Instant::now();
            }
        };
        match auditor.run(&source, &mut progress) {
            Ok(r) => {
                let secs = started.elapsed().as_secs_f64();
                if r.size > r.previous_size {
                    eprintln!();
                }
                println!(
                    "ok: checkpoint size {} (was {}), {} new entries: {} events, {} registry changes, {} head records; every signature, rule, map root and tile checked in {secs:.2}s",
                    r.size,
                    r.previous_size,
                    r.size - r.previous_size,
                    r.events,
                    r.registry_changes,
                    r.head_records
                );
            }
            Err(e) => {
                eprintln!();
                if let Some(evidence) = e.evidence() {
                    let name = format!("evidence-{}.txt", server_now());
                    let path = state.join(name);
                    std::fs::write(&path, &evidence)
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!(
                        "LOG MISBEHAVIOUR: {e}\nevidence saved to {}",
                        path.display()
                    );
                    return Ok(3);
                }
                match e {
                    AuditError::Fetch(_) if follow => eprintln!("warning: {e}; retrying"),
                    _ => return Err(e.into()),
                }
            }
        }
        if !follow {
            return Ok(0);
        }
        std::thread::sleep(interval);
    }
}

fn fsck(data: &Path) -> Result<i32> {
    use revledger::audit::{AuditError, Auditor};
    let vkey = read_vkey(&data.join("log.vkey"))?;
    let node = DiskStore::open(&data.join("db"))
        .context("opening the node's database (is the node still running?)")?;
    // The replay's own state goes to a scratch database, removed afterwards.
    let scratch = data.join("fsck-scratch");
    let _ = std::fs::remove_dir_all(&scratch);
    let result = {
        let mut auditor = Auditor::open(DiskStore::open(&scratch)?, vkey)?;
        let started = std::time::Instant::now();
        let mut last = started;
        let mut progress = |done: u64, total: u64| {
            if last.elapsed() >= Duration::from_secs(1) {
                eprint!("\r{done}/{total} entries checked   ");
                last = std::time::Instant::now();
            }
        };
        auditor.run(&revledger::ledger::StoredLog(&node), &mut progress)
    };
    let _ = std::fs::remove_dir_all(&scratch);
    match result {
        Ok(r) => {
            println!(
                "ok: {} entries ({} events, {} registry changes, {} head records); every hash, tile and map root matches the signed checkpoint of size {}",
                r.size, r.events, r.registry_changes, r.head_records, r.size
            );
            Ok(0)
        }
        Err(AuditError::Misbehaviour { what, .. }) => {
            println!("CORRUPT: {what}");
            Ok(3)
        }
        Err(e) => {
            println!("CORRUPT or unreadable: {e}");
            Ok(3)
        }
    }
}

fn parse_submitters(path: &Path) -> Result<Vec<Submitter>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(vkey), Some(kinds), None) = (parts.next(), parts.next(), parts.next()) else {
            bail!("{}:{}: expected `<vkey> <kinds>`", path.display(), n + 1);
        };
        let key = NoteVerifier::parse_vkey(vkey)
            .with_context(|| format!("{}:{}", path.display(), n + 1))?;
        let kinds = KindSet::parse(kinds).ok_or_else(|| {
            anyhow!(
                "{}:{}: kinds must be `all` or a list of issue,suspend,resume,revoke",
                path.display(),
                n + 1
            )
        })?;
        out.push(Submitter { key, kinds });
    }
    Ok(out)
}

/// The handlers' nice value when the sequencer's could not be lowered: the
/// same gap as the default sequencer's -10 below them. Measured with 64
/// clients: 8,455–9,244 events/s with both at the process's nice value,
/// 9,557–9,707 with this, 9,811–9,872 with the sequencer at -10
/// (BENCHMARKS.md, tenth session).
const AUTO_HANDLER_NICE: i32 = 10;

fn serve(a: ServeArgs) -> Result<()> {
    // Every flag is checked before anything is opened or logged.
    let nice = |flag: &str, v: &str| -> Result<Option<i32>> {
        match v {
            "keep" => Ok(None),
            n => Ok(Some(
                n.parse::<i32>()
                    .ok()
                    .filter(|n| (-20..=19).contains(n))
                    .ok_or_else(|| anyhow!("--{flag}: {n:?} is neither `keep` nor -20 … 19"))?,
            )),
        }
    };
    let sequencer_nice = nice("sequencer-nice", &a.sequencer_nice)?;
    // `None`: decided once the sequencer has tried its own.
    let handler_nice = match a.handler_nice.as_str() {
        "auto" => None,
        v => Some(nice("handler-nice", v)?),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if a.log_json {
        logs.json().init();
    } else {
        logs.init();
    }
    std::fs::create_dir_all(&a.data).with_context(|| format!("creating {}", a.data.display()))?;
    let key_prefix = a.data.join("log");
    let log_key = key_prefix.with_extension("key");
    let signer = if log_key.exists() {
        let s = read_signer(&log_key)?;
        if let Some(o) = &a.origin {
            if o != s.name().as_str() {
                bail!(
                    "--origin {o} differs from the existing log key's name {}",
                    s.name()
                );
            }
        }
        s
    } else {
        let origin = a
            .origin
            .clone()
            .unwrap_or_else(|| "localhost/revledger".to_string());
        let s = NoteSigner::generate(
            KeyName::new(origin).context("invalid --origin")?,
            &mut rand_core::OsRng,
        );
        let (k, v) = write_key_pair(&s, &key_prefix)?;
        println!(
            "created log key {} and verifier key {}",
            k.display(),
            v.display()
        );
        s
    };
    let submitters = match &a.submitters {
        Some(f) => parse_submitters(f)?,
        None => {
            let prefix = a.data.join("submitter");
            let path = prefix.with_extension("key");
            let s = if path.exists() {
                read_signer(&path)?
            } else {
                let s =
                    NoteSigner::generate(KeyName::new("local-submitter")?, &mut rand_core::OsRng);
                let (k, _) = write_key_pair(&s, &prefix)?;
                println!(
                    "created local submitter key {} (allowed every event kind)",
                    k.display()
                );
                s
            };
            vec![Submitter {
                key: s.verifier(),
                kinds: KindSet::ALL,
            }]
        }
    };
    let store: Arc<dyn Store> = Arc::new(DiskStore::open_with_cache(
        &a.data.join("db"),
        a.cache_mb << 20,
    )?);
    let mut ledger = Ledger::open(store, signer, server_now())?;
    let changes = ledger.reconcile_submitters(&submitters, server_now())?;
    for c in &changes {
        tracing::info!(name = %c.name, op = ?c.op, kinds = %c.kinds, "submitter registry change logged");
    }
    println!("log verifier key: {}", ledger.verifier().to_vkey_string());
    println!(
        "log verifier key file: {}",
        key_prefix.with_extension("vkey").display()
    );
    let reader = ledger.reader_handle();
    let ledger = Arc::new(Mutex::new(ledger));
    let metrics = Arc::new(Metrics::default());
    let config = SequencerConfig {
        batch_interval: Duration::from_millis(a.batch_interval_ms),
        max_batch: a.max_batch.max(1),
        queue_requests: a.queue.max(1),
        heartbeat: Duration::from_secs(a.heartbeat_secs.max(1)),
        nice: sequencer_nice,
    };
    let (sequencer, thread) = Sequencer::start(ledger, config, metrics.clone());
    let handler_nice = handler_nice.unwrap_or_else(|| {
        if sequencer.priority_set() {
            None
        } else {
            tracing::info!(
                nice = AUTO_HANDLER_NICE,
                "request handlers run at this nice value instead, so that the sequencer still \
                 comes first (--handler-nice)"
            );
            Some(AUTO_HANDLER_NICE)
        }
    });
    let rate = f64::from(a.submitter_rate);
    let app = server::router(AppState {
        ledger: reader,
        sequencer,
        metrics,
        limiter: Arc::new(server::ratelimit::RateLimiter::new(rate, 2.0 * rate)),
    });
    // Said once, not by every handler thread.
    let nice_refused = Arc::new(std::sync::Once::new());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(move || {
            if let Some(n) = handler_nice {
                // Raising a thread's nice value needs no privilege; going
                // below the process's does, and without it the thread
                // keeps the process's value.
                if let Err(e) = revledger::priority::set_thread_nice(n) {
                    nice_refused.call_once(|| {
                        tracing::warn!(
                            nice = n,
                            error = %e,
                            "request handlers keep the process's nice value (--handler-nice)"
                        );
                    });
                }
            }
        })
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&a.listen)
            .await
            .with_context(|| format!("binding {}", a.listen))?;
        let addr = listener.local_addr()?;
        println!("listening on http://{addr}");
        std::io::stdout().flush()?;
        server::listen::serve(
            listener,
            app,
            server::listen::Limits::default(),
            shutdown_signal(),
        )
        .await?;
        anyhow::Ok(())
    })?;
    // The router and with it every Sequencer handle are gone: the sequencer
    // answers what was queued, then stops.
    thread
        .join()
        .map_err(|_| anyhow!("the sequencer thread panicked"))?;
    tracing::info!("stopped cleanly");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: no new submissions; finishing the batch in flight");
}

/// Writes `PREFIX.key` (created 0600, never overwritten) and `PREFIX.vkey`.
fn write_key_pair(signer: &NoteSigner, prefix: &Path) -> Result<(PathBuf, PathBuf)> {
    let with = |ext: &str| {
        let mut p = prefix.as_os_str().to_owned();
        p.push(ext);
        PathBuf::from(p)
    };
    let (key_path, vkey_path) = (with(".key"), with(".vkey"));
    for p in [&key_path, &vkey_path] {
        if p.exists() {
            bail!(
                "{} already exists; refusing to overwrite a key",
                p.display()
            );
        }
    }
    write_new(
        &key_path,
        0o600,
        &format!("{}\n", signer.to_private_key_string()),
    )?;
    write_new(
        &vkey_path,
        0o644,
        &format!("{}\n", signer.verifier().to_vkey_string()),
    )?;
    Ok((key_path, vkey_path))
}

/// Creates `path` with `mode`, writes `text` and fsyncs it.
fn write_new(path: &Path, mode: u32, text: &str) -> Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}
