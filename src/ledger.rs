//! The ledger: sequences events into the Merkle log, keeps the status map
//! and the holder and dedup indexes, and signs checkpoints. The only writer
//! of the [`Store`]. A credential's record is not stored apart: its status
//! is its map leaf, its holder named by the logged event the status points
//! at.
//!
//! One batch is one straight sequence (see [`Ledger::append_events`]):
//! admit each event (decode, dedup, registry, strict signature, rules) →
//! append entries and their tree hashes → update the status map → append
//! the head record → commit atomically and fsync (with the previous
//! batch's checkpoint) → check consistency with the last signed checkpoint
//! → sign and publish → only then return. The new checkpoint is stored
//! with the next commit: the tree it signs is durable, and after a crash
//! the node signs that tree again into the same bytes (Ed25519 is
//! deterministic). A storage error at any step poisons the ledger: it
//! refuses further work until reopened, and reopening recovers.
//!
//! Architecture Invariant: no async, no HTTP, no clock. Time is passed in
//! (`now_ms`), so the ledger is deterministic under test.

use crate::checkpoint::{self, Checkpoint, VerifiedCheckpoint};
use crate::entry::{
    Action, CredentialId, Entry, EntryError, EventKind, HeadRecord, HolderTag, KindSet,
    RegistryChange, RegistryOp, SignedEvent, MAX_ENTRY_LEN,
};
use crate::hash::{leaf_hash, Hash};
use crate::merkle::{self, Frontier, HashReader};
use crate::note::{NoteSigner, NoteVerifier};
use crate::rules::{self, ApplyError, Credential, RuleError, StateView, StatusRecord};
use crate::smt;
use crate::status::{LoggedEntry, StatusProof};
use crate::store::{Batch, ReadStore, Space, Store, StoreError};
use crate::strict;
use crate::tile::{self, TileError, TileKind, TilePath};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

const META_SIZE: &[u8] = b"size";
const META_CHECKPOINT: &[u8] = b"checkpoint";
const META_REGISTRY: &[u8] = b"registry";
/// The key in [`Space::Meta`] that records how the node lays out its tree
/// hashes and keys its holder and dedup indexes (the status map's pages
/// record their own layout).
const META_LAYOUT: &[u8] = b"layout";
/// The layout this build reads and writes: tree hashes of levels ≥ 1 only,
/// at [`node_hash_slot`]; holder and dedup records keyed by
/// [`HOLDER_KEY_LEN`] and [`DEDUP_KEY_LEN`] bytes, values lists of u64
/// entry indexes. Stores without the key (written before 2026-12-02: leaf
/// hashes stored, 32-byte holder keys, 16-byte dedup keys) are refused at
/// open: read this way, their hashes and records would be misread.
const LAYOUT: &[u8] = &[1];
/// The tree sizes at which the batches whose status-map changes are not
/// yet written back to the map's pages ended, oldest first (u64
/// big-endian each); absent when there are none. Each has its changes
/// under [`map_changes_key`].
const META_MAP_PENDING: &[u8] = b"map-pending";
/// The map's pages are written back once this many batches' changes are
/// held in memory ([`HotPages::write_back`]), or once they hold
/// [`MAP_WRITE_BACK_PAGES`] pages, and at a clean stop. A page that
/// several of them changed is then written once, and no batch encodes
/// pages; what is replayed at open stays small (see [`replay_map_changes`]).
const MAP_WRITE_BACK_BATCHES: usize = 16;
/// See [`MAP_WRITE_BACK_BATCHES`]: 1,736 bytes each decoded (31 slots of
/// 56 bytes), plus the leaves' values.
const MAP_WRITE_BACK_PAGES: usize = 16_384;

/// Where the status-map changes of the batch that ended at tree size
/// `size` are kept until the pages are written back.
fn map_changes_key(size: u64) -> Vec<u8> {
    let mut k = b"map-changes/".to_vec();
    k.extend_from_slice(&size.to_be_bytes());
    k
}

/// A batch's status-map changes as kept in [`Space::Meta`]: for each, in
/// key order, the map key (32 bytes), the value's length (u16 big-endian)
/// and the value.
fn encode_map_changes(updates: &[(Hash, Vec<u8>)]) -> Result<Vec<u8>, LedgerError> {
    let mut out = Vec::with_capacity(updates.iter().map(|(_, v)| 34 + v.len()).sum());
    for (key, value) in updates {
        // Status records are tens of bytes; anything else is a bug, not
        // something to store cut short.
        let len = u16::try_from(value.len()).map_err(|_| {
            LedgerError::Corrupt(format!(
                "a status map value of {} bytes cannot be kept",
                value.len()
            ))
        })?;
        out.extend_from_slice(&key.0);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(value);
    }
    Ok(out)
}

fn decode_map_changes(mut b: &[u8]) -> Result<Vec<(Hash, Vec<u8>)>, LedgerError> {
    let bad = || LedgerError::Corrupt("a batch's kept status-map changes are truncated".into());
    let mut out = Vec::new();
    while !b.is_empty() {
        let (key, rest) = b.split_first_chunk::<32>().ok_or_else(bad)?;
        let (len, rest) = rest.split_first_chunk::<2>().ok_or_else(bad)?;
        let len = usize::from(u16::from_be_bytes(*len));
        let value = rest.get(..len).ok_or_else(bad)?;
        out.push((Hash(*key), value.to_vec()));
        b = &rest[len..];
    }
    Ok(out)
}

/// Errors of the ledger itself (not of one submitted event; see
/// [`Refusal`]).
#[derive(Debug, thiserror::Error, Clone)]
pub enum LedgerError {
    /// Storage failed. HTTP 503.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Stored data contradicts itself or the last signed checkpoint. The
    /// node must not serve or sign anything. HTTP 500.
    #[error("storage is corrupt: {0}")]
    Corrupt(String),
    /// An earlier storage failure left the in-memory state unknown; reopen
    /// the ledger. HTTP 503.
    #[error("ledger stopped after a storage failure ({0}); reopen to recover")]
    Poisoned(String),
    /// A requested index or size is outside the published tree. HTTP 400.
    #[error("{what} {value} is out of range (limit {limit})")]
    OutOfRange {
        what: &'static str,
        value: u64,
        limit: u64,
    },
    /// The new tree is not consistent with the last signed checkpoint;
    /// nothing was signed. HTTP 500.
    #[error("refusing to sign: {0}")]
    WouldFork(String),
    /// The submitter configuration is invalid. Start-up error.
    #[error("submitter configuration: {0}")]
    Config(String),
    /// Signing failed.
    #[error("signing checkpoint: {0}")]
    Sign(String),
}

/// Why one submitted event was not logged. Nothing was changed.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum Refusal {
    /// HTTP 413.
    #[error("entry is {len} bytes, over the {MAX_ENTRY_LEN}-byte limit")]
    TooLarge { len: usize },
    /// HTTP 400.
    #[error("malformed event: {0}")]
    Malformed(EntryError),
    /// HTTP 400: clients submit events only.
    #[error(
        "only events can be submitted; registry changes and head records are written by the log"
    )]
    NotAnEvent,
    /// HTTP 403.
    #[error("issuer key id {0:08x} is not a registered submitter")]
    UnknownIssuer(u32),
    /// HTTP 403.
    #[error("submitter {name} may not submit {kind} events")]
    KindNotAllowed { name: String, kind: &'static str },
    /// HTTP 403.
    #[error("issuer signature does not verify (strict Ed25519)")]
    BadSignature,
    /// HTTP 409.
    #[error(transparent)]
    Rule(RuleError),
}

impl Refusal {
    /// The HTTP status this refusal becomes.
    pub fn http_status(&self) -> u16 {
        match self {
            Refusal::TooLarge { .. } => 413,
            Refusal::Malformed(_) | Refusal::NotAnEvent => 400,
            Refusal::UnknownIssuer(_) | Refusal::KindNotAllowed { .. } | Refusal::BadSignature => {
                403
            }
            Refusal::Rule(_) => 409,
        }
    }

    /// A stable machine-readable code for the JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::TooLarge { .. } => "too_large",
            Refusal::Malformed(_) => "malformed",
            Refusal::NotAnEvent => "not_an_event",
            Refusal::UnknownIssuer(_) => "unknown_issuer",
            Refusal::KindNotAllowed { .. } => "kind_not_allowed",
            Refusal::BadSignature => "bad_signature",
            Refusal::Rule(r) => r.code(),
        }
    }
}

/// The result for one submitted event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Logged in this batch at `index`.
    Accepted { index: u64, leaf_hash: Hash },
    /// The identical entry was already logged at `index` (in this batch or
    /// earlier); it was not logged again.
    Duplicate { index: u64, leaf_hash: Hash },
    /// Not logged.
    Refused(Refusal),
}

/// Entries with the result of checking each one's issuer and signature
/// ([`LedgerReader::authorize`]), and the registry they were checked
/// against.
pub struct Authorized {
    entries: Vec<Vec<u8>>,
    checks: Vec<Result<(), Refusal>>,
    registry: Arc<Registry>,
}

impl Authorized {
    /// How many entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// What one batch did: an outcome per submitted event, in order, and the
/// checkpoint that covers every accepted and duplicate event.
#[derive(Debug, Clone)]
pub struct BatchResult {
    pub outcomes: Vec<Outcome>,
    pub checkpoint: VerifiedCheckpoint,
}

/// A registered submitter: a signed-note verifier key and the event kinds
/// it may submit (DESIGN §2).
#[derive(Clone, Debug)]
pub struct Submitter {
    pub key: NoteVerifier,
    pub kinds: KindSet,
}

impl PartialEq for Submitter {
    fn eq(&self, o: &Self) -> bool {
        self.kinds == o.kinds && self.key.to_vkey_string() == o.key.to_vkey_string()
    }
}

/// The submitter registry as of the end of the log, by key id.
pub(crate) type Registry = BTreeMap<u32, Submitter>;

/// Reads the auditor's stored hashes for the Merkle math: every level, at
/// its Go stored-hash index (a node's are read by [`LogHashes`]).
pub(crate) struct Hashes<'a, S: ReadStore + ?Sized>(pub(crate) &'a S);

impl<S: ReadStore + ?Sized> HashReader for Hashes<'_, S> {
    type Error = LedgerError;
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, LedgerError> {
        indexes.iter().map(|&i| stored_hash(self.0, i)).collect()
    }
}

/// Where a node stores the hash of the subtree of level `level` at `n`:
/// leaf hashes (level 0) are not stored but recomputed from the entries
/// (32 bytes less per entry, one SHA-256 of the entry per leaf hash read);
/// a subtree of level L ≥ 1 is in [`Space::Hash`] at
/// `stored_hash_index(L − 1, n)`, which is its Go stored-hash index less
/// the (n + 1)·2^L leaf hashes stored before it there. The auditor, which
/// keeps no entries, stores every level at its Go index.
pub fn node_hash_slot(level: u32, n: u64) -> Option<u64> {
    level
        .checked_sub(1)
        .map(|below| merkle::stored_hash_index(below, n))
}

