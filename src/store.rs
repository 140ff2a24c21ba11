//! The storage contract of the ledger, and its two implementations: sled on
//! disk (the default) and memory (tests).
//!
//! Architecture Invariant: only `ledger` writes through [`Store`]; nothing
//! else in the crate holds a store handle for writing. The store knows
//! nothing about Merkle trees or events: it keeps opaque values under keys in
//! a few key spaces.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// The key spaces of the ledger's data. Each is a prefix byte of the key
/// in a single ordered key-value map, so that one batch can span them all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Space {
    /// Small singletons: tree size, last signed checkpoint, registry.
    Meta = b'm',
    /// Log entries by index (u64 big-endian).
    Entry = b'e',
    /// Stored Merkle hashes by stored-hash index (u64 big-endian), Go
    /// sumdb/tlog layout (see `merkle::stored_hash_index`).
    Hash = b'h',
    /// Credential records by credential id.
    Credential = b'c',
    /// Live credential by holder tag.
    Holder = b'o',
    /// Log index by leaf hash, so a resubmitted entry is logged once.
    Dedup = b'd',
    /// Status map nodes, in pages of four levels (`mappage`).
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
///   nothing of a batch still being committed.
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
}

impl<S: ReadStore + ?Sized> ReadStore for std::sync::Arc<S> {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).get(space, key)
    }
}

impl<S: Store + ?Sized> Store for std::sync::Arc<S> {
    fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        (**self).commit(batch)
    }
    fn reopen(&self) -> Result<(), StoreError> {
        (**self).reopen()
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
    pending: std::collections::HashMap<(Space, Vec<u8>), Option<Vec<u8>>>,
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
        self.pending.len()
    }

    /// Commits every pending write to the inner store (atomically and
    /// durably, per its contract) and empties the overlay.
    ///
    /// # Errors
    /// The inner store's error; the writes stay pending.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        let mut batch = Batch::new();
        for ((space, key), value) in &self.pending {
            match value {
                Some(v) => batch.put(*space, key.clone(), v.clone()),
                None => batch.delete(*space, key.clone()),
            }
        }
        self.inner.commit(batch)?;
        self.pending.clear();
        Ok(())
    }
}

impl<S: Store + ?Sized> ReadStore for Overlay<'_, S> {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.pending.get(&(space, key.to_vec())) {
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
            self.pending.insert((space, key), value);
        }
    }
}

/// The page cache sled may use, in bytes.
#[cfg(feature = "node")]
pub const SLED_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// sled 0.34 on disk: one tree, one `apply_batch` (atomic) per commit,
/// then an explicit `flush` (fsync) before returning, because sled on its
/// own only flushes in the background every 500 ms.
///
/// [`Store::reopen`] closes the database and opens it again from disk.
/// This matters: when a commit fails half-way (for example with ENOSPC),
/// sled 0.34 keeps the writes it had applied in memory, so the open
/// database shows a torn batch, while on disk the batch is all-or-nothing
/// (seen on a full tmpfs: the in-memory tree lacked hashes its tree size
/// promised; a restart read a consistent log). Readers and the writer go
/// through one lock, so no handle to the old database survives a reopen.
///
/// Clones share one database (and a reopen).
#[cfg(feature = "node")]
#[derive(Clone)]
pub struct SledStore {
    dir: std::sync::Arc<std::path::PathBuf>,
    db: std::sync::Arc<std::sync::RwLock<Option<sled::Db>>>,
}

#[cfg(feature = "node")]
impl SledStore {
    /// Opens (or creates) the database in `dir`.
    ///
    /// # Errors
    /// [`StoreError::Io`] when sled cannot open it (for example, another
    /// process holds its lock).
    pub fn open(dir: &std::path::Path) -> Result<SledStore, StoreError> {
        Ok(SledStore {
            dir: std::sync::Arc::new(dir.to_path_buf()),
            db: std::sync::Arc::new(std::sync::RwLock::new(Some(Self::open_db(dir)?))),
        })
    }

