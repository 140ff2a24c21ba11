//! Hostile-input tests for the offline status-proof verifier
//! (`status::verify_status`, docs/FORMAT.md §9, docs/MAP.md §5).
//!
//! A small deterministic ledger (MemStore, fixed seeds and times) holds
//! credentials in every state. Starting from its valid proofs, every field
//! is mutated in turn and the exact verdict is asserted: the specific
//! `Invalid` variant (and, where it tells the checks apart, a fragment of
//! its message), or the true verdict when a change is harmless. Checks that
//! only a forged log can reach (an event that contradicts its status
//! record, a record that does not decode) use a log built here and signed
//! with the log key.

use base64::Engine as _;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use revledger::checkpoint::{sign_checkpoint, Checkpoint};
use revledger::entry::{
    Action, CredentialId, Entry, Event, HeadRecord, HolderTag, KindSet, Reason,
};
use revledger::hash::{leaf_hash, Hash};
use revledger::ledger::{Ledger, Outcome, Submitter};
use revledger::merkle::{self, Frontier};
use revledger::note::{KeyName, NoteSigner, NoteVerifier};
use revledger::rules::{State, StatusRecord};
use revledger::smt::{self, MapProof, Terminal};
use revledger::status::{
    verify_status, Invalid, LoggedEntry, Policy, ProofFormatError, StatusProof, Verdict,
};
use revledger::store::MemStore;
use std::collections::BTreeMap;

// ---------------------------------------------------------------------------
// The fixture
// ---------------------------------------------------------------------------

/// 2026-01-01T00:00:00Z.
const T0: u64 = 1_767_225_600_000;
const T_REGISTRY: u64 = T0 + 1_000;
/// Batch 1: seven issues.
const T1: u64 = T0 + 60_000;
/// Batch 2: suspend, revoke, replace, suspend, suspend.
const T2: u64 = T0 + 120_000;
/// Batch 3 (resume) and the heartbeats: the head time of every final proof.
const T3: u64 = T0 + 180_000;
/// The verifier's clock.
const NOW: u64 = T3 + 60_000;
/// 2031-01-01T00:00:00Z.
const NOT_AFTER: u64 = 1_924_992_000_000;
/// `not_after` of X and Y: after every ledger time, before `NOW`.
const SHORT_NOT_AFTER: u64 = T3 + 30_000;
const MAX_AGE: u64 = 600_000;
const MAX_FUTURE: u64 = 300_000;
/// Final tree size (heartbeats pad the log so that the last index has five
/// inclusion siblings).
const SIZE: u64 = 32;

const LOG_NAME: &str = "example.com/revledger-hostile";

fn policy() -> Policy {
    Policy {
        max_age_ms: MAX_AGE,
        max_future_ms: MAX_FUTURE,
    }
}

fn log_signer() -> NoteSigner {
    NoteSigner::from_seed(KeyName::new(LOG_NAME).unwrap(), [7; 32])
}

fn issuer() -> NoteSigner {
    NoteSigner::from_seed(KeyName::new("issuer.example").unwrap(), [9; 32])
}

fn cred(b: u8) -> CredentialId {
    CredentialId([b; 32])
}

const A: u8 = 0xa1; // active
const B: u8 = 0xb2; // suspended (lost)
const C: u8 = 0xc3; // revoked (key compromise)
const D: u8 = 0xd4; // revoked (superseded by E)
const E: u8 = 0xe5; // active, replaced D
const F: u8 = 0xf6; // suspended then resumed: active
const X: u8 = 0x17; // active but expired on the verifier's clock
const Y: u8 = 0x28; // suspended and expired

/// An active credential whose map key starts with the same byte as A's.
fn g_id() -> CredentialId {
    let a = smt::map_key(&cred(A).0);
    (0..=u16::MAX)
        .map(|n| {
            let mut id = [0x66; 32];
            id[..2].copy_from_slice(&n.to_be_bytes());
            CredentialId(id)
        })
        .find(|id| smt::map_key(&id.0).0[0] == a.0[0])
        .unwrap()
}

fn issue(c: u8, holder: u8, not_after_ms: u64, replaces: Option<u8>) -> Event {
    Event {
        action: Action::Issue {
            not_before_ms: T0,
            not_after_ms,
            replaces: replaces.map(cred),
        },
        credential: cred(c),
        holder: HolderTag([holder; 32]),
        issuer_key_id: issuer().id(),
        issued_at_ms: T0,
    }
}

fn change(c: u8, holder: u8, action: Action) -> Event {
    Event {
        action,
        credential: cred(c),
        holder: HolderTag([holder; 32]),
        issuer_key_id: issuer().id(),
        issued_at_ms: T0,
    }
}

fn signed(e: &Event) -> Vec<u8> {
    e.sign(issuer().signing_key()).encode()
}

fn submit(ledger: &mut Ledger<MemStore>, events: &[Event], now: u64) -> Vec<u64> {
    let raw: Vec<Vec<u8>> = events.iter().map(signed).collect();
    let result = ledger.append_events(&raw, now).unwrap();
    result
        .outcomes
        .iter()
        .map(|o| match o {
            Outcome::Accepted { index, .. } => *index,
            other => panic!("fixture event refused: {other:?}"),
        })
        .collect()
}

/// One credential's proof and what it truly says at `NOW`.
#[derive(Clone)]
struct Case {
    name: &'static str,
    id: CredentialId,
    proof: StatusProof,
    truth: Verdict,
}

struct Fixture {
    vkey: NoteVerifier,
    ledger: Ledger<MemStore>,
    /// Every final proof: A, B, C, D, E, F, X, Y and two never-seen ids
    /// (`U`: path ends in an empty subtree; `V`: path ends at another
    /// credential's leaf).
    cases: Vec<Case>,
    /// Proofs of A and B at the end of batch 1 (B was still active).
    old_a: StatusProof,
    old_b: StatusProof,
    old_size: u64,
    /// Log index of each accepted event, by a short label.
    index: BTreeMap<&'static str, u64>,
}

impl Fixture {
    fn case(&self, name: &str) -> &Case {
        self.cases.iter().find(|c| c.name == name).unwrap()
    }
    fn verify(&self, proof: &StatusProof, id: &CredentialId) -> Verdict {
        verify_status(proof, id, &self.vkey, NOW, policy())
    }
    fn verify_at(&self, proof: &StatusProof, id: &CredentialId, now: u64, p: Policy) -> Verdict {
        verify_status(proof, id, &self.vkey, now, p)
    }
    /// The entry at `index` with its inclusion proof in the final tree.
    fn logged(&self, index: u64) -> LoggedEntry {
        LoggedEntry {
            index,
            entry: self.ledger.entry(index).unwrap(),
            inclusion: self.ledger.inclusion_proof(index, SIZE).unwrap(),
        }
    }
    fn known(&self) -> impl Iterator<Item = &Case> {
        self.cases.iter().filter(|c| c.proof.event.is_some())
    }
}

fn valid(not_after_ms: u64) -> Verdict {
    Verdict::Valid {
        not_after_ms,
        head_time_ms: T3,
    }
}

