//! The storage contract of the ledger, and its two implementations: on disk
//! (the default: the log in append-only files, the rest in an LSM index) and
//! memory (tests).
//!
//! Architecture Invariant: only `ledger` writes through [`Store`]; nothing
//! else in the crate holds a store handle for writing. The store knows
//! nothing about Merkle trees or events: it keeps opaque values under keys in
//! a few key spaces.

use std::collections::BTreeMap;
use std::sync::Mutex;

#[cfg(feature = "node")]
use crate::keyfilter::KeyFilter;

/// The key spaces of the ledger's data. Each is a prefix byte of the key
/// in a single ordered key-value map, so that one batch can span them all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Space {
    /// Small singletons: tree size, last signed checkpoint, registry.
    Meta = b'm',
    /// Log entries by index (u64 big-endian).
    Entry = b'e',
    /// Stored Merkle hashes by index (u64 big-endian): a node's subtrees
    /// of level ≥ 1 (`ledger::node_hash_slot`), an auditor's every level
    /// in the Go sumdb/tlog layout (`merkle::stored_hash_index`).
    Hash = b'h',
    /// Credential records by credential id: the auditor's (a node derives
    /// them from its map and log).
    Credential = b'c',
    /// Live credentials by holder: the node keeps, under 8 bytes of a hash
    /// of the tag (`ledger::holder_key`), the indexes of events about
    /// them; the auditor, under the tag, the credential's id.
    Holder = b'o',
    /// Log indexes by the first 8 bytes of a leaf hash, so a resubmitted
    /// entry is logged once (the ledger checks each against the log).
    Dedup = b'd',
    /// Status map nodes, in pages of four levels (`mappage`), and the
    /// pages' layout.
    MapPage = b'p',
    /// Every signed checkpoint by tree size (u64 big-endian).
    Checkpoint = b'k',
}

/// One write: `Some(value)` puts, `None` deletes.
pub type Write = (Space, Vec<u8>, Option<Vec<u8>>);

/// A set of writes to apply together.
#[derive(Default, Debug, Clone)]
pub struct Batch {
    ops: Vec<Write>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }
    /// Sets `key` in `space` to `value`.
    pub fn put(&mut self, space: Space, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push((space, key.into(), Some(value.into())));
    }
    /// Removes `key` from `space`.
    pub fn delete(&mut self, space: Space, key: impl Into<Vec<u8>>) {
        self.ops.push((space, key.into(), None));
    }
    /// Number of writes.
    pub fn len(&self) -> usize {
        self.ops.len()
    }
    /// Whether the batch has no writes.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
    /// The writes, in the order given; a later write to a key wins.
    pub fn ops(&self) -> &[Write] {
        &self.ops
    }
}

/// A storage failure. The ledger stops writing after any of these.
#[derive(Debug, thiserror::Error, Clone)]
pub enum StoreError {
    #[error("storage I/O failed: {0}")]
    Io(String),
    #[error("injected fault: {0}")]
    Injected(&'static str),
}

/// Read access to stored values (all that the Merkle, map and rules code
/// needs).
pub trait ReadStore {
    /// The current value of `key` in `space`.
    ///
    /// # Errors
    /// [`StoreError`] when the read fails.
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// The entries (values of [`Space::Entry`]) at `from`, `from + 1`, …:
    /// `count` of them, or fewer when the log ends first. A store may read
    /// a run more cheaply than one `get` per entry.
    ///
    /// # Errors
    /// [`StoreError`] when a read fails.
    fn get_entries(&self, from: u64, count: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut out = Vec::new();
        for index in from..from.saturating_add(count) {
            match self.get(Space::Entry, &index.to_be_bytes())? {
                Some(v) => out.push(v),
                None => break,
            }
        }
        Ok(out)
    }
}

/// The ledger's storage.
///
/// Contract:
/// - **Atomicity.** [`Store::commit`] applies all of a batch's writes or
///   none of them, also across a crash at any moment: after restart a
///   reader sees either the state before the batch or the state after it.
/// - **Durability.** When `commit` returns `Ok`, the batch survives a
///   process crash and a power loss (it has been fsynced). When it returns
///   `Err`, the batch may or may not have been applied; the caller must
///   treat its in-memory view as unknown and reopen.
/// - **Visibility.** `get` sees every batch whose `commit` returned, and
///   nothing of a batch still being committed, except that a store may make
///   the values a batch appends to [`Space::Entry`] and [`Space::Hash`]
///   readable a moment early (the ledger never reads past its published
///   checkpoint, so it cannot tell).
/// - Batches are committed by one writer at a time; `get` may run
///   concurrently with `commit` from other threads.
pub trait Store: ReadStore + Send + Sync {
    /// Applies `batch` atomically and durably (see the trait's contract).
    ///
    /// # Errors
    /// [`StoreError`]; the batch may or may not have been applied.
    fn commit(&self, batch: Batch) -> Result<(), StoreError>;

    /// Discards whatever the store holds in memory and reloads what is
    /// durable, as a restart of the process would. The ledger calls it
    /// after a failed commit, before it runs its start-up checks again: a
    /// commit that failed half-way (disk full, say) may have left the
    /// in-memory view torn, while what is on disk is still atomic.
    /// Stores whose memory is the truth (the default) do nothing.
    ///
    /// # Errors
    /// [`StoreError`] when the durable state cannot be loaded (for example,
    /// the disk is still failing); the caller tries again later.
    fn reopen(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Writes what the store only buffers in memory (with a journal) to its
    /// files, so that the next open has nothing to replay: at a clean stop.
    /// Nothing committed depends on it. Stores that buffer nothing (the
    /// default) do nothing.
    ///
    /// # Errors
    /// [`StoreError`] when a write fails; what was committed stays durable.
    fn settle(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

impl<S: ReadStore + ?Sized> ReadStore for std::sync::Arc<S> {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).get(space, key)
    }
    fn get_entries(&self, from: u64, count: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        (**self).get_entries(from, count)
    }
}

impl<S: Store + ?Sized> Store for std::sync::Arc<S> {
    fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        (**self).commit(batch)
    }
    fn reopen(&self) -> Result<(), StoreError> {
        (**self).reopen()
    }
    fn settle(&self) -> Result<(), StoreError> {
        (**self).settle()
    }
}

fn full_key(space: Space, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(space as u8);
    k.extend_from_slice(key);
    k
}

/// Memory only: for tests. Atomic; "durable" for the life of the value.
#[derive(Default, Debug)]
pub struct MemStore {
    map: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> MemStore {
        MemStore::default()
    }

    /// Everything stored, by full key (space byte, then key).
    #[cfg(test)]
    pub(crate) fn dump(&self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Applies `f` to the stored bytes of `key` in `space`, bypassing the
    /// ledger (for corruption tests). Returns whether the key existed.
    pub fn tamper(&self, space: Space, key: &[u8], f: impl FnOnce(&mut Vec<u8>)) -> bool {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(&full_key(space, key)) {
            Some(v) => {
                f(v);
                true
            }
            None => false,
        }
    }
}

impl ReadStore for MemStore {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        Ok(map.get(&full_key(space, key)).cloned())
    }
}

impl Store for MemStore {
    fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        for (space, key, value) in batch.ops {
            let k = full_key(space, &key);
            match value {
                Some(v) => map.insert(k, v),
                None => map.remove(&k),
            };
        }
        Ok(())
    }
}

/// Uncommitted writes layered over a store: reads see them first. Used to
/// replay many batches and commit them to the inner store in one go.
pub struct Overlay<'a, S: Store + ?Sized> {
    inner: &'a S,
    /// By space, then key: a read looks a key up without copying it. Keys
    /// come from the replayed log, so the maps keep std's keyed hasher.
    pending: std::collections::HashMap<Space, std::collections::HashMap<Vec<u8>, Option<Vec<u8>>>>,
}

impl<'a, S: Store + ?Sized> Overlay<'a, S> {
    /// An empty overlay over `inner`.
    pub fn new(inner: &'a S) -> Overlay<'a, S> {
        Overlay {
            inner,
            pending: Default::default(),
        }
    }

    /// Number of pending writes.
    pub fn pending(&self) -> usize {
        self.pending.values().map(|m| m.len()).sum()
    }

    /// Commits every pending write to the inner store (atomically and
    /// durably, per its contract) and empties the overlay, moving the
    /// writes rather than copying them.
    ///
    /// # Errors
    /// The inner store's error. The inner store is then as it was, and
    /// the pending writes are gone with the failed batch: a caller that
    /// cannot commit abandons what it replayed.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        let mut batch = Batch::new();
        for (space, writes) in std::mem::take(&mut self.pending) {
            for (key, value) in writes {
                batch.ops.push((space, key, value));
            }
        }
        self.inner.commit(batch)
    }
}

impl<S: Store + ?Sized> ReadStore for Overlay<'_, S> {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.pending.get(&space).and_then(|m| m.get(key)) {
            Some(v) => Ok(v.clone()),
            None => self.inner.get(space, key),
        }
    }
}

impl<S: Store + ?Sized> Overlay<'_, S> {
    /// Adds a batch's writes to the pending set (not yet durable: see
    /// [`Overlay::flush`]).
    pub fn apply(&mut self, batch: Batch) {
        for (space, key, value) in batch.ops {
            self.pending.entry(space).or_default().insert(key, value);
        }
    }
}