    fn open_db(dir: &std::path::Path) -> Result<sled::Db, StoreError> {
        sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            // sled's default page cache is 1 GiB; the hot set here (the
            // map's upper pages, the tree's right edge, recent entries) is
            // small, and the kernel's page cache holds the rest.
            .cache_capacity(SLED_CACHE_BYTES)
            .open()
            .map_err(|e| StoreError::Io(format!("opening {}: {e}", dir.display())))
    }

    /// Runs `f` on the open database.
    fn with_db<T>(&self, f: impl FnOnce(&sled::Db) -> sled::Result<T>) -> Result<T, StoreError> {
        let guard = self.db.read().unwrap_or_else(|p| p.into_inner());
        let db = guard.as_ref().ok_or_else(|| {
            StoreError::Io(format!(
                "the database in {} is closed after a failure and could not be reopened yet",
                self.dir.display()
            ))
        })?;
        f(db).map_err(|e| StoreError::Io(e.to_string()))
    }

    /// Bytes sled reports on disk.
    ///
    /// # Errors
    /// [`StoreError::Io`].
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.with_db(|db| db.size_on_disk())
    }
}

#[cfg(feature = "node")]
impl ReadStore for SledStore {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.with_db(|db| db.get(full_key(space, key)))
            .map(|v| v.map(|iv| iv.to_vec()))
    }
}

#[cfg(feature = "node")]
impl Store for SledStore {
    fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        let mut b = sled::Batch::default();
        for (space, key, value) in batch.ops {
            let k = full_key(space, &key);
            match value {
                Some(v) => b.insert(k, v),
                None => b.remove(k),
            }
        }
        self.with_db(|db| {
            // Step 1: atomic — sled applies a batch all-or-nothing, also
            // across crashes (not in memory when it fails: see the type).
            db.apply_batch(b)?;
            // Step 2: durable — fsync before we report success.
            db.flush().map(|_| ())
        })
    }

    fn reopen(&self) -> Result<(), StoreError> {
        let mut guard = self.db.write().unwrap_or_else(|p| p.into_inner());
        // Close first: sled holds a lock on its directory. Dropping the
        // handle stops sled's flusher thread.
        drop(guard.take());
        // sled releases its directory lock a little after the last handle
        // is dropped (1–2 s seen on a 6 GB database): retry for a while.
        let mut tries = 0;
        loop {
            match Self::open_db(&self.dir) {
                Ok(db) => {
                    *guard = Some(db);
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

    /// One conformance suite run against every implementation.
    fn conformance(store: &dyn Store) {
        assert_eq!(store.get(Space::Meta, b"a").unwrap(), None);
        let mut b = Batch::new();
        b.put(Space::Meta, b"a".to_vec(), b"1".to_vec());
        b.put(Space::Entry, b"a".to_vec(), b"2".to_vec());
        b.put(Space::Meta, b"b".to_vec(), b"3".to_vec());
        b.delete(Space::Meta, b"b".to_vec());
        store.commit(b).unwrap();
        assert_eq!(store.get(Space::Meta, b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(store.get(Space::Entry, b"a").unwrap(), Some(b"2".to_vec()));
        assert_eq!(store.get(Space::Meta, b"b").unwrap(), None);
        assert_eq!(store.get(Space::Hash, b"a").unwrap(), None);
        let mut b = Batch::new();
        b.put(Space::Meta, b"a".to_vec(), b"x".to_vec());
        b.put(Space::Meta, b"a".to_vec(), b"y".to_vec());
        store.commit(b).unwrap();
        assert_eq!(store.get(Space::Meta, b"a").unwrap(), Some(b"y".to_vec()));
    }

    #[test]
    fn mem_store_conforms() {
        conformance(&MemStore::new());
    }

    #[cfg(feature = "node")]
    #[test]
    fn sled_store_conforms_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledStore::open(dir.path()).unwrap();
            conformance(&s);
        }
        let s = SledStore::open(dir.path()).unwrap();
        assert_eq!(s.get(Space::Meta, b"a").unwrap(), Some(b"y".to_vec()));
        assert_eq!(s.get(Space::Entry, b"a").unwrap(), Some(b"2".to_vec()));
    }
}
