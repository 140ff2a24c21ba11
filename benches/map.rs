//! The status map (`src/smt.rs`, a compressed binary sparse Merkle tree)
//! against the `jmt` crate (Jellyfish Merkle Tree, 16-ary, `Sha256Jmt` over
//! its in-memory `MockTreeStore`), both in memory, on the SAME keys and
//! values: N keys (`smt::map_key` of random credential ids, seeded), each
//! with a random 64-byte value; jmt gets the same 32 key bytes as its
//! `KeyHash` and the same value bytes.
//!
//! N = 10^4, 10^5, 10^6 (`REVLEDGER_BENCH_MAP_MAX=5` caps N at 10^5, for
//! quick runs). Each tree is built once per N (untimed) and reused.
//!
//! Ours reads nodes through `NodeReader`: `ours-pages` is what the ledger
//! runs, the map's pages (`mappage`: four levels per stored value, the
//! top four strata decoded in memory as `HotPages`) over the in-memory
//! `MemStore` (encoded pages in a `BTreeMap` behind a `Mutex`);
//! `ours-pages-encoded` is the same update followed by what the ledger
//! does next, encoding the changed pages into the index's `Batch` (work
//! jmt's figure does not include: its nodes are serialized by the store);
//! `ours-btree` is the crate's own `BTreeMap<NodeId, Node>` reader (what
//! `MapUpdate::apply_to` fills), `ours-hashmap` a bench-local `HashMap`
//! reader, like jmt's `MockTreeStore` (a `HashMap` behind a `RwLock`).
//!
//! Groups (IDs are `<impl>/<N>`):
//! - `map/update-insert`: compute the update for a batch of 1000 NEW keys
//!   into a map holding N keys: `smt::update` (returns the new root and the
//!   node writes) vs `put_value_set` at the next version (returns the root
//!   and a `TreeUpdateBatch`). Neither applies its writes, so the fixture
//!   stays at N keys and both sides do the same work (read the touched
//!   paths, hash, collect the writes). Throughput = 1000 keys.
//! - `map/update-change`: the same with 1000 EXISTING keys given new
//!   values (the ledger's suspend/resume/revoke case).
//! - `map/build`: bulk build of all N keys into an empty map (a single
//!   `smt::update` / a single `put_value_set` at version 0), writes
//!   returned, not applied. Throughput = N keys.
//! - `map/prove-present`, `map/verify-present`: membership proof of a
//!   random held key: `smt::prove` / `smt::verify` vs `get_with_proof` /
//!   `SparseMerkleProof::verify_existence`.
//! - `map/prove-absent`, `map/verify-absent`: non-membership proof of a
//!   random absent key (`verify_nonexistence` for jmt).

use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use jmt::mock::MockTreeStore;
use jmt::proof::SparseMerkleProof;
use jmt::{KeyHash, RootHash, Sha256Jmt};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use revledger::hash::Hash;
use revledger::mappage::{HotPages, MapPages};
use revledger::smt::{self, Lookup, MapProof, Node, NodeId, NodeReader};
use revledger::store::{Batch, MemStore, Store};
use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::time::Duration;

const SEED: u64 = 0x5317_0001;
const VALUE_LEN: usize = 64;
const BATCH: usize = 1000;
const QUERIES: usize = 4096;

type Pairs = Vec<(Hash, Vec<u8>)>;

/// A `HashMap`-backed node reader (bench-local; the crate ships the
/// `BTreeMap` one).
struct HashNodes(HashMap<NodeId, Node>);

impl NodeReader for HashNodes {
    type Error = std::convert::Infallible;
    fn get_node(&self, id: &NodeId) -> Result<Option<Node>, Self::Error> {
        Ok(self.0.get(id).cloned())
    }
}