/// Reads a node's tree hashes for the Merkle math: levels ≥ 1 from
/// [`Space::Hash`] (see [`node_hash_slot`]), leaf hashes by hashing the
/// entries. With `checked`, each leaf is read with its pair and the two
/// are checked against their parent's stored hash (when the pair is
/// complete), so that a damaged entry is never served as a leaf hash.
pub(crate) struct LogHashes<'a, S: ReadStore + ?Sized> {
    store: &'a S,
    checked: bool,
    /// The last run of pairs read, from the pair it starts at: a tile's
    /// leaves are one run, and a proof's sibling leaf and then its leaf
    /// come from one pair.
    run: std::cell::RefCell<Option<(u64, Vec<LoggedLeaf>)>>,
}

impl<'a, S: ReadStore + ?Sized> LogHashes<'a, S> {
    /// Leaf hashes checked against the stored level above.
    pub(crate) fn checked(store: &'a S) -> Self {
        LogHashes {
            store,
            checked: true,
            run: Default::default(),
        }
    }
    /// Leaf hashes as the entries give them, for a replay that compares
    /// them with the tree itself (fsck).
    fn unchecked(store: &'a S) -> Self {
        LogHashes {
            store,
            checked: false,
            run: Default::default(),
        }
    }
}

impl<S: ReadStore + ?Sized> HashReader for LogHashes<'_, S> {
    type Error = LedgerError;
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, LedgerError> {
        let split: Vec<(u32, u64)> = indexes
            .iter()
            .map(|&i| merkle::split_stored_hash_index(i))
            .collect();
        let mut run = self.run.borrow_mut();
        if self.checked {
            // Many leaves close together (a tile): one read for the run.
            let leaves = split.iter().filter(|(level, _)| *level == 0).map(|l| l.1);
            let (lo, hi, count) = leaves.fold((u64::MAX, 0, 0u64), |(lo, hi, c), n| {
                (lo.min(n), hi.max(n), c + 1)
            });
            if count > 2 && hi - lo < 2 * count {
                let first = lo / 2;
                *run = Some((first, read_pairs(self.store, first, hi / 2 - first + 1)?));
            }
        }
        let mut out = Vec::with_capacity(indexes.len());
        for (level, n) in split {
            let hash = match node_hash_slot(level, n) {
                Some(slot) => stored_hash(self.store, slot)?,
                None if !self.checked => leaf_hash(&read_entry_bytes(self.store, n)?),
                None => {
                    let k = n / 2;
                    let held = |r: &(u64, Vec<LoggedLeaf>)| {
                        k >= r.0 && k - r.0 < (r.1.len() as u64).div_ceil(2)
                    };
                    if !run.as_ref().is_some_and(held) {
                        *run = Some((k, read_pair(self.store, k)?));
                    }
                    let leaf = run
                        .as_ref()
                        .and_then(|(first, leaves)| leaves.get((n - 2 * first) as usize));
                    match leaf {
                        Some((_, h)) => *h,
                        None => return Err(missing_entry(n)),
                    }
                }
            };
            out.push(hash);
        }
        Ok(out)
    }
}

/// The hash stored at `slot` of [`Space::Hash`] (a node's slots: see
/// [`node_hash_slot`]), which must be there.
fn stored_hash<S: ReadStore + ?Sized>(store: &S, slot: u64) -> Result<Hash, LedgerError> {
    match store.get(Space::Hash, &slot.to_be_bytes())? {
        Some(v) => Hash::from_slice(&v).ok_or_else(|| {
            LedgerError::Corrupt(format!("stored hash {slot} has {} bytes", v.len()))
        }),
        None => Err(LedgerError::Corrupt(format!(
            "stored hash {slot} is missing"
        ))),
    }
}

fn missing_entry(index: u64) -> LedgerError {
    LedgerError::Corrupt(format!("entry {index} is missing"))
}

/// An entry's bytes and its leaf hash.
type LoggedLeaf = (Vec<u8>, Hash);

/// Entry `index` and its leaf hash, read with its pair (see [`read_pairs`]).
fn read_leaf<S: ReadStore + ?Sized>(store: &S, index: u64) -> Result<LoggedLeaf, LedgerError> {
    read_pair(store, index / 2)?
        .into_iter()
        .nth((index % 2) as usize)
        .ok_or_else(|| missing_entry(index))
}

/// Entries `2k` and, when it exists, `2k + 1`, with their leaf hashes,
/// checked as [`read_pairs`] does.
fn read_pair<S: ReadStore + ?Sized>(store: &S, k: u64) -> Result<Vec<LoggedLeaf>, LedgerError> {
    read_pairs(store, k, 1)
}

/// The entries of `pairs` pairs from pair `k` on (entries `2k` …, fewer
/// when the log ends first), with their leaf hashes. Each complete pair's
/// parent (level 1) has a stored hash, which must be the node hash of the
/// two leaves. A lone last entry has no parent yet; its leaf hash is a
/// subtree of the tree's right edge, checked by whoever checks a root or
/// proof built on it.
///
/// # Errors
/// Storage errors; [`LedgerError::Corrupt`] when entry `2k` is missing or
/// a pair does not match its parent.
fn read_pairs<S: ReadStore + ?Sized>(
    store: &S,
    k: u64,
    pairs: u64,
) -> Result<Vec<LoggedLeaf>, LedgerError> {
    let entries = store.get_entries(2 * k, 2 * pairs)?;
    if entries.is_empty() {
        return Err(missing_entry(2 * k));
    }
    let leaves: Vec<LoggedLeaf> = entries
        .into_iter()
        .map(|e| {
            let h = leaf_hash(&e);
            (e, h)
        })
        .collect();
    for (pair, at) in leaves.chunks_exact(2).zip(k..) {
        let parent = stored_hash(store, merkle::stored_hash_index(0, at))?;
        if crate::hash::node_hash(&pair[0].1, &pair[1].1) != parent {
            return Err(LedgerError::Corrupt(format!(
                "entries {} and {} do not match their parent's stored hash",
                2 * at,
                2 * at + 1
            )));
        }
    }
    Ok(leaves)
}

/// A [`HashReader`] that remembers every hash it has read: proofs for many
/// leaves of one tree share most of their hashes (all the upper levels, and
/// neighbouring leaves' siblings), so a batch of proofs reads each once.
struct MemoHashes<'a, S: ReadStore + ?Sized> {
    inner: LogHashes<'a, S>,
    /// By stored index, which the ledger chooses: a fast unkeyed hasher.
    seen: std::cell::RefCell<rustc_hash::FxHashMap<u64, Hash>>,
}

impl<'a, S: ReadStore + ?Sized> MemoHashes<'a, S> {
    fn new(store: &'a S) -> Self {
        MemoHashes {
            inner: LogHashes::checked(store),
            seen: std::cell::RefCell::default(),
        }
    }

    /// [`MemoHashes::new`], knowing already the leaf hashes of `leaves`,
    /// the entries from index `first` on (as [`read_pairs`] returns them).
    fn knowing(store: &'a S, first: u64, leaves: &[LoggedLeaf]) -> Self {
        let memo = MemoHashes::new(store);
        memo.seen.borrow_mut().extend(
            (first..)
                .zip(leaves)
                .map(|(i, (_, h))| (merkle::stored_hash_index(0, i), *h)),
        );
        memo
    }
}

impl<S: ReadStore + ?Sized> HashReader for MemoHashes<'_, S> {
    type Error = LedgerError;
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, LedgerError> {
        let mut seen = self.seen.borrow_mut();
        let missing: Vec<u64> = indexes
            .iter()
            .copied()
            .filter(|i| !seen.contains_key(i))
            .collect();
        if !missing.is_empty() {
            let read = self.inner.read_hashes(&missing)?;
            seen.extend(missing.into_iter().zip(read));
        }
        indexes
            .iter()
            .map(|i| {
                seen.get(i)
                    .copied()
                    .ok_or_else(|| LedgerError::Corrupt(format!("stored hash {i} is missing")))
            })
            .collect()
    }
}

pub(crate) use crate::mappage::{HotPages, MapPages, PageCache};

/// The state of one batch being built: nothing here is visible to readers
/// or durable until [`Ledger::seal`] commits it.
struct Work<'a, S: Store> {
    store: &'a S,
    hot: &'a HotPages,
    /// The map as it is before this batch: the rules read credentials'
    /// status from it, and the batch's map update reuses the pages read.
    pages: MapPages<'a, S>,
    batch: Batch,
    frontier: Frontier,
    /// This batch's events by leaf hash.
    dedup: HashMap<Hash, u64>,
    /// Stored dedup records this batch adds to: keys already holding
    /// another event (see [`DEDUP_KEY_LEN`]).
    dedup_stored: HashMap<[u8; DEDUP_KEY_LEN], Vec<u8>>,
    credentials: BTreeMap<CredentialId, Credential>,
    holders: BTreeMap<HolderTag, Option<CredentialId>>,
    /// Stored holder records read by the rules, by key, as they were
    /// before this batch: sealing merges the batch's changes into them
    /// without reading them again.
    holder_records: std::cell::RefCell<HashMap<[u8; HOLDER_KEY_LEN], Vec<LiveHolder>>>,
    registry: Arc<Registry>,
    registry_changed: bool,
}

impl<S: Store> StateView for Work<'_, S> {
    type Error = LedgerError;
    fn credential(&self, id: &CredentialId) -> Result<Option<Credential>, LedgerError> {
        if let Some(c) = self.credentials.get(id) {
            return Ok(Some(*c));
        }
        let key = smt::map_key(&id.0);
        let Some(value) = smt::get(&self.pages, &key).map_err(map_failed)? else {
            return Ok(None);
        };
        let status = StatusRecord::decode(&value).map_err(corrupt("status map leaf"))?;
        let entry = read_entry_bytes(self.store, status.last_index)?;
        credential_of(id, status, &entry).map(Some)
    }
    fn live_credential(&self, holder: &HolderTag) -> Result<Option<CredentialId>, LedgerError> {
        if let Some(c) = self.holders.get(holder) {
            return Ok(*c);
        }
        let key = holder_key(holder);
        let mut records = self.holder_records.borrow_mut();
        let record = match records.entry(key) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(holder_record(self.store, &key)?)
            }
        };
        Ok(record
            .iter()
            .find(|l| l.holder == *holder)
            .map(|l| l.credential))
    }
}

impl<S: Store> Work<'_, S> {
    /// Appends one entry: its bytes, its leaf hash and the tree hashes it
    /// completes. Returns its index.
    fn push_entry(&mut self, bytes: Vec<u8>, leaf: Hash) -> Result<u64, LedgerError> {
        let index = self.frontier.size();
        // Appending past 2^62 entries is the only failure; refuse it.
        let hashes = self
            .frontier
            .append(leaf)
            .map_err(|e| LedgerError::Corrupt(format!("appending entry {index}: {e}")))?;
        // The leaf first, then the subtrees it completes, one level up
        // each: level l at `index >> l`. Leaf hashes are not stored.
        for (level, (_, h)) in (0u32..).zip(hashes) {
            if let Some(slot) = node_hash_slot(level, index >> level) {
                self.batch.put(Space::Hash, slot.to_be_bytes(), h.0);
            }
        }
        self.batch.put(Space::Entry, index.to_be_bytes(), bytes);
        Ok(index)
    }
}