/// The block cache the index may use, in bytes.
#[cfg(feature = "node")]
pub const INDEX_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// The key in [`Space::Meta`] under which [`DiskStore`] records, in the
/// index and in the same atomic batch as everything else, how much of its
/// append-only files is committed: entry count, entry bytes, stored-hash
/// count (three u64 big-endian).
#[cfg(feature = "node")]
pub const LOG_FILES_KEY: &[u8] = b"log-files";

/// The ledger on disk: the log itself in append-only files, everything
/// mutable in an LSM index (fjall).
///
/// Layout of the directory given to [`DiskStore::open`]:
/// - `entries`: the entries' bytes, one after another;
/// - `entries.idx`: per entry, the u64 (big-endian) offset in `entries`
///   where it ends;
/// - `hashes`: the values of [`Space::Hash`], 32 bytes each, by index;
/// - `keys/`: a fjall database, one keyspace per other [`Space`], with
///   [`LOG_FILES_KEY`] in the `meta` keyspace.
///
/// Why two parts: entries and hashes never change once written and are
/// only ever appended, so a flat file keeps them at their own size and
/// reads any of them with one copy. The other spaces are updated in place
/// under random keys (credential ids, holder tags, leaf hashes, map pages).
/// An LSM tree writes those sequentially, answers a lookup of an absent key
/// (every new credential, holder and leaf) from its bloom filters, and
/// recovers from a bounded journal. sled 0.34, which held them before,
/// spent most of the ingest CPU on cache misses past 10^5 credentials and
/// held 7.7 bytes on disk per logical byte (BENCHMARKS.md).
///
/// **Atomicity and durability.** A commit appends the batch's entries and
/// hashes past the committed ends of the files and fsyncs them, and only
/// then commits the index batch, which carries the new committed ends under
/// [`LOG_FILES_KEY`], with an fsync of the index's journal: the commit
/// point. A crash before it leaves bytes past the recorded ends;
/// [`DiskStore::open`] truncates them, so the files always agree with the
/// index. Files *shorter* than the index records mean lost data and refuse
/// to open.
///
/// **Append only.** In [`Space::Entry`] and [`Space::Hash`] a batch may only
/// put values at the next indexes (in any order within the batch); an
/// overwrite, a gap, a delete or an entry over [`MAX_LOG_VALUE`] bytes is
/// refused before anything is written. A batch's appended values become
/// readable just before its index batch is applied, a moment before
/// `commit` returns (the ledger never reads past its published checkpoint).
/// Reads of the index go through a snapshot, so they see a batch whole or
/// not at all.
///
/// Reads are copies out of memory maps of the files: an I/O error of the
/// disk under a mapped page is a SIGBUS, not an error value (as with any
/// memory-mapped store).
///
/// [`Store::reopen`] closes everything and opens it again from disk: after
/// a failed fsync the index refuses all writes (it is poisoned), and the
/// files' committed ends in memory may be ahead of what is durable. Readers
/// and the writer go through one lock, so no handle to the old state
/// survives a reopen.
///
/// Clones share one open store (and a reopen).
#[cfg(feature = "node")]
#[derive(Clone)]
pub struct DiskStore {
    dir: std::sync::Arc<std::path::PathBuf>,
    cache_bytes: u64,
    open: std::sync::Arc<std::sync::RwLock<Option<Open>>>,
}

/// Everything [`DiskStore`] holds open.
#[cfg(feature = "node")]
struct Open {
    index: Index,
    entries: LogFile,
    entry_ends: LogFile,
    hashes: LogFile,
    /// What readers may see: the committed ends, moved forward by a commit
    /// just before it commits the index (so that nothing the index makes
    /// visible points past them).
    ends: Mutex<LogEnds>,
    /// Held through a commit: the contract allows one writer at a time;
    /// this makes a second one wait instead of writing at the same offsets.
    writer: Mutex<()>,
}

/// How much of the append-only files holds committed data.
#[cfg(feature = "node")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct LogEnds {
    entries: u64,
    entry_bytes: u64,
    hashes: u64,
}

#[cfg(feature = "node")]
impl LogEnds {
    fn encode(&self) -> Vec<u8> {
        [self.entries, self.entry_bytes, self.hashes]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect()
    }

    fn decode(v: &[u8]) -> Option<LogEnds> {
        if v.len() != 24 {
            return None;
        }
        let at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&v[i * 8..i * 8 + 8]);
            u64::from_be_bytes(b)
        };
        Some(LogEnds {
            entries: at(0),
            entry_bytes: at(1),
            hashes: at(2),
        })
    }
}

#[cfg(feature = "node")]
const HASH_BYTES: u64 = 32;

/// The longest value [`DiskStore`] keeps in [`Space::Entry`] (64 KiB; log
/// entries are at most `entry::MAX_ENTRY_LEN`). A read of a longer one,
/// which only a damaged `entries.idx` can claim, is refused.
#[cfg(feature = "node")]
pub const MAX_LOG_VALUE: u64 = 64 * 1024;

/// One append-only file of the log, read through memory maps of
/// [`MAP_CHUNK`]-byte windows, mapped as the file grows: a read is a copy
/// out of the kernel's page cache, with no system call (status proofs read
/// some 40 hashes each; with `pread` the calls were a sixth of their time).
#[cfg(feature = "node")]
struct LogFile {
    file: std::fs::File,
    name: &'static str,
    maps: std::sync::RwLock<Vec<memmap2::Mmap>>,
}

/// The window of one map. Hashes (32 bytes) never straddle two; entries
/// may, and are copied in two parts.
#[cfg(feature = "node")]
const MAP_CHUNK: u64 = 1 << 30;

#[cfg(feature = "node")]
impl LogFile {
    fn new(file: std::fs::File, name: &'static str) -> LogFile {
        LogFile {
            file,
            name,
            maps: Default::default(),
        }
    }

    /// `len` bytes at `at`, all below `committed` (the committed end of the
    /// file, which the file's length never falls below while it is open:
    /// only `open_all` truncates, before any map exists).
    fn read(&self, at: u64, len: u64, committed: u64) -> Result<Vec<u8>, StoreError> {
        let end = at
            .checked_add(len)
            .filter(|&e| e <= committed)
            .ok_or_else(|| {
                StoreError::Io(format!(
                    "{}: {len} bytes at {at} run past the committed end {committed}",
                    self.name
                ))
            })?;
        let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        let mut pos = at;
        while pos < end {
            let chunk = pos / MAP_CHUNK;
            let off = pos % MAP_CHUNK;
            let n = (MAP_CHUNK - off).min(end - pos);
            self.with_map(chunk, |m| {
                // off + n <= MAP_CHUNK = m.len(), by construction.
                if let Some(b) = m.get(off as usize..(off + n) as usize) {
                    out.extend_from_slice(b);
                }
            })?;
            pos += n;
        }
        if out.len() as u64 != len {
            return Err(StoreError::Io(format!("{}: short read at {at}", self.name)));
        }
        Ok(out)
    }

    fn with_map(&self, chunk: u64, f: impl FnOnce(&memmap2::Mmap)) -> Result<(), StoreError> {
        let index = usize::try_from(chunk)
            .map_err(|_| StoreError::Io(format!("{}: offset out of range", self.name)))?;
        {
            let maps = self.maps.read().unwrap_or_else(|p| p.into_inner());
            if let Some(m) = maps.get(index) {
                f(m);
                return Ok(());
            }
        }
        let mut maps = self.maps.write().unwrap_or_else(|p| p.into_inner());
        while maps.len() <= index {
            let offset = maps.len() as u64 * MAP_CHUNK;
            // SAFETY: the map is read-only, and every read through it stays
            // below the committed end, within the file's length: the file
            // is only ever appended to while open (the index's lock on
            // `keys/` keeps a second store off the directory), and it is
            // truncated only in `open_all`, before a map of it exists. Bytes
            // past the file's end, which the window may cover, are never
            // touched.
            let m = unsafe {
                memmap2::MmapOptions::new()
                    .offset(offset)
                    .len(MAP_CHUNK as usize)
                    .map(&self.file)
            }
            .map_err(io_err(format!("mapping {} at {offset}", self.name)))?;
            maps.push(m);
        }
        if let Some(m) = maps.get(index) {
            f(m);
        }
        Ok(())
    }
}

#[cfg(feature = "node")]
fn io_err(what: impl std::fmt::Display) -> impl Fn(std::io::Error) -> StoreError {
    move |e| StoreError::Io(format!("{what}: {e}"))
}

#[cfg(feature = "node")]
fn index_key(space: Space, key: &[u8]) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(key)
        .map(u64::from_be_bytes)
        .map_err(|_| {
            StoreError::Io(format!(
                "{space:?} keys are u64 indexes, not {} bytes",
                key.len()
            ))
        })
}

/// The appends a batch makes to one append-only space, checked: they start
/// at `next` and leave no gap.
#[cfg(feature = "node")]
fn appends(
    space: Space,
    ops: &BTreeMap<u64, Option<Vec<u8>>>,
    next: u64,
) -> Result<Vec<&[u8]>, StoreError> {
    let mut out = Vec::with_capacity(ops.len());
    for (i, (&index, value)) in ops.iter().enumerate() {
        let want = next + i as u64;
        let v = value.as_ref().ok_or_else(|| {
            StoreError::Io(format!("{space:?} is append-only: cannot delete {index}"))
        })?;
        if index != want {
            return Err(StoreError::Io(format!(
                "{space:?} is append-only: the next index is {want}, not {index}"
            )));
        }
        if space == Space::Entry && v.len() as u64 > MAX_LOG_VALUE {
            return Err(StoreError::Io(format!(
                "entry {index} has {} bytes, over {MAX_LOG_VALUE}",
                v.len()
            )));
        }
        if space == Space::Hash && v.len() as u64 != HASH_BYTES {
            return Err(StoreError::Io(format!(
                "stored hash {index} has {} bytes",
                v.len()
            )));
        }
        out.push(v.as_slice());
    }
    Ok(out)
}

