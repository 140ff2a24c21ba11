//! The Merkle log (`src/merkle.rs` over `src/store.rs`) against `rs_merkle`
//! 1.5 in memory, with the same RFC 6962/9162 hashing on both sides:
//! leaves `SHA-256(0x00 ‖ entry)` (computed once, outside every timing),
//! nodes `SHA-256(0x01 ‖ l ‖ r)`, a lone right-edge node promoted unchanged.
//! At every size the roots are checked equal (`assert_eq!`, untimed) and so
//! are a few inclusion proofs, so both sides do the same work.
//!
//! Sizes 2^10 … 2^20 (`REVLEDGER_BENCH_LOG_MAX=16` caps the largest size
//! as a power of two, for quick runs while developing).
//!
//! Only single-leaf proofs of `rs_merkle` are used: its multi-leaf proofs
//! accept forgeries (1.5.0). `rs_merkle` has no consistency proofs, so the
//! consistency groups have no peer; they compare our storage back ends.
//!
//! Groups (IDs are `<impl>/<size>`):
//! - `log/append`: append one batch of 1024 leaves to a log that holds
//!   `size` leaves, with one store batch (one `Store::commit`) for the
//!   batch. Throughput = 1024 leaves. Untimed around each iteration: the
//!   frontier is cloned from the fixture before, and the written keys are
//!   deleted (rs_merkle: `rollback`) after, so every iteration starts from
//!   exactly `size` leaves.
//!   - `ours-mem`: `Frontier::append` + `MemStore::commit` (no I/O).
//!   - `ours-disk-durable`: `Frontier::append` + `DiskStore::commit`: the
//!     hashes appended to the log's hash file, the committed ends in the
//!     index, **two fsyncs** (file, then the index's journal) per commit —
//!     the crate's Store contract. The log's spaces are append-only, so
//!     nothing is undone: here the log grows by 1024 leaves per iteration
//!     from `size` (the cost of an append does not depend on the size of
//!     the file).
//!   - `rs_merkle`: `append` + `commit`, in memory.
//! - `log/build-mem`: every stored hash of a tree of `size` leaves built
//!   from empty in memory: `Frontier::append` into a `Vec<Hash>` vs
//!   `MerkleTree::from_leaves`. Throughput = `size` leaves.
//! - `log/root`: the root of the tree of `size` leaves: ours from storage
//!   (`merkle::tree_hash`: popcount(size) stored reads, here 1 since the
//!   sizes are powers of two) and from the in-memory `Frontier`;
//!   `rs_merkle::MerkleTree::root`.
//! - `log/inclusion-prove`: proof for a random leaf (seeded) from storage
//!   (`ours-mem`, `ours-disk`: `merkle::inclusion_proof` through a
//!   `HashReader` over the store; `ours-vec`: over a `Vec<Hash>` of stored
//!   hashes, the algorithm without storage) vs `MerkleTree::proof(&[i])`.
//! - `log/inclusion-verify`: `merkle::verify_inclusion` vs
//!   `MerkleProof::verify` (single leaf).
//! - `log/consistency-prove`, `log/consistency-verify`: ours only (old size
//!   random in `[1, size)`, new = size).

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use revledger::hash::{self, Hash};
use revledger::merkle::{self, Frontier, HashReader};
use revledger::store::{Batch, DiskStore, MemStore, ReadStore, Space, Store, StoreError};
use std::hint::black_box;
use std::time::{Duration, Instant};

const SEED: u64 = 0x6962_9162;
/// Leaves per store batch (one commit) in `log/append`.
const APPEND_BATCH: usize = 1024;
/// Leaves per store batch when building the fixtures (untimed).
const FIXTURE_BATCH: usize = 1 << 16;
/// Random queries per size, cycled through by the proof benchmarks.
const QUERIES: usize = 4096;

/// RFC 6962 node hashing for rs_merkle (the same as the crate's unit-test
/// oracle in `src/merkle.rs`).
#[derive(Clone)]
struct Rfc6962;

impl rs_merkle::Hasher for Rfc6962 {
    type Hash = [u8; 32];

    fn hash(data: &[u8]) -> [u8; 32] {
        Hash::of(data).0
    }