/// A credential's record as the node keeps it: no record of its own, but
/// its status (the map's leaf) and the logged event that last changed it
/// (`entry`, at `status.last_index`), which names its holder.
///
/// # Errors
/// [`LedgerError::Corrupt`] when the entry is not that event.
fn credential_of(
    id: &CredentialId,
    status: StatusRecord,
    entry: &[u8],
) -> Result<Credential, LedgerError> {
    let bad = |why: &str| {
        LedgerError::Corrupt(format!(
            "credential {id}: entry {} {why}",
            status.last_index
        ))
    };
    if leaf_hash(entry) != status.last_leaf_hash {
        return Err(bad("does not have the leaf hash its status records"));
    }
    let event = match Entry::decode(entry) {
        Ok(Entry::Event(e)) => e.event,
        _ => return Err(bad("is not an event")),
    };
    let names_it = event.credential == *id
        || matches!(event.action, Action::Issue { replaces: Some(r), .. } if r == *id);
    if !names_it {
        return Err(bad("is about another credential"));
    }
    Ok(Credential {
        status,
        holder: event.holder,
    })
}

/// Bytes that key the node's holder index: the first 8 of a hash of the
/// holder tag (see [`holder_key`]).
pub const HOLDER_KEY_LEN: usize = 8;

/// The domain of [`holder_key`]'s hash.
const HOLDER_KEY_DOMAIN: &[u8] = b"revledger/holder-index/v1\0";

/// The key of `holder`'s record in the node's holder index: the first
/// [`HOLDER_KEY_LEN`] bytes of SHA-256(domain ‖ tag), 8 bytes instead of
/// the tag's 32 per live credential. A hash, not the tag's own first
/// bytes: issuers choose tags, and tags that share a prefix (a counter in
/// the last bytes, as a load generator makes them) would pile into one
/// record that every issue rereads. Holders whose keys collide share a
/// record, and the entries it lists say which holder each is of: by
/// chance about one pair among 2^32 live credentials, on purpose a pair
/// for about 2^32 SHA-256 work by a registered issuer and k of them for
/// about 2^(64(k−1)/k), so records stay a few entries long.
pub fn holder_key(holder: &HolderTag) -> [u8; HOLDER_KEY_LEN] {
    let mut input = Vec::with_capacity(HOLDER_KEY_DOMAIN.len() + 32);
    input.extend_from_slice(HOLDER_KEY_DOMAIN);
    input.extend_from_slice(&holder.0);
    let mut k = [0u8; HOLDER_KEY_LEN];
    k.copy_from_slice(&Hash::of(&input).0[..HOLDER_KEY_LEN]);
    k
}

/// One holder in a node's holder record: the index of a logged event about
/// its live credential (the one that last changed it when the record was
/// written), the holder and the credential that event names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LiveHolder {
    index: u64,
    holder: HolderTag,
    credential: CredentialId,
}

/// The node's holder record under `key`: a list of u64 entry indexes, in
/// log order, one per holder under this key with a live credential (one,
/// unless the keys of holders collide).
///
/// # Errors
/// Storage errors; [`LedgerError::Corrupt`] for a malformed record, or an
/// entry that is missing or not an event of a holder under this key.
fn holder_record<S: ReadStore + ?Sized>(
    store: &S,
    key: &[u8; HOLDER_KEY_LEN],
) -> Result<Vec<LiveHolder>, LedgerError> {
    let Some(record) = store.get(Space::Holder, key)? else {
        return Ok(Vec::new());
    };
    let name = || hex::encode(key);
    index_list(&record, &format!("holder record {}", name()))?
        .into_iter()
        .map(|index| {
            let entry = read_entry_bytes(store, index)?;
            match Entry::decode(&entry) {
                Ok(Entry::Event(e)) if holder_key(&e.event.holder) == *key => Ok(LiveHolder {
                    index,
                    holder: e.event.holder,
                    credential: e.event.credential,
                }),
                _ => Err(LedgerError::Corrupt(format!(
                    "holder record {}: entry {index} is not an event of a holder under this key",
                    name()
                ))),
            }
        })
        .collect()
}

/// A holder record after a batch: what it held (`stored`), less the
/// holders the batch `changed`, plus those of them with a live credential
/// now, in log order.
fn merge_holders(
    mut stored: Vec<LiveHolder>,
    changed: &[(HolderTag, Option<LiveHolder>)],
) -> Vec<LiveHolder> {
    stored.retain(|l| changed.iter().all(|(h, _)| *h != l.holder));
    stored.extend(changed.iter().filter_map(|(_, live)| *live));
    stored.sort_unstable_by_key(|l| l.index);
    stored
}

/// The u64s of a non-empty index list (a holder or dedup record).
fn index_list(record: &[u8], what: &str) -> Result<Vec<u64>, LedgerError> {
    if record.is_empty() || !record.len().is_multiple_of(8) {
        return Err(LedgerError::Corrupt(format!(
            "{what} is {} bytes, not a list of u64s",
            record.len()
        )));
    }
    Ok(record
        .chunks_exact(8)
        .map(|c| {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            u64::from_be_bytes(b)
        })
        .collect())
}

/// Bytes of an event's leaf hash that key the dedup index: 8, not 32
/// (24 bytes less per event). Leaf hashes that share them (by chance,
/// about one pair in 2^32 events, or made to, at about 2^32 SHA-256 work
/// per pair by a registered issuer) share one record, and every candidate
/// is checked against the log.
pub const DEDUP_KEY_LEN: usize = 8;

/// The key of the dedup record that lists the event with leaf hash `leaf`.
pub fn dedup_key(leaf: &Hash) -> [u8; DEDUP_KEY_LEN] {
    let mut k = [0u8; DEDUP_KEY_LEN];
    k.copy_from_slice(&leaf.0[..DEDUP_KEY_LEN]);
    k
}

/// The logged event whose leaf hash is `leaf`, from the dedup index, and
/// the record read. A record lists, as u64s in log order, the events whose
/// leaf hashes start with its key; each is checked by hashing its entry.
///
/// # Errors
/// Storage errors; [`LedgerError::Corrupt`] for a malformed record or one
/// that names a missing entry.
fn find_logged<S: ReadStore + ?Sized>(
    store: &S,
    leaf: &Hash,
) -> Result<(Option<u64>, Option<Vec<u8>>), LedgerError> {
    let Some(record) = store.get(Space::Dedup, &dedup_key(leaf))? else {
        return Ok((None, None));
    };
    let what = format!("dedup record {}", hex::encode(dedup_key(leaf)));
    for index in index_list(&record, &what)? {
        if leaf_hash(&read_entry_bytes(store, index)?) == *leaf {
            return Ok((Some(index), Some(record)));
        }
    }
    Ok((None, Some(record)))
}

/// The bytes of entry `index`, which must exist.
fn read_entry_bytes<S: ReadStore + ?Sized>(store: &S, index: u64) -> Result<Vec<u8>, LedgerError> {
    store
        .get(Space::Entry, &index.to_be_bytes())?
        .ok_or_else(|| missing_entry(index))
}

/// The auditor's credential records (the node derives them, see
/// [`credential_of`]).
pub(crate) fn read_credential<S: ReadStore + ?Sized>(
    store: &S,
    id: &CredentialId,
) -> Result<Option<Credential>, LedgerError> {
    match store.get(Space::Credential, &id.0)? {
        None => Ok(None),
        Some(v) => Credential::decode(&v)
            .map(Some)
            .map_err(|e| LedgerError::Corrupt(format!("credential record {id}: {e}"))),
    }
}

/// The auditor's holder index: the live credential's id (the node keeps
/// entry indexes under a hash of the tag instead, see [`holder_record`]).
pub(crate) fn read_holder<S: ReadStore + ?Sized>(
    store: &S,
    holder: &HolderTag,
) -> Result<Option<CredentialId>, LedgerError> {
    match store.get(Space::Holder, &holder.0)? {
        None => Ok(None),
        Some(v) => <[u8; 32]>::try_from(v.as_slice())
            .map(|b| Some(CredentialId(b)))
            .map_err(|_| LedgerError::Corrupt(format!("holder record {holder} is malformed"))),
    }
}

pub(crate) fn u64_value(v: &[u8], what: &str) -> Result<u64, LedgerError> {
    <[u8; 8]>::try_from(v)
        .map(u64::from_be_bytes)
        .map_err(|_| LedgerError::Corrupt(format!("{what} is not a u64")))
}

fn corrupt<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> LedgerError {
    move |e| LedgerError::Corrupt(format!("{what}: {e}"))
}

/// The writer's status map could not be read or updated: the ledger stops
/// writing, as for any storage failure.
fn map_failed(e: smt::MapError) -> LedgerError {
    LedgerError::Store(StoreError::Io(format!("status map: {e}")))
}

/// The revocation ledger over a [`Store`].
pub struct Ledger<S: Store> {
    reader: LedgerReader<S>,
    signer: NoteSigner,
    /// The right edge of the committed tree: O(log n) hashes.
    frontier: Frontier,
    /// Replaced (never changed in place) when a batch changes it, so that
    /// [`Authorized`] can tell whether it was checked against this one.
    registry: Arc<Registry>,
    last_head_ms: u64,
    /// The map's top pages as committed (published with each checkpoint).
    hot: Arc<HotPages>,
    /// The published checkpoint when it is not stored yet: it goes into
    /// the next batch's commit (see [`Ledger::publish_checkpoint`]).
    unsaved: Option<VerifiedCheckpoint>,
}

impl<S: Store> std::ops::Deref for Ledger<S> {
    type Target = LedgerReader<S>;
    /// The writer reads like any reader.
    fn deref(&self) -> &LedgerReader<S> {
        &self.reader
    }
}

impl<S: Store> Ledger<S> {
    /// Opens the ledger in `store`, creating the log when the store is
    /// empty (a first batch holding only a head record, so that even the
    /// first checkpoint ends on one).
    ///
    /// On an existing log it checks, in O(log n) reads: the last signed
    /// checkpoint verifies with this key; the root recomputed from stored
    /// hashes equals it; the last entry is a head record whose map root
    /// equals the stored map's root. A batch that was committed but never
    /// checkpointed (a crash in between) is checked for consistency and
    /// signed now.
    ///
    /// # Errors
    /// [`LedgerError::Corrupt`] with what does not match, or a storage
    /// error.
    pub fn open(store: S, signer: NoteSigner, now_ms: u64) -> Result<Ledger<S>, LedgerError> {
        Ledger::open_shared(Arc::new(store), Arc::default(), signer, now_ms)
    }