fn fixture() -> Fixture {
    let mut ledger = Ledger::open(MemStore::new(), log_signer(), T0).unwrap();
    ledger
        .reconcile_submitters(
            &[Submitter {
                key: issuer().verifier(),
                kinds: KindSet::ALL,
            }],
            T_REGISTRY,
        )
        .unwrap();
    let mut index = BTreeMap::new();
    // G's map key shares its first byte with A's, so the map has a chain of
    // interior nodes with empty children (an absent key can end there).
    let g = g_id();
    let issue_g = Event {
        credential: g,
        ..issue(A, 8, NOT_AFTER, None)
    };
    let b1 = submit(
        &mut ledger,
        &[
            issue(A, 1, NOT_AFTER, None),
            issue(B, 2, NOT_AFTER, None),
            issue(C, 3, NOT_AFTER, None),
            issue(D, 4, NOT_AFTER, None),
            issue(X, 5, SHORT_NOT_AFTER, None),
            issue(F, 6, NOT_AFTER, None),
            issue(Y, 7, SHORT_NOT_AFTER, None),
            issue_g,
        ],
        T1,
    );
    for (label, i) in [
        "issue A", "issue B", "issue C", "issue D", "issue X", "issue F", "issue Y",
    ]
    .into_iter()
    .zip(b1)
    {
        index.insert(label, i);
    }
    let old_size = ledger.checkpoint().size();
    let old_a = ledger.status_proof(&cred(A)).unwrap();
    let old_b = ledger.status_proof(&cred(B)).unwrap();
    let b2 = submit(
        &mut ledger,
        &[
            change(
                B,
                2,
                Action::Suspend {
                    reason: Reason::Lost,
                },
            ),
            change(
                C,
                3,
                Action::Revoke {
                    reason: Reason::KeyCompromise,
                },
            ),
            issue(E, 4, NOT_AFTER, Some(D)),
            change(
                F,
                6,
                Action::Suspend {
                    reason: Reason::HolderRequest,
                },
            ),
            change(
                Y,
                7,
                Action::Suspend {
                    reason: Reason::Lost,
                },
            ),
        ],
        T2,
    );
    for (label, i) in ["suspend B", "revoke C", "issue E", "suspend F", "suspend Y"]
        .into_iter()
        .zip(b2)
    {
        index.insert(label, i);
    }
    let b3 = submit(&mut ledger, &[change(F, 6, Action::Resume)], T3);
    index.insert("resume F", b3[0]);
    index.insert("head 2", index["suspend Y"] + 1);
    assert!(ledger.checkpoint().size() < SIZE);
    while ledger.checkpoint().size() < SIZE {
        ledger.append_heartbeat(T3).unwrap();
    }
    assert_eq!(ledger.checkpoint().size(), SIZE);

    let mut cases = Vec::new();
    let mut add = |name, id: CredentialId, truth| {
        cases.push(Case {
            name,
            id,
            proof: ledger.status_proof(&id).unwrap(),
            truth,
        });
    };
    add("A", cred(A), valid(NOT_AFTER));
    add(
        "B",
        cred(B),
        Verdict::Suspended {
            reason: Reason::Lost,
        },
    );
    add(
        "C",
        cred(C),
        Verdict::Revoked {
            reason: Reason::KeyCompromise,
        },
    );
    add(
        "D",
        cred(D),
        Verdict::Revoked {
            reason: Reason::Superseded,
        },
    );
    add("E", cred(E), valid(NOT_AFTER));
    add("F", cred(F), valid(NOT_AFTER));
    let expired = Verdict::Expired {
        not_after_ms: SHORT_NOT_AFTER,
    };
    add("G", g, valid(NOT_AFTER));
    add("X", cred(X), expired.clone());
    add("Y", cred(Y), expired);
    // Two never-seen credentials: one whose path ends in an empty subtree,
    // one whose path ends at another credential's leaf.
    let never = |want_leaf: bool| {
        (0..=u16::MAX)
            .map(|n| {
                let mut id = [0x55; 32];
                id[..2].copy_from_slice(&n.to_be_bytes());
                CredentialId(id)
            })
            .find(|id| {
                let p = MapProof::decode(&ledger.status_proof(id).unwrap().map_proof).unwrap();
                matches!(p.terminal, Terminal::Leaf { .. }) == want_leaf && p.depth >= 1
            })
            .unwrap()
    };
    let (u, v) = (never(false), never(true));
    add("U", u, Verdict::Unknown);
    add("V", v, Verdict::Unknown);

    let f = Fixture {
        vkey: log_signer().verifier(),
        ledger,
        cases,
        old_a,
        old_b,
        old_size,
        index,
    };
    // Every proof has map siblings, so there is something to mutate.
    for c in &f.cases {
        let p = MapProof::decode(&c.proof.map_proof).unwrap();
        assert!(!p.siblings.is_empty(), "{}: no map siblings", c.name);
        assert_eq!(c.proof.head.inclusion.len(), 5);
    }
    f
}

// ---------------------------------------------------------------------------
// Table-driven checking
// ---------------------------------------------------------------------------

fn invalid_name(e: &Invalid) -> &'static str {
    match e {
        Invalid::WrongCredential { .. } => "WrongCredential",
        Invalid::Checkpoint(_) => "Checkpoint",
        Invalid::HeadNotLast { .. } => "HeadNotLast",
        Invalid::HeadMalformed => "HeadMalformed",
        Invalid::HeadInclusion(_) => "HeadInclusion",
        Invalid::HeadInFuture { .. } => "HeadInFuture",
        Invalid::MapProof(_) => "MapProof",
        Invalid::Record(_) => "Record",
        Invalid::MissingEvent => "MissingEvent",
        Invalid::UnexpectedEvent => "UnexpectedEvent",
        Invalid::EventIndex { .. } => "EventIndex",
        Invalid::EventLeafHash => "EventLeafHash",
        Invalid::EventInclusion(_) => "EventInclusion",
        Invalid::EventMalformed(_) => "EventMalformed",
        Invalid::EventContradictsStatus => "EventContradictsStatus",
    }
}

/// What a mutated proof must give.
#[derive(Clone, Debug)]
enum Want {
    /// Exactly this verdict (a harmless change, or a precise `Invalid`).
    Is(Verdict),
    /// `Invalid` of this variant, whose message contains this fragment.
    Inv(&'static str, &'static str),
}

fn inv(variant: &'static str) -> Want {
    Want::Inv(variant, "")
}

#[track_caller]
fn check(label: &str, got: &Verdict, want: &Want) {
    let ok = match (want, got) {
        (Want::Is(v), g) => v == g,
        (Want::Inv(name, frag), Verdict::Invalid(e)) => {
            invalid_name(e) == *name && e.to_string().contains(frag)
        }
        _ => false,
    };
    assert!(ok, "{label}: want {want:?}, got {got:?}");
}

/// One mutation: a label, the proof, the credential asked about, the verdict
/// wanted at `NOW` under `policy()`.
struct Row {
    label: String,
    proof: StatusProof,
    asked: CredentialId,
    want: Want,
}

fn run(f: &Fixture, rows: &[Row]) -> usize {
    for r in rows {
        check(&r.label, &f.verify(&r.proof, &r.asked), &r.want);
    }
    rows.len()
}

fn row(label: impl Into<String>, proof: StatusProof, asked: CredentialId, want: Want) -> Row {
    Row {
        label: label.into(),
        proof,
        asked,
        want,
    }
}

/// Rows that apply `m` to a copy of each case's proof.
fn each_case(
    f: &Fixture,
    filter: impl Fn(&Case) -> bool,
    what: &str,
    m: impl Fn(&Case, &mut StatusProof),
    want: Want,
) -> Vec<Row> {
    f.cases
        .iter()
        .filter(|c| filter(c))
        .map(|c| {
            let mut p = c.proof.clone();
            m(c, &mut p);
            row(format!("{} {what}", c.name), p, c.id, want.clone())
        })
        .collect()
}

fn all(_: &Case) -> bool {
    true
}

fn has_event(c: &Case) -> bool {
    c.proof.event.is_some()
}

fn flip_bit(bytes: &mut [u8], bit: usize) {
    bytes[bit / 8] ^= 1 << (bit % 8);
}

// ---------------------------------------------------------------------------
// Baseline
// ---------------------------------------------------------------------------

#[test]
fn baseline_every_fixture_proof_has_its_true_verdict() {
    let f = fixture();
    for c in &f.cases {
        check(
            c.name,
            &f.verify(&c.proof, &c.id),
            &Want::Is(c.truth.clone()),
        );
        let back = StatusProof::from_json(&c.proof.to_json()).unwrap();
        assert_eq!(back, c.proof, "{}: JSON round trip", c.name);
        assert_eq!(
            c.proof.event.is_some(),
            !matches!(c.truth, Verdict::Unknown)
        );
    }
    // The old proofs are valid at their own size.
    assert_eq!(f.old_a.head.index, f.old_size - 1);
    check(
        "old A",
        &f.verify(&f.old_a, &cred(A)),
        &Want::Is(Verdict::Valid {
            not_after_ms: NOT_AFTER,
            head_time_ms: T1,
        }),
    );
}

// ---------------------------------------------------------------------------
// Inclusion proofs and indexes
// ---------------------------------------------------------------------------

#[test]
fn every_bit_of_every_inclusion_sibling() {
    let f = fixture();
    let mut n = 0;
    let head = Want::Inv("HeadInclusion", "leads to root");
    let event = Want::Inv("EventInclusion", "leads to root");
    for c in &f.cases {
        for i in 0..c.proof.head.inclusion.len() {
            for bit in 0..256 {
                let mut p = c.proof.clone();
                flip_bit(&mut p.head.inclusion[i].0, bit);
                let l = format!("{} head sibling {i} bit {bit}", c.name);
                check(&l, &f.verify(&p, &c.id), &head);
                n += 1;
            }
        }
        let Some(ev) = &c.proof.event else { continue };
        for i in 0..ev.inclusion.len() {
            for bit in 0..256 {
                let mut p = c.proof.clone();
                flip_bit(&mut p.event.as_mut().unwrap().inclusion[i].0, bit);
                let l = format!("{} event sibling {i} bit {bit}", c.name);
                check(&l, &f.verify(&p, &c.id), &event);
                n += 1;
            }
        }
    }
    assert!(n > 10 * 5 * 256);
    eprintln!("inclusion sibling bit flips: {n}");
}

