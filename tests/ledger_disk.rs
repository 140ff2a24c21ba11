//! The ledger on disk (`DiskStore`) and under injected storage faults: reopen, crash
//! recovery between commit and checkpoint, corruption detection, and
//! start-up cost independent of the log's size.

use revledger::entry::{Action, CredentialId, Event, HolderTag, KindSet, Reason};
use revledger::hash::{leaf_hash, Hash};
use revledger::ledger::{
    dedup_key, holder_key, node_hash_slot, Ledger, LedgerError, Outcome, Refusal, Submitter,
    HOLDER_KEY_LEN,
};
use revledger::merkle;
use revledger::note::{KeyName, NoteSigner};
use revledger::rules::RuleError;
use revledger::store::{Batch, DiskStore, MemStore, ReadStore, Space, Store, StoreError};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

const T0: u64 = 1_767_225_600_000;

fn log_signer() -> NoteSigner {
    NoteSigner::from_seed(KeyName::new("example.com/revledger-sled").unwrap(), [1; 32])
}

fn issuer() -> NoteSigner {
    NoteSigner::from_seed(KeyName::new("issuer.example").unwrap(), [2; 32])
}

fn submitters() -> Vec<Submitter> {
    vec![Submitter {
        key: issuer().verifier(),
        kinds: KindSet::ALL,
    }]
}

/// A ledger opened at `T0` on `store`, with the issuer registered.
fn registered<S: Store>(store: S) -> Ledger<S> {
    let mut l = Ledger::open(store, log_signer(), T0).unwrap();
    l.reconcile_submitters(&submitters(), T0).unwrap();
    l
}

const FIVE_YEARS_MS: u64 = 5 * 365 * 86_400_000;

/// 32 bytes of `fill` that begin with `n`.
fn numbered(n: u32, fill: u8) -> [u8; 32] {
    let mut b = [fill; 32];
    b[..4].copy_from_slice(&n.to_be_bytes());
    b
}

/// The credential issue event number `n` issues, and its holder.
fn credential(n: u32) -> CredentialId {
    CredentialId(numbered(n, 0))
}

fn holder(n: u32) -> HolderTag {
    HolderTag(numbered(n, 0xaa))
}

/// An issue of `id` to `holder`, signed by the issuer.
fn issue_of(id: CredentialId, holder: HolderTag, by: &NoteSigner) -> Vec<u8> {
    Event::issue(id, holder, by.id(), T0, FIVE_YEARS_MS)
        .sign(by.signing_key())
        .encode()
}

/// `action` on `id` of `holder` at `at_ms`, signed by the issuer.
fn signed(action: Action, id: CredentialId, holder: HolderTag, at_ms: u64) -> Vec<u8> {
    Event {
        action,
        credential: id,
        holder,
        issuer_key_id: issuer().id(),
        issued_at_ms: at_ms,
    }
    .sign(issuer().signing_key())
    .encode()
}

/// Issue event number `n`, signed by `by`.
fn issue_by(by: &NoteSigner, n: u32) -> Vec<u8> {
    issue_of(credential(n), holder(n), by)
}

/// The batch failed as corruption, with a message containing `needle`.
fn assert_corrupt<T: std::fmt::Debug>(r: Result<T, LedgerError>, needle: &str) {
    match r {
        Err(LedgerError::Corrupt(m)) => assert!(m.contains(needle), "{m}"),
        other => panic!("{other:?}"),
    }
}

fn issue(n: u32) -> Vec<u8> {
    issue_by(&issuer(), n)
}

fn accepted(o: &Outcome) -> u64 {
    match o {
        Outcome::Accepted { index, .. } => *index,
        other => panic!("not accepted: {other:?}"),
    }
}

#[test]
fn reopen_after_close_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, idx) = {
        let mut l = registered(DiskStore::open(dir.path()).unwrap());
        let r = l.append_events(&[issue(1), issue(2)], T0 + 1).unwrap();
        (r.checkpoint.clone(), accepted(&r.outcomes[1]))
    };
    let mut l = Ledger::open(DiskStore::open(dir.path()).unwrap(), log_signer(), T0 + 2).unwrap();
    assert_eq!(l.checkpoint().note_text(), ckpt.note_text());
    assert_eq!(l.submitters().count(), 1);
    // Same bytes again: the original index, nothing logged.
    let r = l.append_events(&[issue(2)], T0 + 3).unwrap();
    assert!(matches!(r.outcomes[0], Outcome::Duplicate { index, .. } if index == idx));
    assert_eq!(r.checkpoint.size(), ckpt.size());
    // Reconciling the same submitters again appends nothing.
    assert!(l
        .reconcile_submitters(&submitters(), T0 + 3)
        .unwrap()
        .is_empty());
    let r = l.append_events(&[issue(3)], T0 + 4).unwrap();
    assert_eq!(accepted(&r.outcomes[0]), ckpt.size());
    assert_eq!(r.checkpoint.size(), ckpt.size() + 2);
}