    /// [`Ledger::open`], publishing into `shared` (kept across
    /// [`Ledger::recover`], so readers follow the reopened ledger).
    fn open_shared(
        store: Arc<S>,
        shared: Arc<Shared>,
        signer: NoteSigner,
        now_ms: u64,
    ) -> Result<Ledger<S>, LedgerError> {
        let verifier = signer.verifier();
        let mut ledger = Ledger {
            reader: LedgerReader {
                store,
                shared,
                verifier,
            },
            signer,
            frontier: Frontier::new(),
            registry: Arc::default(),
            last_head_ms: 0,
            hot: Arc::new(HotPages::unknown()),
            unsaved: None,
        };
        let size = match ledger.reader.store.get(Space::Meta, META_SIZE)? {
            None => {
                ledger.hot = Arc::new(HotPages::load(&*ledger.reader.store)?);
                let mut work = ledger.work();
                work.batch.put(Space::Meta, META_LAYOUT, LAYOUT);
                let sealed = seal(work, now_ms, 0);
                ledger.install(sealed)?;
                ledger.save_checkpoint()?;
                return Ok(ledger);
            }
            Some(v) => u64_value(&v, "stored tree size")?,
        };
        if size == 0 {
            return Err(LedgerError::Corrupt("stored tree size is 0".into()));
        }
        match ledger.reader.store.get(Space::Meta, META_LAYOUT)? {
            Some(v) if v == LAYOUT => {}
            found => {
                return Err(LedgerError::Corrupt(format!(
                    "the store's hashes and indexes are in layout {}; this build reads layout {} \
                     only, and no converter exists yet",
                    found.map_or("0 (written before 2026-12-02)".into(), hex::encode),
                    LAYOUT[0]
                )))
            }
        }
        ledger.frontier = Frontier::load(size, &LogHashes::checked(&*ledger.reader.store))
            .map_err(corrupt("loading the tree's right edge"))?;

        let mut published = None;
        if let Some(text) = ledger.reader.store.get(Space::Meta, META_CHECKPOINT)? {
            let text = String::from_utf8(text).map_err(corrupt("stored checkpoint"))?;
            let ckpt = checkpoint::verify_checkpoint(&text, &ledger.reader.verifier).map_err(|e| {
                LedgerError::Corrupt(format!(
                    "the stored checkpoint does not verify with log key {} ({e}); wrong key or data dir?",
                    ledger.reader.verifier.to_vkey_string()
                ))
            })?;
            if ckpt.size() > size {
                return Err(LedgerError::Corrupt(format!(
                    "last signed checkpoint has size {} but the stored tree has only {size} entries",
                    ckpt.size()
                )));
            }
            let root = merkle::tree_hash(ckpt.size(), &LogHashes::checked(&*ledger.reader.store))
                .map_err(corrupt("recomputing the checkpointed root"))?;
            if root != *ckpt.root() {
                return Err(LedgerError::Corrupt(format!(
                    "root recomputed from stored hashes at size {} is {}, but the last signed checkpoint says {}",
                    ckpt.size(),
                    root.to_base64(),
                    ckpt.root().to_base64()
                )));
            }
            published = Some(ckpt);
        }

        let head = head_record(
            &ledger.reader.read_entry(size - 1)?,
            size - 1,
            "is the last",
        )?;
        let stored = HotPages::load(&*ledger.reader.store)?;
        ledger.hot = Arc::new(replay_map_changes(&*ledger.reader.store, stored, size)?);
        let map_root = smt::root(&MapPages::with_hot(&*ledger.reader.store, &ledger.hot))
            .map_err(corrupt("status map"))?;
        if map_root != head.map_root {
            return Err(LedgerError::Corrupt(format!(
                "status map root {} differs from the last head record's {}",
                map_root.to_hex(),
                head.map_root.to_hex()
            )));
        }
        ledger.last_head_ms = head.time_ms;
        ledger.registry = Arc::new(match ledger.reader.store.get(Space::Meta, META_REGISTRY)? {
            None => Registry::new(),
            Some(v) => decode_registry(&v)?,
        });
        let complete = published.as_ref().map(|c| c.size()) == Some(size);
        ledger.set_checkpoint(published);
        if !complete {
            ledger.publish_checkpoint()?;
            ledger.save_checkpoint()?;
        }
        // Every check passed: the writer may work again.
        *ledger
            .reader
            .shared
            .poisoned
            .write()
            .unwrap_or_else(|p| p.into_inner()) = None;
        Ok(ledger)
    }

    /// A read handle that other threads can use while this writer appends.
    pub fn reader_handle(&self) -> LedgerReader<S> {
        self.reader.clone()
    }

    /// The registered submitters, by key id.
    pub fn submitters(&self) -> impl Iterator<Item = &Submitter> {
        self.registry.values()
    }

    /// Publishes `c` with the map's top pages as committed now.
    fn set_checkpoint(&self, c: Option<VerifiedCheckpoint>) {
        *self
            .reader
            .shared
            .published
            .write()
            .unwrap_or_else(|p| p.into_inner()) = c.map(|checkpoint| {
            Arc::new(Published {
                checkpoint,
                registry: self.registry.clone(),
                hot: self.hot.clone(),
                head: OnceLock::new(),
            })
        });
    }

    fn set_poisoned(&self, why: String) {
        *self
            .reader
            .shared
            .poisoned
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(why);
    }

    fn work(&self) -> Work<'_, S> {
        let mut batch = Batch::new();
        if let Some(c) = &self.unsaved {
            put_checkpoint(&mut batch, c);
        }
        Work {
            store: &*self.reader.store,
            hot: &self.hot,
            pages: MapPages::with_hot(&*self.reader.store, &self.hot),
            batch,
            frontier: self.frontier.clone(),
            dedup: HashMap::new(),
            dedup_stored: HashMap::new(),
            credentials: BTreeMap::new(),
            holders: BTreeMap::new(),
            holder_records: Default::default(),
            registry: self.registry.clone(),
            registry_changed: false,
        }
    }

    fn check_usable(&self) -> Result<(), LedgerError> {
        match self.poisoned() {
            Some(why) => Err(LedgerError::Poisoned(why)),
            None => Ok(()),
        }
    }

    /// Sequences a batch of submitted events (each the encoded entry), then
    /// returns once they are durable and covered by a signed checkpoint.
    /// Refused events change nothing; when none is accepted, nothing is
    /// written and the current checkpoint is returned.
    ///
    /// # Errors
    /// A [`LedgerError`] when storage fails (nothing is acknowledged, and the
    /// ledger is poisoned) or the new tree would fork the log.
    pub fn append_events(
        &mut self,
        entries: &[Vec<u8>],
        now_ms: u64,
    ) -> Result<BatchResult, LedgerError> {
        self.check_usable()?;
        // Signature checks dominate admission and need no state but the
        // registry: run them on every core first, then admit in order.
        let auth = authorize_all(&self.registry, entries);
        self.append_checked(entries, auth, now_ms)
    }

    /// [`Ledger::append_events`] for events whose signatures and issuers
    /// were checked ahead of the writer ([`LedgerReader::authorize`]), in
    /// the order given. A part checked against a registry that has changed
    /// since is checked again here.
    ///
    /// # Errors
    /// As [`Ledger::append_events`].
    pub fn append_authorized(
        &mut self,
        parts: Vec<Authorized>,
        now_ms: u64,
    ) -> Result<BatchResult, LedgerError> {
        self.check_usable()?;
        let mut entries = Vec::with_capacity(parts.iter().map(Authorized::len).sum());
        let mut auth = Vec::with_capacity(entries.capacity());
        for part in parts {
            if Arc::ptr_eq(&part.registry, &self.registry) {
                auth.extend(part.checks);
            } else {
                auth.extend(authorize_all(&self.registry, &part.entries));
            }
            entries.extend(part.entries);
        }
        self.append_checked(&entries, auth, now_ms)
    }

    fn append_checked(
        &mut self,
        entries: &[Vec<u8>],
        auth: Vec<Result<(), Refusal>>,
        now_ms: u64,
    ) -> Result<BatchResult, LedgerError> {
        let mut work = self.work();
        let mut outcomes = Vec::with_capacity(entries.len());
        let mut appended = 0usize;
        for (raw, auth) in entries.iter().zip(auth) {
            let outcome = admit(&mut work, raw, auth)?;
            appended += usize::from(matches!(outcome, Outcome::Accepted { .. }));
            outcomes.push(outcome);
        }
        if appended > 0 {
            let sealed = seal(work, now_ms, self.last_head_ms);
            self.install(sealed)?;
        }
        Ok(BatchResult {
            outcomes,
            checkpoint: self.checkpoint().clone(),
        })
    }

    /// Appends a head record alone (heartbeat), so status proofs stay fresh.
    ///
    /// # Errors
    /// As [`Ledger::append_events`].
    pub fn append_heartbeat(&mut self, now_ms: u64) -> Result<VerifiedCheckpoint, LedgerError> {
        self.check_usable()?;
        let sealed = seal(self.work(), now_ms, self.last_head_ms);
        self.install(sealed)?;
        Ok(self.checkpoint().clone())
    }

    /// Makes the registry in the log equal `desired`: appends, signed by the
    /// log key, an add for every new key or changed kind set and a removal
    /// for every key no longer wanted (DESIGN §2). Returns the changes.
    ///
    /// # Errors
    /// [`LedgerError::Config`] when two desired keys share a key id, else as
    /// [`Ledger::append_events`].
    pub fn reconcile_submitters(
        &mut self,
        desired: &[Submitter],
        now_ms: u64,
    ) -> Result<Vec<RegistryChange>, LedgerError> {
        self.check_usable()?;
        let mut want = Registry::new();
        for s in desired {
            if s.kinds == KindSet::NONE {
                return Err(LedgerError::Config(format!(
                    "submitter {} has no event kinds",
                    s.key.name()
                )));
            }
            if let Some(prev) = want.insert(s.key.id(), s.clone()) {
                if prev != *s {
                    return Err(LedgerError::Config(format!(
                        "submitters {} and {} share key id {:08x}",
                        prev.key.name(),
                        s.key.name(),
                        s.key.id()
                    )));
                }
            }
        }
        let mut changes = Vec::new();
        for (id, s) in self.registry.iter() {
            if !want.contains_key(id) {
                changes.push(registry_change(
                    RegistryOp::Remove,
                    KindSet::NONE,
                    s,
                    now_ms,
                ));
            }
        }
        for (id, s) in &want {
            if self.registry.get(id) != Some(s) {
                changes.push(registry_change(RegistryOp::Add, s.kinds, s, now_ms));
            }
        }
        if changes.is_empty() {
            return Ok(changes);
        }
        let mut work = self.work();
        for change in &changes {
            let signed = change
                .clone()
                .sign(self.signer.signing_key())
                .map_err(|e| LedgerError::Config(e.to_string()))?;
            let bytes = signed.encode();
            let leaf = leaf_hash(&bytes);
            work.push_entry(bytes, leaf)?;
        }
        work.registry = Arc::new(want);
        work.registry_changed = true;
        let sealed = seal(work, now_ms, self.last_head_ms);
        self.install(sealed)?;
        Ok(changes)
    }

    /// Installs a sealed batch and publishes its checkpoint, or poisons
    /// the ledger when sealing or publishing failed.
    fn install(&mut self, sealed: Result<Sealed, LedgerError>) -> Result<(), LedgerError> {
        let sealed = sealed.inspect_err(|e| self.set_poisoned(e.to_string()))?;
        // The commit stored the checkpoint that was unsaved ([`Ledger::work`]).
        self.unsaved = None;
        self.frontier = sealed.frontier;
        self.registry = sealed.registry;
        self.last_head_ms = sealed.head_ms;
        self.hot = Arc::new(sealed.hot);
        // 4. Consistency check, sign, publish (stored with the next commit).
        self.publish_checkpoint()
            .inspect_err(|e| self.set_poisoned(e.to_string()))
    }

    /// Signs and publishes a checkpoint for the committed tree, after
    /// proving it consistent with the last one signed. It is stored with
    /// the next batch's commit (or by [`Ledger::save_checkpoint`]), not
    /// with a commit of its own: the tree it signs is durable already, and
    /// Ed25519 signatures are deterministic (RFC 8032), so after a crash
    /// [`Ledger::open`] signs the same tree into the same bytes. What a
    /// client was given is then what the node serves, and the batch's
    /// path to its answer holds one index fsync instead of two.
    fn publish_checkpoint(&mut self) -> Result<(), LedgerError> {
        let new = Checkpoint::new(
            self.reader.verifier.name().to_string(),
            self.frontier.size(),
            self.frontier.root(),
        )
        .map_err(|e| LedgerError::Sign(e.to_string()))?;
        let last = self
            .reader
            .shared
            .published
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|p| p.checkpoint.clone());
        if let Some(old) = &last {
            if new.size() < old.size() {
                return Err(LedgerError::WouldFork(format!(
                    "tree size {} is smaller than the signed {}",
                    new.size(),
                    old.size()
                )));
            }
            let proof = merkle::consistency_proof(
                old.size(),
                new.size(),
                &LogHashes::checked(&*self.reader.store),
            )
            .map_err(corrupt("consistency proof from stored hashes"))?;
            merkle::verify_consistency(old.size(), new.size(), old.root(), new.root(), &proof)
                .map_err(|e| {
                    LedgerError::WouldFork(format!(
                        "tree {} is not consistent with signed checkpoint {}: {e}",
                        new.size(),
                        old.size()
                    ))
                })?;
        }
        let signed = checkpoint::sign_checkpoint(&self.signer, &new)
            .map_err(|e| LedgerError::Sign(e.to_string()))?;
        let signed = signed.into_verified();
        self.set_checkpoint(Some(signed.clone()));
        self.unsaved = Some(signed);
        Ok(())
    }

    /// The store the ledger writes to.
    pub fn store(&self) -> &S {
        &self.reader.store
    }

    /// Stores the published checkpoint if it is not stored yet: on a clean
    /// stop, so that a reader of the data directory (`revledger fsck`) sees
    /// the last one signed.
    ///
    /// # Errors
    /// A storage error; the checkpoint stays unsaved (the next open signs
    /// it again).
    pub fn save_checkpoint(&mut self) -> Result<(), LedgerError> {
        let mut batch = Batch::new();
        if let Some(c) = &self.unsaved {
            put_checkpoint(&mut batch, c);
        }
        let hot =
            (self.hot.unwritten_len().0 > 0).then(|| write_back_map(&self.hot, &mut batch, None));
        if batch.is_empty() {
            return Ok(());
        }
        self.reader.store.commit(batch)?;
        self.unsaved = None;
        if let Some(hot) = hot {
            self.hot = Arc::new(hot);
        }
        Ok(())
    }
}

