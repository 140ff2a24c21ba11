//! The auditor (`audit::Auditor::run`) against a fuzz-driven lying node.
//!
//! The node holds the log key (a lying log can sign anything) and serves
//! the fixture ledger's entries (`revledger_fuzz::fixture`: a registry
//! change, events of every kind, head records) after arbitrary edits: bit
//! flips and byte sets in entries, dropped, duplicated, swapped and
//! truncated entries, new events *signed by the registered issuer key* (so
//! that they pass authorization and reach the status rules) or by an
//! unregistered key, new head records, a checkpoint of any size with the
//! root of the served entries or another, and tampered hash tiles and
//! bundles. Optionally an honest prefix is audited first (the incremental
//! path, resuming from the auditor's state).
//!
//! Asserts: the auditor never panics; the unedited log always passes; an
//! audit that passes has a checkpoint whose root is the tree of the served
//! entries and whose last served entry is a head record.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use revledger::audit::{Auditor, LogSource};
use revledger::checkpoint::{sign_checkpoint, verify_checkpoint, Checkpoint};
use revledger::entry::{Action, CredentialId, Entry, Event, HeadRecord, HolderTag, Reason};
use revledger::hash::{leaf_hash, Hash};
use revledger::merkle::Frontier;
use revledger::note::{KeyName, NoteSigner, NoteVerifier};
use revledger::store::MemStore;
use revledger::tile::{self, TileKind, TilePath};
use std::sync::OnceLock;

struct Fx {
    signer: NoteSigner,
    verifier: NoteVerifier,
    issuer: NoteSigner,
    rogue: NoteSigner,
    entries: Vec<Vec<u8>>,
    /// (size, signed checkpoint) of every fixture batch.
    checkpoints: Vec<(u64, String)>,
}

fn fx() -> &'static Fx {
    static F: OnceLock<Fx> = OnceLock::new();
    F.get_or_init(|| {
        let f = revledger_fuzz::fixture();
        let verifier = revledger_fuzz::log_verifier();
        let size = f.ledger.checkpoint().size();
        let entries = (0..size).map(|i| f.ledger.entry(i).unwrap()).collect();
        let checkpoints = f
            .checkpoints
            .iter()
            .map(|c| (verify_checkpoint(c, &verifier).unwrap().size(), c.clone()))
            .collect();
        Fx {
            signer: revledger_fuzz::log_signer(),
            verifier,
            issuer: revledger_fuzz::issuer(),
            rogue: NoteSigner::from_seed(KeyName::new("rogue.example").unwrap(), [3; 32]),
            entries,
            checkpoints,
        }
    })
}

#[derive(Arbitrary, Debug)]
enum Kind {
    Issue {
        not_before: u8,
        not_after: u16,
        replaces: Option<u8>,
    },
    Suspend(u8),
    Resume,
    Revoke(u8),
}

#[derive(Arbitrary, Debug)]
enum Edit {
    Flip {
        idx: u8,
        pos: u16,
        bit: u8,
    },
    Set {
        idx: u8,
        pos: u16,
        val: u8,
    },
    Drop {
        idx: u8,
    },
    Duplicate {
        idx: u8,
    },
    Swap {
        a: u8,
        b: u8,
    },
    Truncate {
        len: u8,
    },
    Event {
        at: u8,
        kind: Kind,
        cred: u8,
        holder: u8,
        rogue: bool,
        time: u16,
    },
    Head {
        at: u8,
        time: u16,
        root_from: Option<u8>,
    },
}

#[derive(Arbitrary, Debug)]
enum Size {
    Served,
    Delta(i8),
    Raw(u64),
}

#[derive(Arbitrary, Debug)]
struct Input {
    prefix: Option<u8>,
    edits: Vec<Edit>,
    size: Size,
    bad_root: Option<(u8, u8)>,
    tamper_tile: Option<(u8, u16, u8)>,
}

