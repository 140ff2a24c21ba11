//! RFC 9162 inclusion and consistency verifiers (and the proof builders
//! over stored hashes) with arbitrary indexes, sizes and hash lists.
//!
//! * Raw mode: `verify_inclusion`, `root_from_inclusion` and
//!   `verify_consistency` on arbitrary `u64` indexes and sizes (extremes
//!   included) and arbitrary hash lists never panic, and `verify_inclusion`
//!   accepts exactly when `root_from_inclusion` returns the given root.
//! * Tree mode: a real tree of 1..=300 leaves; the proofs the builders make
//!   from stored hashes verify against `tree_hash`; the same proof with one
//!   hash changed, one hash dropped or added, or another leaf index, is
//!   rejected. The builders with arbitrary (index, size) against the store
//!   never panic.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use revledger::hash::{leaf_hash, Hash};
use revledger::merkle::{
    consistency_proof, inclusion_proof, root_from_inclusion, stored_hash_count, stored_hash_index,
    tree_hash, verify_consistency, verify_inclusion, Frontier,
};
use std::sync::OnceLock;

const TREE: u64 = 300;

fn store() -> &'static (Vec<Hash>, Vec<Hash>) {
    static S: OnceLock<(Vec<Hash>, Vec<Hash>)> = OnceLock::new();
    S.get_or_init(|| {
        let mut f = Frontier::new();
        let mut hashes = Vec::new();
        let mut leaves = Vec::new();
        for i in 0..TREE {
            let l = leaf_hash(&i.to_be_bytes());
            leaves.push(l);
            for (_, h) in f.append(l).unwrap() {
                hashes.push(h);
            }
        }
        (hashes, leaves)
    })
}

#[derive(Arbitrary, Debug)]
enum Num {
    Raw(u64),
    Max,
    MaxMinus(u8),
    Pow2(u8),
    Pow2Minus(u8),
    Pow2Plus(u8),
}

impl Num {
    fn get(&self) -> u64 {
        match *self {
            Num::Raw(n) => n,
            Num::Max => u64::MAX,
            Num::MaxMinus(d) => u64::MAX - u64::from(d),
            Num::Pow2(p) => 1u64 << (p % 64),
            Num::Pow2Minus(p) => (1u64 << (p % 64)).wrapping_sub(1),
            Num::Pow2Plus(p) => (1u64 << (p % 64)).wrapping_add(1),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Mutation {
    None,
    Flip { which: u8, byte: u8, bit: u8 },
    Drop { which: u8 },
    Add { at: u8, hash: [u8; 32] },
    OtherIndex(u16),
    OtherSize(u16),
}

#[derive(Arbitrary, Debug)]
enum Input {
    Raw {
        leaf: [u8; 32],
        index: Num,
        size: Num,
        old: Num,
        new: Num,
        root: [u8; 32],
        old_root: [u8; 32],
        proof: Vec<[u8; 32]>,
    },
    Tree {
        index: u16,
        size: u16,
        old: u16,
        mutation: Mutation,
        raw_index: Num,
        raw_size: Num,
    },
}

fn mutate(proof: &[Hash], m: &Mutation) -> Option<Vec<Hash>> {
    let mut p = proof.to_vec();
    match *m {
        Mutation::Flip { which, byte, bit } => {
            if p.is_empty() {
                return None;
            }
            let i = usize::from(which) % p.len();
            p[i].0[usize::from(byte) % 32] ^= 1 << (bit % 8);
        }
        Mutation::Drop { which } => {
            if p.is_empty() {
                return None;
            }
            let i = usize::from(which) % p.len();
            p.remove(i);
        }
        Mutation::Add { at, hash } => {
            let i = usize::from(at) % (p.len() + 1);
            p.insert(i, Hash(hash));
        }
        _ => return None,
    }
    Some(p)
}

fuzz_target!(|input: Input| {
    match input {
        Input::Raw {
            leaf,
            index,
            size,
            old,
            new,
            root,
            old_root,
            proof,
        } => {
            let proof: Vec<Hash> = proof.into_iter().map(Hash).collect();
            let (leaf, root, old_root) = (Hash(leaf), Hash(root), Hash(old_root));
            let (index, size, old, new) = (index.get(), size.get(), old.get(), new.get());
            let computed = root_from_inclusion(&leaf, index, size, &proof);
            let verified = verify_inclusion(&leaf, index, size, &proof, &root);
            match &computed {
                Ok(r) => {
                    assert_eq!(verified.is_ok(), *r == root);
                    // The computed root verifies.
                    assert!(verify_inclusion(&leaf, index, size, &proof, r).is_ok());
                }
                Err(e) => assert_eq!(verified.as_ref().err(), Some(e)),
            }
            let _ = verify_consistency(old, new, &old_root, &root, &proof);
            let _ = verify_consistency(size, new, &leaf, &root, &proof);
            let _ = stored_hash_index((old % 70) as u32, new);
            let _ = stored_hash_count(size);
        }
        Input::Tree {
            index,
            size,
            old,
            mutation,
            raw_index,
            raw_size,
        } => {
            let (hashes, leaves) = store();
            let reader = hashes.as_slice();
            // Builders with arbitrary arguments: errors, never panics.
            let _ = inclusion_proof(raw_index.get(), raw_size.get(), reader);
            let _ = consistency_proof(raw_index.get(), raw_size.get(), reader);
            let _ = tree_hash(raw_size.get(), reader);

            let size = 1 + u64::from(size) % TREE;
            let index = u64::from(index) % size;
            let old = u64::from(old) % (size + 1);
            let root = tree_hash(size, reader).unwrap();
            let old_root = tree_hash(old, reader).unwrap();
            let leaf = leaves[index as usize];

            let incl = inclusion_proof(index, size, reader).unwrap();
            verify_inclusion(&leaf, index, size, &incl, &root).expect("honest inclusion proof");
            let cons = consistency_proof(old, size, reader).unwrap();
            verify_consistency(old, size, &old_root, &root, &cons)
                .expect("honest consistency proof");

            match mutation {
                Mutation::None => {}
                Mutation::OtherIndex(i) => {
                    let other = u64::from(i) % (size + 2);
                    if other != index {
                        assert!(
                            verify_inclusion(&leaf, other, size, &incl, &root).is_err(),
                            "inclusion proof of {index} accepted for index {other} (size {size})"
                        );
                    }
                }
                Mutation::OtherSize(s) => {
                    // A proof for another size may legitimately verify
                    // against this root (the size is bound only by the
                    // signed checkpoint), so only: no panic.
                    let other = u64::from(s) % (TREE + 2);
                    let _ = verify_inclusion(&leaf, index, other, &incl, &root);
                    let _ = verify_consistency(old, other, &old_root, &root, &cons);
                }
                ref m => {
                    if let Some(p) = mutate(&incl, m) {
                        if p != incl {
                            assert!(
                                verify_inclusion(&leaf, index, size, &p, &root).is_err(),
                                "mutated inclusion proof accepted: index {index} size {size} {m:?}"
                            );
                        }
                    }
                    if let Some(p) = mutate(&cons, m) {
                        if p != cons {
                            assert!(
                                verify_consistency(old, size, &old_root, &root, &p).is_err(),
                                "mutated consistency proof accepted: {old}->{size} {m:?}"
                            );
                        }
                    }
                }
            }
        }
    }
});