/// The spaces [`DiskStore`] keeps in its index, each in its own keyspace
/// (its own LSM tree), by name.
#[cfg(feature = "node")]
const INDEX_SPACES: [(Space, &str); 6] = [
    (Space::Meta, "meta"),
    (Space::Credential, "credential"),
    (Space::Holder, "holder"),
    (Space::Dedup, "dedup"),
    (Space::MapPage, "map-page"),
    (Space::Checkpoint, "checkpoint"),
];

/// The keys of [`Space::MapPage`] that start with a byte below this one
/// (the map's pages of strata 0 to 4, `mappage`: at most 69,905 pages,
/// 67 MiB at 5.8 million entries) are kept in a keyspace of their own,
/// [`MAP_TOP_KEYSPACE`]. They are the dense pages, which every write-back
/// of the map rewrites in large numbers; in one keyspace with the sparse
/// pages below, which grow with the map (690 MiB at 5.8 million entries),
/// leveled compaction merged them again and again into that whole tree,
/// while in their own they are merged within a tree that stops growing.
/// The store sees only the keys' first byte. Measured: fjall's compaction
/// CPU 13–17 % lower at 3–5 million entries (BENCHMARKS.md, fifteenth
/// session).
#[cfg(feature = "node")]
const MAP_TOP_STRATA: u8 = 5;

/// The keyspace of the map's top pages ([`MAP_TOP_STRATA`]).
#[cfg(feature = "node")]
const MAP_TOP_KEYSPACE: &str = "map-top";

/// The key in [`MAP_TOP_KEYSPACE`] that says every top page is there: a
/// store made before it existed kept them in `map-page`, and its first
/// open moves them ([`Index::move_top_pages`]). No page key starts with
/// this byte there.
#[cfg(feature = "node")]
const MAP_TOP_MOVED: &[u8] = &[0xff];

/// Keys moved per batch when [`Index::move_top_pages`] moves them.
#[cfg(feature = "node")]
const MAP_TOP_MOVE_BATCH: usize = 4096;

/// Whether `key` of `space` is kept in [`MAP_TOP_KEYSPACE`].
#[cfg(feature = "node")]
fn is_top_page(space: Space, key: &[u8]) -> bool {
    space == Space::MapPage && key.first().is_some_and(|s| *s < MAP_TOP_STRATA)
}

/// The memory one keyspace may buffer before it writes a sorted run.
/// Batches of 4,096 events rewrite about 5 MiB of map pages, so the map's
/// buffer holds a few of them; the others are a few hundred KiB per batch.
#[cfg(feature = "node")]
fn memtable_bytes(space: Space) -> u64 {
    match space {
        Space::MapPage => 16 << 20,
        _ => 8 << 20,
    }
}

/// The journal the index may keep before it must flush its buffers, which
/// bounds what an open replays (fjall's minimum: its default is 512 MiB).
#[cfg(feature = "node")]
const INDEX_JOURNAL_BYTES: u64 = 64 << 20;

/// fjall's background threads (flushes and compactions). One: with two
/// or more, fjall 3.1's first worker hands every compaction request back
/// to the queue for the others and takes it again at once, spinning on a
/// core for as long as another worker compacts (`worker_tick` and
/// `flume::Shared::send` were a quarter of a whole node's samples at 6
/// million entries). One worker at 8–10 million entries: 10,454–12,506
/// events/s against 9,811–11,510, fjall's CPU 35 % lower, peak anonymous
/// memory 453–521 MiB against 638–708 (BENCHMARKS.md, fourteenth session);
/// the same rate at 400,000.
#[cfg(feature = "node")]
const INDEX_WORKER_THREADS: usize = 1;

/// What one space of a [`DiskStore`]'s index holds
/// ([`DiskStore::index_breakdown`]).
#[cfg(feature = "node")]
#[derive(Clone, Debug, Default)]
pub struct SpaceBytes {
    /// The keyspace's name in `keys/`.
    pub name: &'static str,
    /// Live keys.
    pub keys: u64,
    /// Their key bytes.
    pub key_bytes: u64,
    /// Their value bytes.
    pub value_bytes: u64,
    /// What the keyspace occupies on disk (its sorted runs).
    pub on_disk: u64,
}