#[test]
fn inclusion_proofs_of_the_wrong_length() {
    let f = fixture();
    let wrong_len = |v: &mut Vec<Hash>, how: usize| match how {
        0 => {
            v.pop();
        }
        1 => v.clear(),
        2 => v.push(Hash([0; 32])),
        3 => {
            let first = v[0];
            v.push(first);
        }
        4 => v.insert(0, Hash([1; 32])),
        _ => unreachable!(),
    };
    let mut rows = Vec::new();
    for how in 0..5 {
        rows.extend(each_case(
            &f,
            all,
            &format!("head inclusion length change {how}"),
            |_, p| wrong_len(&mut p.head.inclusion, how),
            Want::Inv("HeadInclusion", "proof has"),
        ));
        rows.extend(each_case(
            &f,
            has_event,
            &format!("event inclusion length change {how}"),
            |_, p| wrong_len(&mut p.event.as_mut().unwrap().inclusion, how),
            Want::Inv("EventInclusion", "proof has"),
        ));
    }
    run(&f, &rows);
}

#[test]
fn head_and_event_index_off_by_one() {
    let f = fixture();
    let mut rows = Vec::new();
    for (d, label) in [(-1i64, "-1"), (1, "+1")] {
        for c in &f.cases {
            let mut p = c.proof.clone();
            p.head.index = p.head.index.checked_add_signed(d).unwrap();
            let want = Want::Is(Verdict::Invalid(Invalid::HeadNotLast {
                index: p.head.index,
                size: SIZE,
            }));
            rows.push(row(format!("{} head index {label}", c.name), p, c.id, want));
            let Some(ev) = &c.proof.event else { continue };
            let mut p = c.proof.clone();
            let got = ev.index.checked_add_signed(d).unwrap();
            p.event.as_mut().unwrap().index = got;
            let want = Want::Is(Verdict::Invalid(Invalid::EventIndex {
                expected: ev.index,
                got,
            }));
            rows.push(row(
                format!("{} event index {label}", c.name),
                p,
                c.id,
                want,
            ));
        }
    }
    // Extremes.
    let a = f.case("A");
    for index in [0, u64::MAX, SIZE] {
        let mut p = a.proof.clone();
        p.head.index = index;
        let want = Want::Is(Verdict::Invalid(Invalid::HeadNotLast { index, size: SIZE }));
        rows.push(row(format!("A head index {index}"), p, a.id, want));
    }
    run(&f, &rows);
}

// ---------------------------------------------------------------------------
// The checkpoint
// ---------------------------------------------------------------------------

/// Splits a signed note into (text, signature lines).
fn split_note(note: &str) -> (&str, Vec<&str>) {
    let (text, sigs) = note.split_once("\n\n").unwrap();
    (text, sigs.lines().collect())
}

/// Rewrites the decoded signature blob (4-byte key id ‖ 64-byte signature)
/// of the note's first signature line.
fn edit_signature(note: &str, edit: impl Fn(&mut Vec<u8>)) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let (text, sigs) = split_note(note);
    let (prefix, blob) = sigs[0].rsplit_once(' ').unwrap();
    let mut raw = b64.decode(blob).unwrap();
    edit(&mut raw);
    let mut out = format!("{text}\n\n{prefix} {}\n", b64.encode(raw));
    for s in &sigs[1..] {
        out += s;
        out += "\n";
    }
    out
}

/// A checkpoint body signed by `signer` (bypassing `sign_checkpoint`'s
/// origin check).
fn sign_body(signer: &NoteSigner, body: &str) -> String {
    signer.sign_note(body).unwrap()
}

fn signed_checkpoint(size: u64, root: &Hash) -> String {
    let ck = Checkpoint::new(LOG_NAME, size, *root).unwrap();
    sign_checkpoint(&log_signer(), &ck)
        .unwrap()
        .note_text()
        .to_string()
}

#[test]
fn checkpoint_mutations() {
    let f = fixture();
    let ck = f.ledger.checkpoint().clone();
    let root = *ck.root();
    let note = ck.note_text().to_string();
    let (text, _) = split_note(&note);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    let mut flipped_root = root;
    flipped_root.0[0] ^= 1;

    // (label, checkpoint text, head index override, expected) for every case.
    let mut texts: Vec<(String, String, Option<u64>, Want)> = Vec::new();
    let cp = inv("Checkpoint");
    // Unsigned edits of the text: the signature no longer verifies.
    for (label, body) in [
        (
            "size+1 unsigned",
            format!("{}\n{}\n{}\n", lines[0], SIZE + 1, lines[2]),
        ),
        (
            "size-1 unsigned",
            format!("{}\n{}\n{}\n", lines[0], SIZE - 1, lines[2]),
        ),
        (
            "root changed unsigned",
            format!("{}\n{}\n{}\n", lines[0], SIZE, flipped_root.to_base64()),
        ),
    ] {
        let (_, sigs) = split_note(&note);
        texts.push((
            label.into(),
            format!("{body}\n{}\n", sigs[0]),
            None,
            cp.clone(),
        ));
    }
    // Every bit of the key id and of the signature.
    for bit in 0..68 * 8 {
        let t = edit_signature(&note, |raw| flip_bit(raw, bit));
        texts.push((format!("signature blob bit {bit}"), t, None, cp.clone()));
    }
    texts.push((
        "signature truncated".into(),
        edit_signature(&note, |raw| {
            raw.pop();
        }),
        None,
        cp.clone(),
    ));
    texts.push((
        "no signature".into(),
        format!("{text}\n\n"),
        None,
        cp.clone(),
    ));
    texts.push(("text only".into(), format!("{text}\n"), None, cp.clone()));
    texts.push(("empty".into(), String::new(), None, cp.clone()));
    // Another key with the log's name, and another key with its own name.
    let other_same_name = NoteSigner::from_seed(KeyName::new(LOG_NAME).unwrap(), [8; 32]);
    texts.push((
        "signed by another key named like the log".into(),
        sign_body(&other_same_name, &format!("{text}\n")),
        None,
        cp.clone(),
    ));
    let stranger = NoteSigner::from_seed(KeyName::new("evil.example").unwrap(), [6; 32]);
    texts.push((
        "signed by a stranger".into(),
        sign_body(&stranger, &format!("{text}\n")),
        None,
        cp.clone(),
    ));
    // The log key, but another origin.
    texts.push((
        "log key, other origin".into(),
        sign_body(
            &log_signer(),
            &format!("evil.example\n{SIZE}\n{}\n", root.to_base64()),
        ),
        None,
        Want::Inv("Checkpoint", "is not the key name"),
    ));
    // The log key, with an extension line.
    let ext = Checkpoint::parse_body(&format!("{LOG_NAME}\n{SIZE}\n{}\next\n", root.to_base64()))
        .unwrap();
    assert_eq!(ext.extensions(), ["ext".to_string()]);
    texts.push((
        "log key, extension line".into(),
        sign_checkpoint(&log_signer(), &ext)
            .unwrap()
            .note_text()
            .to_string(),
        None,
        Want::Inv("Checkpoint", "unexpected extension lines"),
    ));
    // The log key signing wrong sizes and roots.
    texts.push((
        "log key, size+1".into(),
        signed_checkpoint(SIZE + 1, &root),
        None,
        Want::Is(Verdict::Invalid(Invalid::HeadNotLast {
            index: SIZE - 1,
            size: SIZE + 1,
        })),
    ));
    texts.push((
        "log key, size+1, head index moved".into(),
        signed_checkpoint(SIZE + 1, &root),
        Some(SIZE),
        Want::Inv("HeadInclusion", ""),
    ));
    texts.push((
        "log key, size-1".into(),
        signed_checkpoint(SIZE - 1, &root),
        None,
        Want::Is(Verdict::Invalid(Invalid::HeadNotLast {
            index: SIZE - 1,
            size: SIZE - 1,
        })),
    ));
    texts.push((
        "log key, size-1, head index moved".into(),
        signed_checkpoint(SIZE - 1, &root),
        Some(SIZE - 2),
        Want::Inv("HeadInclusion", ""),
    ));
    texts.push((
        "log key, size 0".into(),
        signed_checkpoint(0, &root),
        None,
        Want::Is(Verdict::Invalid(Invalid::HeadNotLast {
            index: SIZE - 1,
            size: 0,
        })),
    ));
    texts.push((
        "log key, root changed".into(),
        signed_checkpoint(SIZE, &flipped_root),
        None,
        Want::Inv("HeadInclusion", "leads to root"),
    ));
    texts.push((
        "old checkpoint, current head".into(),
        f.old_a.checkpoint.clone(),
        None,
        Want::Is(Verdict::Invalid(Invalid::HeadNotLast {
            index: SIZE - 1,
            size: f.old_size,
        })),
    ));

    let mut rows = Vec::new();
    for (label, t, head_index, want) in &texts {
        rows.extend(each_case(
            &f,
            all,
            label,
            |_, p| {
                p.checkpoint = t.clone();
                if let Some(i) = head_index {
                    p.head.index = *i;
                }
            },
            want.clone(),
        ));
    }
    // Harmless: a witness cosignature after the log's signature.
    let witness = NoteSigner::from_seed(KeyName::new("witness.example").unwrap(), [5; 32]);
    let wsig = sign_body(&witness, &format!("{text}\n"));
    let (_, wlines) = split_note(&wsig);
    let cosigned = format!("{note}{}\n", wlines[0]);
    for c in &f.cases {
        let mut p = c.proof.clone();
        p.checkpoint = cosigned.clone();
        rows.push(row(
            format!("{} cosigned by a witness", c.name),
            p,
            c.id,
            Want::Is(c.truth.clone()),
        ));
    }
    let n = run(&f, &rows);
    eprintln!("checkpoint mutations: {n}");
}