/// The writes that store a signed checkpoint: as the last one, and in the
/// history by size.
fn put_checkpoint(batch: &mut Batch, c: &VerifiedCheckpoint) {
    batch.put(Space::Meta, META_CHECKPOINT, c.note_text().as_bytes());
    batch.put(
        Space::Checkpoint,
        c.size().to_be_bytes(),
        c.note_text().as_bytes(),
    );
}

/// What the writer and its readers share: the published checkpoint and
/// whether a storage failure stopped the writer.
#[derive(Default)]
struct Shared {
    published: std::sync::RwLock<Option<Arc<Published>>>,
    poisoned: std::sync::RwLock<Option<String>>,
    /// Level-0 hash tiles served lately (see [`LeafTiles`]).
    leaf_tiles: std::sync::Mutex<LeafTiles>,
}

/// The level-0 hash tiles served last, up to [`LeafTiles::CAPACITY`] of
/// them, the oldest going first. A node stores no leaf hashes, so such a
/// tile costs 256 entries hashed and 128 pairs checked (about 100 µs
/// here); and every client following the log fetches the same new tiles.
/// A tile never changes at a given width, so a kept body is never stale.
#[derive(Default)]
struct LeafTiles {
    bodies: HashMap<TilePath, Arc<[u8]>>,
    order: std::collections::VecDeque<TilePath>,
}

impl LeafTiles {
    /// 1,024 tiles of at most 8 KiB: 8 MiB.
    const CAPACITY: usize = 1024;

    fn get(&self, tile: &TilePath) -> Option<Arc<[u8]>> {
        self.bodies.get(tile).cloned()
    }

    fn keep(&mut self, tile: TilePath, body: Arc<[u8]>) {
        if self.bodies.insert(tile, body).is_some() {
            return;
        }
        self.order.push_back(tile);
        while self.order.len() > Self::CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.bodies.remove(&old);
            }
        }
    }
}

/// A published checkpoint, with what every status proof against it shares.
struct Published {
    checkpoint: VerifiedCheckpoint,
    /// The submitter registry at the end of that tree.
    registry: Arc<Registry>,
    /// The map's top pages as committed when it was published. A batch
    /// committed later but not yet published is not in them.
    hot: Arc<HotPages>,
    /// The head record that ends the checkpoint, with its inclusion proof
    /// and map root: made by the first status proof that needs it.
    head: OnceLock<(LoggedEntry, Hash)>,
}

/// The read side of the ledger: cheap to clone, usable from any thread
/// while the one writer ([`Ledger`]) appends. Reads never wait for a batch
/// being committed: they serve the last published checkpoint, whose
/// entries and tree hashes never change.
pub struct LedgerReader<S: Store> {
    store: Arc<S>,
    shared: Arc<Shared>,
    verifier: NoteVerifier,
}

impl<S: Store> Clone for LedgerReader<S> {
    fn clone(&self) -> Self {
        LedgerReader {
            store: self.store.clone(),
            shared: self.shared.clone(),
            verifier: self.verifier.clone(),
        }
    }
}

impl<S: Store> LedgerReader<S> {
    /// The last published (signed and persisted) checkpoint.
    pub fn checkpoint(&self) -> VerifiedCheckpoint {
        self.published().checkpoint.clone()
    }

    /// Checks `entries`' issuers and signatures against the registry of
    /// the last published checkpoint, on this thread: the expensive part
    /// of admission, done ahead of the writer by whoever received them.
    /// The writer takes the result in [`Ledger::append_authorized`].
    pub fn authorize(&self, entries: Vec<Vec<u8>>) -> Authorized {
        let registry = self.published().registry.clone();
        let checks = authorize_each(&registry, &entries);
        Authorized {
            entries,
            checks,
            registry,
        }
    }

    fn published(&self) -> Arc<Published> {
        let c = self
            .shared
            .published
            .read()
            .unwrap_or_else(|p| p.into_inner());
        match &*c {
            Some(c) => c.clone(),
            // Ledger::open publishes a checkpoint before any reader exists.
            None => unreachable!("an open ledger always has a checkpoint"),
        }
    }

    /// The log's verifier key.
    pub fn verifier(&self) -> &NoteVerifier {
        &self.verifier
    }

    /// The store (read access).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// `Some(reason)` when a storage failure stopped the writer.
    pub fn poisoned(&self) -> Option<String> {
        self.shared
            .poisoned
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The entry at `index` of the committed tree, checked with its pair
    /// against their parent's stored hash (see [`read_pair`]).
    fn read_entry(&self, index: u64) -> Result<Vec<u8>, LedgerError> {
        read_leaf(&*self.store, index).map(|(bytes, _)| bytes)
    }

    fn check_published(&self, what: &'static str, value: u64) -> Result<u64, LedgerError> {
        let limit = self.checkpoint().size();
        if value > limit {
            return Err(LedgerError::OutOfRange { what, value, limit });
        }
        Ok(limit)
    }

    /// The entry at `index`, which must be covered by the checkpoint.
    ///
    /// # Errors
    /// [`LedgerError::OutOfRange`], or corruption/storage errors.
    pub fn entry(&self, index: u64) -> Result<Vec<u8>, LedgerError> {
        let limit = self.checkpoint().size();
        if index >= limit {
            return Err(LedgerError::OutOfRange {
                what: "index",
                value: index,
                limit,
            });
        }
        self.read_entry(index)
    }

    /// RFC 9162 inclusion proof of entry `index` in the tree of `size`
    /// (at most the checkpoint's size).
    ///
    /// # Errors
    /// [`LedgerError::OutOfRange`] unless `index < size <= checkpoint size`.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, LedgerError> {
        let mut proofs = self.inclusion_proofs(&[index], size)?;
        Ok(proofs.pop().unwrap_or_default())
    }

    /// [`LedgerReader::inclusion_proof`] for many entries of the tree of
    /// `size`, in the order of `indexes`. Hashes shared between the proofs
    /// are read from storage once, so the proofs for a whole batch cost
    /// about two reads per entry rather than log2(size).
    ///
    /// # Errors
    /// As [`LedgerReader::inclusion_proof`], for the first failing index.
    pub fn inclusion_proofs(
        &self,
        indexes: &[u64],
        size: u64,
    ) -> Result<Vec<Vec<Hash>>, LedgerError> {
        self.check_proof_range(indexes, size)?;
        self.proofs_through(&MemoHashes::new(&*self.store), indexes, size)
    }

    /// `size` is at most the checkpoint's, and every index is below it.
    fn check_proof_range(&self, indexes: &[u64], size: u64) -> Result<(), LedgerError> {
        self.check_published("size", size)?;
        match indexes.iter().find(|&&i| i >= size) {
            Some(&index) => Err(LedgerError::OutOfRange {
                what: "index",
                value: index,
                limit: size,
            }),
            None => Ok(()),
        }
    }

