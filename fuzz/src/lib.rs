//! Shared fixtures of the fuzz targets and the seed generator: the keys of
//! docs/FORMAT.md §12 and a small deterministic ledger (MemStore, fixed
//! seeds and times) holding credentials in every state.
//!
//! Everything here is deterministic, so a target's verdicts do not depend
//! on the run.

use revledger::entry::{Action, CredentialId, Event, HolderTag, KindSet, Reason};
use revledger::ledger::{Ledger, Outcome, Submitter};
use revledger::note::{KeyName, NoteSigner, NoteVerifier};
use revledger::status::{Policy, StatusProof};
use revledger::store::MemStore;

/// 2026-01-01T00:00:00Z (docs/FORMAT.md §12.2).
pub const T0: u64 = 1_767_225_600_000;
/// The verifier's clock used by the targets: T0 + 3 min (the headline line
/// of docs/FORMAT.md §12.5).
pub const NOW: u64 = T0 + 180_000;
/// 2031-01-01T00:00:00Z.
pub const NOT_AFTER: u64 = 1_924_992_000_000;
/// A `not_after` after every ledger time but before [`NOW`].
pub const SHORT_NOT_AFTER: u64 = T0 + 175_000;

/// The log key of docs/FORMAT.md §12.2: seed `[7; 32]`.
pub const LOG_NAME: &str = "example.com/revledger-doc";

pub fn log_signer() -> NoteSigner {
    NoteSigner::from_seed(KeyName::new(LOG_NAME).unwrap(), [7; 32])
}

pub fn log_verifier() -> NoteVerifier {
    log_signer().verifier()
}

/// The issuer key of docs/FORMAT.md §12.1: RFC 8032 §7.1 TEST 1.
pub fn issuer() -> NoteSigner {
    let mut seed = [0u8; 32];
    hex::decode_to_slice(
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        &mut seed,
    )
    .unwrap();
    NoteSigner::from_seed(KeyName::new("issuer.example").unwrap(), seed)
}

/// The policy of docs/FORMAT.md §12.5: 10 min freshness, 5 min skew.
pub fn policy() -> Policy {
    Policy {
        max_age_ms: 600_000,
        max_future_ms: 300_000,
    }
}

pub fn cred(b: u8) -> CredentialId {
    CredentialId([b; 32])
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

fn submit(ledger: &mut Ledger<MemStore>, events: &[Event], now: u64) {
    let key = issuer();
    let raw: Vec<Vec<u8>> = events
        .iter()
        .map(|e| e.sign(key.signing_key()).encode())
        .collect();
    let result = ledger.append_events(&raw, now).unwrap();
    for o in &result.outcomes {
        assert!(
            matches!(o, Outcome::Accepted { .. }),
            "fixture event refused: {o:?}"
        );
    }
}

/// One credential's proof in the fixture.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: &'static str,
    pub id: CredentialId,
    pub proof: StatusProof,
}

/// The fixture ledger and its proofs.
pub struct Fixture {
    pub ledger: Ledger<MemStore>,
    /// The signed checkpoint after every batch.
    pub checkpoints: Vec<String>,
    /// Final proofs: 11 (the doc credential, active), A active, B
    /// suspended, C revoked, D superseded by E, F resumed, X expired,
    /// Y suspended and expired, U and V never seen.
    pub cases: Vec<Case>,
    /// The proof of docs/FORMAT.md §12.5 (tree size 5).
    pub doc_proof: StatusProof,
}

/// Builds the fixture ledger (a few milliseconds).
///
/// Entries 0–4 are exactly the example ledger of docs/FORMAT.md §12.2;
/// later batches add credentials in every state.
pub fn fixture() -> Fixture {
    let mut ledger = Ledger::open(MemStore::new(), log_signer(), T0).unwrap();
    let mut checkpoints = vec![ledger.checkpoint().note_text().to_owned()];
    ledger
        .reconcile_submitters(
            &[Submitter {
                key: issuer().verifier(),
                kinds: KindSet::ALL,
            }],
            T0 + 60_000,
        )
        .unwrap();
    checkpoints.push(ledger.checkpoint().note_text().to_owned());
    submit(
        &mut ledger,
        &[issue(0x11, 0x22, NOT_AFTER, None)],
        T0 + 120_000,
    );
    checkpoints.push(ledger.checkpoint().note_text().to_owned());
    let doc_proof = ledger.status_proof(&cred(0x11)).unwrap();

    const A: u8 = 0xa1;
    const B: u8 = 0xb2;
    const C: u8 = 0xc3;
    const D: u8 = 0xd4;
    const E: u8 = 0xe5;
    const F: u8 = 0xf6;
    const X: u8 = 0x17;
    const Y: u8 = 0x28;
    submit(
        &mut ledger,
        &[
            issue(A, 1, NOT_AFTER, None),
            issue(B, 2, NOT_AFTER, None),
            issue(C, 3, NOT_AFTER, None),
            issue(D, 4, NOT_AFTER, None),
            issue(X, 5, SHORT_NOT_AFTER, None),
            issue(F, 6, NOT_AFTER, None),
            issue(Y, 7, SHORT_NOT_AFTER, None),
        ],
        T0 + 140_000,
    );
    checkpoints.push(ledger.checkpoint().note_text().to_owned());
    submit(
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
        T0 + 150_000,
    );
    checkpoints.push(ledger.checkpoint().note_text().to_owned());
    submit(&mut ledger, &[change(F, 6, Action::Resume)], T0 + 160_000);
    checkpoints.push(ledger.checkpoint().note_text().to_owned());
    // Pad the tree so that the last index has several inclusion siblings.
    while ledger.checkpoint().size() < 27 {
        ledger.append_heartbeat(T0 + 170_000).unwrap();
    }
    checkpoints.push(ledger.checkpoint().note_text().to_owned());

    let mut cases = Vec::new();
    for (name, b) in [
        ("11", 0x11),
        ("A", A),
        ("B", B),
        ("C", C),
        ("D", D),
        ("E", E),
        ("F", F),
        ("X", X),
        ("Y", Y),
        ("U", 0x01),
        ("V", 0x99),
    ] {
        let id = cred(b);
        cases.push(Case {
            name,
            id,
            proof: ledger.status_proof(&id).unwrap(),
        });
    }
    Fixture {
        ledger,
        checkpoints,
        cases,
        doc_proof,
    }
}