#[test]
fn old_checkpoint_with_its_own_head_is_stale_when_old_enough_never_invalid() {
    let f = fixture();
    let age = NOW - T1;
    let fresh = Policy {
        max_age_ms: age,
        max_future_ms: MAX_FUTURE,
    };
    let tight = Policy {
        max_age_ms: age - 1,
        max_future_ms: MAX_FUTURE,
    };
    let old_valid = Verdict::Valid {
        not_after_ms: NOT_AFTER,
        head_time_ms: T1,
    };
    let stale = Verdict::Stale {
        head_time_ms: T1,
        age_ms: age,
    };
    for (label, p, id) in [("A", &f.old_a, cred(A)), ("B", &f.old_b, cred(B))] {
        // At exactly max_age the old proof still says what it said then: B
        // was active at that size. This is the freshness window the policy
        // chooses.
        check(
            label,
            &f.verify_at(p, &id, NOW, fresh),
            &Want::Is(old_valid.clone()),
        );
        check(
            label,
            &f.verify_at(p, &id, NOW, tight),
            &Want::Is(stale.clone()),
        );
        check(label, &f.verify(p, &id), &Want::Is(old_valid.clone()));
    }
    // Mixing sizes: old checkpoint and head with the current map proof and
    // event (map root differs), and the current checkpoint with the old head.
    let a = f.case("A");
    let mut mixed = a.proof.clone();
    mixed.checkpoint = f.old_a.checkpoint.clone();
    mixed.head = f.old_a.head.clone();
    check(
        "old checkpoint+head, new map proof",
        &f.verify(&mixed, &a.id),
        &Want::Inv("MapProof", "proof computes root"),
    );
    let mut mixed = a.proof.clone();
    mixed.head = f.old_a.head.clone();
    check(
        "new checkpoint, old head",
        &f.verify(&mixed, &a.id),
        &Want::Is(Verdict::Invalid(Invalid::HeadNotLast {
            index: f.old_size - 1,
            size: SIZE,
        })),
    );
    let mut mixed = f.old_b.clone();
    mixed.map_proof = f.case("B").proof.map_proof.clone();
    mixed.event = f.case("B").proof.event.clone();
    check(
        "old B with new map proof",
        &f.verify(&mixed, &cred(B)),
        &Want::Inv("MapProof", "proof computes root"),
    );
}

// ---------------------------------------------------------------------------
// The head entry
// ---------------------------------------------------------------------------

fn head_record(p: &StatusProof) -> HeadRecord {
    match Entry::decode(&p.head.entry).unwrap() {
        Entry::Head(h) => h,
        other => panic!("not a head: {other:?}"),
    }
}

#[test]
fn head_entry_mutations() {
    let f = fixture();
    let mut rows = Vec::new();
    let incl = || Want::Inv("HeadInclusion", "leads to root");
    for (what, dt) in [("time+1", 1i64), ("time-1", -1), ("time+1h", 3_600_000)] {
        rows.extend(each_case(
            &f,
            all,
            what,
            |_, p| {
                let mut h = head_record(p);
                h.time_ms = h.time_ms.checked_add_signed(dt).unwrap();
                p.head.entry = h.encode();
            },
            incl(),
        ));
    }
    rows.extend(each_case(
        &f,
        all,
        "map root changed",
        |_, p| {
            let mut h = head_record(p);
            h.map_root.0[31] ^= 0x80;
            p.head.entry = h.encode();
        },
        incl(),
    ));
    // Every bit: type and version bytes make it not a head record; the rest
    // breaks inclusion.
    for bit in 0..HeadRecord::LEN * 8 {
        let want = if bit < 16 {
            Want::Is(Verdict::Invalid(Invalid::HeadMalformed))
        } else {
            incl()
        };
        rows.extend(each_case(
            &f,
            all,
            &format!("head entry bit {bit}"),
            |_, p| flip_bit(&mut p.head.entry, bit),
            want,
        ));
    }
    let malformed = Want::Is(Verdict::Invalid(Invalid::HeadMalformed));
    rows.extend(each_case(
        &f,
        all,
        "head truncated",
        |_, p| {
            p.head.entry.pop();
        },
        malformed.clone(),
    ));
    rows.extend(each_case(
        &f,
        all,
        "head extended",
        |_, p| {
            p.head.entry.push(0);
        },
        malformed.clone(),
    ));
    rows.extend(each_case(
        &f,
        all,
        "head empty",
        |_, p| p.head.entry.clear(),
        malformed.clone(),
    ));
    // A non-head entry in its place (event, registry change).
    let event_entry = f.logged(f.index["issue A"]).entry;
    rows.extend(each_case(
        &f,
        all,
        "event as head",
        |_, p| {
            p.head.entry = event_entry.clone();
        },
        malformed.clone(),
    ));
    let registry_entry = f.ledger.entry(1).unwrap();
    rows.extend(each_case(
        &f,
        all,
        "registry change as head",
        |_, p| {
            p.head.entry = registry_entry.clone();
        },
        malformed,
    ));
    // An older head record (batch 2: other time, other map root): at its own
    // index it is not last; at the last index it is not included.
    let older = f.logged(f.index["head 2"]);
    assert_ne!(older.entry, f.case("A").proof.head.entry);
    rows.extend(each_case(
        &f,
        all,
        "older head at its own index",
        |_, p| p.head = older.clone(),
        Want::Is(Verdict::Invalid(Invalid::HeadNotLast {
            index: older.index,
            size: SIZE,
        })),
    ));
    rows.extend(each_case(
        &f,
        all,
        "older head at the last index",
        |_, p| p.head.entry = older.entry.clone(),
        incl(),
    ));
    let n = run(&f, &rows);
    eprintln!("head entry mutations: {n}");
}

#[test]
fn head_record_in_the_future() {
    // A ledger whose clock runs an hour ahead of the verifier's.
    let ahead = NOW + 3_600_000;
    let ledger = Ledger::open(MemStore::new(), log_signer(), ahead).unwrap();
    let vkey = log_signer().verifier();
    let id = cred(A);
    let p = ledger.status_proof(&id).unwrap();
    assert_eq!(head_record(&p).time_ms, ahead);
    let at = |now| verify_status(&p, &id, &vkey, now, policy());
    check(
        "head 1h ahead",
        &at(NOW),
        &Want::Is(Verdict::Invalid(Invalid::HeadInFuture {
            head_ms: ahead,
            now_ms: NOW,
        })),
    );
    check(
        "one ms beyond skew",
        &at(ahead - MAX_FUTURE - 1),
        &Want::Is(Verdict::Invalid(Invalid::HeadInFuture {
            head_ms: ahead,
            now_ms: ahead - MAX_FUTURE - 1,
        })),
    );
    check(
        "exactly at skew",
        &at(ahead - MAX_FUTURE),
        &Want::Is(Verdict::Unknown),
    );
    // Skew 0.
    let strict = Policy {
        max_age_ms: MAX_AGE,
        max_future_ms: 0,
    };
    check(
        "skew 0",
        &verify_status(&p, &id, &vkey, ahead - 1, strict),
        &Want::Inv("HeadInFuture", ""),
    );
    check(
        "skew 0, same ms",
        &verify_status(&p, &id, &vkey, ahead, strict),
        &Want::Is(Verdict::Unknown),
    );

    // The same for the fixture: the future check comes before the verdict,
    // so even a revoked credential's proof is invalid then.
    let f = fixture();
    for c in &f.cases {
        let early = T3 - MAX_FUTURE - 1;
        check(
            c.name,
            &f.verify_at(&c.proof, &c.id, early, policy()),
            &Want::Is(Verdict::Invalid(Invalid::HeadInFuture {
                head_ms: T3,
                now_ms: early,
            })),
        );
    }
}

// ---------------------------------------------------------------------------
// The map proof
// ---------------------------------------------------------------------------

#[test]
fn every_bit_of_every_map_proof() {
    let f = fixture();
    let mut n = 0;
    for c in &f.cases {
        for bit in 0..c.proof.map_proof.len() * 8 {
            let mut p = c.proof.clone();
            flip_bit(&mut p.map_proof, bit);
            let l = format!("{} map proof bit {bit}", c.name);
            check(&l, &f.verify(&p, &c.id), &inv("MapProof"));
            n += 1;
        }
    }
    eprintln!("map proof bit flips: {n}");
}