/// After a reopen, once the store's key filters are filled, every stored
/// dedup and holder record is still found: each logged event resubmitted
/// is a duplicate with its index, and a second credential for a logged
/// holder is refused, while new events are accepted.
#[test]
fn after_a_reopen_the_key_filters_hide_no_dedup_or_holder_record() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<Vec<u8>> = (1..=300).map(issue).collect();
    let indexes: Vec<u64> = {
        let mut l = registered(DiskStore::open(dir.path()).unwrap());
        let r = l.append_events(&events, T0 + 1).unwrap();
        r.outcomes.iter().map(accepted).collect()
    };
    let store = DiskStore::open(dir.path()).unwrap();
    let mut l = Ledger::open(store.clone(), log_signer(), T0 + 2).unwrap();
    let mut waited = 0;
    while !store.key_filters_ready() {
        assert!(waited < 1000, "the key filters were not filled in 10 s");
        std::thread::sleep(std::time::Duration::from_millis(10));
        waited += 1;
    }
    let size = l.checkpoint().size();
    let r = l.append_events(&events, T0 + 3).unwrap();
    for (o, index) in r.outcomes.iter().zip(&indexes) {
        assert!(
            matches!(o, Outcome::Duplicate { index: i, .. } if i == index),
            "{o:?}, logged at {index}"
        );
    }
    assert_eq!(r.checkpoint.size(), size);
    let second = issue_of(CredentialId(numbered(7, 0x77)), holder(7), &issuer());
    let r = l.append_events(&[second, issue(301)], T0 + 4).unwrap();
    assert!(matches!(
        &r.outcomes[0],
        Outcome::Refused(Refusal::Rule(RuleError::HolderHasLiveCredential { live }))
            if *live == credential(7)
    ));
    assert_eq!(accepted(&r.outcomes[1]), size);
}

/// Flips one byte of a file of the store, in place.
fn flip(path: &std::path::Path, at: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 1], at).unwrap();
}

#[test]
fn the_log_files_on_disk_are_checked_like_any_stored_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, hashes) = {
        let mut l = registered(DiskStore::open(dir.path()).unwrap());
        let r = l
            .append_events(&[issue(1), issue(2), issue(3)], T0 + 1)
            .unwrap();
        // One stored hash per subtree of level ≥ 1: leaf hashes are not stored.
        let n = merkle::stored_hash_count(r.checkpoint.size()) - r.checkpoint.size();
        // A clean stop: the last checkpoint stored.
        l.save_checkpoint().unwrap();
        (r.checkpoint.clone(), n)
    };
    let file = |n: &str| dir.path().join(n);
    assert_eq!(
        std::fs::metadata(file("hashes")).unwrap().len(),
        32 * hashes
    );
    // The last stored hash is on the root's path: a flipped bit in the
    // file is caught when the node opens.
    flip(&file("hashes"), 32 * (hashes - 1) + 7);
    match Ledger::open(DiskStore::open(dir.path()).unwrap(), log_signer(), T0 + 2) {
        Err(LedgerError::Corrupt(m)) => assert!(m.contains("root recomputed"), "{m}"),
        other => panic!("{:?}", other.err()),
    }
    flip(&file("hashes"), 32 * (hashes - 1) + 7);
    // A flipped byte in an entry: never served.
    flip(&file("entries"), 40);
    let l = Ledger::open(DiskStore::open(dir.path()).unwrap(), log_signer(), T0 + 2).unwrap();
    assert!(matches!(l.entry(0), Err(LedgerError::Corrupt(_))));
    drop(l);
    flip(&file("entries"), 40);
    // What a crash between the files' write and the index's commit leaves (bytes
    // past the committed ends) is dropped on open; the log goes on.
    for name in ["entries", "entries.idx", "hashes"] {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(file(name))
            .unwrap();
        std::io::Write::write_all(&mut f, &[0xAB; 40]).unwrap();
    }
    let mut l = Ledger::open(DiskStore::open(dir.path()).unwrap(), log_signer(), T0 + 2).unwrap();
    assert_eq!(l.checkpoint().note_text(), ckpt.note_text());
    assert_eq!(
        std::fs::metadata(file("hashes")).unwrap().len(),
        32 * hashes
    );
    let r = l.append_events(&[issue(4)], T0 + 3).unwrap();
    assert_eq!(accepted(&r.outcomes[0]), ckpt.size());
    let Outcome::Accepted { leaf_hash, .. } = &r.outcomes[0] else {
        panic!("{:?}", r.outcomes[0])
    };
    assert_eq!(
        revledger::hash::leaf_hash(&l.entry(ckpt.size()).unwrap()),
        *leaf_hash
    );
}

/// A store that fails the N-th commit, optionally after applying it
/// ("the write failed but was persisted anyway").
struct Faulty {
    inner: Arc<MemStore>,
    commits: AtomicUsize,
    fail_at: usize,
    persist_anyway: bool,
    /// Reads of every space but the status map's pages.
    reads: AtomicUsize,
    page_reads: AtomicUsize,
    /// Reads of holder records (counted in `reads` too).
    holder_reads: AtomicUsize,
    failed: AtomicBool,
}

impl ReadStore for Faulty {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match space {
            Space::MapPage => &self.page_reads,
            _ => &self.reads,
        }
        .fetch_add(1, Ordering::SeqCst);
        if space == Space::Holder {
            self.holder_reads.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.get(space, key)
    }
}

impl Store for Faulty {
    fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        let n = self.commits.fetch_add(1, Ordering::SeqCst);
        if n == self.fail_at {
            self.failed.store(true, Ordering::SeqCst);
            if self.persist_anyway {
                self.inner.commit(batch)?;
            }
            return Err(StoreError::Injected("commit"));
        }
        self.inner.commit(batch)
    }
}

fn faulty(inner: Arc<MemStore>, fail_at: usize, persist_anyway: bool) -> Faulty {
    Faulty {
        inner,
        commits: AtomicUsize::new(0),
        fail_at,
        persist_anyway,
        reads: AtomicUsize::new(0),
        page_reads: AtomicUsize::new(0),
        holder_reads: AtomicUsize::new(0),
        failed: AtomicBool::new(false),
    }
}

