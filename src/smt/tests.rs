use super::*;
use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::cell::Cell;

type Nodes = BTreeMap<NodeId, Node>;
type Model = BTreeMap<Hash, Vec<u8>>;

fn h(hex: &str) -> Hash {
    Hash::from_hex(hex).unwrap()
}

/// A key: `first` then 31 copies of `fill`.
fn k(first: u8, fill: u8) -> Hash {
    let mut b = [fill; 32];
    b[0] = first;
    Hash(b)
}

fn apply(nodes: &mut Nodes, ups: &[(Hash, Vec<u8>)]) -> Hash {
    let u = update(nodes, ups).unwrap();
    u.apply_to(nodes);
    assert_eq!(root(nodes).unwrap(), u.root);
    u.root
}

// ---------------------------------------------------------------------------
// Reference implementation, written straight from the definition.
// ---------------------------------------------------------------------------

fn rbit(key: &Hash, i: usize) -> bool {
    (key.0[i / 8] >> (7 - i % 8)) & 1 == 1
}

fn split(keys: &Model, depth: usize) -> (Model, Model) {
    let (mut l, mut r) = (Model::new(), Model::new());
    for (k, v) in keys {
        if rbit(k, depth) { &mut r } else { &mut l }.insert(*k, v.clone());
    }
    (l, r)
}

/// hash(S, d): EMPTY | SHA-256(0x10‖k‖v) | SHA-256(0x11‖hash(S₀)‖hash(S₁)).
/// `keys` all share the first `depth` bits.
fn reference_root(keys: &Model, depth: usize) -> Hash {
    match keys.len() {
        0 => Hash([0; 32]),
        1 => {
            let (k, v) = keys.iter().next().unwrap();
            let mut pre = vec![0x10];
            pre.extend_from_slice(&k.0);
            pre.extend_from_slice(v);
            Hash::of(&pre)
        }
        _ => {
            let (l, r) = split(keys, depth);
            let mut pre = vec![0x11];
            pre.extend_from_slice(&reference_root(&l, depth + 1).0);
            pre.extend_from_slice(&reference_root(&r, depth + 1).0);
            Hash::of(&pre)
        }
    }
}

/// The canonical stored node set: an interior node for every prefix with ≥ 2
/// keys, a leaf at the shallowest prefix where a key is alone. Returns the
/// subtree hash (same definition as `reference_root`, computed bottom-up so
/// long chains are not re-hashed quadratically).
fn reference_nodes(keys: &Model, id: NodeId, out: &mut Nodes) -> Hash {
    match keys.len() {
        0 => Hash([0; 32]),
        1 => {
            let (k, v) = keys.iter().next().unwrap();
            let leaf = Node::Leaf {
                key: *k,
                value: v.clone(),
            };
            let h = leaf.hash();
            out.insert(id, leaf);
            h
        }
        _ => {
            let (l, r) = split(keys, usize::from(id.depth()));
            let hl = reference_nodes(&l, id.child(false).unwrap(), out);
            let hr = reference_nodes(&r, id.child(true).unwrap(), out);
            let mut pre = vec![0x11];
            pre.extend_from_slice(&hl.0);
            pre.extend_from_slice(&hr.0);
            let h = Hash::of(&pre);
            out.insert(id, Node::Interior(h));
            h
        }
    }
}

fn canonical(model: &Model) -> Nodes {
    let mut out = Nodes::new();
    reference_nodes(model, NodeId::root(), &mut out);
    out
}

// ---------------------------------------------------------------------------
// 1. Model test
// ---------------------------------------------------------------------------

fn random_hash(rng: &mut ChaCha20Rng) -> Hash {
    Hash(rng.gen())
}

fn random_value(rng: &mut ChaCha20Rng) -> Vec<u8> {
    let len = if rng.gen_bool(0.02) {
        MAX_VALUE_LEN
    } else {
        rng.gen_range(0..40)
    };
    (0..len).map(|_| rng.gen()).collect()
}

fn check_model(nodes: &Nodes, model: &Model, rng: &mut ChaCha20Rng) {
    let r = root(nodes).unwrap();
    // (a) root = reference root.
    assert_eq!(r, reference_root(model, 0));
    // (d) stored nodes = canonical nodes, nothing stale.
    assert_eq!(*nodes, canonical(model));
    // (b) history independence: shuffled, re-batched replay from scratch.
    let mut entries: Vec<(Hash, Vec<u8>)> = model.iter().map(|(k, v)| (*k, v.clone())).collect();
    entries.shuffle(rng);
    let mut replay = Nodes::new();
    let mut rest = entries.as_slice();
    while !rest.is_empty() {
        let n = rng.gen_range(1..=rest.len().min(700));
        let (chunk, tail) = rest.split_at(n);
        apply(&mut replay, chunk);
        rest = tail;
    }
    assert_eq!(root(&replay).unwrap(), r);
    assert_eq!(replay, *nodes);
    // (c) proofs.
    for (key, value) in model {
        let p = prove(nodes, key).unwrap();
        assert_eq!(verify(&r, key, &p).unwrap(), Lookup::Present(value.clone()));
        let bytes = p.encode();
        assert_eq!(MapProof::decode(&bytes).unwrap(), p);
        assert_eq!(get(nodes, key).unwrap(), Some(value.clone()));
    }
    let mut absent = 0;
    while absent < 200 {
        let key = random_hash(rng);
        if model.contains_key(&key) {
            continue;
        }
        absent += 1;
        let p = prove(nodes, &key).unwrap();
        assert_eq!(verify_bytes(&r, &key, &p.encode()).unwrap(), Lookup::Absent);
        assert_eq!(get(nodes, &key).unwrap(), None);
    }
}