    /// [`LedgerReader::inclusion_proofs`] reading hashes through `hashes`
    /// (which may hold some already), for indexes already checked.
    fn proofs_through(
        &self,
        hashes: &MemoHashes<'_, S>,
        indexes: &[u64],
        size: u64,
    ) -> Result<Vec<Vec<Hash>>, LedgerError> {
        // Never serve a proof that does not verify: check each against the
        // root (the signed one at the checkpoint's size).
        let root = self.root_at(size)?;
        let proofs = merkle::inclusion_proofs(indexes, size, hashes)
            .map_err(corrupt("inclusion proof from stored hashes"))?;
        let leaf_slots: Vec<u64> = indexes
            .iter()
            .map(|&i| merkle::stored_hash_index(0, i))
            .collect();
        let leaves = hashes.read_hashes(&leaf_slots)?;
        if leaves.len() != indexes.len() {
            return Err(LedgerError::Corrupt(format!(
                "{} leaf hashes read for {} entries",
                leaves.len(),
                indexes.len()
            )));
        }
        let checks = leaves
            .into_iter()
            .zip(indexes)
            .zip(&proofs)
            .map(|((leaf, &index), proof)| (leaf, index, proof.as_slice()));
        merkle::verify_inclusions(checks, size, &root).map_err(|(index, e)| {
            LedgerError::Corrupt(format!(
                "stored hashes give an inclusion proof for {index} in {size} that fails: {e}"
            ))
        })?;
        Ok(proofs)
    }

    /// The root of the tree of `size` (≤ checkpoint size): the signed root at
    /// the checkpoint's size, else recomputed from stored hashes.
    fn root_at(&self, size: u64) -> Result<Hash, LedgerError> {
        let ckpt = self.checkpoint();
        if size == ckpt.size() {
            return Ok(*ckpt.root());
        }
        merkle::tree_hash(size, &LogHashes::checked(&*self.store)).map_err(corrupt("tree hash"))
    }

    /// The leaf hash of entry `index` (covered by the checkpoint), from the
    /// entry, checked with its pair.
    ///
    /// # Errors
    /// [`LedgerError::OutOfRange`], or storage errors.
    pub fn leaf_hash(&self, index: u64) -> Result<Hash, LedgerError> {
        let limit = self.checkpoint().size();
        if index >= limit {
            return Err(LedgerError::OutOfRange {
                what: "index",
                value: index,
                limit,
            });
        }
        read_leaf(&*self.store, index).map(|(_, leaf)| leaf)
    }

    /// RFC 9162 consistency proof between the trees of sizes `old` and `new`.
    ///
    /// # Errors
    /// [`LedgerError::OutOfRange`] unless `old <= new <= checkpoint size`.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, LedgerError> {
        self.check_published("new", new)?;
        if old > new {
            return Err(LedgerError::OutOfRange {
                what: "old",
                value: old,
                limit: new,
            });
        }
        let proof = merkle::consistency_proof(old, new, &LogHashes::checked(&*self.store))
            .map_err(corrupt("consistency proof from stored hashes"))?;
        let (old_root, new_root) = (self.root_at(old)?, self.root_at(new)?);
        merkle::verify_consistency(old, new, &old_root, &new_root, &proof).map_err(|e| {
            LedgerError::Corrupt(format!(
                "stored hashes give a consistency proof {old}→{new} that fails: {e}"
            ))
        })?;
        Ok(proof)
    }

    /// The body of a tlog-tiles tile (hash tile or entry bundle) of the
    /// tree at the latest checkpoint. `Ok(None)` when the tile, at that
    /// width, does not exist at this size.
    ///
    /// # Errors
    /// Storage or corruption errors (entries are checked against their
    /// stored leaf hashes).
    pub fn read_tile(&self, tile: &TilePath) -> Result<Option<Vec<u8>>, LedgerError> {
        let size = self.checkpoint().size();
        match tile.kind() {
            TileKind::Hash { level } => {
                let kept = || {
                    self.shared
                        .leaf_tiles
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                };
                if level == 0 {
                    if let Some(body) = kept().get(tile) {
                        return Ok(Some(body.to_vec()));
                    }
                }
                match tile::read_tile(tile, size, &LogHashes::checked(&*self.store)) {
                    Ok(body) => {
                        if level == 0 {
                            kept().keep(*tile, Arc::from(body.as_slice()));
                        }
                        Ok(Some(body))
                    }
                    Err(TileError::NotAvailable { .. }) => Ok(None),
                    Err(e) => Err(LedgerError::Corrupt(format!("tile {tile}: {e}"))),
                }
            }
            TileKind::Entries => {
                match tile::tile_width(0, tile.index(), size) {
                    Some(w) if tile.width() <= w => {}
                    _ => return Ok(None),
                }
                // A bundle starts at an even index: one run of pairs.
                let start = tile.index() * u64::from(tile::FULL_WIDTH);
                let width = usize::from(tile.width());
                let pairs = u64::from(tile.width()).div_ceil(2);
                let mut entries: Vec<Vec<u8>> = read_pairs(&*self.store, start / 2, pairs)?
                    .into_iter()
                    .map(|(e, _)| e)
                    .collect();
                if entries.len() < width {
                    return Err(missing_entry(start + entries.len() as u64));
                }
                entries.truncate(width);
                let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
                tile::encode_entry_bundle(&refs)
                    .map(Some)
                    .map_err(|e| LedgerError::Corrupt(format!("entry bundle {tile}: {e}")))
            }
        }
    }

    /// The credential's record at the published checkpoint, if the log
    /// has seen it: its status from the map (proved and checked against
    /// the head record), its holder from the event that last changed it.
    ///
    /// # Errors
    /// Storage or corruption errors.
    pub fn credential(&self, id: &CredentialId) -> Result<Option<Credential>, LedgerError> {
        let proof = self.status_proof(id)?;
        let Some(event) = proof.event else {
            return Ok(None);
        };
        let map_proof =
            smt::MapProof::decode(&proof.map_proof).map_err(corrupt("status map proof"))?;
        let status = match map_proof.terminal {
            smt::Terminal::Leaf { key, value } if key == smt::map_key(&id.0) => {
                StatusRecord::decode(&value).map_err(corrupt("status map leaf"))?
            }
            _ => return Ok(None),
        };
        credential_of(id, status, &event.entry).map(Some)
    }

    /// The index of an already-logged entry with this leaf hash, if any
    /// (events only).
    ///
    /// # Errors
    /// Storage or corruption errors.
    pub fn find_event(&self, leaf: &Hash) -> Result<Option<u64>, LedgerError> {
        find_logged(&*self.store, leaf).map(|(index, _)| index)
    }

    /// A status proof for `credential` against the latest checkpoint
    /// (DESIGN §4): the checkpoint, the head record and its inclusion, the
    /// map proof, and when the credential is known the event that last
    /// changed it with its inclusion.
    ///
    /// # Errors
    /// Storage or corruption errors.
    pub fn status_proof(&self, credential: &CredentialId) -> Result<StatusProof, LedgerError> {
        // Entries and tree hashes never change once written, but the status
        // map is updated in place. A batch being sealed may already have
        // committed new map nodes while its checkpoint is not yet published:
        // such a map proof does not verify under the published head's root.
        // Detect that and retry once the checkpoint is published.
        for _ in 0..5_000 {
            if let Some(p) = self.try_status_proof(credential)? {
                return Ok(p);
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Err(LedgerError::Corrupt(format!(
            "the status map does not match the published head record for {credential}"
        )))
    }

    /// A status proof, or `None` when the map read raced a batch.
    fn try_status_proof(
        &self,
        credential: &CredentialId,
    ) -> Result<Option<StatusProof>, LedgerError> {
        let published = self.published();
        let size = published.checkpoint.size();
        let (head, head_root) = match published.head.get() {
            Some(h) => h.clone(),
            None => {
                let h = self.head_of(size)?;
                // Another reader may have set it first: the same value.
                let _ = published.head.set(h.clone());
                h
            }
        };
        let key = smt::map_key(&credential.0);
        let map_proof = smt::prove(&MapPages::with_hot(&*self.store, &published.hot), &key)
            .map_err(corrupt("status map proof"))?;
        if smt::verify(&head_root, &key, &map_proof).is_err() {
            return Ok(None);
        }
        let event = match &map_proof.terminal {
            smt::Terminal::Leaf { key: k, value } if *k == key => {
                let index = rules::StatusRecord::decode(value)
                    .map_err(corrupt("status map leaf"))?
                    .last_index;
                Some(self.logged_entry(index, size)?)
            }
            _ => None,
        };
        Ok(Some(StatusProof {
            credential: *credential,
            checkpoint: published.checkpoint.note_text().to_string(),
            head,
            map_proof: map_proof.encode(),
            event,
        }))
    }

    /// The head record that ends the tree of `size`, with its inclusion
    /// proof (verified) and the map root it records.
    fn head_of(&self, size: u64) -> Result<(LoggedEntry, Hash), LedgerError> {
        let head = self.logged_entry(size - 1, size)?;
        match Entry::decode(&head.entry) {
            Ok(Entry::Head(h)) => Ok((head, h.map_root)),
            _ => Err(LedgerError::Corrupt(format!(
                "entry {} ends the checkpoint but is not a head record",
                head.index
            ))),
        }
    }

    /// Entry `index` with its (verified) inclusion proof in the tree of
    /// `size`.
    fn logged_entry(&self, index: u64, size: u64) -> Result<LoggedEntry, LedgerError> {
        self.check_proof_range(&[index], size)?;
        // The entry's pair, read and checked once: its bytes, and the
        // leaf hashes the proof starts from.
        let first = index / 2 * 2;
        let pair = read_pair(&*self.store, index / 2)?;
        let hashes = MemoHashes::knowing(&*self.store, first, &pair);
        let entry = pair
            .into_iter()
            .nth((index - first) as usize)
            .ok_or_else(|| missing_entry(index))?
            .0;
        let inclusion = self
            .proofs_through(&hashes, &[index], size)?
            .pop()
            .unwrap_or_default();
        Ok(LoggedEntry {
            index,
            inclusion,
            entry,
        })
    }
}

/// What a committed batch changes in the ledger's memory.
struct Sealed {
    frontier: Frontier,
    registry: Arc<Registry>,
    head_ms: u64,
    hot: HotPages,
}

/// Finishes a batch: holder index and status map, head record, then
/// one atomic, durable commit. After it returns `Ok`, a crash leaves the
/// whole batch on disk, not yet checkpointed; `Ledger::open` signs it.
fn seal<S: Store>(
    mut work: Work<'_, S>,
    now_ms: u64,
    last_head_ms: u64,
) -> Result<Sealed, LedgerError> {
    // 1. Dedup records: per key, what it held before, then this batch's
    // events in log order.
    let mut records: BTreeMap<[u8; DEDUP_KEY_LEN], Vec<u8>> = BTreeMap::new();
    let mut fresh: Vec<(u64, Hash)> = work.dedup.iter().map(|(h, i)| (*i, *h)).collect();
    fresh.sort_unstable();
    for (index, leaf) in fresh {
        let key = dedup_key(&leaf);
        records
            .entry(key)
            .or_insert_with(|| work.dedup_stored.remove(&key).unwrap_or_default())
            .extend_from_slice(&index.to_be_bytes());
    }
    for (key, record) in records {
        work.batch.put(Space::Dedup, key, record);
    }
    // 2. Holder index and status map changes (a credential's record is
    // its map leaf and the logged event it names).
    let mut updates = Vec::with_capacity(work.credentials.len());
    for (id, cred) in &work.credentials {
        updates.push((smt::map_key(&id.0), cred.status.encode().to_vec()));
    }
    let mut by_key: BTreeMap<[u8; HOLDER_KEY_LEN], Vec<(HolderTag, Option<LiveHolder>)>> =
        BTreeMap::new();
    for (holder, live) in &work.holders {
        let live = match live {
            None => None,
            Some(id) => {
                // The credential changed in this batch (it became live), so
                // its status names this batch's last event about it.
                let index = work
                    .credentials
                    .get(id)
                    .map(|c| c.status.last_index)
                    .ok_or_else(|| {
                        LedgerError::Corrupt(format!(
                            "holder {holder}: live credential {id} is not in the batch"
                        ))
                    })?;
                Some(LiveHolder {
                    index,
                    holder: *holder,
                    credential: *id,
                })
            }
        };
        by_key
            .entry(holder_key(holder))
            .or_default()
            .push((*holder, live));
    }
    let mut read = work.holder_records.take();
    for (key, changed) in by_key {
        let stored = match read.remove(&key) {
            Some(r) => r,
            None => holder_record(work.store, &key)?,
        };
        let record = merge_holders(stored, &changed);
        if record.is_empty() {
            work.batch.delete(Space::Holder, key);
        } else {
            let value: Vec<u8> = record.iter().flat_map(|l| l.index.to_be_bytes()).collect();
            work.batch.put(Space::Holder, key, value);
        }
    }
    let map = smt::update(&work.pages, &updates).map_err(map_failed)?;
    work.pages.defer(&map.writes, &mut work.batch)?;
    // 3. The head record ends the batch; its time never goes backwards.
    let head = HeadRecord {
        time_ms: now_ms.max(last_head_ms),
        map_root: map.root,
    };
    let bytes = head.encode();
    let leaf = leaf_hash(&bytes);
    work.push_entry(bytes, leaf)?;
    let size = work.frontier.size();
    work.batch.put(Space::Meta, META_SIZE, size.to_be_bytes());
    if work.registry_changed {
        work.batch
            .put(Space::Meta, META_REGISTRY, encode_registry(&work.registry));
    }
    // The map's changed pages stay in memory; the store keeps the changes
    // themselves until the pages are written back.
    let hot = work.hot.absorb(work.pages.into_parts(), size);
    let (batches, pages) = hot.unwritten_len();
    let hot = if batches >= MAP_WRITE_BACK_BATCHES || pages >= MAP_WRITE_BACK_PAGES {
        write_back_map(&hot, &mut work.batch, Some(size))
    } else {
        if !map.writes.is_empty() {
            work.batch.put(
                Space::Meta,
                map_changes_key(size),
                encode_map_changes(&updates)?,
            );
            work.batch
                .put(Space::Meta, META_MAP_PENDING, pending_list(&hot));
        }
        hot
    };
    // 4. Atomic and durable (the Store contract).
    work.store.commit(work.batch)?;
    Ok(Sealed {
        frontier: work.frontier,
        registry: work.registry,
        head_ms: head.time_ms,
        hot,
    })
}

/// The head record in `bytes`, entry `index`, which `role` says ends a
/// batch.
///
/// # Errors
/// [`LedgerError::Corrupt`] when that entry is another kind, or does not
/// decode.
fn head_record(bytes: &[u8], index: u64, role: &str) -> Result<HeadRecord, LedgerError> {
    match Entry::decode(bytes) {
        Ok(Entry::Head(h)) => Ok(h),
        Ok(_) => Err(LedgerError::Corrupt(format!(
            "entry {index} {role} but is not a head record"
        ))),
        Err(e) => Err(LedgerError::Corrupt(format!("entry {index} {role}: {e}"))),
    }
}

/// The value of [`META_MAP_PENDING`] for `hot`.
fn pending_list(hot: &HotPages) -> Vec<u8> {
    hot.unwritten_sizes().flat_map(u64::to_be_bytes).collect()
}

/// Adds to `batch` the write-back of every map page `hot` holds unwritten,
/// and drops the changes kept for them (but for the batch ending at
/// `unkept`, whose changes were not stored); returns the version of `hot`
/// that `batch`'s commit makes current.
fn write_back_map(hot: &HotPages, batch: &mut Batch, unkept: Option<u64>) -> HotPages {
    for size in hot.unwritten_sizes() {
        if Some(size) != unkept {
            batch.delete(Space::Meta, map_changes_key(size));
        }
    }
    batch.delete(Space::Meta, META_MAP_PENDING);
    hot.write_back(batch)
}

/// Brings `hot` (the map's pages as stored) up to the log: replays, in
/// order, the status-map changes kept for each batch whose pages were not
/// written back, checking the map root after each against the head record
/// that ended that batch. `size` is the stored tree size.
///
/// # Errors
/// [`LedgerError::Corrupt`] when the kept changes are missing, malformed,
/// or do not give the map root their head record says.
fn replay_map_changes<S: ReadStore + ?Sized>(
    store: &S,
    mut hot: HotPages,
    size: u64,
) -> Result<HotPages, LedgerError> {
    let Some(list) = store.get(Space::Meta, META_MAP_PENDING)? else {
        return Ok(hot);
    };
    if list.is_empty() || list.len() % 8 != 0 {
        return Err(LedgerError::Corrupt(format!(
            "the list of batches with unwritten map pages is {} bytes long",
            list.len()
        )));
    }
    let ends = list
        .chunks_exact(8)
        .map(|c| {
            u64_value(
                c,
                "a batch end in the list of batches with unwritten map pages",
            )
        })
        .collect::<Result<Vec<u64>, _>>()?;
    // The whole list before any replay.
    let mut last = 0;
    for &end in &ends {
        if end <= last || end > size {
            return Err(LedgerError::Corrupt(format!(
                "batch end {end} in the list of batches with unwritten map pages is out of \
                 order or past the tree's size {size}"
            )));
        }
        last = end;
    }
    for end in ends {
        let kept = store
            .get(Space::Meta, &map_changes_key(end))?
            .ok_or_else(|| {
                LedgerError::Corrupt(format!(
                    "the status-map changes of the batch ending at {end} are missing"
                ))
            })?;
        let updates = decode_map_changes(&kept)?;
        let pages = MapPages::with_hot(store, &hot);
        let map = smt::update(&pages, &updates).map_err(map_failed)?;
        // The layout key is stored already: it came with the first
        // changes kept.
        pages.defer(&map.writes, &mut Batch::new())?;
        let head = head_record(
            &read_entry_bytes(store, end - 1)?,
            end - 1,
            "ends a batch with kept map changes",
        )?;
        if map.root != head.map_root {
            return Err(LedgerError::Corrupt(format!(
                "the status-map changes kept for the batch ending at {end} give root {}, but \
                 its head record says {}",
                map.root.to_hex(),
                head.map_root.to_hex()
            )));
        }
        let parts = pages.into_parts();
        hot = hot.absorb(parts, end);
    }
    Ok(hot)
}

impl<S: Store> Ledger<S> {
    /// Reopens the store ([`Store::reopen`]: what is durable, not what a
    /// failed commit left in memory) and the ledger on it (running every
    /// check of [`Ledger::open`]), clearing a poisoned state once storage
    /// works. Readers follow the reopened ledger.
    ///
    /// # Errors
    /// As [`Ledger::open`]; the ledger stays poisoned.
    pub fn recover(&mut self, now_ms: u64) -> Result<(), LedgerError> {
        // The failed commit may have left the store's memory torn: reload
        // what is durable before checking it.
        self.reader.store.reopen()?;
        *self = Ledger::open_shared(
            self.reader.store.clone(),
            self.reader.shared.clone(),
            self.signer.clone(),
            now_ms,
        )?;
        Ok(())
    }
}

/// The log as stored in a node's data directory, read raw (no checks) as a
/// [`crate::audit::LogSource`]: `fsck` replays it with the auditor, which
/// recomputes every hash, tile and map root and compares them with what is
/// stored and with the last signed checkpoint.
pub struct StoredLog<'a, S: ReadStore + ?Sized>(pub &'a S);

