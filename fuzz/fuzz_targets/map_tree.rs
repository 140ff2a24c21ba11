//! The status map's batch update, reads and proofs against a model.
//!
//! Input (`arbitrary`): batches of (key, value) updates and a list of
//! queried keys. Keys are drawn so that they share long prefixes (a few
//! base keys with one bit flipped anywhere, down to the last of the 256),
//! so paths reach depth 256.
//!
//! Asserts, after applying the batches one by one to an in-memory node map:
//! * `update`'s root equals `smt::root` of the written nodes, and equals the
//!   root of one batch holding the model's final contents (the tree is
//!   canonical: independent of insertion order and batching);
//! * every key in the model: `get` gives its value and its proof verifies
//!   (also after encode → `verify_bytes`) as `Present(value)`;
//! * every other queried key: `get` gives nothing and its proof verifies as
//!   `Absent`; the proof of one key never verifies for a different key
//!   with a different answer.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use revledger::hash::Hash;
use revledger::smt::{self, Lookup, Node, NodeId, MAX_VALUE_LEN};
use std::collections::BTreeMap;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum KeySpec {
    Near {
        base: u8,
        flip: u8,
        flip2: Option<u8>,
    },
    Raw([u8; 32]),
}

impl KeySpec {
    fn key(self) -> Hash {
        match self {
            KeySpec::Near { base, flip, flip2 } => {
                let mut k = [0u8; 32];
                let b = base % 4;
                k.iter_mut()
                    .enumerate()
                    .for_each(|(i, x)| *x = (i as u8).wrapping_mul(b).wrapping_add(b * 61));
                for f in std::iter::once(flip).chain(flip2) {
                    k[usize::from(f / 8)] ^= 0x80 >> (f % 8);
                }
                Hash(k)
            }
            KeySpec::Raw(k) => Hash(k),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    batches: Vec<Vec<(KeySpec, u8, u16)>>,
    queries: Vec<KeySpec>,
}

fn value(tag: u8, len: u16) -> Vec<u8> {
    // Mostly short values; now and then one over the limit.
    let len = if len > 65_000 {
        MAX_VALUE_LEN + 1
    } else {
        usize::from(len % 80)
    };
    vec![tag; len]
}

fuzz_target!(|input: Input| {
    let mut nodes: BTreeMap<NodeId, Node> = BTreeMap::new();
    let mut model: BTreeMap<Hash, Vec<u8>> = BTreeMap::new();
    let mut root = smt::EMPTY;
    for batch in input.batches.iter().take(6) {
        let updates: Vec<(Hash, Vec<u8>)> = batch
            .iter()
            .take(24)
            .map(|&(k, tag, len)| (k.key(), value(tag, len)))
            .collect();
        match smt::update(&nodes, &updates) {
            Ok(u) => {
                assert!(updates.iter().all(|(_, v)| v.len() <= MAX_VALUE_LEN));
                u.apply_to(&mut nodes);
                for (k, v) in updates {
                    model.insert(k, v);
                }
                root = u.root;
                assert_eq!(smt::root(&nodes).unwrap(), root);
            }
            Err(e) => {
                assert!(
                    updates.iter().any(|(_, v)| v.len() > MAX_VALUE_LEN),
                    "update failed on valid input: {e}"
                );
            }
        }
    }
    // Canonical: one batch from empty gives the same root.
    let all: Vec<(Hash, Vec<u8>)> = model.iter().map(|(k, v)| (*k, v.clone())).collect();
    let fresh = smt::update(&BTreeMap::<NodeId, Node>::new(), &all).unwrap();
    assert_eq!(fresh.root, root, "root depends on batching");
    if model.is_empty() {
        assert_eq!(root, smt::EMPTY);
    }

    let mut proofs = Vec::new();
    for (k, v) in &model {
        assert_eq!(smt::get(&nodes, k).unwrap().as_ref(), Some(v));
        let p = smt::prove(&nodes, k).unwrap();
        assert_eq!(
            smt::verify(&root, k, &p).unwrap(),
            Lookup::Present(v.clone())
        );
        let bytes = p.encode();
        assert_eq!(
            smt::verify_bytes(&root, k, &bytes).unwrap(),
            Lookup::Present(v.clone())
        );
        proofs.push((*k, p));
    }
    for q in input.queries.iter().take(16) {
        let k = q.key();
        let p = smt::prove(&nodes, &k).unwrap();
        let want = match model.get(&k) {
            Some(v) => Lookup::Present(v.clone()),
            None => Lookup::Absent,
        };
        assert_eq!(
            smt::get(&nodes, &k).unwrap().is_some(),
            model.contains_key(&k)
        );
        assert_eq!(smt::verify(&root, &k, &p).unwrap(), want);
        proofs.push((k, p));
    }
    // No proof answers differently for another key.
    for (k, _) in proofs.iter().take(8) {
        let truth = match model.get(k) {
            Some(v) => Lookup::Present(v.clone()),
            None => Lookup::Absent,
        };
        for (_, p) in proofs.iter().take(8) {
            if let Ok(l) = smt::verify(&root, k, p) {
                assert_eq!(l, truth, "a proof verifies with a wrong answer");
            }
        }
    }
});