fn sizes() -> Vec<usize> {
    let max: u32 = std::env::var("REVLEDGER_BENCH_MAP_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    (4..=max.min(6)).map(|k| 10usize.pow(k)).collect()
}

/// `n` distinct (key, 64-byte value) pairs; keys are `smt::map_key` of
/// random credential ids.
fn pairs(rng: &mut ChaCha8Rng, n: usize) -> Pairs {
    (0..n)
        .map(|_| {
            let mut id = [0u8; 32];
            rng.fill_bytes(&mut id);
            let mut value = vec![0u8; VALUE_LEN];
            rng.fill_bytes(&mut value);
            (smt::map_key(&id), value)
        })
        .collect()
}

fn jmt_set(pairs: &[(Hash, Vec<u8>)]) -> Vec<(KeyHash, Option<Vec<u8>>)> {
    pairs
        .iter()
        .map(|(k, v)| (KeyHash(k.0), Some(v.clone())))
        .collect()
}

struct Fixture {
    n: usize,
    held: Pairs,
    /// 1000 keys not in the map, with values.
    new_batch: Pairs,
    /// 1000 held keys with new values.
    change_batch: Pairs,
    /// Random held keys (with their values) and random absent keys.
    present: Vec<(Hash, Vec<u8>)>,
    absent: Vec<Hash>,
    ours_root: Hash,
    btree: BTreeMap<NodeId, Node>,
    hash: HashNodes,
    pages: MemStore,
    hot: HotPages,
    jmt_root: RootHash,
    jmt: MockTreeStore,
}

fn fixture(n: usize) -> Fixture {
    let mut rng = ChaCha8Rng::seed_from_u64(SEED ^ n as u64);
    let held = pairs(&mut rng, n);
    let new_batch = pairs(&mut rng, BATCH);
    let absent: Vec<Hash> = pairs(&mut rng, QUERIES).into_iter().map(|p| p.0).collect();
    let change_batch: Pairs = held
        .iter()
        .step_by((n / BATCH).max(1))
        .take(BATCH)
        .map(|(k, _)| {
            let mut v = vec![0u8; VALUE_LEN];
            rng.fill_bytes(&mut v);
            (*k, v)
        })
        .collect();
    assert_eq!(change_batch.len(), BATCH);
    let present: Vec<(Hash, Vec<u8>)> = (0..QUERIES)
        .map(|_| held[(rng.next_u64() % n as u64) as usize].clone())
        .collect();

    // Ours: one bulk update from empty, applied to a BTreeMap.
    let mut btree = BTreeMap::new();
    let up = smt::update(&btree, &held).expect("build");
    up.apply_to(&mut btree);
    let ours_root = up.root;
    assert_eq!(smt::root(&btree).unwrap(), ours_root);
    let hash = HashNodes(btree.iter().map(|(k, v)| (*k, v.clone())).collect());
    let pages = MemStore::new();
    let empty = HotPages::load(&pages).expect("empty pages");
    let mut b = Batch::new();
    MapPages::with_hot(&pages, &empty)
        .write(&up.writes, &mut b)
        .expect("page writes");
    pages.commit(b).expect("page commit");
    let hot = HotPages::load(&pages).expect("hot pages");
    assert_eq!(
        smt::root(&MapPages::with_hot(&pages, &hot)).unwrap(),
        ours_root
    );

    // jmt: one value set at version 0, written to the mock store.
    let jmt = MockTreeStore::default();
    let (jmt_root, batch) = Sha256Jmt::new(&jmt)
        .put_value_set(jmt_set(&held), 0)
        .expect("jmt build");
    jmt.write_tree_update_batch(batch).expect("jmt write");

    // Equal work: both hold exactly the N keys with the same values.
    let tree = Sha256Jmt::new(&jmt);
    assert_eq!(tree.get_leaf_count(0).unwrap(), n);
    assert_eq!(tree.get_root_hash(0).unwrap(), jmt_root);
    for (k, v) in present.iter().take(16) {
        assert_eq!(smt::get(&btree, k).unwrap().as_ref(), Some(v));
        assert_eq!(tree.get(KeyHash(k.0), 0).unwrap().as_ref(), Some(v));
    }
    for k in absent.iter().take(16) {
        assert_eq!(smt::get(&btree, k).unwrap(), None);
        assert_eq!(tree.get(KeyHash(k.0), 0).unwrap(), None);
    }
    Fixture {
        n,
        held,
        new_batch,
        change_batch,
        present,
        absent,
        ours_root,
        btree,
        hash,
        pages,
        hot,
        jmt_root,
        jmt,
    }
}

fn tune(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>, n: usize) {
    group.sample_size(if n >= 1_000_000 { 10 } else { 20 });
    group.warm_up_time(Duration::from_millis(300));
    group.measurement_time(Duration::from_millis(if n >= 1_000_000 {
        1500
    } else {
        1000
    }));
}

fn bench_update(c: &mut Criterion, fx: &[Fixture], name: &str, pick: fn(&Fixture) -> &Pairs) {
    let mut group = c.benchmark_group(name);
    for f in fx {
        let n = f.n;
        let ups = pick(f);
        tune(&mut group, n);
        group.throughput(Throughput::Elements(ups.len() as u64));
        group.bench_with_input(BenchmarkId::new("ours-pages", n), &n, |b, _| {
            b.iter(|| smt::update(&MapPages::with_hot(&f.pages, &f.hot), black_box(ups)).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("ours-pages-encoded", n), &n, |b, _| {
            b.iter(|| {
                let pages = MapPages::with_hot(&f.pages, &f.hot);
                let up = smt::update(&pages, black_box(ups)).unwrap();
                let mut batch = Batch::new();
                pages.write(&up.writes, &mut batch).unwrap();
                (up.root, batch)
            })
        });
        group.bench_with_input(BenchmarkId::new("ours-btree", n), &n, |b, _| {
            b.iter(|| smt::update(&f.btree, black_box(ups)).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("ours-hashmap", n), &n, |b, _| {
            b.iter(|| smt::update(&f.hash, black_box(ups)).unwrap())
        });
        // The value set is moved into put_value_set: cloned untimed.
        let set = jmt_set(ups);
        group.bench_with_input(BenchmarkId::new("jmt", n), &n, |b, _| {
            b.iter_batched(
                || set.clone(),
                |set| Sha256Jmt::new(&f.jmt).put_value_set(set, 1).unwrap(),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn bench_build(c: &mut Criterion, fx: &[Fixture]) {
    let mut group = c.benchmark_group("map/build");
    group.sampling_mode(SamplingMode::Flat);
    for f in fx {
        let n = f.n;
        group.sample_size(10);
        group.warm_up_time(Duration::from_millis(100));
        group.measurement_time(Duration::from_millis(if n >= 1_000_000 {
            3000
        } else {
            1000
        }));
        group.throughput(Throughput::Elements(n as u64));
        let empty = BTreeMap::<NodeId, Node>::new();
        group.bench_with_input(BenchmarkId::new("ours", n), &n, |b, _| {
            b.iter_batched(
                || (),
                |()| {
                    let up = smt::update(&empty, &f.held).unwrap();
                    assert_eq!(up.root, f.ours_root);
                    up
                },
                BatchSize::PerIteration,
            )
        });
        let set = jmt_set(&f.held);
        group.bench_with_input(BenchmarkId::new("jmt", n), &n, |b, _| {
            b.iter_batched(
                || (MockTreeStore::default(), set.clone()),
                |(store, set)| {
                    let (root, batch) = Sha256Jmt::new(&store).put_value_set(set, 0).unwrap();
                    assert_eq!(root, f.jmt_root);
                    (store, batch)
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

/// Cycles through a query list.
fn cycle<'a, T>(items: &'a [T]) -> impl FnMut() -> &'a T + 'a {
    let mut at = 0;
    move || {
        let v = &items[at];
        at = (at + 1) % items.len();
        v
    }
}

fn bench_proofs(c: &mut Criterion, fx: &[Fixture]) {
    for (prove_name, verify_name, want_present) in [
        ("map/prove-present", "map/verify-present", true),
        ("map/prove-absent", "map/verify-absent", false),
    ] {
        let keys = |f: &Fixture| -> Vec<Hash> {
            if want_present {
                f.present.iter().map(|(k, _)| *k).collect()
            } else {
                f.absent.clone()
            }
        };
        let mut group = c.benchmark_group(prove_name);
        for f in fx {
            let n = f.n;
            let ks = keys(f);
            tune(&mut group, n);
            group.throughput(Throughput::Elements(1));
            group.bench_with_input(BenchmarkId::new("ours-pages", n), &n, |b, _| {
                let mut next = cycle(&ks);
                b.iter(|| smt::prove(&MapPages::with_hot(&f.pages, &f.hot), next()).unwrap())
            });
            group.bench_with_input(BenchmarkId::new("ours-btree", n), &n, |b, _| {
                let mut next = cycle(&ks);
                b.iter(|| smt::prove(&f.btree, next()).unwrap())
            });
            group.bench_with_input(BenchmarkId::new("ours-hashmap", n), &n, |b, _| {
                let mut next = cycle(&ks);
                b.iter(|| smt::prove(&f.hash, next()).unwrap())
            });
            group.bench_with_input(BenchmarkId::new("jmt", n), &n, |b, _| {
                let tree = Sha256Jmt::new(&f.jmt);
                let mut next = cycle(&ks);
                b.iter(|| tree.get_with_proof(KeyHash(next().0), 0).unwrap())
            });
        }
        group.finish();

        let mut group = c.benchmark_group(verify_name);
        for f in fx {
            let n = f.n;
            tune(&mut group, n);
            group.throughput(Throughput::Elements(1));
            let ours: Vec<(Hash, MapProof, Lookup)> = f
                .present
                .iter()
                .zip(&f.absent)
                .map(|((k, v), a)| {
                    if want_present {
                        (
                            *k,
                            smt::prove(&f.btree, k).unwrap(),
                            Lookup::Present(v.clone()),
                        )
                    } else {
                        (*a, smt::prove(&f.btree, a).unwrap(), Lookup::Absent)
                    }
                })
                .collect();
            let tree = Sha256Jmt::new(&f.jmt);
            type JmtCase = (KeyHash, Option<Vec<u8>>, SparseMerkleProof<sha2::Sha256>);
            let theirs: Vec<JmtCase> = ours
                .iter()
                .map(|(k, _, _)| {
                    let (v, p) = tree.get_with_proof(KeyHash(k.0), 0).unwrap();
                    (KeyHash(k.0), v, p)
                })
                .collect();
            group.bench_with_input(BenchmarkId::new("ours", n), &n, |b, _| {
                let mut next = cycle(&ours);
                b.iter(|| {
                    let (k, p, want) = next();
                    let got = smt::verify(&f.ours_root, k, p).unwrap();
                    assert!(got == *want);
                })
            });
            group.bench_with_input(BenchmarkId::new("jmt", n), &n, |b, _| {
                let mut next = cycle(&theirs);
                b.iter(|| {
                    let (k, v, p) = next();
                    match v {
                        Some(v) => p.verify_existence(f.jmt_root, *k, v).unwrap(),
                        None => p.verify_nonexistence(f.jmt_root, *k).unwrap(),
                    }
                })
            });
        }
        group.finish();
    }
}

fn benches(c: &mut Criterion) {
    let fx: Vec<Fixture> = sizes().into_iter().map(fixture).collect();
    bench_update(c, &fx, "map/update-insert", |f| &f.new_batch);
    bench_update(c, &fx, "map/update-change", |f| &f.change_batch);
    bench_proofs(c, &fx);
    bench_build(c, &fx);
}

criterion_group!(map, benches);
criterion_main!(map);