/// The mutable spaces of a [`DiskStore`]: one fjall database in `keys/`.
#[cfg(feature = "node")]
struct Index {
    db: fjall::Database,
    /// Each space of [`INDEX_SPACES`], its name and its keyspace.
    spaces: Vec<(Space, &'static str, fjall::Keyspace)>,
    /// The keys of [`Space::MapPage`] that [`is_top_page`] picks.
    map_top: fjall::Keyspace,
    /// The key filters of the [`FILTERED_SPACES`], in that order.
    filters: Vec<(Space, std::sync::Arc<std::sync::RwLock<Filters>>)>,
    /// The scans that fill filters, stopped and joined on drop (each holds
    /// its keyspace, and with it the database's directory lock).
    scans: Mutex<Vec<std::thread::JoinHandle<()>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// The spaces asked mostly about keys they do not hold: the dedup check
/// and the holder lookup of every new event. Each gets a [`KeyFilter`].
#[cfg(feature = "node")]
const FILTERED_SPACES: [Space; 2] = [Space::Dedup, Space::Holder];

/// A filter is made for its keys at this many bits per key (and a power
/// of two bytes: up to twice as many)...
#[cfg(feature = "node")]
const FILTER_BITS_PER_KEY: u64 = 12;
/// ... for at least this many keys (1 MiB; 2 KiB in unit tests, so that
/// they can fill one) ...
#[cfg(all(feature = "node", not(test)))]
const FILTER_MIN_KEYS: u64 = 1 << 19;
#[cfg(all(feature = "node", test))]
const FILTER_MIN_KEYS: u64 = 1 << 10;
/// ... and replaced by one twice as large once it holds a key for fewer
/// bits than this (false positives: 0.8 % measured at 10.5 bits per key,
/// `keyfilter` tests; more at 6).
#[cfg(feature = "node")]
const FILTER_REPLACE_BITS_PER_KEY: u64 = 6;

/// The filter a space's reads consult, and the larger one being filled to
/// replace it.
#[cfg(feature = "node")]
struct Filters {
    current: std::sync::Arc<KeyFilter>,
    next: Option<std::sync::Arc<KeyFilter>>,
}

#[cfg(feature = "node")]
fn index_err(what: impl std::fmt::Display) -> impl Fn(fjall::Error) -> StoreError {
    move |e| StoreError::Io(format!("{what}: {e}"))
}

#[cfg(feature = "node")]
impl Index {
    fn open(path: &std::path::Path, cache_bytes: u64) -> Result<Index, StoreError> {
        let what = format!("opening {}", path.display());
        let db = fjall::Database::builder(path)
            .cache_size(cache_bytes)
            .max_journaling_size(INDEX_JOURNAL_BYTES)
            .worker_threads(INDEX_WORKER_THREADS)
            .open()
            .map_err(index_err(&what))?;
        let mut spaces = Vec::with_capacity(INDEX_SPACES.len());
        for (space, name) in INDEX_SPACES {
            let ks = db
                .keyspace(name, || {
                    fjall::KeyspaceCreateOptions::default()
                        .max_memtable_size(memtable_bytes(space))
                        // Map pages are read only when they exist (their
                        // ids come from the tree above them), so the last
                        // level needs no bloom filter; every other space is
                        // mostly asked about keys it does not hold.
                        .expect_point_read_hits(space == Space::MapPage)
                })
                .map_err(index_err(format!("{what}: keyspace {name}")))?;
            spaces.push((space, name, ks));
        }
        let map_top = db
            .keyspace(MAP_TOP_KEYSPACE, || {
                fjall::KeyspaceCreateOptions::default()
                    .max_memtable_size(memtable_bytes(Space::MapPage))
                    .expect_point_read_hits(true)
            })
            .map_err(index_err(format!("{what}: keyspace {MAP_TOP_KEYSPACE}")))?;
        Self::move_top_pages(&db, keyspace_of(&spaces, Space::MapPage)?, &map_top)?;
        let mut filters = Vec::with_capacity(FILTERED_SPACES.len());
        for space in FILTERED_SPACES {
            let ks = keyspace_of(&spaces, space)?;
            let keys = (ks.approximate_len() as u64).max(FILTER_MIN_KEYS);
            let filter = std::sync::Arc::new(KeyFilter::for_keys(keys, FILTER_BITS_PER_KEY));
            filters.push((
                space,
                std::sync::Arc::new(std::sync::RwLock::new(Filters {
                    current: filter,
                    next: None,
                })),
            ));
        }
        let index = Index {
            db,
            spaces,
            map_top,
            filters,
            scans: Mutex::default(),
            stop: Default::default(),
        };
        // Made before any commit, so the writer inserts every key the
        // scans' snapshots do not hold.
        for (space, slot) in &index.filters {
            let filter = read_lock(slot).current.clone();
            index.scan(*space, slot.clone(), filter)?;
        }
        Ok(index)
    }

    /// Moves the top pages ([`is_top_page`]) that a store made before
    /// [`MAP_TOP_KEYSPACE`] kept in `map-page` to it, then writes
    /// [`MAP_TOP_MOVED`]; removes whatever top pages `map-page` still
    /// holds after that. Each step is durable before the next, and an open
    /// after a crash in the middle starts again from what is there: the
    /// copies are made again until the mark is written, and from then on
    /// only [`MAP_TOP_KEYSPACE`] is read.
    fn move_top_pages(
        db: &fjall::Database,
        pages: &fjall::Keyspace,
        top: &fjall::Keyspace,
    ) -> Result<(), StoreError> {
        let below = [MAP_TOP_STRATA];
        let batch = || db.batch().durability(Some(fjall::PersistMode::SyncAll));
        let moved = top
            .get(MAP_TOP_MOVED)
            .map_err(index_err("reading the map's top-page mark"))?
            .is_some();
        if !moved {
            let mut b = batch();
            let mut n = 0;
            for kv in pages.range(..below.as_slice()) {
                let (k, v) = kv
                    .into_inner()
                    .map_err(index_err("reading the map's top pages to move them"))?;
                b.insert(top, k, v);
                n += 1;
                if n % MAP_TOP_MOVE_BATCH == 0 {
                    b.commit()
                        .map_err(index_err("moving the map's top pages"))?;
                    b = batch();
                }
            }
            b.insert(top, MAP_TOP_MOVED, Vec::<u8>::new());
            b.commit()
                .map_err(index_err("marking the map's top pages moved"))?;
        }
        loop {
            let mut b = batch();
            let mut n = 0;
            for kv in pages.range(..below.as_slice()).take(MAP_TOP_MOVE_BATCH) {
                let k = kv
                    .key()
                    .map_err(index_err("reading the map's moved top pages"))?;
                b.remove(pages, k);
                n += 1;
            }
            if n == 0 {
                return Ok(());
            }
            b.commit()
                .map_err(index_err("removing the map's moved top pages"))?;
        }
    }

    /// Every keyspace: those of [`INDEX_SPACES`], then [`MAP_TOP_KEYSPACE`].
    fn keyspaces(&self) -> impl Iterator<Item = (&'static str, &fjall::Keyspace)> {
        self.spaces
            .iter()
            .map(|(_, name, ks)| (*name, ks))
            .chain([(MAP_TOP_KEYSPACE, &self.map_top)])
    }

    /// Fills `filter` with the keys `space` holds, on a thread of its own
    /// at a low priority; when it is `slot`'s next filter, it then
    /// replaces the current one.
    fn scan(
        &self,
        space: Space,
        slot: std::sync::Arc<std::sync::RwLock<Filters>>,
        filter: std::sync::Arc<KeyFilter>,
    ) -> Result<(), StoreError> {
        let ks = self.space(space)?.clone();
        let stop = self.stop.clone();
        let handle = std::thread::Builder::new()
            .name(format!("{space:?} filter").to_lowercase())
            .spawn(move || {
                // Behind the node's work: a lower priority only delays the
                // filter, whose absence costs index reads, as before.
                let _ = crate::priority::set_thread_nice(10);
                for (n, guard) in ks.iter().enumerate() {
                    if n % 4096 == 0 && stop.load(std::sync::atomic::Ordering::Relaxed) {
                        return;
                    }
                    match guard.key() {
                        Ok(k) => filter.insert(&k),
                        // Never ready: every read goes to the index.
                        Err(_) => return,
                    }
                }
                filter.set_ready();
                let mut f = slot.write().unwrap_or_else(|p| p.into_inner());
                if let Some(next) = f.next.take_if(|n| std::sync::Arc::ptr_eq(n, &filter)) {
                    f.current = next;
                }
            })
            .map_err(|e| StoreError::Io(format!("starting the {space:?} filter's scan: {e}")))?;
        self.scans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(handle);
        Ok(())
    }

    fn space(&self, space: Space) -> Result<&fjall::Keyspace, StoreError> {
        keyspace_of(&self.spaces, space)
    }

    /// The keyspace that keeps `key` of `space`.
    fn keyspace_for(&self, space: Space, key: &[u8]) -> Result<&fjall::Keyspace, StoreError> {
        if is_top_page(space, key) {
            Ok(&self.map_top)
        } else {
            self.space(space)
        }
    }

    /// The filters of `space`, when it has them.
    fn filter_slot(&self, space: Space) -> Option<&std::sync::RwLock<Filters>> {
        self.filters
            .iter()
            .find(|(s, _)| *s == space)
            .map(|(_, f)| &**f)
    }

    /// Adds the keys `batch` puts into filtered spaces to their filters
    /// (the current one and the one being filled), before the batch is
    /// committed: a key must be in a filter before a read can find it.
    fn filter_keys(&self, ops: &[Write]) {
        let filters: Vec<_> = self
            .filters
            .iter()
            .map(|(space, slot)| (*space, read_lock(slot)))
            .collect();
        for (space, key, _) in ops.iter().filter(|(_, _, v)| v.is_some()) {
            if let Some((_, f)) = filters.iter().find(|(s, _)| s == space) {
                f.current.insert(key);
                if let Some(next) = &f.next {
                    next.insert(key);
                }
            }
        }
    }

    /// Starts filling a larger filter for each space whose filter has as
    /// many keys as it was made for (the writer's, after a commit).
    fn grow_filters(&self) {
        for (space, slot) in &self.filters {
            let bytes = {
                let f = read_lock(slot);
                let full = f.current.inserted() * FILTER_REPLACE_BITS_PER_KEY
                    > f.current.bytes() as u64 * 8;
                if !full || f.next.is_some() {
                    continue;
                }
                f.current.bytes()
            };
            // Only this writer installs a next filter, and a scan only
            // takes it away once it has replaced the current one, so the
            // slot is as the read lock saw it.
            let next = std::sync::Arc::new(KeyFilter::with_bytes(bytes * 2));
            slot.write().unwrap_or_else(|p| p.into_inner()).next = Some(next.clone());
            if self.scan(*space, slot.clone(), next).is_err() {
                // No thread to fill it: the current filter stays, fuller,
                // and asks the index about more absent keys.
                slot.write().unwrap_or_else(|p| p.into_inner()).next = None;
            }
        }
    }

    /// Whether every filtered space's filter has been filled.
    fn filters_ready(&self) -> bool {
        self.filters
            .iter()
            .all(|(_, slot)| read_lock(slot).current.is_ready())
    }

    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        use fjall::Readable;
        if let Some(slot) = self.filter_slot(space) {
            if !read_lock(slot).current.may_contain(key) {
                return Ok(None);
            }
        }
        let ks = self.keyspace_for(space, key)?;
        self.db
            .snapshot()
            .get(ks, key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| StoreError::Io(format!("reading {space:?}: {e}")))
    }
}

#[cfg(feature = "node")]
impl Drop for Index {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for scan in self
            .scans
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            let _ = scan.join();
        }
    }
}

/// The keyspace of `space` among an index's `spaces`.
#[cfg(feature = "node")]
fn keyspace_of<'a>(
    spaces: &'a [(Space, &'static str, fjall::Keyspace)],
    space: Space,
) -> Result<&'a fjall::Keyspace, StoreError> {
    spaces
        .iter()
        .find(|(s, _, _)| *s == space)
        .map(|(_, _, ks)| ks)
        .ok_or_else(|| StoreError::Io(format!("{space:?} is not kept in the index")))
}