#[test]
fn model_batches_match_reference() {
    for seed in 0..3u64 {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut model = Model::new();
        let mut nodes = Nodes::new();
        check_model(&nodes, &model, &mut rng);
        // Eight batches of 1..=450 updates, at most 2000 keys in all.
        for _ in 0..8 {
            let n = rng.gen_range(1..=(2000 - model.len()).min(450));
            let existing: Vec<Hash> = model.keys().copied().collect();
            let mut batch = Vec::with_capacity(n);
            for _ in 0..n {
                let key = match rng.gen_range(0..10) {
                    // change an existing key
                    0 | 1 if !existing.is_empty() => *existing.choose(&mut rng).unwrap(),
                    // a key close to an existing one (long shared prefix)
                    2 if !existing.is_empty() => {
                        let mut b = existing.choose(&mut rng).unwrap().0;
                        // mostly moderate depths; sometimes very deep
                        // (debug-mode SHA-256 makes 256-level chains slow)
                        let i = if rng.gen_bool(0.05) {
                            rng.gen_range(8..256)
                        } else {
                            rng.gen_range(8..40)
                        };
                        b[i / 8] ^= 0x80 >> (i % 8);
                        Hash(b)
                    }
                    // a duplicate within the batch
                    3 if !batch.is_empty() => {
                        let (k, _): &(Hash, Vec<u8>) = batch.choose(&mut rng).unwrap();
                        *k
                    }
                    _ => random_hash(&mut rng),
                };
                batch.push((key, random_value(&mut rng)));
            }
            for (k, v) in &batch {
                model.insert(*k, v.clone()); // last wins
            }
            let u = update(&nodes, &batch).unwrap();
            assert!(u.writes.iter().all(|(_, n)| n.is_some()));
            let ids: std::collections::BTreeSet<NodeId> =
                u.writes.iter().map(|(i, _)| *i).collect();
            assert_eq!(ids.len(), u.writes.len(), "each node written once");
            u.apply_to(&mut nodes);
            assert_eq!(u.root, root(&nodes).unwrap());
            check_model(&nodes, &model, &mut rng);
            if model.len() == 2000 {
                break;
            }
        }
        assert!(model.len() > 500);
    }
}

#[test]
fn noop_update_writes_nothing() {
    let mut nodes = Nodes::new();
    let ups: Vec<(Hash, Vec<u8>)> = (0u8..50).map(|i| (Hash::of(&[i]), vec![i])).collect();
    let r = apply(&mut nodes, &ups);
    let u = update(&nodes, &ups).unwrap();
    assert_eq!(u.root, r);
    assert!(u.writes.is_empty());
    let u = update(&nodes, &[]).unwrap();
    assert_eq!((u.root, u.writes.len()), (r, 0));
}

/// Counts reads, to check the cost claims.
struct Counting<'a> {
    nodes: &'a Nodes,
    reads: Cell<usize>,
}

impl NodeReader for Counting<'_> {
    type Error = std::convert::Infallible;
    fn get_node(&self, id: &NodeId) -> Result<Option<Node>, Self::Error> {
        self.reads.set(self.reads.get() + 1);
        Ok(self.nodes.get(id).cloned())
    }
}

#[test]
fn update_reads_only_touched_paths() {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let mut nodes = Nodes::new();
    let ups: Vec<(Hash, Vec<u8>)> = (0..4096)
        .map(|_| (random_hash(&mut rng), vec![1]))
        .collect();
    apply(&mut nodes, &ups);
    let c = Counting {
        nodes: &nodes,
        reads: Cell::new(0),
    };
    // One new key: root + 2 children per interior level (~12 levels).
    let u = update(&c, &[(random_hash(&mut rng), vec![2])]).unwrap();
    let single = c.reads.get();
    assert!(single <= 2 * 24 + 1, "{single} reads");
    assert!(u.writes.len() <= 24 + 2);
    // A batch of 64 keys shares the top of the tree.
    c.reads.set(0);
    let batch: Vec<(Hash, Vec<u8>)> = (0..64).map(|_| (random_hash(&mut rng), vec![3])).collect();
    update(&c, &batch).unwrap();
    assert!(c.reads.get() < 64 * single, "{} reads", c.reads.get());
}

// ---------------------------------------------------------------------------
// 2. Long shared prefixes
// ---------------------------------------------------------------------------

