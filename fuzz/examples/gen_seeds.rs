//! Writes the seed corpora under `fuzz/seeds/<target>/` from real data: the
//! fixture ledger (`revledger_fuzz::fixture`, whose first five entries are
//! the example ledger of docs/FORMAT.md §12.2), the vectors in
//! `tests/data/tlog-vectors.json`, and Go's signed-note example.
//!
//! ```sh
//! cd fuzz && cargo run --example gen_seeds
//! ```
//!
//! Deterministic: running it twice writes the same files.

use revledger::checkpoint::verify_checkpoint;
use revledger::smt::{self, MapProof};
use revledger::tile::{encode_entry_bundle, TilePath};
use std::fs;
use std::path::{Path, PathBuf};

const VECTORS: &str = include_str!("../../tests/data/tlog-vectors.json");
const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const PETER_SKEY: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const PETER_NOTE: &str = "If you think cryptography is the answer to your problem,\n\
                          then you don't know what your problem is.\n\
                          \n\
                          \u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

struct Out {
    dir: PathBuf,
    n: usize,
}

impl Out {
    fn new(root: &Path, target: &str) -> Out {
        let dir = root.join(target);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Out { dir, n: 0 }
    }
    fn put(&mut self, name: &str, bytes: impl AsRef<[u8]>) {
        self.n += 1;
        fs::write(self.dir.join(format!("{:03}-{name}", self.n)), bytes).unwrap();
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let vectors: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
    let f = revledger_fuzz::fixture();
    let size = f.ledger.checkpoint().size();
    let entries: Vec<Vec<u8>> = (0..size).map(|i| f.ledger.entry(i).unwrap()).collect();

    // entry_codec: every entry of the fixture ledger (head records, the
    // registry change, events of every kind), and status records.
    let mut o = Out::new(&root, "entry_codec");
    for (i, e) in entries.iter().enumerate() {
        o.put(&format!("entry-{i}"), e);
    }
    for c in &f.cases {
        let proof = MapProof::decode(&c.proof.map_proof).unwrap();
        if let smt::Terminal::Leaf { value, .. } = proof.terminal {
            o.put(&format!("status-record-{}", c.name), value);
        }
    }

    // note_checkpoint: every signed checkpoint, their bodies, the keys,
    // Go's example note and key, and the vectors' signed notes.
    let mut o = Out::new(&root, "note_checkpoint");
    let log = revledger_fuzz::log_verifier();
    for (i, c) in f.checkpoints.iter().enumerate() {
        o.put(&format!("checkpoint-{i}"), c);
        let v = verify_checkpoint(c, &log).unwrap();
        o.put(&format!("body-{i}"), v.checkpoint().to_body());
    }
    o.put("log-vkey", log.to_vkey_string());
    o.put(
        "log-skey",
        revledger_fuzz::log_signer().to_private_key_string(),
    );
    o.put(
        "issuer-vkey",
        revledger_fuzz::issuer().verifier().to_vkey_string(),
    );
    o.put("peter-vkey", PETER_VKEY);
    o.put("peter-skey", PETER_SKEY);
    o.put("peter-note", PETER_NOTE);
    let cps = &vectors["signed_note"]["checkpoints"];
    for (i, c) in cps.as_array().unwrap().iter().enumerate() {
        o.put(
            &format!("vector-note-{i}"),
            c["signed_note"].as_str().unwrap(),
        );
        o.put(&format!("vector-body-{i}"), c["body"].as_str().unwrap());
    }
    o.put(
        "vector-vkey",
        vectors["signed_note"]["vkey"].as_str().unwrap(),
    );

    // tile_path: the vectors' paths, some printed paths, and entry bundles.
    let mut o = Out::new(&root, "tile_path");
    for (i, t) in vectors["tile_paths"].as_array().unwrap().iter().enumerate() {
        o.put(&format!("vector-path-{i}"), t["path"].as_str().unwrap());
    }
    for t in [
        TilePath::hash(0, 1_234_067, 17).unwrap(),
        TilePath::hash(63, u64::MAX, 256).unwrap(),
        TilePath::entries(5, 1).unwrap(),
        TilePath::entries(1_000_000, 255).unwrap(),
    ] {
        o.put("path", t.to_path());
    }
    let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
    o.put("bundle-all", encode_entry_bundle(&refs).unwrap());
    o.put("bundle-5", encode_entry_bundle(&refs[..5]).unwrap());
    let mut raw = vec![0u8; 19];
    raw[10] = 0x02; // size 512
    raw[17] = 0x01; // width 256
    o.put("read-tile", raw);

    // merkle_proofs: a few byte strings (the input is `arbitrary`-decoded).
    let mut o = Out::new(&root, "merkle_proofs");
    for i in 0..8u8 {
        o.put(
            "bytes",
            (0..64)
                .map(|j| i.wrapping_mul(37).wrapping_add(j))
                .collect::<Vec<u8>>(),
        );
    }

    // map_proof: root ‖ key ‖ proof of every case.
    let mut o = Out::new(&root, "map_proof");
    for c in &f.cases {
        let head = match revledger::entry::Entry::decode(&c.proof.head.entry).unwrap() {
            revledger::entry::Entry::Head(h) => h,
            _ => unreachable!(),
        };
        let mut b = head.map_root.0.to_vec();
        b.extend_from_slice(&smt::map_key(&c.id.0).0);
        b.extend_from_slice(&c.proof.map_proof);
        o.put(&format!("case-{}", c.name), b);
    }

    // status_proof: the JSON of every case and of the doc proof.
    let mut o = Out::new(&root, "status_proof");
    o.put("doc", f.doc_proof.to_json());
    for c in &f.cases {
        o.put(&format!("case-{}", c.name), c.proof.to_json());
    }

    // status_mutate: short byte strings (case selectors, no edit at first).
    let mut o = Out::new(&root, "status_mutate");
    for i in 0..12u8 {
        o.put("case", [i, 0]);
    }
    // map_tree, audit_replay: `arbitrary` inputs; one byte to start from
    // (audit_replay: the unedited fixture log).
    let mut o = Out::new(&root, "map_tree");
    o.put("empty", [0u8]);
    let mut o = Out::new(&root, "audit_replay");
    o.put("honest", [0u8]);
    println!("seeds written under {}", root.display());
}