#[cfg(feature = "node")]
fn read_lock<T>(lock: &std::sync::RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

#[cfg(feature = "node")]
impl DiskStore {
    /// Opens (or creates) the store in `dir`, truncating whatever a crash
    /// left past the committed ends of the log files.
    ///
    /// # Errors
    /// [`StoreError::Io`] when it cannot be opened (for example, another
    /// process holds the index's lock), when `dir` holds a data dir of an
    /// older layout (sled), or when the log files are shorter than the index
    /// records.
    pub fn open(dir: &std::path::Path) -> Result<DiskStore, StoreError> {
        Self::open_with_cache(dir, INDEX_CACHE_BYTES)
    }

    /// [`DiskStore::open`] with `cache_bytes` of block cache for the index
    /// (the default is [`INDEX_CACHE_BYTES`]). More cache means fewer reads
    /// of the random-key indexes from the kernel's page cache, for more
    /// memory (BENCHMARKS.md).
    ///
    /// # Errors
    /// As [`DiskStore::open`].
    pub fn open_with_cache(
        dir: &std::path::Path,
        cache_bytes: u64,
    ) -> Result<DiskStore, StoreError> {
        Ok(DiskStore {
            dir: std::sync::Arc::new(dir.to_path_buf()),
            cache_bytes,
            open: std::sync::Arc::new(std::sync::RwLock::new(Some(Self::open_all(
                dir,
                cache_bytes,
            )?))),
        })
    }

    /// Whether the key filters of the dedup and holder spaces are filled
    /// (the scans started at open are done), so that reads of keys those
    /// spaces do not hold are mostly answered without the index.
    pub fn key_filters_ready(&self) -> bool {
        self.with_open(|o| Ok(o.index.filters_ready()))
            .unwrap_or(false)
    }

    fn open_all(dir: &std::path::Path, cache_bytes: u64) -> Result<Open, StoreError> {
        // Both earlier layouts kept a sled database: in `dir` itself (all
        // in sled), or in `dir/index` beside the log files.
        for old in [dir.join("conf"), dir.join("index").join("conf")] {
            if old.exists() {
                return Err(StoreError::Io(format!(
                    "{} is a data dir of an older layout (sled, found {}); \
                     this version keeps its index in fjall: replay the log into a new data dir",
                    dir.display(),
                    old.display()
                )));
            }
        }
        std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
        let index_dir = dir.join("keys");
        let index = Index::open(&index_dir, cache_bytes)?;
        let ends = match index.get(Space::Meta, LOG_FILES_KEY)? {
            None => LogEnds::default(),
            Some(v) => LogEnds::decode(&v).ok_or_else(|| {
                StoreError::Io(format!(
                    "the log-files record in {} is malformed",
                    index_dir.display()
                ))
            })?,
        };
        let sizes = [
            ("entries", Some(ends.entry_bytes)),
            ("entries.idx", ends.entries.checked_mul(8)),
            ("hashes", ends.hashes.checked_mul(HASH_BYTES)),
        ];
        // Check all three files before changing any of them.
        let mut files = Vec::with_capacity(3);
        let mut created = false;
        for (name, len) in sizes {
            let path = dir.join(name);
            let len = len.ok_or_else(|| {
                StoreError::Io(format!(
                    "the log-files record in {} is out of range",
                    index_dir.display()
                ))
            })?;
            created |= !path.exists();
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io_err(format!("opening {}", path.display())))?;
            let have = f
                .metadata()
                .map_err(io_err(format!("reading {}", path.display())))?
                .len();
            if have < len {
                return Err(StoreError::Io(format!(
                    "{} has {have} bytes but the index commits {len}: log data was lost",
                    path.display()
                )));
            }
            files.push((f, path, have, len));
        }
        if created {
            // The new files' directory entries, durable before anything in
            // them is committed.
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err(format!("fsync of {}", dir.display())))?;
        }
        let mut logs = Vec::with_capacity(3);
        for ((f, path, have, len), (name, _)) in files.into_iter().zip(sizes) {
            if have > len {
                // The tail of a commit that never reached the index: not
                // part of the log.
                f.set_len(len)
                    .and_then(|()| f.sync_all())
                    .map_err(io_err(format!("truncating {}", path.display())))?;
            }
            logs.push(LogFile::new(f, name));
        }
        let mut logs = logs.into_iter();
        let mut next = || {
            logs.next()
                .ok_or_else(|| StoreError::Io("log files missing".into()))
        };
        let open = Open {
            entries: next()?,
            entry_ends: next()?,
            hashes: next()?,
            index,
            ends: Mutex::new(ends),
            writer: Mutex::new(()),
        };
        if ends.entries > 0 && open.entry_end(ends.entries - 1, &ends)? != ends.entry_bytes {
            return Err(StoreError::Io(format!(
                "{}: entries.idx does not end where the entries do",
                dir.display()
            )));
        }
        Ok(open)
    }

    /// Runs `f` on the open store.
    fn with_open<T>(
        &self,
        f: impl FnOnce(&Open) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let guard = self.open.read().unwrap_or_else(|p| p.into_inner());
        let open = guard.as_ref().ok_or_else(|| {
            StoreError::Io(format!(
                "the store in {} is closed after a failure and could not be reopened yet",
                self.dir.display()
            ))
        })?;
        f(open)
    }

    /// Bytes on disk: the index's own count (its journal and sorted runs)
    /// plus the log files.
    ///
    /// # Errors
    /// [`StoreError::Io`].
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.with_open(|o| {
            let index = o.index.db.disk_space().map_err(index_err("index size"))?;
            let e = o.ends();
            Ok(index + e.entry_bytes + e.entries * 8 + e.hashes * HASH_BYTES)
        })
    }

    /// What each space of the index holds, by iterating every key (slow:
    /// for reports such as `scale`'s), then the journal as a space of no
    /// keys.
    ///
    /// # Errors
    /// [`StoreError::Io`].
    pub fn index_breakdown(&self) -> Result<Vec<SpaceBytes>, StoreError> {
        self.with_open(|o| {
            let mut out = Vec::with_capacity(INDEX_SPACES.len() + 2);
            for (name, ks) in o.index.keyspaces() {
                let mut row = SpaceBytes {
                    name,
                    on_disk: ks.disk_space(),
                    ..SpaceBytes::default()
                };
                for kv in ks.iter() {
                    let (k, v) = kv
                        .into_inner()
                        .map_err(index_err(format!("iterating {name}")))?;
                    row.keys += 1;
                    row.key_bytes += k.len() as u64;
                    row.value_bytes += v.len() as u64;
                }
                out.push(row);
            }
            out.push(SpaceBytes {
                name: "journal",
                on_disk: o
                    .index
                    .db
                    .journal_disk_space()
                    .map_err(index_err("journal size"))?,
                ..SpaceBytes::default()
            });
            Ok(out)
        })
    }
}

#[cfg(feature = "node")]
impl Open {
    fn ends(&self) -> LogEnds {
        *self.ends.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where entry `index` ends in `entries`.
    fn entry_end(&self, index: u64, ends: &LogEnds) -> Result<u64, StoreError> {
        let b = self.entry_ends.read(index * 8, 8, ends.entries * 8)?;
        Ok(u64::from_be_bytes(b.try_into().unwrap_or([0; 8])))
    }

    fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.entry_run(index, 1)?.pop())
    }

    /// Entries `from ..` (`count`, or up to the committed end): one read
    /// of their end offsets and one of their bytes.
    fn entry_run(&self, from: u64, count: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        let ends = self.ends();
        let to = from.saturating_add(count).min(ends.entries);
        if from >= to {
            return Ok(Vec::new());
        }
        // The end of the entry before `from`, then each one's end.
        let first = from.saturating_sub(1);
        let raw = self
            .entry_ends
            .read(first * 8, (to - first) * 8, ends.entries * 8)?;
        let mut offsets: Vec<u64> = raw
            .chunks_exact(8)
            .map(|c| u64::from_be_bytes(c.try_into().unwrap_or([0; 8])))
            .collect();
        if from == 0 {
            offsets.insert(0, 0);
        }
        // Each entry ends where the next starts: check every length before
        // reading the bytes they span.
        for (index, w) in (from..).zip(offsets.windows(2)) {
            let len = w[1].checked_sub(w[0]).ok_or_else(|| {
                StoreError::Io(format!("entries.idx: entry {index} ends before it starts"))
            })?;
            if len > MAX_LOG_VALUE {
                return Err(StoreError::Io(format!(
                    "entries.idx: entry {index} claims {len} bytes, over {MAX_LOG_VALUE}"
                )));
            }
        }
        let start = offsets[0];
        let bytes =
            self.entries
                .read(start, offsets[offsets.len() - 1] - start, ends.entry_bytes)?;
        if offsets.len() == 2 {
            // One entry (every `get`): its bytes as read, with no copy.
            return Ok(vec![bytes]);
        }
        Ok(offsets
            .windows(2)
            .map(|w| bytes[(w[0] - start) as usize..(w[1] - start) as usize].to_vec())
            .collect())
    }

    fn hash(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let ends = self.ends();
        if index >= ends.hashes {
            return Ok(None);
        }
        self.hashes
            .read(index * HASH_BYTES, HASH_BYTES, ends.hashes * HASH_BYTES)
            .map(Some)
    }

    fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        use std::os::unix::fs::FileExt;
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        // Sort the writes: the log's appends (later write wins, as in any
        // batch), and the index's.
        let mut entry_ops = BTreeMap::new();
        let mut hash_ops = BTreeMap::new();
        let mut b = self
            .index
            .db
            .batch()
            .durability(Some(fjall::PersistMode::SyncAll));
        self.index.filter_keys(&batch.ops);
        for (space, key, value) in batch.ops {
            match space {
                Space::Entry => {
                    entry_ops.insert(index_key(space, &key)?, value);
                }
                Space::Hash => {
                    hash_ops.insert(index_key(space, &key)?, value);
                }
                Space::Meta if key.as_slice() == LOG_FILES_KEY => {
                    return Err(StoreError::Io(
                        "the log-files record is the store's own".into(),
                    ));
                }
                _ => {
                    let ks = self.index.keyspace_for(space, &key)?;
                    match value {
                        Some(v) => b.insert(ks, key, v),
                        None => b.remove(ks, key),
                    }
                }
            }
        }
        let old = self.ends();
        // Check everything before writing anything.
        let entries = appends(Space::Entry, &entry_ops, old.entries)?;
        let hashes = appends(Space::Hash, &hash_ops, old.hashes)?;
        let mut new = old;
        let mut entry_bytes = Vec::new();
        let mut ends = Vec::with_capacity(entries.len() * 8);
        for e in &entries {
            entry_bytes.extend_from_slice(e);
            new.entry_bytes += e.len() as u64;
            ends.extend_from_slice(&new.entry_bytes.to_be_bytes());
        }
        new.entries += entries.len() as u64;
        new.hashes += hashes.len() as u64;
        let hash_bytes = hashes.concat();
        // Step 1: the log's bytes, past the committed ends (a torn write
        // there is harmless: nothing records it, and the next commit or open
        // overwrites or truncates it).
        let writes: [(&std::fs::File, &[u8], u64, &str); 3] = [
            (&self.entries.file, &entry_bytes, old.entry_bytes, "entries"),
            (&self.entry_ends.file, &ends, old.entries * 8, "entries.idx"),
            (
                &self.hashes.file,
                &hash_bytes,
                old.hashes * HASH_BYTES,
                "hashes",
            ),
        ];
        for (f, bytes, at, what) in writes {
            if !bytes.is_empty() {
                f.write_all_at(bytes, at)
                    .map_err(io_err(format!("writing {what} at {at}")))?;
            }
        }
        // Step 2: the log's bytes durable (the three fsyncs in parallel),
        // **before** the index sees the new ends: once its batch is written
        // to the journal, it may become durable at any moment (a rotation,
        // a flush, the drop in `reopen`), so the ends must never reach the
        // index ahead of the bytes they commit.
        std::thread::scope(|s| {
            let syncs: Vec<_> = writes
                .iter()
                .filter(|w| !w.1.is_empty())
                .map(|&(f, _, _, what)| {
                    s.spawn(move || f.sync_data().map_err(io_err(format!("fsync of {what}"))))
                })
                .collect();
            syncs.into_iter().try_for_each(|h| {
                h.join()
                    .map_err(|_| StoreError::Io("an fsync thread panicked".into()))?
            })
        })?;
        // Readers may now see the new entries: the index, once committed,
        // points at them. (The ledger's readers never look past the
        // published checkpoint, so they see nothing of this batch before it
        // returns.) If the commit fails below, the caller reopens, which
        // rolls this back to what is durable.
        *self.ends.lock().unwrap_or_else(|p| p.into_inner()) = new;
        b.insert(self.index.space(Space::Meta)?, LOG_FILES_KEY, new.encode());
        // Step 3: the index batch, atomic (one journal record, published to
        // readers at once) and fsynced: the commit point.
        b.commit()
            .map_err(index_err("committing the index batch"))?;
        self.index.grow_filters();
        Ok(())
    }
}