#[test]
fn keys_differing_in_last_and_first_bit() {
    let x = Hash([0; 32]);
    let mut yb = [0u8; 32];
    yb[31] = 1;
    let y = Hash(yb); // differs from x only in bit 255
    let z = k(0x80, 0); // differs from x only in bit 0
    let mut wb = [0u8; 32];
    wb[31] = 2;
    let w = Hash(wb); // absent, differs from x in bit 254

    // Inserted one at a time (push-down from the root to depth 256) and all
    // at once give the same tree.
    let mut one = Nodes::new();
    apply(&mut one, &[(x, b"x".to_vec())]);
    apply(&mut one, &[(y, b"y".to_vec())]);
    apply(&mut one, &[(z, b"z".to_vec())]);
    let mut all = Nodes::new();
    let r = apply(
        &mut all,
        &[(z, b"z".to_vec()), (y, b"y".to_vec()), (x, b"x".to_vec())],
    );
    assert_eq!(one, all);
    let model: Model = [(x, b"x".to_vec()), (y, b"y".to_vec()), (z, b"z".to_vec())].into();
    assert_eq!(r, reference_root(&model, 0));
    assert_eq!(all, canonical(&model));
    assert_eq!(all.len(), 256 + 3); // interiors at depths 0..=255, 3 leaves

    for (key, val, depth) in [(x, b"x", 256), (y, b"y", 256), (z, b"z", 1)] {
        let p = prove(&all, &key).unwrap();
        assert_eq!(p.depth, depth);
        assert_eq!(p.siblings.len(), if depth == 256 { 2 } else { 1 });
        assert_eq!(verify(&r, &key, &p).unwrap(), Lookup::Present(val.to_vec()));
        assert_eq!(
            verify_bytes(&r, &key, &p.encode()).unwrap(),
            Lookup::Present(val.to_vec())
        );
        // The depth-256 proof for x presented for y: y's own leaf is its
        // sibling, so x's leaf is not on y's path.
        if depth == 256 {
            let other = if key == x { y } else { x };
            assert!(matches!(
                verify(&r, &other, &p),
                Err(MapError::LeafOffPath { depth: 256 })
            ));
        }
    }
    let p = prove(&all, &w).unwrap();
    assert_eq!((p.depth, &p.terminal), (255, &Terminal::Empty));
    assert_eq!(verify(&r, &w, &p).unwrap(), Lookup::Absent);
    // Absent key with first bit 1 and second bit 1: z's leaf at depth 1.
    let v = k(0xc0, 0);
    let p = prove(&all, &v).unwrap();
    assert_eq!(p.depth, 1);
    assert!(matches!(p.terminal, Terminal::Leaf { key, .. } if key == z));
    assert_eq!(verify(&r, &v, &p).unwrap(), Lookup::Absent);
}

// ---------------------------------------------------------------------------
// 3. Hostile proofs
// ---------------------------------------------------------------------------

/// The 3-key map of docs/MAP.md: A = 00‖11…, B = 20‖22…, C = 80‖33….
fn doc_map() -> (Nodes, Hash) {
    let mut nodes = Nodes::new();
    let r = apply(
        &mut nodes,
        &[
            (k(0x00, 0x11), b"A".to_vec()),
            (k(0x20, 0x22), b"B".to_vec()),
            (k(0x80, 0x33), b"C".to_vec()),
        ],
    );
    (nodes, r)
}