#[test]
fn every_commit_fault_is_survived_and_nothing_unacknowledged_is_claimed() {
    // One batch makes one commit, which also stores the checkpoint of the
    // batch before it. Fail the first batch's commit (nothing unsaved
    // rides with it) and the second's (the first's checkpoint does), both
    // ways, and check: no acknowledgement, the ledger refuses more work,
    // and reopening yields a consistent log that contains the batch
    // exactly when the failed write was persisted, and serves every
    // checkpoint it acknowledged byte for byte.
    for fail_at in 0..2 {
        for persist_anyway in [false, true] {
            let mem = Arc::new(MemStore::new());
            registered(mem.clone()).save_checkpoint().unwrap();
            let store = faulty(mem.clone(), fail_at, persist_anyway);
            let mut l = Ledger::open(store, log_signer(), T0).unwrap();
            let mut before = l.checkpoint().clone();
            for n in 0..fail_at {
                before = l
                    .append_events(&[issue(20 + n as u32)], T0 + 1)
                    .unwrap()
                    .checkpoint;
            }
            let err = l.append_events(&[issue(7)], T0 + 1).unwrap_err();
            assert!(
                matches!(err, LedgerError::Store(StoreError::Injected(_))),
                "{err}"
            );
            assert!(l.poisoned().is_some());
            assert!(matches!(
                l.append_events(&[issue(8)], T0 + 2),
                Err(LedgerError::Poisoned(_))
            ));
            drop(l);
            let mut l = Ledger::open(mem.clone(), log_signer(), T0 + 3).unwrap();
            let expected = if persist_anyway {
                before.size() + 2
            } else {
                before.size()
            };
            let msg = format!("fail_at {fail_at} persist {persist_anyway}");
            assert_eq!(l.checkpoint().size(), expected, "{msg}");
            if !persist_anyway {
                assert_eq!(l.checkpoint().note_text(), before.note_text(), "{msg}");
            }
            // Stored at open, last and in the history by size.
            assert_eq!(
                mem.get(Space::Meta, b"checkpoint").unwrap().as_deref(),
                Some(l.checkpoint().note_text().as_bytes()),
                "{msg}"
            );
            assert_eq!(
                mem.get(Space::Checkpoint, &before.size().to_be_bytes())
                    .unwrap()
                    .as_deref(),
                Some(before.note_text().as_bytes()),
                "{msg}"
            );
            let p = l.consistency_proof(before.size(), expected).unwrap();
            merkle::verify_consistency(
                before.size(),
                expected,
                before.root(),
                l.checkpoint().root(),
                &p,
            )
            .unwrap();
            // Resubmitting the event gives its index, or logs it now.
            let r = l.append_events(&[issue(7)], T0 + 4).unwrap();
            match (&r.outcomes[0], persist_anyway) {
                (Outcome::Duplicate { index, .. }, true) => assert_eq!(*index, before.size()),
                (Outcome::Accepted { index, .. }, false) => assert_eq!(*index, before.size()),
                (o, _) => panic!("{o:?}"),
            }
        }
    }
}

#[test]
fn a_checkpoint_is_stored_with_the_next_commit_and_signed_again_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let stored = |store: &DiskStore| {
        store
            .get(Space::Meta, b"checkpoint")
            .unwrap()
            .map(|v| String::from_utf8(v).unwrap())
    };
    let (first, second) = {
        let store = DiskStore::open(dir.path()).unwrap();
        let mut l = registered(store.clone());
        let first = l.append_events(&[issue(1)], T0 + 1).unwrap().checkpoint;
        assert_ne!(stored(&store).as_deref(), Some(first.note_text()));
        let second = l.append_events(&[issue(2)], T0 + 2).unwrap().checkpoint;
        // The second batch's commit stored the first's checkpoint.
        assert_eq!(stored(&store).as_deref(), Some(first.note_text()));
        assert_eq!(
            store
                .get(Space::Checkpoint, &first.size().to_be_bytes())
                .unwrap()
                .as_deref(),
            Some(first.note_text().as_bytes())
        );
        (first, second)
        // Dropped without saving: as a crash would leave it.
    };
    let store = DiskStore::open(dir.path()).unwrap();
    assert_eq!(stored(&store).as_deref(), Some(first.note_text()));
    let mut l = Ledger::open(store.clone(), log_signer(), T0 + 3).unwrap();
    assert_eq!(l.checkpoint().note_text(), second.note_text());
    assert_eq!(stored(&store).as_deref(), Some(second.note_text()));
    // A clean stop stores the last one.
    let third = l.append_events(&[issue(3)], T0 + 4).unwrap().checkpoint;
    l.save_checkpoint().unwrap();
    assert_eq!(stored(&store).as_deref(), Some(third.note_text()));
}

