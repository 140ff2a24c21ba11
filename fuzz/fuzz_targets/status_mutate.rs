//! Structure-aware status proof fuzzing: arbitrary edits of the real,
//! valid proofs of the fixture ledger (`revledger_fuzz::fixture`: eleven
//! credentials in every state, plus the docs/FORMAT.md §12.5 proof).
//!
//! Edits: bit flips, byte sets, truncation and insertion in the checkpoint
//! text, the head and event entries and the map proof; edits of inclusion
//! lists (flip, drop, insert, swap, replace by another proof's list);
//! index changes; removing, adding or swapping the event; swapping any
//! part with another case's; and *re-signing* a checkpoint of another size
//! and root with the real log key (a forger holding the key), which lets
//! the verifier's later checks (head position, inclusion, map, event) see
//! arbitrary sizes and roots.
//!
//! Asserts: `verify_status` never panics; the proof survives
//! `to_json`/`from_json`; and whenever the edited proof differs from the
//! original, the verdict is `invalid` (every byte of an honest proof is
//! bound by a hash or a signature, and an honest map proof is the only
//! canonical one for its key).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use revledger::checkpoint::{sign_checkpoint, Checkpoint};
use revledger::hash::Hash;
use revledger::note::{NoteSigner, NoteVerifier};
use revledger::status::{verify_status, LoggedEntry, StatusProof, Verdict};
use std::sync::OnceLock;

struct Fx {
    signer: NoteSigner,
    verifier: NoteVerifier,
    cases: Vec<(revledger::entry::CredentialId, StatusProof, Verdict)>,
    /// Every inclusion list and entry seen, for swaps.
    lists: Vec<Vec<Hash>>,
    entries: Vec<LoggedEntry>,
}

fn fx() -> &'static Fx {
    static F: OnceLock<Fx> = OnceLock::new();
    F.get_or_init(|| {
        let f = revledger_fuzz::fixture();
        let verifier = revledger_fuzz::log_verifier();
        let mut cases = Vec::new();
        let mut lists = Vec::new();
        let mut entries = Vec::new();
        let all = f
            .cases
            .iter()
            .map(|c| (c.id, c.proof.clone()))
            .chain(std::iter::once((
                revledger_fuzz::cred(0x11),
                f.doc_proof.clone(),
            )));
        for (id, proof) in all {
            let v = verify_status(
                &proof,
                &id,
                &verifier,
                revledger_fuzz::NOW,
                revledger_fuzz::policy(),
            );
            assert!(
                !matches!(v, Verdict::Invalid(_)),
                "fixture proof invalid: {v:?}"
            );
            lists.push(proof.head.inclusion.clone());
            entries.push(proof.head.clone());
            if let Some(e) = &proof.event {
                lists.push(e.inclusion.clone());
                entries.push(e.clone());
            }
            cases.push((id, proof, v));
        }
        Fx {
            signer: revledger_fuzz::log_signer(),
            verifier,
            cases,
            lists,
            entries,
        }
    })
}

#[derive(Arbitrary, Debug)]
enum BytesOp {
    Flip { pos: u16, bit: u8 },
    Set { pos: u16, val: u8 },
    Truncate { len: u16 },
    Insert { pos: u16, val: u8 },
    Append(Vec<u8>),
}

fn bytes_op(b: &mut Vec<u8>, op: &BytesOp) {
    let n = b.len();
    match op {
        BytesOp::Flip { pos, bit } if n > 0 => b[usize::from(*pos) % n] ^= 1 << (bit % 8),
        BytesOp::Set { pos, val } if n > 0 => b[usize::from(*pos) % n] = *val,
        BytesOp::Truncate { len } => b.truncate(usize::from(*len) % (n + 1)),
        BytesOp::Insert { pos, val } => b.insert(usize::from(*pos) % (n + 1), *val),
        BytesOp::Append(x) => b.extend_from_slice(x),
        _ => {}
    }
}

#[derive(Arbitrary, Debug)]
enum HashesOp {
    Flip { which: u8, byte: u8, bit: u8 },
    Drop { which: u8 },
    Insert { at: u8, from_list: u8, which: u8 },
    InsertRaw { at: u8, hash: [u8; 32] },
    Swap { a: u8, b: u8 },
    Replace { list: u8 },
    Clear,
}

fn hashes_op(h: &mut Vec<Hash>, op: &HashesOp, fx: &Fx) {
    let n = h.len();
    match *op {
        HashesOp::Flip { which, byte, bit } if n > 0 => {
            h[usize::from(which) % n].0[usize::from(byte) % 32] ^= 1 << (bit % 8)
        }
        HashesOp::Drop { which } if n > 0 => {
            h.remove(usize::from(which) % n);
        }
        HashesOp::Insert {
            at,
            from_list,
            which,
        } => {
            let l = &fx.lists[usize::from(from_list) % fx.lists.len()];
            if !l.is_empty() {
                h.insert(usize::from(at) % (n + 1), l[usize::from(which) % l.len()]);
            }
        }
        HashesOp::InsertRaw { at, hash } => h.insert(usize::from(at) % (n + 1), Hash(hash)),
        HashesOp::Swap { a, b } if n > 0 => h.swap(usize::from(a) % n, usize::from(b) % n),
        HashesOp::Replace { list } => *h = fx.lists[usize::from(list) % fx.lists.len()].clone(),
        HashesOp::Clear => h.clear(),
        _ => {}
    }
}

