//! The auditor: replays the log as any third party would, through
//! tlog-tiles only, and checks everything the node claims (DESIGN §2–4, §7).
//!
//! Trusted input: the log's verifier key, and the auditor's own state (the
//! last checkpoint it verified and what it recomputed up to it). Everything
//! else — checkpoints, entry bundles, hash tiles, the submitter registry — is
//! fetched from the node and checked:
//!
//! - the checkpoint's signature; no rollback below, and no second root at,
//!   the trusted size; the root recomputed from the entries equals the
//!   checkpoint's, which (as the replay extends the trusted tree) proves the
//!   new checkpoint consistent with the trusted one;
//! - every hash tile the node serves for the new range equals the hashes
//!   recomputed from the entries;
//! - every registry change is signed by the log key; every event is signed
//!   (strictly) by a key registered for its kind at that point of the log,
//!   and obeys the status rules (replayed into the auditor's own status map);
//! - every head record's map root equals the recomputed map root; head times
//!   never decrease; every checkpoint ends on a head record.
//!
//! Architecture Invariant: no network code. The node is reached through the
//! [`LogSource`] trait (the CLI implements it over HTTP; tests implement
//! lying nodes). The auditor's state lives in a [`Store`] it alone writes.

use crate::checkpoint::{verify_checkpoint, VerifiedCheckpoint};
use crate::entry::{Entry, RegistryOp};
use crate::hash::{leaf_hash, Hash};
use crate::ledger::{
    authorize, authorize_each, decode_registry, encode_registry, read_credential, read_holder,
    u64_value, Hashes, LedgerError, PageCache, Refusal, Registry, Submitter,
};
use crate::merkle::Frontier;
use crate::note::{KeyName, NoteVerifier};
use crate::rules::{self, ApplyError, Credential, StateView};
use crate::smt;
use crate::store::{Batch, Overlay, Space, Store, StoreError};
use crate::tile::{self, TileKind, TilePath, FULL_WIDTH};
use std::collections::BTreeMap;

const META_SIZE: &[u8] = b"audit-size";
const META_TRUSTED: &[u8] = b"audit-trusted-checkpoint";
const META_REGISTRY: &[u8] = b"audit-registry";
const META_HEAD_MS: &[u8] = b"audit-head-ms";
/// Replayed entries kept in memory before an intermediate commit.
const FLUSH_EVERY: u64 = 20_000;
/// Decoded map pages kept in memory before an intermediate commit (a page
/// is up to about 2 KiB decoded).
const FLUSH_PAGES: usize = 32_768;
/// Entry bundles fetched, and their signatures being checked, ahead of the
/// one being replayed: enough for the checkers to keep busy while the
/// replay commits its state (a few hundred milliseconds).
const AHEAD: usize = 32;
/// The checkers' nice value. The replay is the audit's one serial step, and
/// it shares the cores with one checker per core: at equal priority it got
/// two thirds of a core on two cores and bounded the audit while the
/// checkers waited for it (BENCHMARKS.md, tenth session). Checks that are
/// ahead can wait; the replay cannot. Raising a thread's nice value needs
/// no privilege; where it fails, the checkers keep the process's.
const CHECKER_NICE: i32 = 10;

/// One entry bundle, fetched and decoded, from the first entry not yet
/// replayed.
struct Fetched {
    entries: std::sync::Arc<Vec<Vec<u8>>>,
    /// No entry in it is a registry change.
    registry_fixed: bool,
}

/// One bundle's signatures to check ahead of its replay, against the
/// registry of the moment it was fetched.
struct CheckJob {
    entries: std::sync::Arc<Vec<Vec<u8>>>,
    registry: Registry,
    /// The replay's `registry_version` when `registry` was taken: a job
    /// made for an older one is skipped (its result would not be used).
    version: u64,
    done: std::sync::mpsc::SyncSender<Vec<Result<(), Refusal>>>,
}