    /// SHA-256(0x01 ‖ l ‖ r); a lone left node is promoted unchanged.
    fn concat_and_hash(left: &[u8; 32], right: Option<&[u8; 32]>) -> [u8; 32] {
        match right {
            Some(r) => hash::node_hash(&Hash(*left), &Hash(*r)).0,
            None => *left,
        }
    }
}

type RsTree = rs_merkle::MerkleTree<Rfc6962>;

/// Stored hashes read from a store, in the ledger's layout (`Space::Hash`,
/// key = stored index as u64 big-endian). A copy of the crate's
/// `ledger::Hashes`, which is `pub(crate)`.
struct StoreHashes<'a, S: ReadStore + ?Sized>(&'a S);

impl<S: ReadStore + ?Sized> HashReader for StoreHashes<'_, S> {
    type Error = StoreError;
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, StoreError> {
        indexes
            .iter()
            .map(|i| match self.0.get(Space::Hash, &i.to_be_bytes())? {
                Some(v) => Hash::from_slice(&v)
                    .ok_or_else(|| StoreError::Io(format!("stored hash {i} is malformed"))),
                None => Err(StoreError::Io(format!("stored hash {i} is missing"))),
            })
            .collect()
    }
}

fn sizes() -> Vec<u64> {
    let max: u32 = std::env::var("REVLEDGER_BENCH_LOG_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    [10, 12, 14, 16, 18, 20]
        .into_iter()
        .filter(|&k| k <= max)
        .map(|k| 1u64 << k)
        .collect()
}

/// Leaf hashes of `n` random 128-byte entries (seeded).
fn leaves(n: usize) -> Vec<Hash> {
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let mut entry = [0u8; 128];
    (0..n)
        .map(|_| {
            rng.fill_bytes(&mut entry);
            hash::leaf_hash(&entry)
        })
        .collect()
}

/// Appends `leaves` to a fresh frontier, committing one batch per `per`
/// leaves to `store`: exactly the ledger's write path for tree hashes
/// (`ledger::Work::push_entry`), without the entries themselves.
fn append_all<S: Store + ?Sized>(store: &S, leaves: &[Hash], per: usize) -> Frontier {
    let mut frontier = Frontier::new();
    for chunk in leaves.chunks(per) {
        let mut batch = Batch::new();
        for leaf in chunk {
            for (i, h) in frontier.append(*leaf).expect("append") {
                batch.put(Space::Hash, i.to_be_bytes(), h.0);
            }
        }
        store.commit(batch).expect("commit");
    }
    frontier
}

/// Everything built once per size and reused by every group but `append`.
struct Fixture {
    n: u64,
    leaves: Vec<Hash>,
    root: Hash,
    frontier: Frontier,
    vec: Vec<Hash>,
    mem: MemStore,
    disk: DiskStore,
    _disk_dir: tempfile::TempDir,
    rs: RsTree,
    /// Random leaf indexes (seeded).
    indexes: Vec<u64>,
    /// Random old sizes in [1, n) (seeded).
    olds: Vec<u64>,
}

/// rs_merkle's inclusion proof of leaf `i`, as our hashes.
fn rs_proof(rs: &RsTree, i: u64) -> Vec<Hash> {
    rs.proof(&[i as usize])
        .proof_hashes()
        .iter()
        .map(|h| Hash(*h))
        .collect()
}

fn fixture(n: u64, all: &[Hash]) -> Fixture {
    let leaves = all[..n as usize].to_vec();
    // In-memory stored hashes, in stored-index order.
    let mut vec = Vec::with_capacity(merkle::stored_hash_count(n) as usize);
    let mut frontier = Frontier::new();
    for leaf in &leaves {
        for (i, h) in frontier.append(*leaf).expect("append") {
            assert_eq!(i, vec.len() as u64);
            vec.push(h);
        }
    }
    let mem = MemStore::new();
    append_all(&mem, &leaves, FIXTURE_BATCH);
    let disk_dir = tempfile::tempdir().expect("tempdir");
    {
        let disk = DiskStore::open(disk_dir.path()).expect("open store");
        append_all(&disk, &leaves, FIXTURE_BATCH);
    } // closed, and opened again as a node would find it
    let disk = DiskStore::open(disk_dir.path()).expect("reopen store");
    let raw: Vec<[u8; 32]> = leaves.iter().map(|h| h.0).collect();
    let rs = RsTree::from_leaves(&raw);

    // Equal work: the same root everywhere.
    let root = frontier.root();
    assert_eq!(rs.root(), Some(root.0), "rs_merkle root at size {n}");
    assert_eq!(merkle::tree_hash(n, &vec).unwrap(), root);
    assert_eq!(merkle::tree_hash(n, &StoreHashes(&mem)).unwrap(), root);
    assert_eq!(merkle::tree_hash(n, &StoreHashes(&disk)).unwrap(), root);

    let mut rng = ChaCha8Rng::seed_from_u64(SEED ^ n);
    let indexes: Vec<u64> = (0..QUERIES).map(|_| rng.gen_range(0..n)).collect();
    let olds: Vec<u64> = (0..QUERIES).map(|_| rng.gen_range(1..n)).collect();
    // Equal work: the same single-leaf proofs (a sample, untimed).
    for &i in indexes.iter().take(16) {
        let ours = merkle::inclusion_proof(i, n, &vec).unwrap();
        assert_eq!(ours, rs_proof(&rs, i), "inclusion proof of {i} in {n}");
    }
    Fixture {
        n,
        leaves,
        root,
        frontier,
        vec,
        mem,
        disk,
        _disk_dir: disk_dir,
        rs,
        indexes,
        olds,
    }
}

/// Per-size criterion settings: short for big sizes.
fn tune(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>, n: u64) {
    group.sample_size(if n >= 1 << 18 { 10 } else { 20 });
    group.warm_up_time(Duration::from_millis(300));
    group.measurement_time(Duration::from_millis(if n >= 1 << 18 {
        1500
    } else {
        1000
    }));
}

/// Appends one batch (`extra`, 1024 leaves) to the fixture's log of `n`
/// leaves and commits it: the timed part. Before each iteration the
/// frontier is cloned from the fixture (untimed); after it, the written
/// keys are deleted again (untimed), so every iteration appends to a store
/// holding exactly `n` leaves.
fn time_batch_append<S: Store + ?Sized>(
    store: &S,
    base: &Frontier,
    extra: &[Hash],
    expected: Hash,
    iters: u64,
) -> Duration {
    let mut total = Duration::ZERO;
    let first = merkle::stored_hash_count(base.size());
    let last = merkle::stored_hash_count(base.size() + extra.len() as u64);
    for _ in 0..iters {
        let mut frontier = base.clone();
        let t = Instant::now();
        let mut batch = Batch::new();
        for leaf in extra {
            for (i, h) in frontier.append(*leaf).expect("append") {
                batch.put(Space::Hash, i.to_be_bytes(), h.0);
            }
        }
        store.commit(batch).expect("commit");
        total += t.elapsed();
        // Untimed: check, then restore the store to n leaves.
        assert_eq!(frontier.root(), expected);
        let mut undo = Batch::new();
        for i in first..last {
            undo.delete(Space::Hash, i.to_be_bytes());
        }
        store.commit(undo).expect("undo");
    }
    total
}

/// Appends batches of 1024 fresh leaves to `store`, whose log `frontier`
/// describes, and commits each: the timed part. The log's spaces are
/// append-only, so the log grows by one batch per iteration; after each
/// (untimed) the root read back from the store must be the frontier's.
fn time_growing_append<S: Store + ?Sized>(
    store: &S,
    frontier: &mut Frontier,
    seq: &mut u64,
    iters: u64,
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let leaves: Vec<Hash> = (0..APPEND_BATCH as u64)
            .map(|i| hash::leaf_hash(&(*seq + i).to_be_bytes()))
            .collect();
        *seq += APPEND_BATCH as u64;
        let t = Instant::now();
        let mut batch = Batch::new();
        for leaf in &leaves {
            for (i, h) in frontier.append(*leaf).expect("append") {
                batch.put(Space::Hash, i.to_be_bytes(), h.0);
            }
        }
        store.commit(batch).expect("commit");
        total += t.elapsed();
        assert_eq!(
            merkle::tree_hash(frontier.size(), &StoreHashes(store)).unwrap(),
            frontier.root()
        );
    }
    total
}

