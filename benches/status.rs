//! End to end: one status proof built from a ledger and verified offline.
//!
//! A `ledger::Ledger` over `MemStore` and over `DiskStore` (tempdir) holding
//! N = 10^4 and 10^5 issued credentials (`REVLEDGER_BENCH_STATUS_MAX=4`
//! caps N at 10^4), built once per store and N with `append_events` in
//! batches of 4096 signed issue events (seeded), untimed.
//!
//! Groups (IDs are `<impl>/<N>`), one random held credential per iteration:
//! - `status/prove`: `LedgerReader::status_proof` (reads the head and event
//!   entries, two inclusion proofs from stored hashes — each re-verified
//!   before it is served — and the map proof from stored map nodes).
//!   Peer `peer-composite`: the same bundle's proofs from peer libraries in
//!   memory, over the same data: two single-leaf `rs_merkle` proofs (head
//!   and event, in a tree of the ledger's leaf hashes) and one `jmt`
//!   `get_with_proof` (a JMT over the same map keys and status records).
//! - `status/verify`: `status::verify_status` (note parsing and
//!   `verify_strict` of the checkpoint, entry decoding, two RFC 9162
//!   inclusion checks, the map proof, the status rules). Peer
//!   `peer-composite`: raw ed25519 `verify_strict` of the checkpoint body +
//!   two `rs_merkle` single-leaf verifications + one jmt `verify_existence`.
//!   `ours-json` also parses the proof from its JSON (as a verifier
//!   receives it) before verifying.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ed25519_dalek::{Signer, VerifyingKey};
use jmt::mock::MockTreeStore;
use jmt::{KeyHash, Sha256Jmt};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use revledger::entry::{CredentialId, Event, HolderTag, KindSet};
use revledger::hash::{self, Hash};
use revledger::ledger::{Ledger, Outcome, Submitter};
use revledger::note::{KeyName, NoteSigner, NoteVerifier};
use revledger::smt;
use revledger::status::{self, Policy, StatusProof, Verdict};
use revledger::store::{DiskStore, MemStore, Store};
use std::time::Duration;

const SEED: u64 = 0x57a7_0500;
const T0: u64 = 1_767_225_600_000;
const BATCH: usize = 4096;
const QUERIES: usize = 1024;

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

fn log_signer() -> NoteSigner {
    NoteSigner::from_seed(
        KeyName::new("example.com/revledger-bench").unwrap(),
        [1; 32],
    )
}

fn issuer() -> NoteSigner {
    NoteSigner::from_seed(KeyName::new("issuer.example").unwrap(), [2; 32])
}