#[test]
fn hostile_proofs_are_rejected() {
    let (nodes, r) = doc_map();
    let (a, b, c, d, e) = (
        k(0x00, 0x11),
        k(0x20, 0x22),
        k(0x80, 0x33),
        k(0x40, 0x44),
        k(0xc0, 0x55),
    );
    let pa = prove(&nodes, &a).unwrap(); // depth 3, bitmap a0, leaf A
    let pd = prove(&nodes, &d).unwrap(); // depth 2, bitmap c0, Empty
    let pe = prove(&nodes, &e).unwrap(); // depth 1, bitmap 80, leaf C
    assert_eq!((pa.depth, pa.bitmap.as_slice()), (3, &[0xa0][..]));
    assert_eq!((pd.depth, pd.bitmap.as_slice()), (2, &[0xc0][..]));
    assert_eq!((pe.depth, pe.bitmap.as_slice()), (1, &[0x80][..]));

    // Flip any bit of any sibling.
    for p in [&pa, &pd, &pe] {
        let key = if p == &pa {
            a
        } else if p == &pd {
            d
        } else {
            e
        };
        for s in 0..p.siblings.len() {
            for bit in 0..256 {
                let mut q = p.clone();
                q.siblings[s].0[bit / 8] ^= 0x80 >> (bit % 8);
                assert!(matches!(
                    verify(&r, &key, &q),
                    Err(MapError::RootMismatch { .. })
                ));
            }
        }
    }
    // Flip a bitmap bit: inside depth changes the count, beyond it is padding.
    for bit in 0..8 {
        let mut q = pa.clone();
        q.bitmap[0] ^= 0x80 >> bit;
        let err = verify(&r, &a, &q).unwrap_err();
        if bit < 3 {
            assert!(matches!(err, MapError::SiblingCount { .. }), "{err}");
        } else {
            assert!(
                matches!(err, MapError::NonzeroPadding { depth: 3, .. }),
                "{err}"
            );
            assert!(matches!(
                MapProof::decode(&q.encode()),
                Err(MapError::NonzeroPadding { .. })
            ));
        }
    }
    // Truncate / extend siblings.
    let mut q = pa.clone();
    q.siblings.pop();
    assert!(matches!(
        verify(&r, &a, &q),
        Err(MapError::SiblingCount {
            expected: 2,
            actual: 1
        })
    ));
    let mut q = pa.clone();
    q.siblings.push(Hash([7; 32]));
    assert!(matches!(
        verify(&r, &a, &q),
        Err(MapError::SiblingCount {
            expected: 2,
            actual: 3
        })
    ));
    // Depth vs bitmap length.
    let mut q = pa.clone();
    q.depth = 9;
    assert!(matches!(
        verify(&r, &a, &q),
        Err(MapError::BitmapLength {
            depth: 9,
            expected: 2,
            actual: 1
        })
    ));
    let mut q = pa.clone();
    q.bitmap.push(0);
    assert!(matches!(
        verify(&r, &a, &q),
        Err(MapError::BitmapLength { .. })
    ));
    let mut q = pa.clone();
    q.depth = 257;
    assert!(matches!(
        verify(&r, &a, &q),
        Err(MapError::DepthTooLarge { depth: 257 })
    ));
    // A listed sibling equal to EMPTY.
    let mut q = pa.clone();
    q.siblings[1] = EMPTY;
    assert!(matches!(
        verify(&r, &a, &q),
        Err(MapError::EmptySiblingListed { depth: 3 })
    ));

    // Membership proof for A presented for other keys.
    // B shares only 2 bits with A: A's leaf (depth 3) is not on B's path.
    assert!(matches!(
        verify(&r, &b, &pa),
        Err(MapError::LeafOffPath { depth: 3 })
    ));
    assert!(matches!(
        verify(&r, &c, &pa),
        Err(MapError::LeafOffPath { depth: 3 })
    ));
    // A' = A with its last bit flipped shares 3 bits: A's leaf really lies on
    // A''s path at depth 3, so it is a valid non-membership proof for A'.
    let mut a2 = a;
    a2.0[31] ^= 1;
    assert_eq!(verify(&r, &a2, &pa).unwrap(), Lookup::Absent);
    assert_eq!(prove(&nodes, &a2).unwrap(), pa);

    // Non-membership proof whose terminal leaf does not share the prefix.
    assert!(matches!(
        verify(&r, &d, &pe),
        Err(MapError::LeafOffPath { depth: 1 })
    ));
    let mut q = pe.clone();
    q.terminal = Terminal::Leaf {
        key: a,
        value: b"A".to_vec(),
    };
    assert!(matches!(
        verify(&r, &e, &q),
        Err(MapError::LeafOffPath { depth: 1 })
    ));
    // Changed value in a membership proof.
    let mut q = pa.clone();
    q.terminal = Terminal::Leaf {
        key: a,
        value: b"X".to_vec(),
    };
    assert!(matches!(
        verify(&r, &a, &q),
        Err(MapError::RootMismatch { .. })
    ));
    // Membership proof claimed as Empty.
    let mut q = pa.clone();
    q.terminal = Terminal::Empty;
    assert!(matches!(
        verify(&r, &a, &q),
        Err(MapError::RootMismatch { .. })
    ));

    // Terminal Empty with the deepest sibling absent.
    let q = MapProof {
        depth: 2,
        bitmap: vec![0x80],
        siblings: vec![pd.siblings[0]],
        terminal: Terminal::Empty,
    };
    assert!(matches!(
        verify(&r, &d, &q),
        Err(MapError::DeepestSiblingAbsent { depth: 2 })
    ));

    // Depth shortened by one.
    let mut q = pa.clone();
    q.depth = 2; // bit 2 of the bitmap is now padding
    assert!(matches!(
        verify(&r, &a, &q),
        Err(MapError::NonzeroPadding { depth: 2, .. })
    ));
    let q = MapProof {
        depth: 1,
        bitmap: vec![0x80],
        siblings: vec![pd.siblings[0]],
        terminal: Terminal::Empty,
    };
    assert!(matches!(
        verify(&r, &d, &q),
        Err(MapError::RootMismatch { .. })
    ));
    // Depth lengthened by one.
    let mut q = pa.clone();
    q.depth = 4; // the sibling at depth 4 is absent
    assert!(matches!(
        verify(&r, &a, &q),
        Err(MapError::DeepestSiblingAbsent { depth: 4 })
    ));
    let mut q = pa.clone();
    q.depth = 4;
    q.bitmap = vec![0xb0];
    q.siblings.push(Hash([9; 32]));
    assert!(matches!(
        verify(&r, &a, &q),
        Err(MapError::RootMismatch { .. })
    ));
    let mut q = pe.clone();
    q.depth = 2;
    q.bitmap = vec![0xc0];
    q.siblings.push(Hash([9; 32]));
    assert!(matches!(
        verify(&r, &e, &q),
        Err(MapError::LeafOffPath { depth: 2 })
    ));

    // Empty terminal at depth 256.
    let mut bitmap = vec![0u8; 32];
    bitmap[31] = 1;
    let q = MapProof {
        depth: 256,
        bitmap,
        siblings: vec![Hash([5; 32])],
        terminal: Terminal::Empty,
    };
    assert!(matches!(verify(&r, &a, &q), Err(MapError::EmptyAtMaxDepth)));
    assert_eq!(MapProof::decode(&q.encode()).unwrap(), q);

    // Over-long value.
    let q = MapProof {
        depth: 0,
        bitmap: vec![],
        siblings: vec![],
        terminal: Terminal::Leaf {
            key: a,
            value: vec![0; MAX_VALUE_LEN + 1],
        },
    };
    assert!(matches!(
        verify(&r, &a, &q),
        Err(MapError::ValueTooLong {
            len: 1025,
            max: 1024
        })
    ));
    assert!(matches!(
        MapProof::decode(&q.encode()),
        Err(MapError::ValueTooLong { len: 1025, .. })
    ));
    assert!(matches!(
        update(&nodes, &[(a, vec![0; MAX_VALUE_LEN + 1])]),
        Err(MapError::ValueTooLong { .. })
    ));

    // The empty map: only an empty depth-0 proof verifies.
    let empty = Nodes::new();
    let p0 = prove(&empty, &a).unwrap();
    assert_eq!(p0.encode(), vec![0x01, 0x00, 0x00, 0x00]);
    assert_eq!(verify(&EMPTY, &a, &p0).unwrap(), Lookup::Absent);
    assert!(matches!(
        verify(&r, &a, &p0),
        Err(MapError::RootMismatch { .. })
    ));
}