impl<S: ReadStore + ?Sized> crate::audit::LogSource for StoredLog<'_, S> {
    fn checkpoint(&self) -> Result<String, String> {
        let raw = self
            .0
            .get(Space::Meta, META_CHECKPOINT)
            .map_err(|e| e.to_string())?
            .ok_or("no signed checkpoint is stored")?;
        String::from_utf8(raw).map_err(|_| "the stored checkpoint is not UTF-8".to_string())
    }

    fn tile(&self, path: &TilePath) -> Result<Vec<u8>, String> {
        let size = {
            let text = self.checkpoint()?;
            let body = text.split("\n\n").next().unwrap_or_default();
            checkpoint::Checkpoint::parse_body(&format!("{body}\n"))
                .map_err(|e| e.to_string())?
                .size()
        };
        match path.kind() {
            TileKind::Hash { .. } => tile::read_tile(path, size, &LogHashes::unchecked(self.0))
                .map_err(|e| e.to_string()),
            TileKind::Entries => {
                let start = path.index() * u64::from(tile::FULL_WIDTH);
                let mut entries = Vec::with_capacity(usize::from(path.width()));
                for i in start..start + u64::from(path.width()) {
                    let e = self
                        .0
                        .get(Space::Entry, &i.to_be_bytes())
                        .map_err(|e| e.to_string())?
                        .ok_or_else(|| format!("entry {i} is missing"))?;
                    entries.push(e);
                }
                let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
                tile::encode_entry_bundle(&refs).map_err(|e| e.to_string())
            }
        }
    }
}

/// [`authorize`] for each entry that decodes as an event (anything else is
/// refused later, by admission), on the calling thread, with the
/// signatures' last step taken for all of them at once
/// ([`strict::decide_all`]). `authorize_all` spreads it over the cores.
pub fn authorize_each<E: AsRef<[u8]>>(
    registry: &Registry,
    entries: &[E],
) -> Vec<Result<(), Refusal>> {
    let mut checks = Vec::with_capacity(entries.len());
    // The signatures' last steps, and the entries they belong to.
    let (mut pending, mut of) = (Vec::new(), Vec::new());
    for (i, raw) in entries.iter().enumerate() {
        checks.push(match Entry::decode(raw.as_ref()) {
            Ok(Entry::Event(e)) => authorize_pending(registry, &e).map(|p| {
                pending.push(p);
                of.push(i);
            }),
            _ => Ok(()),
        });
    }
    for (i, valid) in of.into_iter().zip(strict::decide_all(&pending)) {
        if !valid {
            checks[i] = Err(Refusal::BadSignature);
        }
    }
    checks
}