#[test]
fn open_refuses_corrupted_hashes_and_foreign_keys() {
    let mem = Arc::new(MemStore::new());
    {
        let mut l = registered(mem.clone());
        l.append_events(&[issue(1), issue(2), issue(3)], T0)
            .unwrap();
    }
    let foreign =
        NoteSigner::from_seed(KeyName::new("example.com/revledger-sled").unwrap(), [9; 32]);
    match Ledger::open(mem.clone(), foreign, T0) {
        Err(LedgerError::Corrupt(m)) => assert!(m.contains("does not verify"), "{m}"),
        other => panic!("{:?}", other.err()),
    }
    let size = Ledger::open(mem.clone(), log_signer(), T0)
        .unwrap()
        .checkpoint()
        .size();
    // Open reads O(log n) hashes: flipping any hash it reads (here: all the
    // stored hashes, in turn) is caught, or else the damaged hash is not on
    // the checkpointed root's path and the next proof over it is refused.
    for i in 0..merkle::stored_hash_count(size) - size {
        assert!(mem.tamper(Space::Hash, &i.to_be_bytes(), |v| v[0] ^= 1));
        match Ledger::open(mem.clone(), log_signer(), T0) {
            Err(LedgerError::Corrupt(m)) => assert!(m.contains("root recomputed"), "{m}"),
            Err(e) => panic!("{e}"),
            Ok(l) => {
                // Slot i holds the subtree of level + 1 at n (leaves are
                // not stored; see `node_hash_slot`).
                let (below, n) = merkle::split_stored_hash_index(i);
                let level = below + 1;
                assert_eq!(node_hash_slot(level, n), Some(i));
                // Some proof reads this hash: entry n·2^level's proof at
                // the full size, or the consistency proof from a size
                // that ends inside its subtree.
                let leaf = n << level;
                let bad_inclusion = (0..size)
                    .any(|j| matches!(l.inclusion_proof(j, size), Err(LedgerError::Corrupt(_))));
                let bad_consistency = (1..size)
                    .any(|m| matches!(l.consistency_proof(m, size), Err(LedgerError::Corrupt(_))));
                assert!(
                    bad_inclusion || bad_consistency,
                    "hash {i} (level {level}, leaf {leaf})"
                );
            }
        }
        assert!(mem.tamper(Space::Hash, &i.to_be_bytes(), |v| v[0] ^= 1));
    }
    let l = Ledger::open(mem.clone(), log_signer(), T0).unwrap();
    // An entry whose bytes no longer match its leaf hash is never served.
    assert!(mem.tamper(Space::Entry, &1u64.to_be_bytes(), |v| v[5] ^= 1));
    assert!(matches!(l.entry(1), Err(LedgerError::Corrupt(_))));
}

#[test]
fn open_cost_does_not_grow_with_the_log() {
    // Reads during open for a log of ~100 and of ~3000 entries: both are
    // O(log n), so the larger log costs at most a few more reads.
    let reads_for = |batches: u32| {
        let mem = Arc::new(MemStore::new());
        let mut l = registered(mem.clone());
        for b in 0..batches {
            let evs: Vec<Vec<u8>> = (0..10).map(|i| issue(b * 10 + i)).collect();
            l.append_events(&evs, T0).unwrap();
        }
        drop(l);
        let store = faulty(mem, usize::MAX, false);
        let l = Ledger::open(store, log_signer(), T0).unwrap();
        let size = l.checkpoint().size();
        let s = l.store();
        (
            size,
            s.reads.load(Ordering::SeqCst),
            s.page_reads.load(Ordering::SeqCst),
        )
    };
    let (small_n, small, small_pages) = reads_for(10);
    let (big_n, big, big_pages) = reads_for(300);
    assert!(big_n > 25 * small_n);
    // log2(3300) ≈ 12: the stored-hash reads are bounded by popcount and
    // tree height.
    assert!(
        big <= small + 24,
        "open read {small} values at size {small_n}, {big} at {big_n}"
    );
    assert!(big < 64, "{big}");
    // The map's top four strata of pages are loaded into memory: the
    // layout key and at most 1 + 16 + 256 + 4096 pages at any size. A page
    // under a stored page's empty or leaf position is not read; under a
    // page the node omits (interior nodes only, derived at open) every
    // page is. Here the 3,000-key map reads 959: its stratum-2 pages are
    // stored where a leaf sits, and guide the reads below them.
    assert!(small_pages < big_pages, "{small_pages} {big_pages}");
    assert!(big_pages <= 1 + 1 + 16 + 256 + 4096, "{big_pages}");
}

#[test]
fn checks_made_ahead_of_the_writer_are_redone_when_the_registry_changed() {
    let mut l = registered(MemStore::new());
    let r = l.reader_handle();
    let other = NoteSigner::from_seed(KeyName::new("other.example").unwrap(), [3; 32]);
    let both = [
        submitters()[0].clone(),
        Submitter {
            key: other.verifier(),
            kinds: KindSet::ALL,
        },
    ];
    let unknown = |o: &Outcome| matches!(o, Outcome::Refused(Refusal::UnknownIssuer(id)) if *id == other.id());
    // Checked while `other` is unknown, appended once it is registered.
    let early = r.authorize(vec![issue(1), issue_by(&other, 2)]);
    l.reconcile_submitters(&both, T0 + 1).unwrap();
    let b = l.append_authorized(vec![early], T0 + 2).unwrap();
    let first = accepted(&b.outcomes[0]);
    assert_eq!(accepted(&b.outcomes[1]), first + 1);
    // Checked while `other` is registered, appended after its removal.
    let early = r.authorize(vec![issue_by(&other, 3)]);
    l.reconcile_submitters(&submitters(), T0 + 3).unwrap();
    let b = l.append_authorized(vec![early], T0 + 4).unwrap();
    assert!(unknown(&b.outcomes[0]), "{:?}", b.outcomes);
    // Registry unchanged: several parts, in order, as one batch.
    let parts = vec![
        r.authorize(vec![issue_by(&other, 4), issue(5)]),
        r.authorize(vec![issue(5), issue(6)]),
    ];
    let b = l.append_authorized(parts, T0 + 5).unwrap();
    assert!(unknown(&b.outcomes[0]), "{:?}", b.outcomes);
    let five = accepted(&b.outcomes[1]);
    assert!(matches!(b.outcomes[2], Outcome::Duplicate { index, .. } if index == five));
    assert_eq!(accepted(&b.outcomes[3]), five + 1);
    assert_eq!(b.checkpoint.size(), five + 3);
}

#[test]
fn hash_type_is_what_proofs_use() {
    // Guard for the JSON API: hashes travel as standard base64.
    let h = Hash([0xfb; 32]);
    assert_eq!(
        serde_json::to_string(&h).unwrap(),
        format!("\"{}\"", h.to_base64())
    );
}