struct Node {
    entries: Vec<Vec<u8>>,
    hashes: Vec<Hash>,
    checkpoint: String,
    size: u64,
    tamper: Option<(u8, u16, u8)>,
}

impl LogSource for Node {
    fn checkpoint(&self) -> Result<String, String> {
        Ok(self.checkpoint.clone())
    }
    fn tile(&self, path: &TilePath) -> Result<Vec<u8>, String> {
        let mut body = match path.kind() {
            TileKind::Hash { .. } => {
                let have = self.entries.len() as u64;
                tile::read_tile(path, self.size.min(have), &self.hashes)
                    .map_err(|e| e.to_string())?
            }
            TileKind::Entries => {
                let start = usize::try_from(path.index().saturating_mul(256)).unwrap_or(usize::MAX);
                let end = start
                    .saturating_add(usize::from(path.width()))
                    .min(self.entries.len());
                let refs: Vec<&[u8]> = self
                    .entries
                    .get(start.min(end)..end)
                    .unwrap_or(&[])
                    .iter()
                    .map(Vec::as_slice)
                    .collect();
                tile::encode_entry_bundle(&refs).map_err(|e| e.to_string())?
            }
        };
        if let Some((which, pos, bit)) = self.tamper {
            // Tamper with one tile in a few (which % 4 == 0: the first served).
            if !body.is_empty() && u64::from(which % 4) == path.index() % 4 {
                let n = body.len();
                body[usize::from(pos) % n] ^= 1 << (bit % 8);
            }
        }
        Ok(body)
    }
}

fn node(entries: Vec<Vec<u8>>, size: u64, root: Hash, tamper: Option<(u8, u16, u8)>) -> Node {
    let f = fx();
    let mut fr = Frontier::new();
    let mut hashes = Vec::new();
    for e in &entries {
        for (_, h) in fr.append(leaf_hash(e)).unwrap() {
            hashes.push(h);
        }
    }
    let c = Checkpoint::new(revledger_fuzz::LOG_NAME, size, root).unwrap();
    let checkpoint = sign_checkpoint(&f.signer, &c)
        .unwrap()
        .note_text()
        .to_owned();
    Node {
        entries,
        hashes,
        checkpoint,
        size,
        tamper,
    }
}

fn root_of(entries: &[Vec<u8>]) -> Hash {
    let mut fr = Frontier::new();
    for e in entries {
        fr.append(leaf_hash(e)).unwrap();
    }
    fr.root()
}

fn event(f: &Fx, kind: &Kind, cred: u8, holder: u8, rogue: bool, time: u16) -> Vec<u8> {
    let t0 = revledger_fuzz::T0;
    let reason = |r: u8| Reason::from_code(1 + r % 5).unwrap();
    let action = match *kind {
        Kind::Issue {
            not_before,
            not_after,
            replaces,
        } => Action::Issue {
            not_before_ms: t0 + u64::from(not_before) * 1000,
            not_after_ms: t0 + 1 + u64::from(not_after) * 1000,
            replaces: replaces.map(revledger_fuzz::cred),
        },
        Kind::Suspend(r) => Action::Suspend { reason: reason(r) },
        Kind::Resume => Action::Resume,
        Kind::Revoke(r) => Action::Revoke { reason: reason(r) },
    };
    let key = if rogue { &f.rogue } else { &f.issuer };
    let ev = Event {
        action,
        credential: CredentialId([cred; 32]),
        holder: HolderTag([holder; 32]),
        issuer_key_id: key.id(),
        issued_at_ms: t0 + u64::from(time) * 100,
    };
    // A self-replacing issue does not encode (decode refuses it); use it
    // anyway: the auditor must refuse the entry, not panic.
    ev.sign(key.signing_key()).encode()
}