/// Sets the flag when dropped.
struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Where the auditor reads the log from: a tlog-tiles server.
pub trait LogSource {
    /// The latest signed checkpoint (note text).
    ///
    /// # Errors
    /// A fetch failure, described.
    fn checkpoint(&self) -> Result<String, String>;
    /// The body of a tile or entry bundle.
    ///
    /// # Errors
    /// A fetch failure, described.
    fn tile(&self, path: &TilePath) -> Result<Vec<u8>, String>;
}

/// Something the log did that an honest log cannot do. Each says exactly
/// what is wrong; [`Misbehaviour::evidence`] gives the signed material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Misbehaviour {
    #[error("the checkpoint does not verify with the log key: {0}")]
    BadCheckpointSignature(String),
    #[error("rollback: the node serves size {new} but size {trusted} was already trusted")]
    Rollback { trusted: u64, new: u64 },
    #[error("fork: two signed checkpoints of size {size} with different roots")]
    Fork { size: u64 },
    #[error("the checkpoint of size {size} has root {claimed} but its entries give {computed}")]
    RootMismatch {
        size: u64,
        claimed: String,
        computed: String,
    },
    #[error("tile {tile} differs from the hashes recomputed from the entries")]
    TileMismatch { tile: String },
    #[error("entry bundle {tile} is malformed: {reason}")]
    BadBundle { tile: String, reason: String },
    #[error("entry {index} does not decode: {reason}")]
    BadEntry { index: u64, reason: String },
    #[error("entry {index}: registry change not signed by the log key")]
    BadRegistrySignature { index: u64 },
    #[error("entry {index}: {reason}")]
    Unauthorized { index: u64, reason: String },
    #[error("entry {index} breaks the status rules: {reason}")]
    RuleViolation { index: u64, reason: String },
    #[error("head record {index} claims map root {claimed}, the replay gives {computed}")]
    MapRootMismatch {
        index: u64,
        claimed: String,
        computed: String,
    },
    #[error("head record {index} has time {time_ms}, before the previous head's {previous_ms}")]
    HeadTimeDecreased {
        index: u64,
        time_ms: u64,
        previous_ms: u64,
    },
    #[error("the checkpoint of size {size} does not end on a head record")]
    CheckpointNotOnHead { size: u64 },
}

/// A failed audit: misbehaviour (with evidence), or a failure to check.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{what}")]
    Misbehaviour {
        what: Misbehaviour,
        /// The signed checkpoints involved (the trusted one first), for the
        /// evidence file.
        checkpoints: Vec<String>,
    },
    #[error("fetching from the node: {0}")]
    Fetch(String),
    #[error("auditor state: {0}")]
    State(String),
}

impl AuditError {
    /// The evidence: what is wrong and the signed checkpoints involved.
    pub fn evidence(&self) -> Option<String> {
        match self {
            AuditError::Misbehaviour { what, checkpoints } => {
                let mut e = format!("revledger audit evidence\nfinding: {what}\n");
                for (i, c) in checkpoints.iter().enumerate() {
                    e.push_str(&format!("\n--- signed checkpoint {} ---\n{c}", i + 1));
                }
                Some(e)
            }
            _ => None,
        }
    }
}

impl From<StoreError> for AuditError {
    fn from(e: StoreError) -> Self {
        AuditError::State(e.to_string())
    }
}

impl From<LedgerError> for AuditError {
    fn from(e: LedgerError) -> Self {
        AuditError::State(e.to_string())
    }
}

/// What one audit run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditReport {
    pub previous_size: u64,
    pub size: u64,
    pub events: u64,
    pub registry_changes: u64,
    pub head_records: u64,
    pub credentials_changed: u64,
}

/// The auditor and its state.
pub struct Auditor<S: Store> {
    store: S,
    log_key: NoteVerifier,
    trusted: Option<VerifiedCheckpoint>,
}