fn bench_append(c: &mut Criterion, fx: &[Fixture], all: &[Hash]) {
    let mut group = c.benchmark_group("log/append");
    group.sampling_mode(SamplingMode::Flat);
    for f in fx {
        let n = f.n;
        let extra = &all[n as usize..n as usize + APPEND_BATCH];
        let expected = {
            let mut fr = f.frontier.clone();
            for l in extra {
                fr.append(*l).unwrap();
            }
            fr.root()
        };
        let extra_raw: Vec<[u8; 32]> = extra.iter().map(|h| h.0).collect();
        // Equal work: rs_merkle after the same append has our root.
        {
            let mut rs = f.rs.clone();
            rs.append(&mut extra_raw.clone());
            rs.commit();
            assert_eq!(rs.root(), Some(expected.0), "rs_merkle append at {n}");
        }
        group.throughput(Throughput::Elements(APPEND_BATCH as u64));
        group.sample_size(10);
        group.warm_up_time(Duration::from_millis(200));
        group.measurement_time(Duration::from_millis(if n >= 1 << 18 {
            2000
        } else {
            1000
        }));

        group.bench_with_input(BenchmarkId::new("ours-mem", n), &n, |b, _| {
            b.iter_custom(|iters| time_batch_append(&f.mem, &f.frontier, extra, expected, iters))
        });
        // Durable: DiskStore::commit (file append, index batch, two fsyncs).
        // criterion calls the routine more than once (warm-up, samples):
        // the grown log's frontier lives outside it.
        let grown = std::cell::RefCell::new((f.frontier.clone(), u64::MAX / 2));
        group.bench_with_input(BenchmarkId::new("ours-disk-durable", n), &n, |b, _| {
            b.iter_custom(|iters| {
                let (frontier, seq) = &mut *grown.borrow_mut();
                time_growing_append(&f.disk, frontier, seq, iters)
            })
        });
        // rs_merkle: append + commit on a tree of n leaves, then (untimed)
        // rollback to n leaves. Its commit is O(n·batch) (PartialTree::
        // merge_unverified looks each node up linearly in the new layer).
        group.bench_with_input(BenchmarkId::new("rs_merkle", n), &n, |b, _| {
            let mut tree = f.rs.clone();
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let mut leaves = extra_raw.clone();
                    let t = Instant::now();
                    tree.append(&mut leaves);
                    tree.commit();
                    total += t.elapsed();
                    assert_eq!(tree.root(), Some(expected.0));
                    tree.rollback(); // untimed
                }
                total
            })
        });
    }
    group.finish();

    // Bulk build from empty, in memory only: every stored hash of a tree
    // of n leaves (ours: Frontier::append into a Vec<Hash>; rs_merkle:
    // MerkleTree::from_leaves, one commit).
    let mut group = c.benchmark_group("log/build-mem");
    group.sampling_mode(SamplingMode::Flat);
    for f in fx {
        let n = f.n;
        let raw: Vec<[u8; 32]> = f.leaves.iter().map(|h| h.0).collect();
        group.throughput(Throughput::Elements(n));
        group.sample_size(10);
        group.warm_up_time(Duration::from_millis(200));
        group.measurement_time(Duration::from_millis(if n >= 1 << 18 {
            2000
        } else {
            1000
        }));
        group.bench_with_input(BenchmarkId::new("ours-vec", n), &n, |b, &n| {
            b.iter(|| {
                let mut vec = Vec::with_capacity(merkle::stored_hash_count(n) as usize);
                let mut frontier = Frontier::new();
                for leaf in &f.leaves {
                    for (_, h) in frontier.append(*leaf).expect("append") {
                        vec.push(h);
                    }
                }
                assert_eq!(frontier.root(), f.root);
                vec
            })
        });
        group.bench_with_input(BenchmarkId::new("rs_merkle", n), &n, |b, _| {
            b.iter(|| {
                let tree = RsTree::from_leaves(&raw);
                assert_eq!(tree.root(), Some(f.root.0));
                tree
            })
        });
    }
    group.finish();
}