fuzz_target!(|input: Input| {
    let f = fx();
    let mut auditor = Auditor::open(MemStore::new(), f.verifier.clone()).unwrap();
    let mut no_progress = |_: u64, _: u64| {};

    // An honest prefix first (every fixture checkpoint ends on a head).
    if let Some(p) = input.prefix {
        let (size, text) = &f.checkpoints[usize::from(p) % f.checkpoints.len()];
        let entries = f.entries[..*size as usize].to_vec();
        let mut honest = node(entries, *size, root_of(&f.entries[..*size as usize]), None);
        honest.checkpoint = text.clone();
        auditor
            .run(&honest, &mut no_progress)
            .expect("honest prefix fails the audit");
    }

    let mut entries = f.entries.clone();
    for edit in input.edits.iter().take(6) {
        let n = entries.len();
        match *edit {
            Edit::Flip { idx, pos, bit } if n > 0 => {
                let e = &mut entries[usize::from(idx) % n];
                if !e.is_empty() {
                    let l = e.len();
                    e[usize::from(pos) % l] ^= 1 << (bit % 8);
                }
            }
            Edit::Set { idx, pos, val } if n > 0 => {
                let e = &mut entries[usize::from(idx) % n];
                if !e.is_empty() {
                    let l = e.len();
                    e[usize::from(pos) % l] = val;
                }
            }
            Edit::Drop { idx } if n > 0 => {
                entries.remove(usize::from(idx) % n);
            }
            Edit::Duplicate { idx } if n > 0 => {
                let i = usize::from(idx) % n;
                let e = entries[i].clone();
                entries.insert(i, e);
            }
            Edit::Swap { a, b } if n > 0 => entries.swap(usize::from(a) % n, usize::from(b) % n),
            Edit::Truncate { len } => entries.truncate(usize::from(len) % (n + 1)),
            Edit::Event {
                at,
                ref kind,
                cred,
                holder,
                rogue,
                time,
            } => {
                let e = event(f, kind, cred, holder, rogue, time);
                entries.insert(usize::from(at) % (n + 1), e);
            }
            Edit::Head {
                at,
                time,
                root_from,
            } => {
                let map_root = root_from
                    .and_then(|i| {
                        let heads: Vec<Hash> = f
                            .entries
                            .iter()
                            .filter_map(|e| match Entry::decode(e) {
                                Ok(Entry::Head(h)) => Some(h.map_root),
                                _ => None,
                            })
                            .collect();
                        heads.get(usize::from(i) % heads.len()).copied()
                    })
                    .unwrap_or(Hash([0; 32]));
                let h = HeadRecord {
                    time_ms: revledger_fuzz::T0 + u64::from(time) * 1000,
                    map_root,
                };
                entries.insert(usize::from(at) % (n + 1), Entry::Head(h).encode());
            }
            _ => {}
        }
    }
    let served = entries.len() as u64;
    let size = match input.size {
        Size::Served => served,
        Size::Delta(d) => served.saturating_add_signed(i64::from(d)),
        Size::Raw(s) => s,
    };
    let mut root = root_of(&entries[..(size.min(served)) as usize]);
    if let Some((byte, bit)) = input.bad_root {
        root.0[usize::from(byte) % 32] ^= 1 << (bit % 8);
    }
    let lying = node(entries.clone(), size, root, input.tamper_tile);
    let unedited = entries == f.entries
        && size == served
        && input.bad_root.is_none()
        && input.tamper_tile.is_none();
    match auditor.run(&lying, &mut no_progress) {
        Ok(report) => {
            assert_eq!(report.size, size);
            assert!(size <= served, "audit passed without the entries");
            assert_eq!(root_of(&entries[..size as usize]), root);
            if size > 0 {
                assert!(
                    matches!(
                        Entry::decode(&entries[size as usize - 1]),
                        Ok(Entry::Head(_))
                    ),
                    "audit passed on a checkpoint not ending on a head"
                );
            }
        }
        Err(e) => {
            let _ = e.evidence();
            assert!(!unedited, "the honest log fails the audit: {e}");
        }
    }
});