#[test]
fn proof_decoding_is_strict() {
    let (nodes, _) = doc_map();
    for key in [k(0x00, 0x11), k(0x40, 0x44), k(0xc0, 0x55)] {
        let bytes = prove(&nodes, &key).unwrap().encode();
        for n in 0..bytes.len() {
            assert!(
                matches!(
                    MapProof::decode(&bytes[..n]),
                    Err(MapError::Truncated { .. })
                ),
                "prefix {n}"
            );
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(
            MapProof::decode(&long),
            Err(MapError::TrailingBytes { extra: 1, .. })
        ));
        let mut bad = bytes.clone();
        bad[0] = 0x02;
        assert!(matches!(
            MapProof::decode(&bad),
            Err(MapError::UnsupportedVersion { version: 2 })
        ));
    }
    let bytes = prove(&nodes, &k(0x40, 0x44)).unwrap().encode();
    let mut bad = bytes.clone();
    *bad.last_mut().unwrap() = 0x02;
    assert!(matches!(
        MapProof::decode(&bad),
        Err(MapError::UnknownTag { tag: 2, .. })
    ));
    assert!(matches!(
        MapProof::decode(&[0x01, 0x01, 0x01]),
        Err(MapError::DepthTooLarge { depth: 257 })
    ));
    assert!(matches!(
        verify_bytes(&EMPTY, &EMPTY, &[]),
        Err(MapError::Truncated { .. })
    ));
}

proptest! {
    #[test]
    fn decode_and_verify_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = MapProof::decode(&bytes);
        let _ = verify_bytes(&EMPTY, &Hash([0x11; 32]), &bytes);
        let _ = Node::decode(&bytes);
        let _ = NodeId::from_bytes(&bytes);
    }

    #[test]
    fn mutated_proofs_never_lie(i in 0usize..2000, x in 1u8..=255, which in 0usize..3) {
        let (nodes, r) = doc_map();
        let key = [k(0x00, 0x11), k(0x40, 0x44), k(0xc0, 0x55)][which];
        let mut bytes = prove(&nodes, &key).unwrap().encode();
        let i = i % bytes.len();
        bytes[i] ^= x;
        // Any accepted proof must tell the truth about `key`.
        if let Ok(l) = verify_bytes(&r, &key, &bytes) {
            let truth = get(&nodes, &key).unwrap().map_or(Lookup::Absent, Lookup::Present);
            prop_assert_eq!(l, truth);
        }
    }

    #[test]
    fn verify_never_panics_on_structures(
        depth in 0u16..300,
        bitmap in proptest::collection::vec(any::<u8>(), 0..40),
        nsib in 0usize..20,
        leaf in any::<bool>(),
        key in any::<[u8; 32]>(),
    ) {
        let p = MapProof {
            depth,
            bitmap,
            siblings: vec![Hash([3; 32]); nsib],
            terminal: if leaf { Terminal::Leaf { key: Hash(key), value: vec![1] } } else { Terminal::Empty },
        };
        let _ = verify(&EMPTY, &Hash(key), &p);
        let _ = MapProof::decode(&p.encode());
    }
}