fn sizes() -> Vec<usize> {
    let max: u32 = std::env::var("REVLEDGER_BENCH_STATUS_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    (4..=max.min(5)).map(|k| 10usize.pow(k)).collect()
}

/// `n` signed issue events for random credentials and holders (seeded).
fn issue_events(n: usize) -> (Vec<CredentialId>, Vec<Vec<u8>>) {
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let issuer = issuer();
    (0..n)
        .map(|_| {
            let (mut id, mut holder) = ([0u8; 32], [0u8; 32]);
            rng.fill_bytes(&mut id);
            rng.fill_bytes(&mut holder);
            let entry = Event::issue(
                CredentialId(id),
                HolderTag(holder),
                issuer.id(),
                T0,
                5 * 365 * 86_400_000,
            )
            .sign(issuer.signing_key())
            .encode();
            (CredentialId(id), entry)
        })
        .unzip()
}

fn build<S: Store>(store: S, entries: &[Vec<u8>]) -> Ledger<S> {
    let mut l = Ledger::open(store, log_signer(), T0).expect("open");
    l.reconcile_submitters(
        &[Submitter {
            key: issuer().verifier(),
            kinds: KindSet::ALL,
        }],
        T0,
    )
    .expect("registry");
    for (i, chunk) in entries.chunks(BATCH).enumerate() {
        let r = l.append_events(chunk, T0 + 1 + i as u64).expect("append");
        assert!(r
            .outcomes
            .iter()
            .all(|o| matches!(o, Outcome::Accepted { .. })));
    }
    l
}

/// One peer query: head index, event index, map key, value, and the leaf
/// hashes of head and event.
type PeerCase = (usize, usize, KeyHash, Vec<u8>, [u8; 32], [u8; 32]);

/// The same proofs from peer libraries, over the same data.
struct Peer {
    rs: rs_merkle::MerkleTree<Rfc6962>,
    size: usize,
    jmt: MockTreeStore,
    jmt_root: jmt::RootHash,
    cases: Vec<PeerCase>,
    body: String,
    body_sig: ed25519_dalek::Signature,
    log_vkey: VerifyingKey,
}

fn peer<S: Store>(l: &Ledger<S>, ids: &[CredentialId], queries: &[CredentialId]) -> Peer {
    let ckpt = l.checkpoint();
    let size = ckpt.size();
    let leaves: Vec<[u8; 32]> = (0..size).map(|i| l.leaf_hash(i).unwrap().0).collect();
    let rs = rs_merkle::MerkleTree::<Rfc6962>::from_leaves(&leaves);
    assert_eq!(
        rs.root(),
        Some(ckpt.root().0),
        "rs_merkle root = checkpoint root"
    );
    let record = |id: &CredentialId| l.credential(id).unwrap().unwrap().status;
    let set: Vec<(KeyHash, Option<Vec<u8>>)> = ids
        .iter()
        .map(|id| {
            (
                KeyHash(smt::map_key(&id.0).0),
                Some(record(id).encode().to_vec()),
            )
        })
        .collect();
    let jmt = MockTreeStore::default();
    let (jmt_root, batch) = Sha256Jmt::new(&jmt).put_value_set(set, 0).unwrap();
    jmt.write_tree_update_batch(batch).unwrap();
    let head = size as usize - 1;
    let cases = queries
        .iter()
        .map(|id| {
            let r = record(id);
            let ev = r.last_index as usize;
            (
                head,
                ev,
                KeyHash(smt::map_key(&id.0).0),
                r.encode().to_vec(),
                leaves[head],
                leaves[ev],
            )
        })
        .collect();
    let body = ckpt.checkpoint().to_body();
    let signer = log_signer();
    let body_sig = signer.signing_key().sign(body.as_bytes());
    Peer {
        rs,
        size: size as usize,
        jmt,
        jmt_root,
        cases,
        body,
        body_sig,
        log_vkey: *signer.verifier().key(),
    }
}

fn benches(c: &mut Criterion) {
    let sizes = sizes();
    let max = *sizes.last().expect("a size");
    let (ids, entries) = issue_events(max);
    let vkey: NoteVerifier = log_signer().verifier();
    let now = T0 + 60_000;
    let policy = Policy::with_max_age_ms(3_600_000);

    for n in sizes {
        let mut rng = ChaCha8Rng::seed_from_u64(SEED ^ n as u64);
        let queries: Vec<CredentialId> = (0..QUERIES)
            .map(|_| ids[(rng.next_u64() % n as u64) as usize])
            .collect();
        let mem = build(MemStore::new(), &entries[..n]);
        let dir = tempfile::tempdir().expect("tempdir");
        let disk = build(
            DiskStore::open(dir.path()).expect("open store"),
            &entries[..n],
        );
        assert_eq!(mem.checkpoint().root(), disk.checkpoint().root());
        let peer = peer(&mem, &ids[..n], &queries);
        let proofs: Vec<StatusProof> = queries
            .iter()
            .map(|id| mem.status_proof(id).unwrap())
            .collect();
        let jsons: Vec<String> = proofs.iter().map(StatusProof::to_json).collect();
        for (id, p) in queries.iter().zip(&proofs) {
            let v = status::verify_status(p, id, &vkey, now, policy);
            assert!(matches!(v, Verdict::Valid { .. }), "{v:?}");
            assert_eq!(*p, disk.status_proof(id).unwrap());
        }

        let mut group = c.benchmark_group("status/prove");
        group.sample_size(20);
        group.warm_up_time(Duration::from_millis(300));
        group.measurement_time(Duration::from_millis(1500));
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::new("ours-mem", n), |b| {
            let mut at = 0;
            b.iter(|| {
                at = (at + 1) % queries.len();
                mem.status_proof(&queries[at]).unwrap()
            })
        });
        group.bench_function(BenchmarkId::new("ours-disk", n), |b| {
            let mut at = 0;
            b.iter(|| {
                at = (at + 1) % queries.len();
                disk.status_proof(&queries[at]).unwrap()
            })
        });
        group.bench_function(BenchmarkId::new("peer-composite", n), |b| {
            let tree = Sha256Jmt::new(&peer.jmt);
            let mut at = 0;
            b.iter(|| {
                at = (at + 1) % peer.cases.len();
                let (head, ev, key, _, _, _) = &peer.cases[at];
                (
                    peer.rs.proof(&[*head]),
                    peer.rs.proof(&[*ev]),
                    tree.get_with_proof(*key, 0).unwrap(),
                )
            })
        });
        group.finish();

        let mut group = c.benchmark_group("status/verify");
        group.sample_size(20);
        group.warm_up_time(Duration::from_millis(300));
        group.measurement_time(Duration::from_millis(1500));
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::new("ours", n), |b| {
            let mut at = 0;
            b.iter(|| {
                at = (at + 1) % proofs.len();
                let v = status::verify_status(&proofs[at], &queries[at], &vkey, now, policy);
                assert!(matches!(v, Verdict::Valid { .. }));
            })
        });
        group.bench_function(BenchmarkId::new("ours-json", n), |b| {
            let mut at = 0;
            b.iter(|| {
                at = (at + 1) % jsons.len();
                let p = StatusProof::from_json(&jsons[at]).unwrap();
                let v = status::verify_status(&p, &queries[at], &vkey, now, policy);
                assert!(matches!(v, Verdict::Valid { .. }));
            })
        });
        // Peer proofs made untimed.
        let tree = Sha256Jmt::new(&peer.jmt);
        let peer_proofs: Vec<_> = peer
            .cases
            .iter()
            .map(|(head, ev, key, _, _, _)| {
                (
                    peer.rs.proof(&[*head]),
                    peer.rs.proof(&[*ev]),
                    tree.get_with_proof(*key, 0).unwrap().1,
                )
            })
            .collect();
        let root = mem.checkpoint().root().0;
        group.bench_function(BenchmarkId::new("peer-composite", n), |b| {
            let mut at = 0;
            b.iter(|| {
                at = (at + 1) % peer.cases.len();
                let (head, ev, key, value, head_leaf, ev_leaf) = &peer.cases[at];
                let (ph, pe, pm) = &peer_proofs[at];
                peer.log_vkey
                    .verify_strict(peer.body.as_bytes(), &peer.body_sig)
                    .unwrap();
                assert!(ph.verify(root, &[*head], &[*head_leaf], peer.size));
                assert!(pe.verify(root, &[*ev], &[*ev_leaf], peer.size));
                pm.verify_existence(peer.jmt_root, *key, value).unwrap();
            })
        });
        group.finish();
    }
}

criterion_group!(status_benches, benches);
criterion_main!(status_benches);