#[test]
fn structural_map_proof_mutations() {
    let f = fixture();
    let mut rows = Vec::new();
    let mp = |label: &str, m: &dyn Fn(&mut MapProof), want: Want| {
        each_case(
            &f,
            all,
            label,
            |_, p| {
                let mut d = MapProof::decode(&p.map_proof).unwrap();
                m(&mut d);
                p.map_proof = d.encode();
            },
            want,
        )
    };
    let root = || Want::Inv("MapProof", "proof computes root");
    // Each sibling, each bit (re-encoded, so the structure stays sound).
    for c in &f.cases {
        let d = MapProof::decode(&c.proof.map_proof).unwrap();
        for i in 0..d.siblings.len() {
            for bit in 0..256 {
                let mut d = d.clone();
                flip_bit(&mut d.siblings[i].0, bit);
                let mut p = c.proof.clone();
                p.map_proof = d.encode();
                rows.push(row(
                    format!("{} map sibling {i} bit {bit}", c.name),
                    p,
                    c.id,
                    root(),
                ));
            }
        }
        // Each bitmap bit within the depth, siblings unchanged.
        for bit in 0..usize::from(d.depth) {
            let mut d = d.clone();
            d.bitmap[bit / 8] ^= 0x80 >> (bit % 8);
            let mut p = c.proof.clone();
            p.map_proof = d.encode();
            rows.push(row(
                format!("{} bitmap bit {bit}", c.name),
                p,
                c.id,
                inv("MapProof"),
            ));
        }
        // Truncations (every length) and extensions of the bytes.
        for len in 0..c.proof.map_proof.len() {
            let mut p = c.proof.clone();
            p.map_proof.truncate(len);
            rows.push(row(
                format!("{} map proof cut to {len}", c.name),
                p,
                c.id,
                inv("MapProof"),
            ));
        }
        for extra in [&[0u8][..], &[1], &[0; 32]] {
            let mut p = c.proof.clone();
            p.map_proof.extend_from_slice(extra);
            let want = Want::Inv("MapProof", "trailing bytes");
            rows.push(row(
                format!("{} map proof +{}", c.name, extra.len()),
                p,
                c.id,
                want,
            ));
        }
    }
    // Depth ±1 with the bitmap as is, then with the bitmap resized.
    rows.extend(mp("depth+1", &|d| d.depth += 1, inv("MapProof")));
    rows.extend(mp("depth-1", &|d| d.depth -= 1, inv("MapProof")));
    rows.extend(mp(
        "depth+1 bitmap fitted",
        &|d| {
            d.depth += 1;
            d.bitmap.resize(usize::from(d.depth).div_ceil(8), 0);
        },
        inv("MapProof"),
    ));
    rows.extend(mp(
        "depth-1 bitmap fitted",
        &|d| {
            let gone = usize::from(d.depth - 1);
            let had = d.bitmap[gone / 8] & (0x80 >> (gone % 8)) != 0;
            d.bitmap[gone / 8] &= !(0x80 >> (gone % 8));
            if had {
                d.siblings.pop();
            }
            d.depth -= 1;
            d.bitmap.truncate(usize::from(d.depth).div_ceil(8));
        },
        inv("MapProof"),
    ));
    rows.extend(mp("depth 256", &|d| d.depth = 256, inv("MapProof")));
    rows.extend(mp(
        "depth 257",
        &|d| d.depth = 257,
        Want::Inv("MapProof", "exceeds 256"),
    ));
    rows.extend(mp(
        "a sibling dropped",
        &|d| {
            d.siblings.remove(0);
        },
        inv("MapProof"),
    ));
    rows.extend(mp(
        "an EMPTY sibling listed",
        &|d| d.siblings[0] = Hash([0; 32]),
        Want::Inv("MapProof", "is EMPTY"),
    ));
    for c in &f.cases {
        let mut d = MapProof::decode(&c.proof.map_proof).unwrap();
        if d.terminal == Terminal::Empty {
            continue;
        }
        d.terminal = Terminal::Empty;
        let mut p = c.proof.clone();
        p.map_proof = d.encode();
        rows.push(row(format!("{} terminal emptied", c.name), p, c.id, root()));
    }
    for c in &f.cases {
        let mut p = c.proof.clone();
        p.map_proof[0] = 2;
        let want = Want::Inv("MapProof", "unsupported proof version");
        rows.push(row(
            format!("{} map proof version 2", c.name),
            p,
            c.id,
            want,
        ));
    }
    // The classic value swap: a revoked/suspended record rewritten as active.
    for c in f.known() {
        let mut d = MapProof::decode(&c.proof.map_proof).unwrap();
        let Terminal::Leaf { value, .. } = &mut d.terminal else {
            panic!()
        };
        let mut r = StatusRecord::decode(value).unwrap();
        r.state = State::Active;
        r.reason = None;
        r.not_after_ms = NOT_AFTER + 1;
        *value = r.encode().to_vec();
        let mut p = c.proof.clone();
        p.map_proof = d.encode();
        rows.push(row(
            format!("{} record rewritten active", c.name),
            p,
            c.id,
            root(),
        ));
    }
    let n = run(&f, &rows);
    eprintln!("structural map proof mutations: {n}");
}

#[test]
fn map_proofs_presented_for_the_wrong_credential() {
    let f = fixture();
    let mut rows = Vec::new();
    // Asking about another credential than the proof's.
    for c in &f.cases {
        for o in &f.cases {
            if o.id == c.id {
                continue;
            }
            let want = Want::Is(Verdict::Invalid(Invalid::WrongCredential {
                proof: c.id,
                asked: o.id,
            }));
            rows.push(row(
                format!("{} asked as {}", c.name, o.name),
                c.proof.clone(),
                o.id,
                want,
            ));
        }
    }
    // Relabelled: credential set to another, map proof (and event) kept;
    // and the other way round, map proof taken from another proof.
    for c in &f.cases {
        for o in &f.cases {
            if o.id == c.id {
                continue;
            }
            // Proofs are canonical (one per root and key), so a foreign map
            // proof verifies for `o` only when it is byte for byte o's own:
            // a membership proof for K is also the non-membership proof of
            // every absent key whose path ends at K's leaf (here: V and C).
            let same = c.proof.map_proof == o.proof.map_proof;
            let mut p = c.proof.clone();
            p.credential = o.id;
            let want = match (same, &c.proof.event, &o.proof.event) {
                (false, _, _) => inv("MapProof"),
                (true, None, Some(_)) => Want::Is(Verdict::Invalid(Invalid::MissingEvent)),
                (true, Some(_), None) => Want::Is(Verdict::Invalid(Invalid::UnexpectedEvent)),
                (true, _, _) => unreachable!("two credentials with the same map proof"),
            };
            rows.push(row(
                format!("{} relabelled {}", c.name, o.name),
                p.clone(),
                o.id,
                want,
            ));
            if same {
                // With o's event (or none) it is simply o's proof.
                p.event = o.proof.event.clone();
                let l = format!("{} relabelled {} with o's event", c.name, o.name);
                rows.push(row(l, p, o.id, Want::Is(o.truth.clone())));
            }
            let mut p = o.proof.clone();
            p.map_proof = c.proof.map_proof.clone();
            let want = if same {
                Want::Is(o.truth.clone())
            } else {
                inv("MapProof")
            };
            rows.push(row(
                format!("{} with map proof of {}", o.name, c.name),
                p,
                o.id,
                want,
            ));
        }
    }
    // V's proof ends at a known credential's leaf: relabelling it must give
    // MissingEvent for that credential, never Unknown.
    let v = f.case("V");
    let Terminal::Leaf { key, .. } = MapProof::decode(&v.proof.map_proof).unwrap().terminal else {
        panic!("V ends at a leaf")
    };
    let owner = f
        .known()
        .find(|c| smt::map_key(&c.id.0) == key)
        .expect("V's terminal leaf is a fixture credential");
    let mut p = v.proof.clone();
    p.credential = owner.id;
    check(
        "V relabelled as its terminal's owner",
        &f.verify(&p, &owner.id),
        &Want::Is(Verdict::Invalid(Invalid::MissingEvent)),
    );
    let n = run(&f, &rows);
    eprintln!(
        "wrong-credential map proofs: {n} (V ends at {}'s leaf)",
        owner.name
    );
}

#[test]
fn event_presence_must_match_the_map() {
    let f = fixture();
    let mut rows = Vec::new();
    // Membership proofs without their event.
    rows.extend(each_case(
        &f,
        has_event,
        "event omitted",
        |_, p| p.event = None,
        Want::Is(Verdict::Invalid(Invalid::MissingEvent)),
    ));
    // Non-membership proofs with an event attached (each known event).
    for c in f.cases.iter().filter(|c| !has_event(c)) {
        for k in f.known() {
            let mut p = c.proof.clone();
            p.event = k.proof.event.clone();
            let want = Want::Is(Verdict::Invalid(Invalid::UnexpectedEvent));
            rows.push(row(
                format!("{} with event of {}", c.name, k.name),
                p,
                c.id,
                want,
            ));
        }
    }
    run(&f, &rows);
}

