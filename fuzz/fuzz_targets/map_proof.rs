//! Compressed sparse Merkle map proofs from arbitrary bytes.
//!
//! Input: `root (32) ‖ key (32) ‖ proof bytes`.
//! * `MapProof::decode`: for an accepted proof, `encode(decode(b)) == b`.
//! * `verify_bytes(root, key, b)` agrees with `decode` then `verify`.
//! * A decoded proof whose only fault is the root (`RootMismatch`) verifies
//!   against the root it computes, and then gives `Present(value)` exactly
//!   when its terminal leaf has the queried key (with that value).
//! * The stored-node codecs (`Node::decode`, `NodeId::from_bytes`) round
//!   trip on the proof bytes too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use revledger::hash::Hash;
use revledger::smt::{verify, verify_bytes, Lookup, MapError, MapProof, Node, NodeId, Terminal};

fuzz_target!(|data: &[u8]| {
    if let Ok(n) = Node::decode(data) {
        assert_eq!(n.encode(), data, "Node round trip");
    }
    if let Ok(id) = NodeId::from_bytes(data) {
        assert_eq!(id.to_bytes(), data, "NodeId round trip");
    }
    if data.len() < 64 {
        return;
    }
    let root = Hash(data[..32].try_into().unwrap());
    let key = Hash(data[32..64].try_into().unwrap());
    let bytes = &data[64..];
    let via_bytes = verify_bytes(&root, &key, bytes);
    let Ok(proof) = MapProof::decode(bytes) else {
        assert!(
            via_bytes.is_err(),
            "verify_bytes accepted an undecodable proof"
        );
        return;
    };
    assert_eq!(proof.encode(), bytes, "MapProof encode(decode(b)) != b");
    let direct = verify(&root, &key, &proof);
    assert_eq!(format!("{direct:?}"), format!("{via_bytes:?}"));

    // Re-verify against the computed root.
    let result = match direct {
        Err(MapError::RootMismatch { computed, .. }) => {
            let r = verify(&computed, &key, &proof);
            assert!(
                r.is_ok(),
                "proof fails against its own computed root: {r:?}"
            );
            r.unwrap()
        }
        Ok(l) => l,
        Err(_) => return,
    };
    match (&proof.terminal, &result) {
        (Terminal::Leaf { key: k, value }, Lookup::Present(v)) => {
            assert_eq!(k, &key);
            assert_eq!(v, value);
        }
        (Terminal::Leaf { key: k, .. }, Lookup::Absent) => assert_ne!(k, &key),
        (Terminal::Empty, Lookup::Absent) => {}
        (Terminal::Empty, Lookup::Present(_)) => panic!("empty terminal proves presence"),
    }
});