#[cfg(feature = "node")]
impl ReadStore for DiskStore {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.with_open(|o| match space {
            Space::Entry => o.entry(index_key(space, key)?),
            Space::Hash => o.hash(index_key(space, key)?),
            _ => o.index.get(space, key),
        })
    }
    fn get_entries(&self, from: u64, count: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        self.with_open(|o| o.entry_run(from, count))
    }
}

#[cfg(feature = "node")]
impl Store for DiskStore {
    fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        self.with_open(|o| o.commit(batch))
    }

    /// Flushes every keyspace's memtable and waits for it: the index's
    /// journal (up to [`INDEX_JOURNAL_BYTES`]) is otherwise replayed into
    /// memory at the next open. At 10.4 million entries that replay held
    /// 211 MiB of anonymous memory after a start, against 75 MiB with an
    /// empty journal (BENCHMARKS.md, fourteenth session).
    fn settle(&self) -> Result<(), StoreError> {
        self.with_open(|o| {
            let _writer = o.writer.lock().unwrap_or_else(|p| p.into_inner());
            for (name, ks) in o.index.keyspaces() {
                // fjall 3.1 keeps this public but out of its documentation.
                ks.rotate_memtable_and_wait()
                    .map_err(index_err(format!("flushing keyspace {name}")))?;
            }
            Ok(())
        })
    }

    fn reopen(&self) -> Result<(), StoreError> {
        let mut guard = self.open.write().unwrap_or_else(|p| p.into_inner());
        // Close first: the index holds a lock on its directory.
        drop(guard.take());
        // The lock goes with the index's background threads, which may
        // still be finishing a flush or compaction: retry for a while.
        let mut tries = 0;
        loop {
            match Self::open_all(&self.dir, self.cache_bytes) {
                Ok(open) => {
                    *guard = Some(open);
                    return Ok(());
                }
                Err(e) if tries >= 50 => return Err(e),
                Err(_) => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(i: u64) -> [u8; 8] {
        i.to_be_bytes()
    }

    /// Lengths of `entries`, `entries.idx` and `hashes` in `dir`.
    #[cfg(feature = "node")]
    fn file_lens(dir: &std::path::Path) -> [u64; 3] {
        ["entries", "entries.idx", "hashes"].map(|n| std::fs::metadata(dir.join(n)).unwrap().len())
    }

    /// One conformance suite run against every implementation. The log's
    /// spaces are used as the ledger uses them: appends at the next index.
    fn conformance(store: &dyn Store) {
        assert_eq!(store.get(Space::Meta, b"a").unwrap(), None);
        assert_eq!(store.get(Space::Entry, &idx(0)).unwrap(), None);
        let mut b = Batch::new();
        b.put(Space::Meta, b"a".to_vec(), b"1".to_vec());
        // Out of order within the batch, as the auditor's overlay flushes.
        b.put(Space::Entry, idx(1), b"second".to_vec());
        b.put(Space::Entry, idx(0), b"2".to_vec());
        b.put(Space::Hash, idx(0), [7u8; 32].to_vec());
        b.put(Space::Meta, b"b".to_vec(), b"3".to_vec());
        b.delete(Space::Meta, b"b".to_vec());
        store.commit(b).unwrap();
        assert_eq!(store.get(Space::Meta, b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(
            store.get(Space::Entry, &idx(0)).unwrap(),
            Some(b"2".to_vec())
        );
        assert_eq!(
            store.get(Space::Entry, &idx(1)).unwrap(),
            Some(b"second".to_vec())
        );
        assert_eq!(store.get(Space::Entry, &idx(2)).unwrap(), None);
        assert_eq!(
            store.get(Space::Hash, &idx(0)).unwrap(),
            Some([7u8; 32].to_vec())
        );
        assert_eq!(store.get(Space::Hash, &idx(1)).unwrap(), None);
        assert_eq!(store.get(Space::Meta, b"b").unwrap(), None);
        let mut b = Batch::new();
        b.put(Space::Meta, b"a".to_vec(), b"x".to_vec());
        b.put(Space::Meta, b"a".to_vec(), b"y".to_vec());
        b.put(Space::Entry, idx(2), Vec::new());
        store.commit(b).unwrap();
        assert_eq!(store.get(Space::Meta, b"a").unwrap(), Some(b"y".to_vec()));
        assert_eq!(store.get(Space::Entry, &idx(2)).unwrap(), Some(Vec::new()));
        // Runs of entries: from anywhere, cut at the end of the log.
        let all = vec![b"2".to_vec(), b"second".to_vec(), Vec::new()];
        assert_eq!(store.get_entries(0, 3).unwrap(), all);
        assert_eq!(store.get_entries(1, 1).unwrap(), all[1..2].to_vec());
        assert_eq!(store.get_entries(1, 10).unwrap(), all[1..].to_vec());
        assert_eq!(store.get_entries(2, u64::MAX).unwrap(), all[2..].to_vec());
        assert!(store.get_entries(3, 5).unwrap().is_empty());
        assert!(store.get_entries(0, 0).unwrap().is_empty());
    }

    #[test]
    fn mem_store_conforms() {
        conformance(&MemStore::new());
    }

    #[test]
    fn an_overlay_shadows_its_store_until_it_commits_its_writes() {
        let inner = MemStore::new();
        let mut b = Batch::new();
        b.put(Space::Credential, b"kept".to_vec(), b"old".to_vec());
        b.put(Space::Credential, b"gone".to_vec(), b"old".to_vec());
        b.put(Space::Holder, b"kept".to_vec(), b"other space".to_vec());
        inner.commit(b).unwrap();
        let before = inner.dump();
        let mut o = Overlay::new(&inner);
        let mut b = Batch::new();
        b.put(Space::Credential, b"kept".to_vec(), b"new".to_vec());
        b.delete(Space::Credential, b"gone".to_vec());
        b.put(Space::Credential, b"added".to_vec(), b"1".to_vec());
        o.apply(b);
        let mut b = Batch::new();
        b.put(Space::Credential, b"added".to_vec(), b"2".to_vec());
        o.apply(b);
        assert_eq!(o.pending(), 3);
        let read = |s: &dyn ReadStore, space, k: &[u8]| s.get(space, k).unwrap();
        assert_eq!(read(&o, Space::Credential, b"kept"), Some(b"new".to_vec()));
        assert_eq!(read(&o, Space::Credential, b"gone"), None);
        assert_eq!(read(&o, Space::Credential, b"added"), Some(b"2".to_vec()));
        assert_eq!(
            read(&o, Space::Holder, b"kept"),
            Some(b"other space".to_vec())
        );
        assert_eq!(
            inner.dump(),
            before,
            "nothing reaches the store before a flush"
        );
        o.flush().unwrap();
        assert_eq!(o.pending(), 0);
        assert_eq!(
            read(&inner, Space::Credential, b"kept"),
            Some(b"new".to_vec())
        );
        assert_eq!(read(&inner, Space::Credential, b"gone"), None);
        assert_eq!(
            read(&inner, Space::Credential, b"added"),
            Some(b"2".to_vec())
        );
        assert_eq!(
            read(&inner, Space::Holder, b"kept"),
            Some(b"other space".to_vec())
        );
    }

    #[cfg(feature = "node")]
    #[test]
    fn disk_store_conforms_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = DiskStore::open(dir.path()).unwrap();
            conformance(&s);
        }
        let s = DiskStore::open(dir.path()).unwrap();
        assert_eq!(s.get(Space::Meta, b"a").unwrap(), Some(b"y".to_vec()));
        assert_eq!(
            s.get(Space::Entry, &idx(1)).unwrap(),
            Some(b"second".to_vec())
        );
        assert_eq!(s.get(Space::Entry, &idx(3)).unwrap(), None);
        assert_eq!(
            s.get(Space::Hash, &idx(0)).unwrap(),
            Some([7u8; 32].to_vec())
        );
        // 1 + 6 + 0 entry bytes, 3 end offsets, 1 hash.
        assert_eq!(file_lens(dir.path()), [7, 24, 32]);
    }

    #[cfg(feature = "node")]
    fn wait_for_filters(s: &DiskStore) {
        for _ in 0..1000 {
            if s.key_filters_ready() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("the key filters were not filled in 10 s");
    }

    /// The current filter of `space` (its size in bytes) and how many of
    /// `keys` it says may be present.
    #[cfg(feature = "node")]
    fn filter_says(s: &DiskStore, space: Space, keys: &[[u8; 8]]) -> (usize, usize) {
        s.with_open(|o| {
            let f = read_lock(o.index.filter_slot(space).unwrap())
                .current
                .clone();
            Ok((
                f.bytes(),
                keys.iter().filter(|k| f.may_contain(&k[..])).count(),
            ))
        })
        .unwrap()
    }

    #[cfg(feature = "node")]
    fn key8(i: u64, salt: u8) -> [u8; 8] {
        crate::hash::leaf_hash(&[&i.to_be_bytes()[..], &[salt]].concat()).0[..8]
            .try_into()
            .unwrap()
    }

    /// A committed batch sits in fjall's memtables (and its journal) until
    /// `settle` writes it to sorted runs; it is read the same after a
    /// reopen either way.
    #[cfg(feature = "node")]
    #[test]
    fn settle_writes_the_memtables_out_and_keeps_every_key() {
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<[u8; 8]> = (0..1500).map(|i| key8(i, 1)).collect();
        let on_disk = |s: &DiskStore| {
            s.index_breakdown()
                .unwrap()
                .into_iter()
                .find(|r| r.name == "dedup")
                .map(|r| r.on_disk)
        };
        {
            let s = DiskStore::open(dir.path()).unwrap();
            let mut b = Batch::new();
            for (i, k) in keys.iter().enumerate() {
                b.put(Space::Dedup, k.to_vec(), idx(i as u64).to_vec());
            }
            s.commit(b).unwrap();
            assert_eq!(on_disk(&s), Some(0));
            s.settle().unwrap();
            assert!(on_disk(&s).unwrap() > 1500 * 8, "{:?}", on_disk(&s));
        }
        let s = DiskStore::open(dir.path()).unwrap();
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(
                s.get(Space::Dedup, k).unwrap(),
                Some(idx(i as u64).to_vec())
            );
        }
    }

    /// Keys and values of the map space in every stratum: the top pages'
    /// (strata 0 to 4), the pages below them, and the layout key.
    #[cfg(feature = "node")]
    fn strata_pages(tag: u8) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = vec![(vec![0xff], vec![5])];
        for stratum in 0..8u8 {
            for i in 0..40u8 {
                let key = [vec![stratum], vec![i; usize::from(stratum).div_ceil(2)]].concat();
                out.push((key, vec![tag, stratum, i]));
            }
        }
        out.sort();
        out.dedup_by(|a, b| a.0 == b.0);
        out
    }

    /// The keys of each keyspace, by name.
    #[cfg(feature = "node")]
    fn keys_by_keyspace(s: &DiskStore) -> BTreeMap<&'static str, u64> {
        s.index_breakdown()
            .unwrap()
            .into_iter()
            .map(|r| (r.name, r.keys))
            .collect()
    }

    /// Runs `f` on the raw keyspaces `map-page` and `map-top` of the closed
    /// store in `dir`, as fjall itself opens them.
    #[cfg(feature = "node")]
    fn with_raw_map(
        dir: &std::path::Path,
        f: impl FnOnce(&fjall::Database, &fjall::Keyspace, &fjall::Keyspace),
    ) {
        let db = fjall::Database::builder(dir.join("keys")).open().unwrap();
        let open = |name| {
            db.keyspace(name, fjall::KeyspaceCreateOptions::default)
                .unwrap()
        };
        let (pages, top) = (open("map-page"), open(MAP_TOP_KEYSPACE));
        f(&db, &pages, &top);
    }

    /// The map's top pages are kept in a keyspace of their own, the rest
    /// where they were, and every page reads back, before and after a
    /// reopen, and is deleted from where it is.
    #[cfg(feature = "node")]
    #[test]
    fn top_pages_are_kept_apart_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let pages = strata_pages(1);
        let top = pages.iter().filter(|(k, _)| k[0] < MAP_TOP_STRATA).count() as u64;
        assert_eq!(top, 1 + 40 * 4);
        {
            let s = DiskStore::open(dir.path()).unwrap();
            let mut b = Batch::new();
            for (k, v) in &pages {
                b.put(Space::MapPage, k.clone(), v.clone());
            }
            s.commit(b).unwrap();
            let keys = keys_by_keyspace(&s);
            // The top pages and the mark that they are all there.
            assert_eq!(keys[MAP_TOP_KEYSPACE], top + 1);
            assert_eq!(keys["map-page"], pages.len() as u64 - top);
        }
        let s = DiskStore::open(dir.path()).unwrap();
        for (k, v) in &pages {
            assert_eq!(s.get(Space::MapPage, k).unwrap().as_ref(), Some(v), "{k:?}");
        }
        let mut b = Batch::new();
        b.delete(Space::MapPage, vec![0]);
        b.delete(Space::MapPage, vec![7, 3, 3, 3, 3]);
        s.commit(b).unwrap();
        assert_eq!(s.get(Space::MapPage, &[0]).unwrap(), None);
        assert_eq!(s.get(Space::MapPage, &[7, 3, 3, 3, 3]).unwrap(), None);
        let keys = keys_by_keyspace(&s);
        assert_eq!(keys[MAP_TOP_KEYSPACE], top);
        assert_eq!(keys["map-page"], pages.len() as u64 - top - 1);
    }

    /// A store made before the top pages had their keyspace (all pages in
    /// `map-page`, no mark) has them moved at its next open, and an open
    /// after a crash in the middle of a move finishes it: with the mark
    /// missing the copies are made again (over stale ones), with the mark
    /// written what `map-page` still holds is stale and removed.
    #[cfg(feature = "node")]
    #[test]
    fn top_pages_of_an_older_store_are_moved_at_open() {
        let pages = strata_pages(1);
        let stale = strata_pages(2);
        let is_top = |k: &[u8]| k[0] < MAP_TOP_STRATA;
        let top = pages.iter().filter(|(k, _)| is_top(k)).count() as u64;
        type Setup = fn(
            &fjall::Database,
            &fjall::Keyspace,
            &fjall::Keyspace,
            &[(Vec<u8>, Vec<u8>)],
            &[(Vec<u8>, Vec<u8>)],
        );
        let cases: [(&str, Setup); 3] = [
            ("older store", |db, map, _, pages, _| {
                let mut b = db.batch();
                for (k, v) in pages {
                    b.insert(map, k.clone(), v.clone());
                }
                b.commit().unwrap();
            }),
            ("crash while copying", |db, map, top, pages, stale| {
                let mut b = db.batch();
                for (k, v) in pages {
                    b.insert(map, k.clone(), v.clone());
                }
                for (k, v) in stale.iter().take(60) {
                    b.insert(top, k.clone(), v.clone());
                }
                b.commit().unwrap();
            }),
            ("crash while removing", |db, map, top, pages, stale| {
                let mut b = db.batch();
                for (k, v) in pages {
                    let to = if k[0] < MAP_TOP_STRATA { top } else { map };
                    b.insert(to, k.clone(), v.clone());
                }
                b.insert(top, MAP_TOP_MOVED, Vec::<u8>::new());
                for (k, v) in stale.iter().filter(|(k, _)| k[0] < MAP_TOP_STRATA).skip(30) {
                    b.insert(map, k.clone(), v.clone());
                }
                b.commit().unwrap();
            }),
        ];
        for (name, setup) in cases {
            let dir = tempfile::tempdir().unwrap();
            drop(DiskStore::open(dir.path()).unwrap());
            with_raw_map(dir.path(), |db, map, top| {
                // Empty both, mark included: the keyspace of a store made
                // before it existed.
                let mut b = db.batch();
                for ks in [map, top] {
                    for kv in ks.iter() {
                        b.remove(ks, kv.key().unwrap());
                    }
                }
                b.commit().unwrap();
                setup(db, map, top, &pages, &stale);
            });
            let s = DiskStore::open(dir.path()).unwrap();
            for (k, v) in &pages {
                assert_eq!(
                    s.get(Space::MapPage, k).unwrap().as_ref(),
                    Some(v),
                    "{name}: {k:?}"
                );
            }
            let keys = keys_by_keyspace(&s);
            assert_eq!(keys[MAP_TOP_KEYSPACE], top + 1, "{name}");
            assert_eq!(keys["map-page"], pages.len() as u64 - top, "{name}");
        }
    }

    /// Keys stored before an open are found through the filter filled by
    /// its scan, keys committed after through the writer's inserts, and
    /// absent keys are answered by the filter, not the index; a filter
    /// that fills is replaced by a larger one, without losing a key.
    #[cfg(feature = "node")]
    #[test]
    fn key_filters_never_hide_a_key_and_answer_absent_ones() {
        let dir = tempfile::tempdir().unwrap();
        let stored: Vec<[u8; 8]> = (0..1500).map(|i| key8(i, 1)).collect();
        {
            let s = DiskStore::open(dir.path()).unwrap();
            let mut b = Batch::new();
            for (i, k) in stored.iter().enumerate() {
                b.put(Space::Dedup, k.to_vec(), idx(i as u64).to_vec());
                b.put(Space::Holder, k.to_vec(), b"h".to_vec());
            }
            s.commit(b).unwrap();
        }
        let s = DiskStore::open(dir.path()).unwrap();
        // Before the scan is done as after: every stored key is read.
        let first = s.get(Space::Dedup, &stored[7]).unwrap();
        assert_eq!(first, Some(idx(7).to_vec()));
        wait_for_filters(&s);
        let absent: Vec<[u8; 8]> = (0..1000).map(|i| key8(i, 2)).collect();
        for space in FILTERED_SPACES {
            // Made for the 1,500 keys found at open, at 12 bits each,
            // rounded up to 4 KiB (21.8 bits per key).
            assert_eq!(filter_says(&s, space, &stored), (4096, 1500));
            assert_eq!(filter_says(&s, space, &absent), (4096, 0));
        }
        for (i, k) in stored.iter().enumerate() {
            assert_eq!(
                s.get(Space::Dedup, k).unwrap(),
                Some(idx(i as u64).to_vec())
            );
            assert_eq!(s.get(Space::Holder, k).unwrap(), Some(b"h".to_vec()));
        }
        assert!(absent
            .iter()
            .all(|k| s.get(Space::Dedup, k).unwrap().is_none()));
        // Committed after open: found at once, and in the filter. A
        // removed key is gone though the filter still holds it.
        let later: Vec<[u8; 8]> = (0..4000).map(|i| key8(i, 3)).collect();
        let mut b = Batch::new();
        for k in &later {
            b.put(Space::Dedup, k.to_vec(), b"later".to_vec());
        }
        b.delete(Space::Holder, stored[0].to_vec());
        s.commit(b).unwrap();
        assert!(later
            .iter()
            .all(|k| s.get(Space::Dedup, k).unwrap() == Some(b"later".to_vec())));
        assert_eq!(s.get(Space::Holder, &stored[0]).unwrap(), None);
        // 5,500 insertions passed 4 KiB / 6 bits: a filter of 8 KiB was
        // filled by a scan and took the place of the first.
        for _ in 0..1000 {
            if filter_says(&s, Space::Dedup, &[]).0 == 8192 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let all: Vec<[u8; 8]> = stored.iter().chain(&later).copied().collect();
        assert_eq!(filter_says(&s, Space::Dedup, &all), (8192, 5500));
        assert_eq!(filter_says(&s, Space::Dedup, &absent), (8192, 3));
        // The holder space had 1,500 insertions: its filter stays.
        assert_eq!(filter_says(&s, Space::Holder, &absent), (4096, 0));
        assert!(all
            .iter()
            .all(|k| s.get(Space::Dedup, k).unwrap().is_some()));
    }

    #[cfg(feature = "node")]
    fn one_entry(i: u64, v: &[u8]) -> Batch {
        let mut b = Batch::new();
        b.put(Space::Entry, idx(i), v.to_vec());
        b
    }

    #[cfg(feature = "node")]
    #[test]
    fn disk_store_refuses_anything_but_appends_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = DiskStore::open(dir.path()).unwrap();
        s.commit(one_entry(0, b"zero")).unwrap();
        let refused = |b: Batch, want: &str| {
            let e = s.commit(b).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        };
        // An overwrite, a gap, a delete, a hash of the wrong size, a key
        // that is not an index, and the store's own record.
        refused(one_entry(0, b"again"), "the next index is 1, not 0");
        refused(one_entry(2, b"gap"), "the next index is 1, not 2");
        let mut b = one_entry(1, b"one");
        b.delete(Space::Entry, idx(0));
        refused(b, "cannot delete 0");
        let mut b = Batch::new();
        b.delete(Space::Entry, idx(1));
        refused(b, "cannot delete 1");
        let mut b = Batch::new();
        b.put(Space::Hash, idx(0), vec![1u8; 31]);
        refused(b, "stored hash 0 has 31 bytes");
        let mut b = Batch::new();
        b.put(Space::Entry, b"one".to_vec(), b"x".to_vec());
        refused(b, "u64 indexes, not 3 bytes");
        let mut b = one_entry(1, b"one");
        b.put(Space::Meta, LOG_FILES_KEY.to_vec(), vec![0u8; 24]);
        refused(b, "the store's own");
        refused(
            one_entry(1, &vec![0u8; MAX_LOG_VALUE as usize + 1]),
            "over 65536",
        );
        // A refused batch wrote nothing, in the index or in the files.
        let mut b = one_entry(1, b"gap");
        b.put(Space::Meta, b"k".to_vec(), b"v".to_vec());
        b.put(Space::Entry, idx(3), b"x".to_vec());
        refused(b, "the next index is 2, not 3");
        assert_eq!(s.get(Space::Meta, b"k").unwrap(), None);
        assert_eq!(s.get(Space::Entry, &idx(1)).unwrap(), None);
        assert_eq!(
            std::fs::metadata(dir.path().join("entries")).unwrap().len(),
            4
        );
        s.commit(one_entry(1, b"one")).unwrap();
        assert_eq!(s.get(Space::Entry, &idx(1)).unwrap(), Some(b"one".to_vec()));
    }

    #[cfg(feature = "node")]
    #[test]
    fn disk_store_truncates_an_uncommitted_tail_and_refuses_a_lost_one() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().unwrap();
        {
            let s = DiskStore::open(dir.path()).unwrap();
            s.commit(one_entry(0, b"zero")).unwrap();
        }
        // What a crash between the files' write and the index's commit leaves:
        // bytes past the recorded ends.
        for (name, junk) in [
            ("entries", &b"torn"[..]),
            ("entries.idx", &[0u8; 5][..]),
            ("hashes", &[9u8; 40][..]),
        ] {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(dir.path().join(name))
                .unwrap();
            f.write_all(junk).unwrap();
        }
        {
            let s = DiskStore::open(dir.path()).unwrap();
            assert_eq!(s.get(Space::Entry, &idx(1)).unwrap(), None);
            assert_eq!(s.get(Space::Hash, &idx(0)).unwrap(), None);
            assert_eq!(file_lens(dir.path()), [4, 8, 0]);
            s.commit(one_entry(1, b"one")).unwrap();
            assert_eq!(
                s.get(Space::Entry, &idx(0)).unwrap(),
                Some(b"zero".to_vec())
            );
            assert_eq!(s.get(Space::Entry, &idx(1)).unwrap(), Some(b"one".to_vec()));
        }
        // Committed bytes gone (a file cut short): refuse to open.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("entries"))
            .unwrap();
        f.set_len(6).unwrap();
        let e = DiskStore::open(dir.path()).err().unwrap().to_string();
        assert!(
            e.contains("has 6 bytes but the index commits 7: log data was lost"),
            "{e}"
        );
        // A mangled offset index: at open when its last offset is wrong, at
        // the read when an earlier one is.
        f.set_len(7).unwrap();
        let idx_file = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("entries.idx"))
            .unwrap();
        use std::os::unix::fs::FileExt;
        idx_file.write_all_at(&8u64.to_be_bytes(), 8).unwrap();
        let e = DiskStore::open(dir.path()).err().unwrap().to_string();
        assert!(
            e.contains("entries.idx does not end where the entries do"),
            "{e}"
        );
        idx_file.write_all_at(&7u64.to_be_bytes(), 8).unwrap();
        idx_file.write_all_at(&99u64.to_be_bytes(), 0).unwrap();
        let s = DiskStore::open(dir.path()).unwrap();
        let e = s.get(Space::Entry, &idx(1)).unwrap_err().to_string();
        assert!(e.contains("entry 1 ends before it starts"), "{e}");
        // A run over it: the same check, before any entry byte is read.
        let e = s.get_entries(0, 2).unwrap_err().to_string();
        assert!(e.contains("entry 1 ends before it starts"), "{e}");
        let e = s.get_entries(1, 1).unwrap_err().to_string();
        assert!(e.contains("entry 1 ends before it starts"), "{e}");
    }

    #[cfg(feature = "node")]
    #[test]
    fn disk_store_refuses_an_out_of_range_record_without_touching_the_files() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = DiskStore::open(dir.path()).unwrap();
            s.commit(one_entry(0, b"zero")).unwrap();
        }
        let bad = LogEnds {
            entries: 1,
            entry_bytes: 4,
            hashes: u64::MAX / 8,
        };
        {
            let index = Index::open(&dir.path().join("keys"), INDEX_CACHE_BYTES).unwrap();
            let mut b = index
                .db
                .batch()
                .durability(Some(fjall::PersistMode::SyncAll));
            b.insert(
                index.space(Space::Meta).unwrap(),
                LOG_FILES_KEY,
                bad.encode(),
            );
            b.commit().unwrap();
        }
        let e = DiskStore::open(dir.path()).err().unwrap().to_string();
        assert!(e.contains("out of range"), "{e}");
        assert_eq!(file_lens(dir.path()), [4, 8, 0]);
    }

    #[cfg(feature = "node")]
    #[test]
    fn disk_store_refuses_data_dirs_of_the_sled_layouts() {
        // sled 0.34 writes `conf` at the top of its database directory:
        // the all-in-sled layout had it in the data dir, the next one in
        // `index/`.
        for old in ["conf", "index/conf"] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(old);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, b"segment_size: 524288\n").unwrap();
            let e = DiskStore::open(dir.path()).err().unwrap().to_string();
            assert!(e.contains("older layout (sled, found"), "{e}");
            assert!(!dir.path().join("keys").exists(), "{old}: nothing created");
        }
    }
}