// ---------------------------------------------------------------------------
// Storage: node ids, node encoding, corrupt storage
// ---------------------------------------------------------------------------

#[test]
fn node_id_bytes_are_strict_and_ordered() {
    let key = k(0xb5, 0x5a);
    let mut ids = Vec::new();
    for d in 0..=256u16 {
        let id = NodeId::on_path(&key, d).unwrap();
        let bytes = id.to_bytes();
        assert_eq!(bytes.len(), 2 + usize::from(d).div_ceil(8));
        assert_eq!(NodeId::from_bytes(&bytes).unwrap(), id);
        assert!(id.contains(&key));
        if d > 0 {
            let sib = id.sibling().unwrap();
            assert!(!sib.contains(&key));
            assert_eq!(sib.sibling().unwrap(), id);
        }
        ids.push(id);
    }
    assert_eq!(
        NodeId::on_path(&key, 3).unwrap().to_bytes(),
        vec![0, 3, 0xa0]
    );
    assert_eq!(
        NodeId::root().child(true).unwrap().to_bytes(),
        vec![0, 1, 0x80]
    );
    assert_eq!(NodeId::root().sibling(), None);
    assert_eq!(ids[256].child(false), None);
    ids.push(NodeId::on_path(&k(0x00, 0), 3).unwrap());
    ids.push(NodeId::on_path(&k(0xff, 0xff), 2).unwrap());
    let mut by_ord = ids.clone();
    by_ord.sort();
    let mut by_bytes = ids.clone();
    by_bytes.sort_by_key(|i| i.to_bytes());
    assert_eq!(by_ord, by_bytes);

    assert!(matches!(
        NodeId::from_bytes(&[0, 3, 0xb0]),
        Err(MapError::NonzeroPadding { depth: 3, .. })
    ));
    assert!(matches!(
        NodeId::from_bytes(&[0, 3]),
        Err(MapError::Truncated { .. })
    ));
    assert!(matches!(
        NodeId::from_bytes(&[0, 3, 0xa0, 0]),
        Err(MapError::TrailingBytes { .. })
    ));
    assert!(matches!(
        NodeId::from_bytes(&[1, 1]),
        Err(MapError::DepthTooLarge { depth: 257 })
    ));
    assert!(matches!(
        NodeId::new(1, [0xff; 32]),
        Err(MapError::NonzeroPadding { .. })
    ));
}

#[test]
fn node_encoding_is_strict() {
    let leaf = Node::Leaf {
        key: k(1, 2),
        value: b"abc".to_vec(),
    };
    let int = Node::Interior(Hash([4; 32]));
    for n in [&leaf, &int] {
        let bytes = n.encode();
        assert_eq!(Node::decode(&bytes).unwrap(), *n);
        for i in 0..bytes.len() {
            assert!(matches!(
                Node::decode(&bytes[..i]),
                Err(MapError::Truncated { .. })
            ));
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(
            Node::decode(&long),
            Err(MapError::TrailingBytes { .. })
        ));
    }
    assert_eq!(int.encode()[0], 0x11);
    assert_eq!(leaf.encode()[..1], [0x10]);
    assert_eq!(leaf.encode()[33..35], [0, 3]);
    assert!(matches!(
        Node::decode(&[0x12; 33]),
        Err(MapError::UnknownTag { tag: 0x12, .. })
    ));
    let mut big = vec![0x10];
    big.extend_from_slice(&[0; 32]);
    big.extend_from_slice(&1025u16.to_be_bytes());
    big.extend_from_slice(&[0; 1025]);
    assert!(matches!(
        Node::decode(&big),
        Err(MapError::ValueTooLong { len: 1025, .. })
    ));
}

#[derive(Debug, thiserror::Error)]
#[error("disk on fire")]
struct Fire;

struct Failing;
impl NodeReader for Failing {
    type Error = Fire;
    fn get_node(&self, _: &NodeId) -> Result<Option<Node>, Fire> {
        Err(Fire)
    }
}

#[test]
fn corrupt_or_failing_storage_gives_typed_errors() {
    let key = k(0, 0);
    assert!(matches!(root(&Failing), Err(MapError::Storage { .. })));
    assert!(matches!(get(&Failing, &key), Err(MapError::Storage { .. })));
    assert!(matches!(
        prove(&Failing, &key),
        Err(MapError::Storage { .. })
    ));
    assert!(matches!(
        update(&Failing, &[(key, vec![])]),
        Err(MapError::Storage { .. })
    ));

    // A leaf stored under the wrong prefix.
    let (mut nodes, _) = doc_map();
    let right = NodeId::root().child(true).unwrap();
    nodes.insert(
        right,
        Node::Leaf {
            key: k(0x00, 0x11),
            value: vec![],
        },
    );
    assert!(matches!(
        prove(&nodes, &k(0x80, 0)),
        Err(MapError::Corrupt { .. })
    ));
    assert!(matches!(
        get(&nodes, &k(0x80, 0)),
        Err(MapError::Corrupt { .. })
    ));

    // An interior node without children.
    let mut nodes = Nodes::new();
    nodes.insert(NodeId::root(), Node::Interior(Hash([1; 32])));
    assert!(matches!(prove(&nodes, &key), Err(MapError::Corrupt { .. })));
    assert!(matches!(
        update(&nodes, &[(key, vec![])]),
        Err(MapError::Corrupt { .. })
    ));
    // An interior node holding a single leaf.
    nodes.insert(
        NodeId::root().child(false).unwrap(),
        Node::Leaf { key, value: vec![] },
    );
    assert!(matches!(prove(&nodes, &key), Err(MapError::Corrupt { .. })));
    // An interior node at depth 256.
    let mut nodes = Nodes::new();
    nodes.insert(
        NodeId::on_path(&key, 256).unwrap(),
        Node::Interior(Hash([1; 32])),
    );
    let deepest = NodeId::on_path(&key, 256).unwrap();
    assert!(matches!(
        read(&nodes, &deepest),
        Err(MapError::Corrupt { .. })
    ));
}