#[derive(Arbitrary, Debug)]
enum NumOp {
    Add(i16),
    Set(u64),
    Xor(u64),
    Max,
}

fn num_op(x: &mut u64, op: &NumOp) {
    match *op {
        NumOp::Add(d) => *x = x.wrapping_add(d as i64 as u64),
        NumOp::Set(v) => *x = v,
        NumOp::Xor(v) => *x ^= v,
        NumOp::Max => *x = u64::MAX,
    }
}

#[derive(Arbitrary, Debug)]
enum RootSrc {
    Same,
    Flip { byte: u8, bit: u8 },
    FromList { list: u8, which: u8 },
    Raw([u8; 32]),
}

#[derive(Arbitrary, Debug)]
enum Part {
    Head,
    Event,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Checkpoint(BytesOp),
    Resign { size: NumOp, root: RootSrc },
    CheckpointFrom(u8),
    Credential(u8),
    CredentialFlip { byte: u8, bit: u8 },
    MapProof(BytesOp),
    MapProofFrom(u8),
    Entry(Part, BytesOp),
    Index(Part, NumOp),
    Inclusion(Part, HashesOp),
    LoggedFrom(Part, u8),
    EventNone,
    EventFrom(u8),
}

#[derive(Arbitrary, Debug)]
struct Input {
    case: u8,
    ops: Vec<Op>,
}

fn logged<'a>(p: &'a mut StatusProof, part: &Part) -> Option<&'a mut LoggedEntry> {
    match part {
        Part::Head => Some(&mut p.head),
        Part::Event => p.event.as_mut(),
    }
}

fn apply(p: &mut StatusProof, op: &Op, fx: &Fx) {
    let other = |i: u8| &fx.cases[usize::from(i) % fx.cases.len()].1;
    match op {
        Op::Checkpoint(b) => {
            let mut bytes = p.checkpoint.clone().into_bytes();
            bytes_op(&mut bytes, b);
            if let Ok(s) = String::from_utf8(bytes) {
                p.checkpoint = s;
            }
        }
        Op::Resign { size, root } => {
            let Ok(v) = revledger::checkpoint::verify_checkpoint(&p.checkpoint, &fx.verifier)
            else {
                return;
            };
            let mut n = v.size();
            num_op(&mut n, size);
            let mut r = *v.root();
            match *root {
                RootSrc::Same => {}
                RootSrc::Flip { byte, bit } => r.0[usize::from(byte) % 32] ^= 1 << (bit % 8),
                RootSrc::FromList { list, which } => {
                    let l = &fx.lists[usize::from(list) % fx.lists.len()];
                    if !l.is_empty() {
                        r = l[usize::from(which) % l.len()];
                    }
                }
                RootSrc::Raw(h) => r = Hash(h),
            }
            let c = Checkpoint::new(revledger_fuzz::LOG_NAME, n, r).unwrap();
            p.checkpoint = sign_checkpoint(&fx.signer, &c)
                .unwrap()
                .note_text()
                .to_owned();
        }
        Op::CheckpointFrom(i) => p.checkpoint = other(*i).checkpoint.clone(),
        Op::Credential(i) => p.credential = other(*i).credential,
        Op::CredentialFlip { byte, bit } => {
            p.credential.0[usize::from(*byte) % 32] ^= 1 << (bit % 8)
        }
        Op::MapProof(b) => bytes_op(&mut p.map_proof, b),
        Op::MapProofFrom(i) => p.map_proof = other(*i).map_proof.clone(),
        Op::Entry(part, b) => {
            if let Some(l) = logged(p, part) {
                bytes_op(&mut l.entry, b);
            }
        }
        Op::Index(part, n) => {
            if let Some(l) = logged(p, part) {
                num_op(&mut l.index, n);
            }
        }
        Op::Inclusion(part, h) => {
            if let Some(l) = logged(p, part) {
                hashes_op(&mut l.inclusion, h, fx);
            }
        }
        Op::LoggedFrom(part, i) => {
            let e = fx.entries[usize::from(*i) % fx.entries.len()].clone();
            match part {
                Part::Head => p.head = e,
                Part::Event => p.event = Some(e),
            }
        }
        Op::EventNone => p.event = None,
        Op::EventFrom(i) => p.event = other(*i).event.clone(),
    }
}

fuzz_target!(|input: Input| {
    let fx = fx();
    let (id, original, truth) = &fx.cases[usize::from(input.case) % fx.cases.len()];
    let mut p = original.clone();
    for op in input.ops.iter().take(8) {
        apply(&mut p, op, fx);
    }
    let v = verify_status(
        &p,
        id,
        &fx.verifier,
        revledger_fuzz::NOW,
        revledger_fuzz::policy(),
    );
    let again = StatusProof::from_json(&p.to_json()).expect("to_json output parses");
    assert_eq!(again, p);
    if p == *original {
        assert_eq!(&v, truth);
    } else {
        assert!(
            matches!(v, Verdict::Invalid(_)),
            "an edited proof is not invalid: {v:?}\noriginal: {}\nedited: {}",
            original.to_json(),
            p.to_json()
        );
    }
});