impl<S: Store> Auditor<S> {
    /// Opens the auditor's state in `store` (empty on first use).
    ///
    /// # Errors
    /// [`AuditError::State`] when the stored trusted checkpoint does not
    /// verify with `log_key` (another log's state?) or storage fails.
    pub fn open(store: S, log_key: NoteVerifier) -> Result<Auditor<S>, AuditError> {
        let trusted = match store.get(Space::Meta, META_TRUSTED)? {
            None => None,
            Some(t) => {
                let text = String::from_utf8(t)
                    .map_err(|_| AuditError::State("stored checkpoint is not UTF-8".into()))?;
                Some(verify_checkpoint(&text, &log_key).map_err(|e| {
                    AuditError::State(format!(
                        "the trusted checkpoint in the state does not verify with this key: {e}"
                    ))
                })?)
            }
        };
        Ok(Auditor {
            store,
            log_key,
            trusted,
        })
    }

    /// The last checkpoint this auditor verified.
    pub fn trusted(&self) -> Option<&VerifiedCheckpoint> {
        self.trusted.as_ref()
    }

    /// Fetches the latest checkpoint and checks the log up to it, resuming
    /// from the trusted state. `progress(done, total)` is called as entries
    /// are replayed.
    ///
    /// # Errors
    /// [`AuditError::Misbehaviour`] with evidence when the log lies;
    /// [`AuditError::Fetch`] or [`AuditError::State`] when it cannot check.
    pub fn run<L: LogSource>(
        &mut self,
        source: &L,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<AuditReport, AuditError> {
        let text = source.checkpoint().map_err(AuditError::Fetch)?;
        let ckpt = match verify_checkpoint(&text, &self.log_key) {
            Ok(c) => c,
            Err(e) => {
                return Err(self.misbehaviour(
                    Misbehaviour::BadCheckpointSignature(e.to_string()),
                    Some(text),
                ))
            }
        };
        if let Some(t) = &self.trusted {
            if ckpt.size() < t.size() {
                let what = Misbehaviour::Rollback {
                    trusted: t.size(),
                    new: ckpt.size(),
                };
                return Err(self.misbehaviour(what, Some(text)));
            }
            if ckpt.size() == t.size() && ckpt.root() != t.root() {
                let what = Misbehaviour::Fork { size: t.size() };
                return Err(self.misbehaviour(what, Some(text)));
            }
        }
        let mut replay = Replay::start(&self.store, &self.log_key)?;
        let previous_size = replay.frontier.size();
        let mut report = AuditReport {
            previous_size,
            size: ckpt.size(),
            events: 0,
            registry_changes: 0,
            head_records: 0,
            credentials_changed: 0,
        };
        // Replay entry bundle by entry bundle, as a pipeline: while bundle
        // k is replayed here, the next AHEAD bundles have been fetched and
        // their signatures, which dominate the replay and need only the
        // registry, are being checked on other threads. A bundle is checked
        // ahead only when it holds no registry change, and its result is
        // used only when no registry change was replayed between the start
        // of its check and its replay (`registry_version`); otherwise its
        // events are checked in order, during the replay.
        let bundle = u64::from(FULL_WIDTH);
        let size = ckpt.size();
        let mut index = previous_size;
        let mut last_was_head = previous_size > 0;
        let mut since_flush = 0u64;
        let fetch = |at: u64| -> Result<Fetched, AuditError> {
            let n = at / bundle;
            let width = (size - n * bundle).min(bundle) as u16;
            let path = TilePath::entries(n, width).map_err(|e| AuditError::State(e.to_string()))?;
            let body = source.tile(&path).map_err(AuditError::Fetch)?;
            let entries = tile::decode_entry_bundle(&body).map_err(|e| Misbehaviour::BadBundle {
                tile: path.to_path(),
                reason: e.to_string(),
            });
            let mut entries = match entries {
                Ok(e) if e.len() == usize::from(width) => e,
                Ok(e) => {
                    let what = Misbehaviour::BadBundle {
                        tile: path.to_path(),
                        reason: format!("{} entries, expected {width}", e.len()),
                    };
                    return Err(self.misbehaviour(what, Some(text.clone())));
                }
                Err(what) => return Err(self.misbehaviour(what, Some(text.clone()))),
            };
            // Only the entries past what is already replayed.
            entries.drain(..(at - n * bundle) as usize);
            let registry_fixed = entries
                .iter()
                .all(|e| !matches!(Entry::decode(e), Ok(Entry::Registry(_))));
            Ok(Fetched {
                entries: std::sync::Arc::new(entries.into_iter().map(<[u8]>::to_vec).collect()),
                registry_fixed,
            })
        };
        let stopped = std::sync::atomic::AtomicBool::new(false);
        let current_version = std::sync::atomic::AtomicU64::new(replay.registry_version);
        std::thread::scope(|s| -> Result<(), AuditError> {
            // When the replay ends (also on an error), the checkers stop:
            // the queued jobs are skipped, and the closed channel ends them.
            let (jobs, waiting) = std::sync::mpsc::channel::<CheckJob>();
            let _stop = StopOnDrop(&stopped);
            // A fixed pool of checkers, one per core: with the replay, they
            // keep every core busy, and the replay keeps its share of one.
            // Only they hold the receiving end: should they all end (a
            // panic, which the scope re-raises), jobs are refused and their
            // results never come, so those bundles are checked in the replay.
            let waiting = std::sync::Arc::new(std::sync::Mutex::new(waiting));
            for _ in 0..std::thread::available_parallelism().map_or(1, |n| n.get()) {
                let (waiting, stopped, current_version) =
                    (waiting.clone(), &stopped, &current_version);
                s.spawn(move || {
                    // An error leaves the thread at the process's priority.
                    let _ = crate::priority::set_thread_nice(CHECKER_NICE);
                    loop {
                        // The lock is held only to take a job.
                        let job = match waiting.lock() {
                            Ok(w) => w.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        if stopped.load(std::sync::atomic::Ordering::Relaxed)
                            || job.version
                                != current_version.load(std::sync::atomic::Ordering::Relaxed)
                        {
                            continue;
                        }
                        // The replay may have stopped and dropped the receiver.
                        let _ = job.done.send(authorize_each(&job.registry, &job.entries));
                    }
                });
            }
            drop(waiting);
            let mut queue = std::collections::VecDeque::with_capacity(AHEAD);
            let mut fetched_to = index;
            // A failure to fetch a bundle (or a malformed one) is reported
            // only after the bundles before it have been replayed cleanly:
            // it must not hide what they prove.
            let mut fetch_failed = None;
            // Sends `f` to the checkers, against the registry as it is now,
            // and gives the registry version and where the result comes
            // (None when `f` holds a registry change itself). If no checker
            // is left to take it, the result never comes and the bundle is
            // checked during its replay.
            let check_ahead = |f: &Fetched, replay: &Replay<'_, S>| {
                f.registry_fixed.then(|| {
                    let (done, result) = std::sync::mpsc::sync_channel(1);
                    let _ = jobs.send(CheckJob {
                        entries: f.entries.clone(),
                        registry: replay.registry.clone(),
                        version: replay.registry_version,
                        done,
                    });
                    (replay.registry_version, result)
                })
            };
            loop {
                while fetch_failed.is_none() && queue.len() < AHEAD && fetched_to < size {
                    match fetch(fetched_to) {
                        Ok(f) => {
                            fetched_to += f.entries.len() as u64;
                            let checking = check_ahead(&f, &replay);
                            queue.push_back((f, checking));
                        }
                        Err(e) => fetch_failed = Some(e),
                    }
                }
                let Some((current, checking)) = queue.pop_front() else {
                    break;
                };
                let version_before = replay.registry_version;
                let checked = checking.and_then(|(version, result)| {
                    let checked = result.recv().ok()?;
                    (version == replay.registry_version).then_some(checked)
                });
                for (i, entry) in current.entries.iter().enumerate() {
                    let auth = checked.as_ref().and_then(|c| c.get(i).cloned());
                    match replay.entry(index, entry, auth, &mut report) {
                        Ok(is_head) => last_was_head = is_head,
                        Err(ReplayError::Lie(what)) => {
                            return Err(self.misbehaviour(what, Some(text.clone())))
                        }
                        Err(ReplayError::State(e)) => return Err(e),
                    }
                    index += 1;
                    since_flush += 1;
                    // Commit whole node batches only (at a head record), so
                    // that memory stays bounded on long replays.
                    if last_was_head
                        && (since_flush >= FLUSH_EVERY || replay.pages.len() >= FLUSH_PAGES)
                    {
                        replay.flush()?;
                        since_flush = 0;
                    }
                }
                // A registry change makes the checks of the bundles queued
                // behind it stale: they are checked again ahead, against
                // the new registry, not one by one in the replay.
                if replay.registry_version != version_before {
                    current_version.store(
                        replay.registry_version,
                        std::sync::atomic::Ordering::Relaxed,
                    );
                    for (f, checking) in queue.iter_mut() {
                        *checking = check_ahead(f, &replay);
                    }
                }
                progress(index - previous_size, size - previous_size);
            }
            fetch_failed.map_or(Ok(()), Err)
        })?;
        if !last_was_head {
            let what = Misbehaviour::CheckpointNotOnHead { size: ckpt.size() };
            return Err(self.misbehaviour(what, Some(text)));
        }
        // The root recomputed from the entries, on top of the trusted tree.
        let computed = replay.frontier.root();
        if computed != *ckpt.root() {
            let what = Misbehaviour::RootMismatch {
                size: ckpt.size(),
                claimed: ckpt.root().to_base64(),
                computed: computed.to_base64(),
            };
            return Err(self.misbehaviour(what, Some(text)));
        }
        // Every hash tile touched by the new entries, against our hashes.
        if let Err(e) = replay.check_tiles(source, previous_size, ckpt.size()) {
            return Err(match e {
                ReplayError::Lie(what) => self.misbehaviour(what, Some(text)),
                ReplayError::State(e) => e,
            });
        }
        replay.finish(&text)?;
        self.trusted = Some(ckpt);
        Ok(report)
    }

    fn misbehaviour(&self, what: Misbehaviour, new: Option<String>) -> AuditError {
        let mut checkpoints: Vec<String> = self
            .trusted
            .iter()
            .map(|c| c.note_text().to_string())
            .collect();
        checkpoints.extend(new);
        AuditError::Misbehaviour { what, checkpoints }
    }
}

enum ReplayError {
    Lie(Misbehaviour),
    State(AuditError),
}

impl From<Misbehaviour> for ReplayError {
    fn from(m: Misbehaviour) -> Self {
        ReplayError::Lie(m)
    }
}

impl From<StoreError> for ReplayError {
    fn from(e: StoreError) -> Self {
        ReplayError::State(e.into())
    }
}

/// One run's replay: the auditor's state plus pending writes.
struct Replay<'a, S: Store> {
    overlay: Overlay<'a, S>,
    log_key: &'a NoteVerifier,
    frontier: Frontier,
    registry: Registry,
    /// Registry changes replayed by this run: a check made ahead against
    /// the registry is valid only while this has not moved.
    registry_version: u64,
    head_ms: u64,
    /// Status map updates since the last head record.
    pending_map: BTreeMap<Hash, Vec<u8>>,
    /// Map pages read or changed since the last commit, and the top ones,
    /// decoded: changed pages reach the overlay only when it is committed.
    pages: PageCache,
}