// ---------------------------------------------------------------------------
// 4. Known answers (worked by hand from the definition; hex from SHA-256)
// ---------------------------------------------------------------------------

fn both(model: &Model) -> (Hash, Hash) {
    let mut nodes = Nodes::new();
    let ups: Vec<(Hash, Vec<u8>)> = model.iter().map(|(k, v)| (*k, v.clone())).collect();
    (reference_root(model, 0), apply(&mut nodes, &ups))
}

#[test]
fn known_answers() {
    // Empty map: EMPTY = 00…00.
    let (a, b) = both(&Model::new());
    assert_eq!((a, b), (EMPTY, EMPTY));
    assert_eq!(root(&Nodes::new()).unwrap(), Hash([0; 32]));

    // One key k = 11…11, value "v1": the root is its leaf hash,
    // SHA-256(0x10 ‖ 11×32 ‖ "v1").
    let one = h("dd35389db6a08bb4be167c2fa9a71d5c97808be170ab01f35edfda686cf8c4e0");
    let (a, b) = both(&[(Hash([0x11; 32]), b"v1".to_vec())].into());
    assert_eq!((a, b), (one, one));
    assert_eq!(leaf_hash(&Hash([0x11; 32]), b"v1"), one);

    // Two keys differing in bit 0: L = 00…00 "L", R = 80 00…00 "R":
    // SHA-256(0x11 ‖ leaf(L) ‖ leaf(R)).
    let two = h("7ec06780ed24082d01fb122a854531ce68f971f1dc143437c21c6012380cb639");
    let (a, b) = both(&[(k(0, 0), b"L".to_vec()), (k(0x80, 0), b"R".to_vec())].into());
    assert_eq!((a, b), (two, two));

    // Two keys sharing bit 0, differing in bit 1: A = 00…, B = 40 00…:
    // SHA-256(0x11 ‖ SHA-256(0x11 ‖ leaf(A) ‖ leaf(B)) ‖ EMPTY).
    let deep = h("5d35ba2a3125cd933fff9a2e2a7c3a3813afa52369e08f22d17c9435e36f0a99");
    let (a, b) = both(&[(k(0, 0), b"A".to_vec()), (k(0x40, 0), b"B".to_vec())].into());
    assert_eq!((a, b), (deep, deep));

    // Two keys differing only in bit 255: X = 00…00 "x", Y = 00…01 "y":
    // h₂₅₅ = SHA-256(0x11 ‖ leaf(X) ‖ leaf(Y)), then 255 times
    // h_d = SHA-256(0x11 ‖ h_{d+1} ‖ EMPTY).
    let last = h("cc10a05b0d72708b620b5a4a030fcffefcf8a316100d04359a686457d4689bb8");
    let mut yb = [0u8; 32];
    yb[31] = 1;
    let (a, b) = both(&[(k(0, 0), b"x".to_vec()), (Hash(yb), b"y".to_vec())].into());
    assert_eq!((a, b), (last, last));
}

// ---------------------------------------------------------------------------
// 5. Vectors for docs/MAP.md
// ---------------------------------------------------------------------------

const DOC: &str = include_str!("../../docs/MAP.md");
const BEGIN: &str = "<!-- BEGIN GENERATED VECTORS -->\n";
const END: &str = "<!-- END GENERATED VECTORS -->";