/// A node stores no leaf hashes: it recomputes them from the entries, and
/// reads each entry with its pair, checked against the pair's stored
/// parent. A damaged entry is then never served: not as an entry, in a
/// bundle, as a leaf hash, in a hash tile or under a proof.
#[test]
fn leaf_hashes_come_from_the_entries_checked_in_pairs() {
    use revledger::tile::TilePath;
    let mem = Arc::new(MemStore::new());
    let mut l = registered(mem.clone());
    let evs: Vec<Vec<u8>> = (0..9).map(issue).collect();
    l.append_events(&evs, T0 + 1).unwrap();
    let size = l.checkpoint().size();
    assert_eq!(size % 2, 1, "the last entry should be alone: {size}");
    // Exactly the subtrees of level ≥ 1 are stored.
    let stored = merkle::stored_hash_count(size) - size;
    assert!(mem
        .get(Space::Hash, &(stored - 1).to_be_bytes())
        .unwrap()
        .is_some());
    assert_eq!(mem.get(Space::Hash, &stored.to_be_bytes()).unwrap(), None);
    for i in 0..size {
        assert_eq!(
            l.leaf_hash(i).unwrap(),
            leaf_hash(&mem.get(Space::Entry, &i.to_be_bytes()).unwrap().unwrap())
        );
    }
    let width = u16::try_from(size).unwrap();
    let leaves = TilePath::hash(0, 0, width).unwrap();
    let bundle = TilePath::entries(0, width).unwrap();
    let good_tile = l.read_tile(&leaves).unwrap().unwrap();
    assert_eq!(good_tile.len(), 32 * usize::from(width));
    // The lone last entry has no parent yet: it is read as it is.
    assert!(l.entry(size - 1).is_ok());
    assert!(mem.tamper(Space::Entry, &4u64.to_be_bytes(), |v| v[100] ^= 1));
    let pair = "entries 4 and 5 do not match their parent's stored hash";
    assert_corrupt(l.entry(4), pair);
    assert_corrupt(l.entry(5), pair);
    assert_corrupt(l.leaf_hash(5), pair);
    assert_corrupt(l.inclusion_proof(5, size), pair);
    // A level-0 tile read before is kept, checked, in memory; one not
    // read before is recomputed, and refused.
    assert_eq!(l.read_tile(&leaves).unwrap().unwrap(), good_tile);
    let narrower = TilePath::hash(0, 0, width - 1).unwrap();
    assert_corrupt(l.read_tile(&narrower), pair);
    assert_corrupt(l.read_tile(&bundle), pair);
    // Entry 6's proof holds the pair's parent, not its leaves.
    assert!(l.inclusion_proof(6, size).is_ok());
    assert!(l.entry(6).is_ok());
    assert!(mem.tamper(Space::Entry, &4u64.to_be_bytes(), |v| v[100] ^= 1));
    assert_eq!(
        l.read_tile(&narrower).unwrap().unwrap(),
        good_tile[..32 * usize::from(width - 1)]
    );
}