// ---------------------------------------------------------------------------
// The event
// ---------------------------------------------------------------------------

#[test]
fn event_substitutions() {
    let f = fixture();
    let mut rows = Vec::new();
    let event_of = |c: &Case| c.proof.event.clone().unwrap();
    // (case, label of the substituted logged event)
    let subs: &[(&str, &str)] = &[
        ("B", "issue B"),   // older event of the same credential
        ("C", "issue C"),   // older event of the same credential
        ("D", "issue D"),   // the replaced credential's own issue
        ("E", "issue D"),   // another credential's event
        ("F", "suspend F"), // older event of the same credential
        ("F", "issue F"),
        ("A", "issue B"),   // another credential's issue
        ("B", "suspend Y"), // another credential's suspend, same reason
        ("Y", "suspend B"),
        ("X", "issue Y"), // same not_after
        ("C", "head 2"),  // not an event at all
    ];
    for &(name, label) in subs {
        let c = f.case(name);
        let real = event_of(c);
        let sub = f.logged(f.index[label]);
        assert_ne!(sub.index, real.index);
        // At its own index: the record names another index.
        let mut p = c.proof.clone();
        p.event = Some(sub.clone());
        let want = Want::Is(Verdict::Invalid(Invalid::EventIndex {
            expected: real.index,
            got: sub.index,
        }));
        rows.push(row(
            format!("{name} with {label} at its index"),
            p,
            c.id,
            want,
        ));
        // Relabelled to the recorded index (with that index's inclusion): the
        // leaf hash differs from the record's.
        let mut p = c.proof.clone();
        p.event = Some(LoggedEntry {
            index: real.index,
            entry: sub.entry.clone(),
            inclusion: real.inclusion.clone(),
        });
        let want = Want::Is(Verdict::Invalid(Invalid::EventLeafHash));
        rows.push(row(
            format!("{name} with {label} relabelled"),
            p,
            c.id,
            want,
        ));
    }
    // Every bit of every event entry, and length changes: the leaf hash check
    // comes first.
    let leaf = Want::Is(Verdict::Invalid(Invalid::EventLeafHash));
    for c in f.known() {
        let ev = event_of(c);
        for bit in 0..ev.entry.len() * 8 {
            let mut p = c.proof.clone();
            flip_bit(&mut p.event.as_mut().unwrap().entry, bit);
            rows.push(row(
                format!("{} event bit {bit}", c.name),
                p,
                c.id,
                leaf.clone(),
            ));
        }
    }
    rows.extend(each_case(
        &f,
        has_event,
        "event truncated",
        |_, p| {
            p.event.as_mut().unwrap().entry.pop();
        },
        leaf.clone(),
    ));
    rows.extend(each_case(
        &f,
        has_event,
        "event extended",
        |_, p| {
            p.event.as_mut().unwrap().entry.push(0);
        },
        leaf.clone(),
    ));
    rows.extend(each_case(
        &f,
        has_event,
        "event emptied",
        |_, p| {
            p.event.as_mut().unwrap().entry.clear();
        },
        leaf.clone(),
    ));
    // The right event with another index's inclusion proof.
    rows.extend(each_case(
        &f,
        has_event,
        "event with the head's inclusion",
        |_, p| {
            let head_incl = p.head.inclusion.clone();
            p.event.as_mut().unwrap().inclusion = head_incl;
        },
        inv("EventInclusion"),
    ));
    let n = run(&f, &rows);
    eprintln!("event substitutions: {n}");
}

// ---------------------------------------------------------------------------
// A forged log (signed with the log key) for the checks an honest log never
// reaches
// ---------------------------------------------------------------------------

const Q: u8 = 0x71; // the credential asked about
const R: u8 = 0x72; // another credential
const S: u8 = 0x73; // a third

/// A log of `[head(T0, EMPTY), event_entry, head(T3, map root)]`, signed by
/// the log key, whose map holds `Q → value` and a bystander (so the proof
/// has a sibling), and the status proof for `Q` against it.
fn forged_proof(value: Vec<u8>, event_entry: Vec<u8>) -> StatusProof {
    let q_key = smt::map_key(&cred(Q).0);
    let bystander = StatusRecord {
        state: State::Active,
        reason: None,
        not_after_ms: NOT_AFTER,
        last_index: 1,
        last_leaf_hash: Hash([9; 32]),
    };
    let mut nodes: BTreeMap<smt::NodeId, smt::Node> = BTreeMap::new();
    let up = smt::update(
        &nodes,
        &[
            (q_key, value),
            (smt::map_key(&cred(S).0), bystander.encode().to_vec()),
        ],
    )
    .unwrap();
    up.apply_to(&mut nodes);
    let map_proof = smt::prove(&nodes, &q_key).unwrap();
    assert!(!map_proof.siblings.is_empty());
    let entries = [
        HeadRecord {
            time_ms: T0,
            map_root: Hash([0; 32]),
        }
        .encode(),
        event_entry,
        HeadRecord {
            time_ms: T3,
            map_root: up.root,
        }
        .encode(),
    ];
    let mut frontier = Frontier::new();
    let mut stored: Vec<Hash> = Vec::new();
    for e in &entries {
        for (i, h) in frontier.append(leaf_hash(e)).unwrap() {
            assert_eq!(i, stored.len() as u64);
            stored.push(h);
        }
    }
    let size = entries.len() as u64;
    let logged = |index: u64| LoggedEntry {
        index,
        entry: entries[index as usize].clone(),
        inclusion: merkle::inclusion_proof(index, size, &stored).unwrap(),
    };
    StatusProof {
        credential: cred(Q),
        checkpoint: signed_checkpoint(size, &frontier.root()),
        head: logged(2),
        map_proof: map_proof.encode(),
        event: Some(logged(1)),
    }
}

fn record_for(state: State, reason: Option<Reason>, event_entry: &[u8]) -> Vec<u8> {
    StatusRecord {
        state,
        reason,
        not_after_ms: NOT_AFTER,
        last_index: 1,
        last_leaf_hash: leaf_hash(event_entry),
    }
    .encode()
    .to_vec()
}