/// The generated section of docs/MAP.md.
fn render_vectors() -> String {
    let cid: [u8; 32] = core::array::from_fn(|i| i as u8);
    let mk = map_key(&cid);
    let (nodes, r) = doc_map();
    let mut s = String::new();
    let mut line = |name: &str, value: String| {
        s.push_str(&format!("{name:<30} {value}\n"));
    };
    line("credential_id", hex::encode(cid));
    line("map_key(credential_id)", mk.to_hex());
    line(
        "leaf_hash(map_key, \"revoked\")",
        leaf_hash(&mk, b"revoked").to_hex(),
    );
    line("key A (value \"A\")", k(0x00, 0x11).to_hex());
    line("key B (value \"B\")", k(0x20, 0x22).to_hex());
    line("key C (value \"C\")", k(0x80, 0x33).to_hex());
    let (la, lb, lc) = (
        leaf_hash(&k(0x00, 0x11), b"A"),
        leaf_hash(&k(0x20, 0x22), b"B"),
        leaf_hash(&k(0x80, 0x33), b"C"),
    );
    let n00 = interior_hash(&la, &lb);
    let n0 = interior_hash(&n00, &EMPTY);
    line("leaf(A) at 3/00", la.to_hex());
    line("leaf(B) at 3/20", lb.to_hex());
    line("leaf(C) at 1/80", lc.to_hex());
    line("interior at 2/00", n00.to_hex());
    line("interior at 1/00", n0.to_hex());
    line("root {A, B, C} at 0/", r.to_hex());
    assert_eq!(interior_hash(&n0, &lc), r);
    for (name, key) in [
        ("proof A (present)", k(0x00, 0x11)),
        ("proof D = 40‖44… (absent)", k(0x40, 0x44)),
        ("proof E = c0‖55… (absent)", k(0xc0, 0x55)),
    ] {
        let p = prove(&nodes, &key).unwrap();
        line(name, hex::encode(p.encode()));
    }
    line(
        "proof, empty map (absent)",
        hex::encode(prove(&Nodes::new(), &cid_key()).unwrap().encode()),
    );
    format!("```text\n{s}```\n")
}

fn cid_key() -> Hash {
    map_key(&core::array::from_fn(|i| i as u8))
}

/// Regenerate the vectors section of docs/MAP.md:
/// `cargo test --lib smt::tests::print_vectors -- --ignored --nocapture`
#[test]
#[ignore]
fn print_vectors() {
    println!("{BEGIN}{}{END}", render_vectors());
}

#[test]
fn doc_vectors_are_current() {
    let v = render_vectors();
    let expected = format!("{BEGIN}{v}{END}");
    assert!(
        DOC.contains(&expected),
        "docs/MAP.md vectors are stale; regenerate with \
         `cargo test --lib smt::tests::print_vectors -- --ignored --nocapture`:\n{expected}"
    );
    // Independently computed (Python hashlib) values, so a change of the
    // definition cannot silently regenerate both code and doc.
    assert_eq!(
        cid_key().to_hex(),
        "729714e580e8ead987cb13ea7e99fe9877861deb9306698ba972d65c63c2677a"
    );
    assert_eq!(
        leaf_hash(&cid_key(), b"revoked").to_hex(),
        "3ec22556ecae0d67a1a86bc612cacf0de06a919234b567e04e80a42b8867c468"
    );
    let (nodes, r) = doc_map();
    assert_eq!(
        r.to_hex(),
        "bbd78c32fe0faed2714ac6631b47a3c21b8a2d29b056e6af27f738626374b6fb"
    );
    let enc = |key| hex::encode(prove(&nodes, &key).unwrap().encode());
    assert_eq!(enc(k(0x00, 0x11)), "010003a09ba96f6dfa2bc2a3fb780331dcfd99d6856fed6b01b6481d1757b05a738278360b49eca3dfd67dd8665708c2ac4e01b444862aa7c31de83c64725d5ce7a1057c010011111111111111111111111111111111111111111111111111111111111111000141");
    assert_eq!(enc(k(0x40, 0x44)), "010002c09ba96f6dfa2bc2a3fb780331dcfd99d6856fed6b01b6481d1757b05a738278364fe8014d6da8d1aaf3e0d707087992389a8dda6d8c5a6c3299d201a50dca7c4300");
    assert_eq!(enc(k(0xc0, 0x55)), "0100018036f7f3e2d96957cb56928dec4328f6f4a15144f96422f60e527241acdcc9a0da018033333333333333333333333333333333333333333333333333333333333333000143");
}

/// The byte-wise definition `mask_prefix` had before it worked by words.
fn mask_prefix_bytewise(bytes: &[u8; 32], depth: u16) -> [u8; 32] {
    let depth = usize::from(depth).min(256);
    let (full, rem) = (depth / 8, depth % 8);
    let mut out = [0u8; 32];
    out[..full].copy_from_slice(&bytes[..full]);
    if let (Some(o), Some(b)) = (out.get_mut(full), bytes.get(full)) {
        *o = b & !(0xffu8 >> rem);
    }
    out
}

#[test]
fn mask_prefix_keeps_exactly_the_first_depth_bits() {
    for seed in 0..8u8 {
        let key = crate::hash::leaf_hash(&[seed]).0;
        for depth in 0..=300u16 {
            assert_eq!(
                mask_prefix(&key, depth),
                mask_prefix_bytewise(&key, depth),
                "depth {depth}"
            );
        }
    }
    let ones = [0xffu8; 32];
    assert_eq!(mask_prefix(&ones, 0), [0; 32]);
    assert_eq!(mask_prefix(&ones, 256), ones);
    let m = mask_prefix(&ones, 67);
    assert_eq!(
        &m[..9],
        &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0b1110_0000]
    );
    assert!(m[9..].iter().all(|&b| b == 0));
}