/// `fsck`'s check: the auditor replaying the stored log (`StoredLog`) finds
/// every kind of flipped byte and says where.
#[test]
fn fsck_replay_finds_flipped_bytes_and_says_where() {
    use revledger::audit::{AuditError, Auditor, Misbehaviour};
    use revledger::ledger::StoredLog;
    let mem = Arc::new(MemStore::new());
    let size = {
        let mut l = registered(mem.clone());
        for b in 0..30 {
            let evs: Vec<Vec<u8>> = (0..10).map(|i| issue(b * 10 + i)).collect();
            l.append_events(&evs, T0).unwrap();
        }
        l.save_checkpoint().unwrap();
        l.checkpoint().size()
    };
    let fsck = || {
        let mut a = Auditor::open(Arc::new(MemStore::new()), log_signer().verifier()).unwrap();
        a.run(&StoredLog(&*mem), &mut |_, _| {})
    };
    assert_eq!(fsck().unwrap().size, size);
    // An entry's byte: its recomputed leaf no longer matches the stored tile.
    assert!(mem.tamper(Space::Entry, &100u64.to_be_bytes(), |v| v[40] ^= 1));
    match fsck() {
        Err(AuditError::Misbehaviour { what, .. }) => assert!(
            matches!(
                &what,
                Misbehaviour::RootMismatch { .. }
                    | Misbehaviour::Unauthorized { index: 100, .. }
                    | Misbehaviour::BadEntry { index: 100, .. }
            ),
            "{what}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(mem.tamper(Space::Entry, &100u64.to_be_bytes(), |v| v[40] ^= 1));
    // A stored hash of a tile above the entries: the tile is named.
    let idx = node_hash_slot(8, 0).unwrap();
    assert!(mem.tamper(Space::Hash, &idx.to_be_bytes(), |v| v[0] ^= 1));
    match fsck() {
        Err(AuditError::Misbehaviour {
            what: Misbehaviour::TileMismatch { tile },
            ..
        }) => assert_eq!(tile, "tile/1/000.p/1"),
        other => panic!("{other:?}"),
    }
    assert!(mem.tamper(Space::Hash, &idx.to_be_bytes(), |v| v[0] ^= 1));
    assert_eq!(fsck().unwrap().size, size);
}

/// A node keeps no credential record of its own: the rules read the status
/// from the map and the holder from the logged event the status points at,
/// and refuse to trust that event if its bytes no longer match.
#[test]
fn credential_records_come_from_the_map_and_the_log() {
    let mem = Arc::new(MemStore::new());
    let mut l = registered(mem.clone());
    let r = l.append_events(&[issue(1), issue(2)], T0 + 1).unwrap();
    let issued = accepted(&r.outcomes[0]);
    let id = credential(1);
    assert!(!mem.tamper(Space::Credential, &id.0, |_| {}));
    let rec = l.credential(&id).unwrap().unwrap();
    assert_eq!(rec.holder, holder(1));
    assert_eq!(rec.status.last_index, issued);
    // A suspension needs the holder, found in entry `issued`.
    let suspend = |h: HolderTag| {
        let lost = Action::Suspend {
            reason: Reason::Lost,
        };
        signed(lost, id, h, T0 + 2)
    };
    let r = l
        .append_events(&[suspend(HolderTag([0xbb; 32]))], T0 + 2)
        .unwrap();
    assert!(matches!(
        &r.outcomes[0],
        Outcome::Refused(Refusal::Rule(RuleError::HolderMismatch { .. }))
    ));
    // The issue entry changed on disk: the suspension is not judged on it.
    assert!(mem.tamper(Space::Entry, &issued.to_be_bytes(), |v| v[40] ^= 1));
    assert_corrupt(
        l.append_events(&[suspend(holder(1))], T0 + 3),
        &format!("entry {issued} does not have the leaf hash"),
    );
}

/// The node's holder index holds, under the first 8 bytes of the holder
/// tag, the index of an event about the live credential, and the rules
/// take the credential from that entry, checking that it is an event of a
/// holder under that key.
#[test]
fn the_holder_index_points_into_the_log() {
    let mem = Arc::new(MemStore::new());
    let mut l = registered(mem.clone());
    let r = l.append_events(&[issue(1)], T0 + 1).unwrap();
    let issued = accepted(&r.outcomes[0]);
    assert_eq!(
        mem.get(Space::Holder, &holder_key(&holder(1))).unwrap(),
        Some(issued.to_be_bytes().to_vec())
    );
    // A second credential for the same holder, replacing nothing.
    let second = issue_of(CredentialId(numbered(1, 0x77)), holder(1), &issuer());
    let r = l
        .append_events(std::slice::from_ref(&second), T0 + 2)
        .unwrap();
    assert!(matches!(
        &r.outcomes[0],
        Outcome::Refused(Refusal::Rule(RuleError::HolderHasLiveCredential { live }))
            if *live == credential(1)
    ));
    // The entry it points at changed on disk: refused as corruption.
    assert!(mem.tamper(Space::Entry, &issued.to_be_bytes(), |v| v[40] ^= 1));
    assert_corrupt(
        l.append_events(&[second], T0 + 3),
        &format!("entry {issued} is not an event of a holder under this key"),
    );
}

/// A holder record, under 8 bytes of a hash of the tag, lists the event
/// of the holder's live credential; it follows issue, revoke and replace,
/// and an entry listed under a key must be an event of a holder under it.
/// Tags that share their first bytes (a counter at the end) do not share
/// a key: they would pile into one record that every issue rereads.
#[test]
fn the_holder_record_follows_the_live_credential() {
    let mem = Arc::new(MemStore::new());
    let mut l = registered(mem.clone());
    let tag = |last: u8| {
        let mut t = [0x5a; 32];
        t[31] = last;
        HolderTag(t)
    };
    let (a, b) = (tag(1), tag(2));
    assert_ne!(holder_key(&a), holder_key(&b));
    assert_eq!(holder_key(&a).len(), HOLDER_KEY_LEN);
    // SHA-256("revledger/holder-index/v1" ‖ 0x00 ‖ 22…22), first 8 bytes
    // (Python hashlib).
    assert_eq!(
        holder_key(&HolderTag([0x22; 32])),
        [0x80, 0x63, 0x11, 0x55, 0x4a, 0x0b, 0xef, 0x45]
    );
    let record = |h: &HolderTag| mem.get(Space::Holder, &holder_key(h)).unwrap();
    let list = |indexes: &[u64]| indexes.iter().flat_map(|i| i.to_be_bytes()).collect();
    let cred = |n: u32| CredentialId(numbered(n, 0x33));
    let r = l
        .append_events(
            &[
                issue_of(cred(1), a, &issuer()),
                issue_of(cred(2), b, &issuer()),
            ],
            T0 + 1,
        )
        .unwrap();
    let (ia, ib) = (accepted(&r.outcomes[0]), accepted(&r.outcomes[1]));
    assert_eq!(record(&a), Some(list(&[ia])));
    assert_eq!(record(&b), Some(list(&[ib])));
    // Each holder's live credential is its own.
    for (h, live) in [(a, cred(1)), (b, cred(2))] {
        let r = l
            .append_events(&[issue_of(cred(9), h, &issuer())], T0 + 2)
            .unwrap();
        assert!(
            matches!(
                &r.outcomes[0],
                Outcome::Refused(Refusal::Rule(RuleError::HolderHasLiveCredential { live: l }))
                    if *l == live
            ),
            "{:?}",
            r.outcomes[0]
        );
    }
    // Revoking a's credential deletes a's record.
    let revoke = signed(
        Action::Revoke {
            reason: Reason::HolderRequest,
        },
        cred(1),
        a,
        T0 + 3,
    );
    accepted(&l.append_events(&[revoke], T0 + 3).unwrap().outcomes[0]);
    assert_eq!(record(&a), None);
    // a may now hold a new one; b replaces its own.
    let r = l
        .append_events(&[issue_of(cred(3), a, &issuer())], T0 + 4)
        .unwrap();
    let i3 = accepted(&r.outcomes[0]);
    assert_eq!(record(&a), Some(list(&[i3])));
    let replace = signed(
        Action::Issue {
            not_before_ms: T0,
            not_after_ms: T0 + FIVE_YEARS_MS,
            replaces: Some(cred(2)),
        },
        cred(4),
        b,
        T0 + 5,
    );
    let i4 = accepted(&l.append_events(&[replace], T0 + 5).unwrap().outcomes[0]);
    assert_eq!(record(&b), Some(list(&[i4])));
    // b's event listed under a's key: corruption, not b's credential.
    let mut batch = Batch::new();
    batch.put(Space::Holder, holder_key(&a).to_vec(), list(&[i3, i4]));
    mem.commit(batch).unwrap();
    assert_corrupt(
        l.append_events(&[issue_of(cred(5), a, &issuer())], T0 + 6),
        &format!("entry {i4} is not an event of a holder under this key"),
    );
}

/// A store records how its holder and dedup records are keyed; a store
/// without that record (written with 32- and 16-byte keys) or with another
/// layout is refused at open rather than misread.
#[test]
fn the_index_layout_is_recorded_and_checked() {
    let mem = Arc::new(MemStore::new());
    drop(registered(mem.clone()));
    assert_eq!(mem.get(Space::Meta, b"layout").unwrap(), Some(vec![1]));
    assert!(Ledger::open(mem.clone(), log_signer(), T0).is_ok());
    let set = |v: Option<Vec<u8>>| {
        let mut batch = Batch::new();
        match v {
            Some(v) => batch.put(Space::Meta, b"layout".to_vec(), v),
            None => batch.delete(Space::Meta, b"layout".to_vec()),
        }
        mem.commit(batch).unwrap();
    };
    set(None);
    let open = || Ledger::open(mem.clone(), log_signer(), T0).map(|_| ());
    assert_corrupt(
        open(),
        "layout 0 (written before 2026-12-02); this build reads layout 1",
    );
    set(Some(vec![2]));
    assert_corrupt(open(), "layout 02;");
}

/// Dedup records are keyed on the first 8 bytes of a leaf hash: every
/// candidate they list is checked against the log, and a second event
/// under the same key is added to the record, not written over it.
#[test]
fn dedup_records_are_checked_against_the_log() {
    let mem = Arc::new(MemStore::new());
    let mut l = registered(mem.clone());
    let (a, b) = (issue(1), issue(2));
    let key = |e: &[u8]| dedup_key(&leaf_hash(e)).to_vec();
    let ia = accepted(
        &l.append_events(std::slice::from_ref(&a), T0 + 1)
            .unwrap()
            .outcomes[0],
    );
    assert_eq!(
        mem.get(Space::Dedup, &key(&a)).unwrap(),
        Some(ia.to_be_bytes().to_vec())
    );
    // b's key holds a's index, as if a's leaf hash began with b's 8 bytes.
    let put = |k: Vec<u8>, v: Vec<u8>| {
        let mut batch = Batch::new();
        batch.put(Space::Dedup, k, v);
        mem.commit(batch).unwrap();
    };
    put(key(&b), ia.to_be_bytes().to_vec());
    let ib = accepted(
        &l.append_events(std::slice::from_ref(&b), T0 + 2)
            .unwrap()
            .outcomes[0],
    );
    let mut both = ia.to_be_bytes().to_vec();
    both.extend_from_slice(&ib.to_be_bytes());
    assert_eq!(mem.get(Space::Dedup, &key(&b)).unwrap(), Some(both));
    let r = l.append_events(&[b.clone(), a.clone()], T0 + 3).unwrap();
    assert!(matches!(r.outcomes[0], Outcome::Duplicate { index, .. } if index == ib));
    assert!(matches!(r.outcomes[1], Outcome::Duplicate { index, .. } if index == ia));
    assert_eq!(r.checkpoint.size(), ib + 2);
    assert_eq!(l.find_event(&leaf_hash(&b)).unwrap(), Some(ib));
    assert_eq!(l.find_event(&leaf_hash(&issue(3))).unwrap(), None);
    // A malformed record is corruption, not "never seen".
    put(key(&b), vec![1, 2, 3]);
    assert_corrupt(l.append_events(&[b], T0 + 4), "not a list of u64s");
}

/// A ledger that has logged issues 1 ..= `n` in one batch and stopped
/// cleanly, reopened over a store that counts its reads.
fn counting_reads_after_issues(n: u32) -> Ledger<Faulty> {
    let mem = Arc::new(MemStore::new());
    let mut l = registered(mem.clone());
    let events: Vec<Vec<u8>> = (1..=n).map(issue).collect();
    l.append_events(&events, T0).unwrap();
    l.save_checkpoint().unwrap();
    drop(l);
    Ledger::open(faulty(mem, usize::MAX, false), log_signer(), T0).unwrap()
}

#[test]
fn a_batch_reads_each_holder_record_once() {
    let mut l = counting_reads_after_issues(5);
    let before = l.store().holder_reads.load(Ordering::SeqCst);
    // Five new holders (no record stored), and a replacement credential
    // for each holder of the first batch (a record stored, rewritten).
    let mut events: Vec<Vec<u8>> = (6..=10).map(issue).collect();
    events.extend((1..=5).map(|n| {
        signed(
            Action::Issue {
                not_before_ms: T0,
                not_after_ms: T0 + FIVE_YEARS_MS,
                replaces: Some(credential(n)),
            },
            credential(100 + n),
            holder(n),
            T0 + 1,
        )
    }));
    let r = l.append_events(&events, T0 + 1).unwrap();
    for o in &r.outcomes {
        accepted(o);
    }
    // The rules read each record; sealing merges into what they read.
    assert_eq!(l.store().holder_reads.load(Ordering::SeqCst) - before, 10);
    let holder_of = |n| {
        l.store()
            .get(Space::Holder, &holder_key(&holder(n)))
            .unwrap()
            .map(|v| v.len())
    };
    assert_eq!(holder_of(1), Some(8));
    assert_eq!(holder_of(6), Some(8));
}

#[test]
fn a_status_proof_reads_its_event_once() {
    let l = counting_reads_after_issues(20);
    // The first proof also makes the head record's (kept for the next).
    l.status_proof(&credential(1)).unwrap();
    let before = l.store().reads.load(Ordering::SeqCst);
    let proof = l.status_proof(&credential(7)).unwrap();
    let reads = l.store().reads.load(Ordering::SeqCst) - before;
    let event = proof.event.as_ref().unwrap();
    assert_eq!(event.entry, issue(7));
    // The event's pair (two entries and the hash above them), then one
    // stored hash for each of the proof's hashes above the pair (10 reads
    // when the pair was read twice).
    let size = proof_size(&proof);
    let above_pair = event.inclusion.len() as u64 - 1;
    assert_eq!(reads as u64, 3 + above_pair, "size {size}");
}

fn proof_size(p: &revledger::status::StatusProof) -> u64 {
    revledger::checkpoint::Checkpoint::parse_body(
        &(p.checkpoint.split("\n\n").next().unwrap().to_string() + "\n"),
    )
    .unwrap()
    .size()
}

/// Where the ledger keeps the status-map changes of the batch that ended
/// at tree size `size` until it writes the map's pages back.
fn map_changes_key(size: u64) -> Vec<u8> {
    let mut k = b"map-changes/".to_vec();
    k.extend_from_slice(&size.to_be_bytes());
    k
}

const MAP_PENDING: &[u8] = b"map-pending";

/// Each batch's changed map pages stay in memory and the store keeps the
/// batch's map changes instead; the 16th such batch writes every page
/// back and drops the kept changes. A node stopped without writing back
/// replays them at open and serves the same proofs, and so does one
/// reading only written-back pages.
#[test]
fn map_pages_are_written_back_later_and_kept_changes_replayed_at_open() {
    let store = Arc::new(MemStore::new());
    let mut l = registered(store.clone());
    let mut ends: Vec<u64> = Vec::new();
    let mut n = 0u32;
    for b in 0..20u64 {
        let mut events: Vec<Vec<u8>> = (0..3)
            .map(|_| {
                n += 1;
                issue(n)
            })
            .collect();
        if b == 17 {
            let lost = Action::Suspend {
                reason: Reason::Lost,
            };
            events.push(signed(lost, credential(2), holder(2), T0 + 2));
        }
        let r = l.append_events(&events, T0 + 10 + b).unwrap();
        assert!(r
            .outcomes
            .iter()
            .all(|o| matches!(o, Outcome::Accepted { .. })));
        ends.push(r.checkpoint.size());
        let pending = store.get(Space::Meta, MAP_PENDING).unwrap();
        if b == 15 {
            assert_eq!(pending, None, "batch {b}");
            for e in &ends {
                assert_eq!(store.get(Space::Meta, &map_changes_key(*e)).unwrap(), None);
            }
            ends.clear();
        } else {
            let want: Vec<u8> = ends.iter().flat_map(|e| e.to_be_bytes()).collect();
            assert_eq!(pending, Some(want), "batch {b}");
            for e in &ends {
                assert!(store
                    .get(Space::Meta, &map_changes_key(*e))
                    .unwrap()
                    .is_some());
            }
        }
    }
    assert_eq!(ends.len(), 4);
    let proofs: Vec<_> = (1..=n)
        .map(|i| l.status_proof(&credential(i)).unwrap())
        .collect();
    let ckpt = l.checkpoint();
    // Stopped without a clean stop: four batches' pages are not written.
    drop(l);
    let mut l = Ledger::open(store.clone(), log_signer(), T0 + 100).unwrap();
    assert_eq!(l.checkpoint().note_text(), ckpt.note_text());
    for i in 1..=n {
        assert_eq!(
            l.status_proof(&credential(i)).unwrap(),
            proofs[i as usize - 1]
        );
    }
    // A clean stop writes them back.
    l.save_checkpoint().unwrap();
    assert_eq!(store.get(Space::Meta, MAP_PENDING).unwrap(), None);
    for e in &ends {
        assert_eq!(store.get(Space::Meta, &map_changes_key(*e)).unwrap(), None);
    }
    drop(l);
    let l = Ledger::open(store.clone(), log_signer(), T0 + 101).unwrap();
    for i in 1..=n {
        assert_eq!(
            l.status_proof(&credential(i)).unwrap(),
            proofs[i as usize - 1]
        );
    }
}

/// Kept map changes that are altered, cut short or out of order are
/// refused at open, saying which.
#[test]
fn open_refuses_kept_map_changes_that_were_altered() {
    for (what, needle) in [
        ("value", "give root"),
        ("truncated", "truncated"),
        ("order", "out of order"),
    ] {
        let store = Arc::new(MemStore::new());
        let mut l = registered(store.clone());
        let first = l.append_events(&[issue(1), issue(2)], T0 + 1).unwrap();
        let second = l.append_events(&[issue(3)], T0 + 2).unwrap();
        drop(l);
        let (s1, s2) = (first.checkpoint.size(), second.checkpoint.size());
        let found = match what {
            "value" => store.tamper(Space::Meta, &map_changes_key(s2), |v| {
                if let Some(b) = v.last_mut() {
                    *b ^= 1;
                }
            }),
            "truncated" => store.tamper(Space::Meta, &map_changes_key(s1), |v| {
                v.pop();
            }),
            _ => store.tamper(Space::Meta, MAP_PENDING, |v| v.rotate_left(8)),
        };
        assert!(found, "{what}");
        assert_corrupt(
            Ledger::open(store.clone(), log_signer(), T0 + 3).map(|_| ()),
            needle,
        );
    }
}