#[test]
fn forged_log_events_that_contradict_the_record() {
    use Reason::*;
    use State::*;
    let vkey = log_signer().verifier();
    let now = T3 + 1_000;
    let contra = Want::Is(Verdict::Invalid(Invalid::EventContradictsStatus));
    let ok = valid(NOT_AFTER);
    let susp = |reason| Want::Is(Verdict::Suspended { reason });
    let rev = |reason| Want::Is(Verdict::Revoked { reason });
    let h = 9; // holder
    let suspend = |c, reason| change(c, h, Action::Suspend { reason });
    let revoke = |c, reason| change(c, h, Action::Revoke { reason });
    let rows: Vec<(&str, State, Option<Reason>, Event, Want)> = vec![
        // Controls: the forged log is otherwise sound.
        (
            "issue Q / active",
            Active,
            None,
            issue(Q, h, NOT_AFTER, None),
            Want::Is(ok.clone()),
        ),
        (
            "resume Q / active",
            Active,
            None,
            change(Q, h, Action::Resume),
            Want::Is(ok),
        ),
        (
            "suspend Q lost / suspended lost",
            Suspended,
            Some(Lost),
            suspend(Q, Lost),
            susp(Lost),
        ),
        (
            "revoke Q kc / revoked kc",
            Revoked,
            Some(KeyCompromise),
            revoke(Q, KeyCompromise),
            rev(KeyCompromise),
        ),
        (
            "issue R replacing Q / revoked superseded",
            Revoked,
            Some(Superseded),
            issue(R, h, NOT_AFTER, Some(Q)),
            rev(Superseded),
        ),
        // Contradictions.
        (
            "issue Q, other not_after / active",
            Active,
            None,
            issue(Q, h, NOT_AFTER + 1, None),
            contra.clone(),
        ),
        (
            "resume R / active",
            Active,
            None,
            change(R, h, Action::Resume),
            contra.clone(),
        ),
        (
            "suspend Q / active",
            Active,
            None,
            suspend(Q, Lost),
            contra.clone(),
        ),
        (
            "revoke Q / active",
            Active,
            None,
            revoke(Q, KeyCompromise),
            contra.clone(),
        ),
        (
            "issue R replacing Q / active",
            Active,
            None,
            issue(R, h, NOT_AFTER, Some(Q)),
            contra.clone(),
        ),
        (
            "issue R / active",
            Active,
            None,
            issue(R, h, NOT_AFTER, None),
            contra.clone(),
        ),
        (
            "suspend Q other reason / suspended",
            Suspended,
            Some(Lost),
            suspend(Q, HolderRequest),
            contra.clone(),
        ),
        (
            "suspend R same reason / suspended",
            Suspended,
            Some(Lost),
            suspend(R, Lost),
            contra.clone(),
        ),
        (
            "issue Q / suspended",
            Suspended,
            Some(Lost),
            issue(Q, h, NOT_AFTER, None),
            contra.clone(),
        ),
        (
            "resume Q / suspended",
            Suspended,
            Some(Lost),
            change(Q, h, Action::Resume),
            contra.clone(),
        ),
        (
            "revoke Q lost / suspended lost",
            Suspended,
            Some(Lost),
            revoke(Q, Lost),
            contra.clone(),
        ),
        (
            "revoke Q other reason / revoked",
            Revoked,
            Some(KeyCompromise),
            revoke(Q, Administrative),
            contra.clone(),
        ),
        (
            "revoke R same reason / revoked",
            Revoked,
            Some(KeyCompromise),
            revoke(R, KeyCompromise),
            contra.clone(),
        ),
        (
            "suspend Q kc / revoked kc",
            Revoked,
            Some(KeyCompromise),
            suspend(Q, KeyCompromise),
            contra.clone(),
        ),
        (
            "issue Q / revoked",
            Revoked,
            Some(KeyCompromise),
            issue(Q, h, NOT_AFTER, None),
            contra.clone(),
        ),
        (
            "resume Q / revoked",
            Revoked,
            Some(KeyCompromise),
            change(Q, h, Action::Resume),
            contra.clone(),
        ),
        (
            "issue R replacing S / superseded",
            Revoked,
            Some(Superseded),
            issue(R, h, NOT_AFTER, Some(S)),
            contra.clone(),
        ),
        (
            "issue R replacing none / superseded",
            Revoked,
            Some(Superseded),
            issue(R, h, NOT_AFTER, None),
            contra.clone(),
        ),
        (
            "issue R replacing Q / revoked kc",
            Revoked,
            Some(KeyCompromise),
            issue(R, h, NOT_AFTER, Some(Q)),
            contra.clone(),
        ),
        (
            "issue Q replacing R / superseded",
            Revoked,
            Some(Superseded),
            issue(Q, h, NOT_AFTER, Some(R)),
            contra.clone(),
        ),
        (
            "revoke R superseded / superseded",
            Revoked,
            Some(Superseded),
            revoke(R, Superseded),
            contra,
        ),
    ];
    for (label, state, reason, event, want) in &rows {
        let entry = signed(event);
        let p = forged_proof(record_for(*state, *reason, &entry), entry);
        check(
            label,
            &verify_status(&p, &cred(Q), &vkey, now, policy()),
            want,
        );
    }
    eprintln!("forged contradictions and controls: {}", rows.len());
}

#[test]
fn forged_log_records_and_events_that_do_not_decode() {
    let vkey = log_signer().verifier();
    let now = T3 + 1_000;
    let verify = |p: &StatusProof| verify_status(p, &cred(Q), &vkey, now, policy());
    // The recorded "event" is a head record.
    let head = HeadRecord {
        time_ms: T1,
        map_root: Hash([3; 32]),
    }
    .encode();
    let p = forged_proof(record_for(State::Active, None, &head), head);
    check(
        "head as event",
        &verify(&p),
        &Want::Inv("EventMalformed", "not an event"),
    );
    // The recorded "event" does not decode (unknown kind).
    let junk = vec![0x01, 0x01, 0x09, 0xff];
    let p = forged_proof(record_for(State::Active, None, &junk), junk);
    check("junk as event", &verify(&p), &inv("EventMalformed"));
    // Map values that are not status records.
    let entry = signed(&issue(Q, 9, NOT_AFTER, None));
    let good = record_for(State::Active, None, &entry);
    let mut bad_values: Vec<(&str, Vec<u8>)> = vec![
        ("empty value", vec![]),
        ("short value", good[..good.len() - 1].to_vec()),
        ("long value", [good.clone(), vec![0]].concat()),
    ];
    let mut v = good.clone();
    v[0] = 2;
    bad_values.push(("record version 2", v));
    let mut v = good.clone();
    v[1] = 4;
    bad_values.push(("unknown state", v));
    let mut v = good.clone();
    v[2] = Reason::Lost as u8;
    bad_values.push(("active with a reason", v));
    let mut v = good.clone();
    v[1] = State::Revoked as u8;
    bad_values.push(("revoked without a reason", v));
    let mut v = good.clone();
    v[1] = State::Suspended as u8;
    v[2] = 9;
    bad_values.push(("unknown reason", v));
    for (label, value) in bad_values {
        let p = forged_proof(value, entry.clone());
        check(label, &verify(&p), &inv("Record"));
    }
    // A forged log that is otherwise fine verifies (the control).
    let p = forged_proof(good, entry);
    check("control", &verify(&p), &Want::Is(valid(NOT_AFTER)));
}

// ---------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------

fn json_value(p: &StatusProof) -> serde_json::Value {
    serde_json::from_str(&p.to_json()).unwrap()
}

#[test]
fn json_format_errors() {
    let f = fixture();
    let a = f.case("A");
    let json = a.proof.to_json();
    // Every truncation.
    for len in 0..json.len() {
        if !json.is_char_boundary(len) {
            continue;
        }
        let r = StatusProof::from_json(&json[..len]);
        assert!(
            matches!(r, Err(ProofFormatError::Json(_))),
            "cut at {len}: {r:?}"
        );
    }
    let base = json_value(&a.proof);
    type Edit = fn(&mut serde_json::Value);
    let json_err: &[(&str, Edit)] = &[
        ("unknown top-level field", |v| v["extra"] = 1.into()),
        ("unknown head field", |v| v["head"]["extra"] = 1.into()),
        ("unknown event field", |v| v["event"]["extra"] = true.into()),
        ("missing version", |v| {
            v.as_object_mut().unwrap().remove("version");
        }),
        ("missing checkpoint", |v| {
            v.as_object_mut().unwrap().remove("checkpoint");
        }),
        ("missing head", |v| {
            v.as_object_mut().unwrap().remove("head");
        }),
        ("missing head inclusion", |v| {
            v["head"].as_object_mut().unwrap().remove("inclusion");
        }),
        ("version 256", |v| v["version"] = 256.into()),
        ("version -1", |v| v["version"] = (-1).into()),
        ("version string", |v| v["version"] = "1".into()),
        ("index negative", |v| v["head"]["index"] = (-1).into()),
        ("index float", |v| v["head"]["index"] = 1.5.into()),
        ("inclusion hash short", |v| {
            v["head"]["inclusion"][0] = "AAAA".into()
        }),
        ("inclusion hash not base64", |v| {
            v["head"]["inclusion"][0] = "!!".into()
        }),
        ("event inclusion hash 33 bytes", |v| {
            v["event"]["inclusion"][0] = base64::engine::general_purpose::STANDARD
                .encode([7u8; 33])
                .into()
        }),
        ("inclusion not an array", |v| {
            v["head"]["inclusion"] = "x".into()
        }),
        ("event null", |v| v["event"] = serde_json::Value::Null),
        ("top level array", |v| *v = serde_json::json!([1])),
    ];
    for (label, edit) in json_err {
        let mut v = base.clone();
        edit(&mut v);
        let r = StatusProof::from_json(&v.to_string());
        // `event: null` is the one serde accepts as absent.
        if *label == "event null" {
            let p = r.unwrap();
            assert_eq!(p.event, None);
            check(
                label,
                &f.verify(&p, &a.id),
                &Want::Is(Verdict::Invalid(Invalid::MissingEvent)),
            );
            continue;
        }
        assert!(
            matches!(r, Err(ProofFormatError::Json(_))),
            "{label}: {r:?}"
        );
    }
    // Duplicate field.
    let dup = json.replacen("\"version\": 1,", "\"version\": 1,\n  \"version\": 1,", 1);
    assert_ne!(dup, json);
    assert!(matches!(
        StatusProof::from_json(&dup),
        Err(ProofFormatError::Json(_))
    ));
    // Versions.
    for version in [0u8, 2, 255] {
        let mut v = base.clone();
        v["version"] = version.into();
        assert_eq!(
            StatusProof::from_json(&v.to_string()),
            Err(ProofFormatError::Version(version))
        );
    }
    // Bad hex and base64 fields.
    let b64 = base64::engine::general_purpose::STANDARD;
    let hex = a.proof.credential.to_hex();
    // The event entry (160 bytes) ends in a padded group: strip the padding,
    // or set trailing bits in the last symbol before it.
    let event_b64 = b64.encode(&a.proof.event.as_ref().unwrap().entry);
    assert!(event_b64.ends_with("=="));
    let unpadded = event_b64.trim_end_matches('=').to_string();
    let trailing_bits = {
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let last = unpadded.chars().last().unwrap();
        let pos = alphabet.find(last).unwrap();
        assert_eq!(pos & 0x0f, 0, "canonical: the 4 trailing bits are zero");
        let bumped = alphabet.as_bytes()[pos | 1] as char;
        format!("{}{bumped}==", &unpadded[..unpadded.len() - 1])
    };
    let url_safe = b64.encode([0xfb, 0xff]).replace(['+', '/'], "_");
    let rows: Vec<(&str, &str, serde_json::Value, &str)> = vec![
        (
            "credential 63 digits",
            "credential",
            hex[..63].into(),
            "credential",
        ),
        (
            "credential 65 digits",
            "credential",
            format!("{hex}0").into(),
            "credential",
        ),
        (
            "credential non-hex",
            "credential",
            format!("g{}", &hex[1..]).into(),
            "credential",
        ),
        ("credential empty", "credential", "".into(), "credential"),
        (
            "map proof not base64",
            "map_proof",
            "!!!!".into(),
            "map_proof",
        ),
        (
            "map proof url-safe alphabet",
            "map_proof",
            url_safe.into(),
            "map_proof",
        ),
        (
            "head entry not base64",
            "head.entry",
            "a b".into(),
            "head.entry",
        ),
        (
            "event entry not base64",
            "event.entry",
            "*".into(),
            "event.entry",
        ),
        (
            "event entry unpadded",
            "event.entry",
            unpadded.into(),
            "event.entry",
        ),
        (
            "event entry trailing bits",
            "event.entry",
            trailing_bits.into(),
            "event.entry",
        ),
    ];
    for (label, field, value, want) in rows {
        let mut v = base.clone();
        match field.split_once('.') {
            Some((outer, inner)) => v[outer][inner] = value,
            None => v[field] = value,
        }
        assert_eq!(
            StatusProof::from_json(&v.to_string()),
            Err(ProofFormatError::Field(want)),
            "{label}"
        );
    }
    // Accepted variations: upper-case hex, compact JSON, reordered fields.
    let mut v = base.clone();
    v["credential"] = hex.to_uppercase().into();
    assert_eq!(StatusProof::from_json(&v.to_string()).unwrap(), a.proof);
    assert_eq!(StatusProof::from_json(&base.to_string()).unwrap(), a.proof);
    // Odd bytes never panic.
    for s in ["", "{", "null", "\u{0}", "{\"version\":1}", "[]", "\"x\""] {
        assert!(StatusProof::from_json(s).is_err(), "{s:?}");
    }
}