/// [`authorize`] for every entry that decodes as an event (others are
/// refused by [`admit`] before this result is used), in parallel.
pub(crate) fn authorize_all<E: AsRef<[u8]> + Sync>(
    registry: &Registry,
    entries: &[E],
) -> Vec<Result<(), Refusal>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads < 2 || entries.len() < 64 {
        return authorize_each(registry, entries);
    }
    let chunk = entries.len().div_ceil(threads);
    std::thread::scope(|s| {
        let parts: Vec<_> = entries
            .chunks(chunk)
            .map(|c| s.spawn(move || authorize_each(registry, c)))
            .collect();
        parts
            .into_iter()
            .flat_map(|h| {
                // A panic in a checker thread is a bug; re-raise it here.
                h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
            })
            .collect()
    })
}

/// Admits one submitted event into the batch, or says why not. `auth` is
/// the result of [`authorize`] for it.
fn admit<S: Store>(
    work: &mut Work<'_, S>,
    raw: &[u8],
    auth: Result<(), Refusal>,
) -> Result<Outcome, LedgerError> {
    let refuse = |r| Ok(Outcome::Refused(r));
    if raw.len() > MAX_ENTRY_LEN {
        return refuse(Refusal::TooLarge { len: raw.len() });
    }
    let event = match Entry::decode(raw) {
        Ok(Entry::Event(e)) => e,
        Ok(_) => return refuse(Refusal::NotAnEvent),
        Err(e) => return refuse(Refusal::Malformed(e)),
    };
    let leaf = leaf_hash(raw);
    // An identical event is logged once: the second gets the first's index.
    let seen = match work.dedup.get(&leaf) {
        Some(i) => Some(*i),
        None => {
            let (found, record) = find_logged(work.store, &leaf)?;
            if let (None, Some(record)) = (found, record) {
                // Another event's leaf hash shares this one's first bytes.
                work.dedup_stored.insert(dedup_key(&leaf), record);
            }
            found
        }
    };
    if let Some(index) = seen {
        return Ok(Outcome::Duplicate {
            index,
            leaf_hash: leaf,
        });
    }
    if let Err(r) = auth {
        return refuse(r);
    }
    let index = work.frontier.size();
    let effects = match rules::apply(&*work, &event.event, index, leaf) {
        Ok(e) => e,
        Err(ApplyError::Rule(r)) => return refuse(Refusal::Rule(r)),
        Err(ApplyError::Read(e)) => return Err(e),
    };
    work.push_entry(raw.to_vec(), leaf)?;
    work.dedup.insert(leaf, index);
    work.credentials.extend(effects.credentials);
    work.holders.extend(effects.holders);
    Ok(Outcome::Accepted {
        index,
        leaf_hash: leaf,
    })
}

/// The issuer is registered, may submit this kind, and signed it.
///
/// # Errors
/// The [`Refusal`] saying which check failed.
pub fn authorize(registry: &BTreeMap<u32, Submitter>, event: &SignedEvent) -> Result<(), Refusal> {
    authorize_pending(registry, event)?
        .decide()
        .then_some(())
        .ok_or(Refusal::BadSignature)
}

/// [`authorize`] but for the signature's last step.
fn authorize_pending(
    registry: &BTreeMap<u32, Submitter>,
    event: &SignedEvent,
) -> Result<strict::Pending, Refusal> {
    let id = event.event.issuer_key_id;
    let submitter = registry.get(&id).ok_or(Refusal::UnknownIssuer(id))?;
    let kind: EventKind = event.event.action.kind();
    if !submitter.kinds.contains(kind) {
        return Err(Refusal::KindNotAllowed {
            name: submitter.key.name().to_string(),
            kind: kind.name(),
        });
    }
    event
        .pending(submitter.key.strict())
        .ok_or(Refusal::BadSignature)
}

fn registry_change(op: RegistryOp, kinds: KindSet, s: &Submitter, now_ms: u64) -> RegistryChange {
    RegistryChange {
        op,
        kinds,
        public_key: s.key.key().to_bytes(),
        time_ms: now_ms,
        name: s.key.name().to_string(),
    }
}

/// `count u32 ‖ (kinds u8 ‖ vkey length u16 ‖ vkey text)*`.
pub(crate) fn encode_registry(r: &Registry) -> Vec<u8> {
    let mut b = (r.len() as u32).to_be_bytes().to_vec();
    for s in r.values() {
        let vkey = s.key.to_vkey_string();
        b.push(s.kinds.bits());
        b.extend_from_slice(&(vkey.len() as u16).to_be_bytes());
        b.extend_from_slice(vkey.as_bytes());
    }
    b
}

pub(crate) fn decode_registry(b: &[u8]) -> Result<Registry, LedgerError> {
    let bad = || LedgerError::Corrupt("stored submitter registry is malformed".into());
    let mut r = Registry::new();
    let count = u32::from_be_bytes(b.get(..4).ok_or_else(bad)?.try_into().map_err(|_| bad())?);
    let mut pos = 4;
    for _ in 0..count {
        let kinds = KindSet::from_bits(*b.get(pos).ok_or_else(bad)?).ok_or_else(bad)?;
        let len = u16::from_be_bytes(
            b.get(pos + 1..pos + 3)
                .ok_or_else(bad)?
                .try_into()
                .map_err(|_| bad())?,
        ) as usize;
        let text = std::str::from_utf8(b.get(pos + 3..pos + 3 + len).ok_or_else(bad)?)
            .map_err(|_| bad())?;
        let key = NoteVerifier::parse_vkey(text).map_err(|_| bad())?;
        r.insert(key.id(), Submitter { key, kinds });
        pos += 3 + len;
    }
    if pos != b.len() {
        return Err(bad());
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{Event, KindSet};
    use crate::note::KeyName;

    /// A list is decided entry by entry, as [`authorize`] decides each
    /// alone: one bad signature refuses only its own entry, whichever
    /// check refuses it.
    #[test]
    fn a_list_is_authorized_entry_by_entry() {
        let issuer = NoteSigner::from_seed(KeyName::new("issuer.example").unwrap(), [2; 32]);
        let stranger = NoteSigner::from_seed(KeyName::new("stranger.example").unwrap(), [3; 32]);
        let registry: Registry = [(
            issuer.id(),
            Submitter {
                key: issuer.verifier(),
                kinds: KindSet::ALL,
            },
        )]
        .into_iter()
        .collect();
        let event = |n: u8, by: &NoteSigner| {
            Event::issue(
                CredentialId([n; 32]),
                HolderTag([n; 32]),
                by.id(),
                1_000,
                86_400_000,
            )
            .sign(by.signing_key())
            .encode()
        };
        let flip = |mut e: Vec<u8>, from_end: usize| {
            let n = e.len();
            e[n - from_end] ^= 0x01;
            e
        };
        let head = HeadRecord {
            time_ms: 5,
            map_root: Hash([7; 32]),
        }
        .encode();
        let list = vec![
            event(1, &issuer),
            flip(event(2, &issuer), 40), // R
            event(3, &issuer),
            flip(event(4, &issuer), 10), // S
            event(5, &stranger),
            head,
            vec![0xff, 0x00],
            {
                // A byte of the credential id: the signed body.
                let mut e = event(6, &issuer);
                e[5] ^= 0x80;
                e
            },
            event(7, &issuer),
        ];
        let bad = Err(Refusal::BadSignature);
        let want = vec![
            Ok(()),
            bad.clone(),
            Ok(()),
            bad.clone(),
            Err(Refusal::UnknownIssuer(stranger.id())),
            Ok(()),
            Ok(()),
            bad,
            Ok(()),
        ];
        assert_eq!(authorize_each(&registry, &list), want);
        let alone: Vec<_> = list
            .iter()
            .map(|raw| match Entry::decode(raw) {
                Ok(Entry::Event(e)) => authorize(&registry, &e),
                _ => Ok(()),
            })
            .collect();
        assert_eq!(alone, want);
        // Nothing to decide, nothing refused.
        assert_eq!(authorize_each::<Vec<u8>>(&registry, &[]), vec![]);
    }

    fn live(index: u64, holder: u8) -> LiveHolder {
        LiveHolder {
            index,
            holder: HolderTag([holder; 32]),
            credential: CredentialId([index as u8; 32]),
        }
    }

    /// Holders under one key (a collision of [`holder_key`]) share one
    /// record: a batch's changes replace only its own holders' events, and
    /// the record stays in log order.
    #[test]
    fn a_shared_holder_record_keeps_the_other_holders() {
        let (a, b, c) = (HolderTag([1; 32]), HolderTag([2; 32]), HolderTag([3; 32]));
        let stored = vec![live(4, 1), live(9, 2)];
        // a revoked, c issued: b's event stays.
        let merged = merge_holders(stored.clone(), &[(a, None), (c, Some(live(12, 3)))]);
        assert_eq!(merged, vec![live(9, 2), live(12, 3)]);
        // b's credential changes again, a's is untouched.
        let merged = merge_holders(stored.clone(), &[(b, Some(live(2, 2)))]);
        assert_eq!(merged, vec![live(2, 2), live(4, 1)]);
        // Everyone gone: an empty record (deleted by the seal).
        assert!(merge_holders(stored, &[(a, None), (b, None)]).is_empty());
    }

    /// A batch's kept map changes decode to what was kept; a record cut
    /// anywhere but between two changes is refused (a cut there gives
    /// fewer changes, which the replay's root check refuses).
    #[test]
    fn kept_map_changes_round_trip_and_cut_records_are_refused() {
        let updates = vec![(Hash([1; 32]), vec![1, 2, 3]), (Hash([2; 32]), vec![])];
        let b = encode_map_changes(&updates).unwrap();
        assert_eq!(b.len(), 34 + 3 + 34);
        assert_eq!(decode_map_changes(&b).unwrap(), updates);
        for cut in 1..b.len() {
            let got = decode_map_changes(&b[..cut]);
            if cut == 37 {
                assert_eq!(got.unwrap(), updates[..1].to_vec());
            } else {
                assert!(matches!(got, Err(LedgerError::Corrupt(_))), "{cut}");
            }
        }
        assert!(decode_map_changes(&[]).unwrap().is_empty());
        assert!(encode_map_changes(&[(Hash([0; 32]), vec![0; 65_536])]).is_err());
    }

    /// The kept level-0 tiles are bounded: past the capacity, the oldest
    /// goes; keeping a tile again neither grows nor reorders the list.
    #[test]
    fn kept_leaf_tiles_are_bounded_oldest_first() {
        let tile = |i: u64| TilePath::hash(0, i, 256).unwrap();
        let mut kept = LeafTiles::default();
        for i in 0..LeafTiles::CAPACITY as u64 {
            kept.keep(tile(i), Arc::from(&i.to_be_bytes()[..]));
        }
        kept.keep(tile(0), Arc::from(&[0u8][..]));
        assert_eq!(kept.order.len(), LeafTiles::CAPACITY);
        assert_eq!(kept.get(&tile(0)).as_deref(), Some(&[0u8][..]));
        kept.keep(tile(9999), Arc::from(&[9u8][..]));
        assert_eq!(kept.bodies.len(), LeafTiles::CAPACITY);
        assert_eq!(kept.get(&tile(0)), None);
        assert!(kept.get(&tile(1)).is_some());
        assert!(kept.get(&tile(9999)).is_some());
    }
}