/// Cycles through a fixture's query list.
struct Cycle<'a, T> {
    items: &'a [T],
    at: usize,
}

impl<'a, T: Copy> Cycle<'a, T> {
    fn new(items: &'a [T]) -> Self {
        Cycle { items, at: 0 }
    }
    fn next(&mut self) -> T {
        let v = self.items[self.at];
        self.at = (self.at + 1) % self.items.len();
        v
    }
}

fn bench_root(c: &mut Criterion, fx: &[Fixture]) {
    let mut group = c.benchmark_group("log/root");
    for f in fx {
        let n = f.n;
        tune(&mut group, n);
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(BenchmarkId::new("ours-mem", n), &n, |b, &n| {
            b.iter(|| merkle::tree_hash(black_box(n), &StoreHashes(&f.mem)).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("ours-disk", n), &n, |b, &n| {
            b.iter(|| merkle::tree_hash(black_box(n), &StoreHashes(&f.disk)).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("ours-frontier", n), &n, |b, _| {
            b.iter(|| black_box(&f.frontier).root())
        });
        group.bench_with_input(BenchmarkId::new("rs_merkle", n), &n, |b, _| {
            b.iter(|| black_box(&f.rs).root().unwrap())
        });
    }
    group.finish();
}

fn bench_inclusion(c: &mut Criterion, fx: &[Fixture]) {
    let mut group = c.benchmark_group("log/inclusion-prove");
    for f in fx {
        let n = f.n;
        tune(&mut group, n);
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(BenchmarkId::new("ours-mem", n), &n, |b, &n| {
            let mut q = Cycle::new(&f.indexes);
            b.iter(|| merkle::inclusion_proof(q.next(), n, &StoreHashes(&f.mem)).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("ours-disk", n), &n, |b, &n| {
            let mut q = Cycle::new(&f.indexes);
            b.iter(|| merkle::inclusion_proof(q.next(), n, &StoreHashes(&f.disk)).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("ours-vec", n), &n, |b, &n| {
            let mut q = Cycle::new(&f.indexes);
            b.iter(|| merkle::inclusion_proof(q.next(), n, &f.vec).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("rs_merkle", n), &n, |b, _| {
            let mut q = Cycle::new(&f.indexes);
            b.iter(|| f.rs.proof(&[q.next() as usize]))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("log/inclusion-verify");
    for f in fx {
        let n = f.n;
        tune(&mut group, n);
        group.throughput(Throughput::Elements(1));
        // Proofs made untimed; both sides verify the same leaf and path.
        let ours: Vec<(u64, Vec<Hash>)> = f
            .indexes
            .iter()
            .map(|&i| (i, merkle::inclusion_proof(i, n, &f.vec).unwrap()))
            .collect();
        let theirs: Vec<(usize, rs_merkle::MerkleProof<Rfc6962>)> = f
            .indexes
            .iter()
            .map(|&i| (i as usize, f.rs.proof(&[i as usize])))
            .collect();
        group.bench_with_input(BenchmarkId::new("ours", n), &n, |b, &n| {
            let mut at = 0;
            b.iter(|| {
                let (i, p) = &ours[at];
                at = (at + 1) % ours.len();
                merkle::verify_inclusion(&f.leaves[*i as usize], *i, n, p, &f.root).unwrap()
            })
        });
        group.bench_with_input(BenchmarkId::new("rs_merkle", n), &n, |b, &n| {
            let mut at = 0;
            b.iter(|| {
                let (i, p) = &theirs[at];
                at = (at + 1) % theirs.len();
                let ok = p.verify(f.root.0, &[*i], &[f.leaves[*i].0], n as usize);
                assert!(ok);
            })
        });
    }
    group.finish();
}

/// Leaves of one `POST /events` answer at 50 events per request.
const ANSWER: u64 = 50;

/// What a node does to answer a request: the inclusion proofs of the
/// last [`ANSWER`] leaves of the tree (just appended, on its ragged right
/// edge), each checked against the root. Ours at once
/// (`merkle::inclusion_proofs` and `verify_inclusions`, as the node does)
/// and one by one, and rs_merkle one by one. The tree is the fixture's
/// less 77 leaves: a size with many set bits, as a node's sizes are (the
/// fixture's are powers of two, whose right edge is not ragged).
fn bench_answer(c: &mut Criterion, fx: &[Fixture]) {
    let mut group = c.benchmark_group("log/inclusion-answer");
    for f in fx.iter().filter(|f| f.n > ANSWER + 77) {
        let n = f.n - 77;
        tune(&mut group, f.n);
        group.throughput(Throughput::Elements(ANSWER));
        let indexes: Vec<u64> = (n - ANSWER..n).collect();
        let root = merkle::tree_hash(n, &f.vec).unwrap();
        let raw: Vec<[u8; 32]> = f.leaves[..n as usize].iter().map(|h| h.0).collect();
        let rs = RsTree::from_leaves(&raw);
        assert_eq!(rs.root(), Some(root.0));
        // Equal work: the same proofs, all checked.
        let at_once = merkle::inclusion_proofs(&indexes, n, &f.vec).unwrap();
        for (&i, p) in indexes.iter().zip(&at_once) {
            assert_eq!(*p, merkle::inclusion_proof(i, n, &f.vec).unwrap());
            assert_eq!(*p, rs_proof(&rs, i), "proof of {i} in {n}");
        }
        group.bench_with_input(BenchmarkId::new("ours-at-once", n), &n, |b, &n| {
            b.iter(|| {
                let proofs = merkle::inclusion_proofs(&indexes, n, &f.vec).unwrap();
                let checks = indexes
                    .iter()
                    .zip(&proofs)
                    .map(|(&i, p)| (f.leaves[i as usize], i, p.as_slice()));
                merkle::verify_inclusions(checks, n, &root).unwrap();
                proofs
            })
        });
        group.bench_with_input(BenchmarkId::new("ours-one-by-one", n), &n, |b, &n| {
            b.iter(|| {
                let proofs: Vec<Vec<Hash>> = indexes
                    .iter()
                    .map(|&i| merkle::inclusion_proof(i, n, &f.vec).unwrap())
                    .collect();
                for (&i, p) in indexes.iter().zip(&proofs) {
                    merkle::verify_inclusion(&f.leaves[i as usize], i, n, p, &root).unwrap();
                }
                proofs
            })
        });
        group.bench_with_input(BenchmarkId::new("rs_merkle", n), &n, |b, &n| {
            b.iter(|| {
                let proofs: Vec<_> = indexes.iter().map(|&i| rs.proof(&[i as usize])).collect();
                for (&i, p) in indexes.iter().zip(&proofs) {
                    let ok = p.verify(root.0, &[i as usize], &[f.leaves[i as usize].0], n as usize);
                    assert!(ok);
                }
                proofs
            })
        });
    }
    group.finish();
}

fn bench_consistency(c: &mut Criterion, fx: &[Fixture]) {
    // rs_merkle has no consistency proofs: no peer in these two groups.
    let mut group = c.benchmark_group("log/consistency-prove");
    for f in fx {
        let n = f.n;
        tune(&mut group, n);
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(BenchmarkId::new("ours-mem", n), &n, |b, &n| {
            let mut q = Cycle::new(&f.olds);
            b.iter(|| merkle::consistency_proof(q.next(), n, &StoreHashes(&f.mem)).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("ours-disk", n), &n, |b, &n| {
            let mut q = Cycle::new(&f.olds);
            b.iter(|| merkle::consistency_proof(q.next(), n, &StoreHashes(&f.disk)).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("ours-vec", n), &n, |b, &n| {
            let mut q = Cycle::new(&f.olds);
            b.iter(|| merkle::consistency_proof(q.next(), n, &f.vec).unwrap())
        });
    }
    group.finish();

    let mut group = c.benchmark_group("log/consistency-verify");
    for f in fx {
        let n = f.n;
        tune(&mut group, n);
        group.throughput(Throughput::Elements(1));
        let cases: Vec<(u64, Hash, Vec<Hash>)> = f
            .olds
            .iter()
            .map(|&old| {
                (
                    old,
                    merkle::tree_hash(old, &f.vec).unwrap(),
                    merkle::consistency_proof(old, n, &f.vec).unwrap(),
                )
            })
            .collect();
        group.bench_with_input(BenchmarkId::new("ours", n), &n, |b, &n| {
            let mut at = 0;
            b.iter(|| {
                let (old, old_root, p) = &cases[at];
                at = (at + 1) % cases.len();
                merkle::verify_consistency(*old, n, old_root, &f.root, p).unwrap()
            })
        });
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    let sizes = sizes();
    let max = *sizes.last().expect("at least one size");
    let all = leaves(max as usize + APPEND_BATCH);
    let fx: Vec<Fixture> = sizes.iter().map(|&n| fixture(n, &all)).collect();
    bench_append(c, &fx, &all);
    bench_root(c, &fx);
    bench_inclusion(c, &fx);
    bench_answer(c, &fx);
    bench_consistency(c, &fx);
}

criterion_group!(log, benches);
criterion_main!(log);