#[test]
fn random_json_byte_flips_never_panic_and_never_improve_a_verdict() {
    let f = fixture();
    let docs: Vec<(CredentialId, Vec<u8>, Verdict)> = f
        .cases
        .iter()
        .map(|c| (c.id, c.proof.to_json().into_bytes(), c.truth.clone()))
        .collect();
    let strategy = (
        0..docs.len(),
        proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..5),
    );
    let mut runner = TestRunner::new(Config {
        cases: 2_000,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&strategy, |(i, flips)| {
            let (id, doc, truth) = &docs[i];
            let mut bytes = doc.clone();
            for (at, x) in &flips {
                let k = at.index(bytes.len());
                bytes[k] ^= x;
            }
            let text = String::from_utf8_lossy(&bytes);
            let Ok(p) = StatusProof::from_json(&text) else {
                return Ok(());
            };
            let v = verify_status(&p, id, &f.vkey, NOW, policy());
            // Either the flips were harmless (whitespace, hex case) and the
            // verdict is the true one, or the proof is invalid.
            prop_assert!(
                v == *truth || matches!(v, Verdict::Invalid(_)),
                "case {i}: true {truth:?}, got {v:?}"
            );
            if !matches!(truth, Verdict::Valid { .. }) {
                let improved = matches!(v, Verdict::Valid { .. });
                prop_assert!(!improved, "case {}: valid from a non-valid proof", i);
            }
            Ok(())
        })
        .unwrap();
}

// ---------------------------------------------------------------------------
// Verdict precedence and boundaries
// ---------------------------------------------------------------------------

#[test]
fn verdict_precedence_and_boundaries() {
    let f = fixture();
    let at = |name: &str, now: u64, p: Policy| {
        let c = f.case(name);
        f.verify_at(&c.proof, &c.id, now, p)
    };
    // The code: stale iff `now - head_time > max_age` (strict), expired iff
    // `not_after <= now`, in the future iff `head_time > now + max_future`.
    let last_fresh = T3 + MAX_AGE;
    let first_stale = last_fresh + 1;
    let stale = Verdict::Stale {
        head_time_ms: T3,
        age_ms: MAX_AGE + 1,
    };
    let expired = Verdict::Expired {
        not_after_ms: SHORT_NOT_AFTER,
    };
    let pol = policy();
    let rows: Vec<(&str, u64, Policy, Verdict)> = vec![
        // At exactly max_age: fresh.
        ("A", last_fresh, pol, valid(NOT_AFTER)),
        (
            "B",
            last_fresh,
            pol,
            Verdict::Suspended {
                reason: Reason::Lost,
            },
        ),
        ("U", last_fresh, pol, Verdict::Unknown),
        ("V", last_fresh, pol, Verdict::Unknown),
        // One ms later: stale beats valid, suspended and unknown ...
        ("A", first_stale, pol, stale.clone()),
        ("E", first_stale, pol, stale.clone()),
        ("F", first_stale, pol, stale.clone()),
        ("B", first_stale, pol, stale.clone()),
        ("U", first_stale, pol, stale.clone()),
        ("V", first_stale, pol, stale.clone()),
        // ... but revoked and expired beat stale.
        (
            "C",
            first_stale,
            pol,
            Verdict::Revoked {
                reason: Reason::KeyCompromise,
            },
        ),
        (
            "D",
            first_stale,
            pol,
            Verdict::Revoked {
                reason: Reason::Superseded,
            },
        ),
        ("X", first_stale, pol, expired.clone()),
        ("Y", first_stale, pol, expired.clone()),
        // Far later still.
        (
            "C",
            NOT_AFTER - 1,
            pol,
            Verdict::Revoked {
                reason: Reason::KeyCompromise,
            },
        ),
        (
            "A",
            NOT_AFTER - 1,
            pol,
            Verdict::Stale {
                head_time_ms: T3,
                age_ms: NOT_AFTER - 1 - T3,
            },
        ),
        // Expiry boundary: not_after - 1 is still valid, not_after expired.
        (
            "X",
            SHORT_NOT_AFTER - 1,
            pol,
            Verdict::Valid {
                not_after_ms: SHORT_NOT_AFTER,
                head_time_ms: T3,
            },
        ),
        ("X", SHORT_NOT_AFTER, pol, expired.clone()),
        // Expired beats suspended.
        (
            "Y",
            SHORT_NOT_AFTER - 1,
            pol,
            Verdict::Suspended {
                reason: Reason::Lost,
            },
        ),
        ("Y", SHORT_NOT_AFTER, pol, expired),
        // Revoked beats expired.
        (
            "C",
            NOT_AFTER,
            Policy::with_max_age_ms(u64::MAX),
            Verdict::Revoked {
                reason: Reason::KeyCompromise,
            },
        ),
        (
            "D",
            NOT_AFTER + 1,
            Policy::with_max_age_ms(u64::MAX),
            Verdict::Revoked {
                reason: Reason::Superseded,
            },
        ),
        (
            "A",
            NOT_AFTER,
            Policy::with_max_age_ms(u64::MAX),
            Verdict::Expired {
                not_after_ms: NOT_AFTER,
            },
        ),
        (
            "B",
            NOT_AFTER,
            Policy::with_max_age_ms(u64::MAX),
            Verdict::Expired {
                not_after_ms: NOT_AFTER,
            },
        ),
        (
            "U",
            u64::MAX,
            Policy::with_max_age_ms(u64::MAX),
            Verdict::Unknown,
        ),
        // Head time within the allowed skew: age 0, fresh.
        ("A", T3 - MAX_FUTURE, pol, valid(NOT_AFTER)),
        (
            "A",
            T3 - 1,
            Policy {
                max_age_ms: 0,
                max_future_ms: 1,
            },
            valid(NOT_AFTER),
        ),
        // max_age 0: fresh only at the head's own millisecond.
        (
            "A",
            T3,
            Policy {
                max_age_ms: 0,
                max_future_ms: 0,
            },
            valid(NOT_AFTER),
        ),
        (
            "A",
            T3 + 1,
            Policy {
                max_age_ms: 0,
                max_future_ms: 0,
            },
            Verdict::Stale {
                head_time_ms: T3,
                age_ms: 1,
            },
        ),
        (
            "U",
            T3 + 1,
            Policy {
                max_age_ms: 0,
                max_future_ms: 0,
            },
            Verdict::Stale {
                head_time_ms: T3,
                age_ms: 1,
            },
        ),
    ];
    for (name, now, p, want) in rows {
        check(
            &format!("{name} at now={now} {p:?}"),
            &at(name, now, p),
            &Want::Is(want),
        );
    }
}