impl<S: Store> StateView for Replay<'_, S> {
    type Error = LedgerError;
    fn credential(
        &self,
        id: &crate::entry::CredentialId,
    ) -> Result<Option<Credential>, LedgerError> {
        read_credential(&self.overlay, id)
    }
    fn live_credential(
        &self,
        holder: &crate::entry::HolderTag,
    ) -> Result<Option<crate::entry::CredentialId>, LedgerError> {
        read_holder(&self.overlay, holder)
    }
}

impl<'a, S: Store> Replay<'a, S> {
    fn start(store: &'a S, log_key: &'a NoteVerifier) -> Result<Replay<'a, S>, AuditError> {
        let size = match store.get(Space::Meta, META_SIZE)? {
            Some(v) => u64_value(&v, "audit size")?,
            None => 0,
        };
        let frontier = Frontier::load(size, &Hashes(store))
            .map_err(|e| AuditError::State(format!("loading the replayed tree: {e}")))?;
        let registry = match store.get(Space::Meta, META_REGISTRY)? {
            Some(v) => decode_registry(&v)?,
            None => Registry::new(),
        };
        let head_ms = match store.get(Space::Meta, META_HEAD_MS)? {
            Some(v) => u64_value(&v, "audit head time")?,
            None => 0,
        };
        Ok(Replay {
            overlay: Overlay::new(store),
            log_key,
            frontier,
            registry,
            registry_version: 0,
            head_ms,
            pending_map: BTreeMap::new(),
            pages: PageCache::open(store)?,
        })
    }

    /// Replays entry `index`; returns whether it is a head record.
    /// `auth`, when given, is the result of [`authorize`] for this entry
    /// against the current registry, computed ahead.
    fn entry(
        &mut self,
        index: u64,
        bytes: &[u8],
        auth: Option<Result<(), Refusal>>,
        report: &mut AuditReport,
    ) -> Result<bool, ReplayError> {
        let leaf = leaf_hash(bytes);
        let mut batch = Batch::new();
        let hashes = self
            .frontier
            .append(leaf)
            .map_err(|e| ReplayError::State(AuditError::State(e.to_string())))?;
        for (i, h) in hashes {
            batch.put(Space::Hash, i.to_be_bytes(), h.0);
        }
        let entry = Entry::decode(bytes).map_err(|e| Misbehaviour::BadEntry {
            index,
            reason: e.to_string(),
        })?;
        let mut is_head = false;
        match entry {
            Entry::Event(ev) => {
                report.events += 1;
                let auth = auth.unwrap_or_else(|| authorize(&self.registry, &ev));
                auth.map_err(|r| Misbehaviour::Unauthorized {
                    index,
                    reason: r.to_string(),
                })?;
                let effects = match rules::apply(&*self, &ev.event, index, leaf) {
                    Ok(fx) => fx,
                    Err(ApplyError::Rule(r)) => {
                        return Err(Misbehaviour::RuleViolation {
                            index,
                            reason: r.to_string(),
                        }
                        .into())
                    }
                    Err(ApplyError::Read(e)) => return Err(ReplayError::State(e.into())),
                };
                for (id, cred) in effects.credentials {
                    report.credentials_changed += 1;
                    batch.put(Space::Credential, id.0, cred.encode());
                    self.pending_map
                        .insert(smt::map_key(&id.0), cred.status.encode().to_vec());
                }
                for (holder, live) in effects.holders {
                    match live {
                        Some(id) => batch.put(Space::Holder, holder.0, id.0),
                        None => batch.delete(Space::Holder, holder.0),
                    }
                }
            }
            Entry::Registry(rc) => {
                report.registry_changes += 1;
                self.registry_version += 1;
                rc.verify(self.log_key.strict())
                    .map_err(|_| Misbehaviour::BadRegistrySignature { index })?;
                let change = &rc.change;
                let name =
                    KeyName::new(change.name.clone()).map_err(|e| Misbehaviour::BadEntry {
                        index,
                        reason: e.to_string(),
                    })?;
                let key = ed25519_dalek::VerifyingKey::from_bytes(&change.public_key)
                    .ok()
                    .and_then(|k| NoteVerifier::new(name, k).ok())
                    .ok_or_else(|| Misbehaviour::BadEntry {
                        index,
                        reason: "registry change names an invalid or weak public key".into(),
                    })?;
                match change.op {
                    RegistryOp::Add => {
                        self.registry.insert(
                            key.id(),
                            Submitter {
                                key,
                                kinds: change.kinds,
                            },
                        );
                    }
                    RegistryOp::Remove => {
                        self.registry.remove(&key.id());
                    }
                }
            }
            Entry::Head(head) => {
                report.head_records += 1;
                is_head = true;
                if head.time_ms < self.head_ms {
                    return Err(Misbehaviour::HeadTimeDecreased {
                        index,
                        time_ms: head.time_ms,
                        previous_ms: self.head_ms,
                    }
                    .into());
                }
                self.head_ms = head.time_ms;
                let updates: Vec<(Hash, Vec<u8>)> =
                    std::mem::take(&mut self.pending_map).into_iter().collect();
                // On an error below the run fails and its uncommitted
                // state, these pages included, is dropped.
                let pages = self.pages.lend(&self.overlay);
                let map = smt::update(&pages, &updates).map_err(|e| {
                    ReplayError::State(AuditError::State(format!("status map: {e}")))
                })?;
                let dirty = pages.stage(&map.writes)?;
                if map.root != head.map_root {
                    return Err(Misbehaviour::MapRootMismatch {
                        index,
                        claimed: head.map_root.to_hex(),
                        computed: map.root.to_hex(),
                    }
                    .into());
                }
                self.pages.keep(pages, dirty);
            }
        }
        self.overlay.apply(batch);
        Ok(is_head)
    }

    /// Every hash tile that covers entries in `[from, to)`, as served by the
    /// node for tree size `to`, equals the one recomputed from the entries.
    fn check_tiles<L: LogSource>(&self, source: &L, from: u64, to: u64) -> Result<(), ReplayError> {
        for level in 0..=tile::MAX_LEVEL {
            let shift = u32::from(level) * tile::TILE_HEIGHT;
            let nodes_to = to.checked_shr(shift).unwrap_or(0);
            if nodes_to == 0 {
                break;
            }
            let first = (from.checked_shr(shift).unwrap_or(0)) / u64::from(FULL_WIDTH);
            let last = (nodes_to - 1) / u64::from(FULL_WIDTH);
            for index in first..=last {
                let Some(width) = tile::tile_width(level, index, to) else {
                    continue;
                };
                let path = TilePath::new(TileKind::Hash { level }, index, width)
                    .map_err(|e| ReplayError::State(AuditError::State(e.to_string())))?;
                let ours = tile::read_tile(&path, to, &Hashes(&self.overlay))
                    .map_err(|e| ReplayError::State(AuditError::State(e.to_string())))?;
                let theirs = source
                    .tile(&path)
                    .map_err(|e| ReplayError::State(AuditError::Fetch(e)))?;
                if ours != theirs {
                    return Err(Misbehaviour::TileMismatch {
                        tile: path.to_path(),
                    }
                    .into());
                }
            }
        }
        Ok(())
    }

    /// Moves the changed map pages and the replay's meta records into the
    /// overlay, ahead of a commit.
    fn put_meta(&mut self) {
        let mut b = Batch::new();
        self.pages.write(&mut b);
        b.put(Space::Meta, META_SIZE, self.frontier.size().to_be_bytes());
        b.put(Space::Meta, META_REGISTRY, encode_registry(&self.registry));
        b.put(Space::Meta, META_HEAD_MS, self.head_ms.to_be_bytes());
        self.overlay.apply(b);
    }

    /// Intermediate commit (bounded memory on long replays). Only whole
    /// node batches are committed: pending map updates stay in memory
    /// until their head record.
    fn flush(&mut self) -> Result<(), AuditError> {
        if !self.pending_map.is_empty() {
            return Ok(());
        }
        self.put_meta();
        self.overlay.flush()?;
        Ok(())
    }

    /// Final commit: the replayed state and the newly trusted checkpoint,
    /// atomically and durably.
    fn finish(mut self, checkpoint_text: &str) -> Result<(), AuditError> {
        self.put_meta();
        let mut b = Batch::new();
        b.put(Space::Meta, META_TRUSTED, checkpoint_text.as_bytes());
        self.overlay.apply(b);
        self.overlay.flush()?;
        Ok(())
    }
}
