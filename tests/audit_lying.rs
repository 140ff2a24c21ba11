//! The auditor against lying nodes: each way a node can lie must be caught,
//! with the right finding and the signed evidence.

use revledger::audit::{AuditError, Auditor, LogSource, Misbehaviour};
use revledger::checkpoint::{sign_checkpoint, Checkpoint};
use revledger::entry::{
    Action, CredentialId, Entry, Event, HeadRecord, HolderTag, KindSet, Reason,
};
use revledger::hash::{leaf_hash, Hash};
use revledger::ledger::{Ledger, Submitter};
use revledger::merkle::Frontier;
use revledger::note::{KeyName, NoteSigner};
use revledger::store::MemStore;
use revledger::tile::{self, TileKind, TilePath};
use std::cell::RefCell;
use std::sync::Arc;

const T0: u64 = 1_767_225_600_000;

fn log_signer() -> NoteSigner {
    NoteSigner::from_seed(
        KeyName::new("example.com/revledger-audit").unwrap(),
        [11; 32],
    )
}
fn issuer() -> NoteSigner {
    NoteSigner::from_seed(KeyName::new("issuer.example").unwrap(), [12; 32])
}

fn event(c: u8, action: Action, key: &NoteSigner) -> Vec<u8> {
    Event {
        action,
        credential: CredentialId([c; 32]),
        holder: HolderTag([c; 32]),
        issuer_key_id: key.id(),
        issued_at_ms: T0,
    }
    .sign(key.signing_key())
    .encode()
}

fn issue(c: u8) -> Vec<u8> {
    event(
        c,
        Action::Issue {
            not_before_ms: T0,
            not_after_ms: T0 + 1_000_000_000,
            replaces: None,
        },
        &issuer(),
    )
}

/// An honest log of `batches` batches, as its entries.
fn honest_entries(batches: &[Vec<Vec<u8>>]) -> Vec<Vec<u8>> {
    let mut l = Ledger::open(Arc::new(MemStore::new()), log_signer(), T0).unwrap();
    l.reconcile_submitters(
        &[Submitter {
            key: issuer().verifier(),
            kinds: KindSet::ALL,
        }],
        T0,
    )
    .unwrap();
    for (i, b) in batches.iter().enumerate() {
        let r = l.append_events(b, T0 + i as u64).unwrap();
        assert!(r
            .outcomes
            .iter()
            .all(|o| !matches!(o, revledger::ledger::Outcome::Refused(_))));
    }
    (0..l.checkpoint().size())
        .map(|i| l.entry(i).unwrap())
        .collect()
}

/// A node serving exactly `entries`, with a checkpoint signed by `signer`
/// (which a lying node holds), and optional tile tampering.
struct Forged {
    entries: Vec<Vec<u8>>,
    hashes: Vec<Hash>,
    checkpoint: String,
    tamper_tile: Option<String>,
    /// This entry bundle cannot be fetched.
    unreachable_bundle: Option<u64>,
}

impl Forged {
    fn new(entries: Vec<Vec<u8>>, signer: &NoteSigner) -> Forged {
        let mut f = Frontier::new();
        let mut hashes = Vec::new();
        for e in &entries {
            for (i, h) in f.append(leaf_hash(e)).unwrap() {
                assert_eq!(i as usize, hashes.len());
                hashes.push(h);
            }
        }
        let c = Checkpoint::new(signer.name().as_str(), f.size(), f.root()).unwrap();
        let checkpoint = sign_checkpoint(signer, &c).unwrap().note_text().to_string();
        Forged {
            entries,
            hashes,
            checkpoint,
            tamper_tile: None,
            unreachable_bundle: None,
        }
    }
}

impl LogSource for Forged {
    fn checkpoint(&self) -> Result<String, String> {
        Ok(self.checkpoint.clone())
    }
    fn tile(&self, path: &TilePath) -> Result<Vec<u8>, String> {
        let size = self.entries.len() as u64;
        let mut body = match path.kind() {
            TileKind::Hash { .. } => {
                tile::read_tile(path, size, &self.hashes).map_err(|e| e.to_string())?
            }
            TileKind::Entries if self.unreachable_bundle == Some(path.index()) => {
                return Err(format!("{}: connection reset", path.to_path()))
            }
            TileKind::Entries => {
                let start = (path.index() * 256) as usize;
                let refs: Vec<&[u8]> = self.entries[start..start + path.width() as usize]
                    .iter()
                    .map(Vec::as_slice)
                    .collect();
                tile::encode_entry_bundle(&refs).unwrap()
            }
        };
        if self.tamper_tile.as_deref() == Some(path.to_path().as_str()) {
            body[5] ^= 1;
        }
        Ok(body)
    }
}

fn auditor() -> Auditor<Arc<MemStore>> {
    Auditor::open(Arc::new(MemStore::new()), log_signer().verifier()).unwrap()
}

fn finding(r: Result<revledger::audit::AuditReport, AuditError>) -> (Misbehaviour, Vec<String>) {
    match r {
        Err(AuditError::Misbehaviour { what, checkpoints }) => (what, checkpoints),
        other => panic!("expected misbehaviour, got {other:?}"),
    }
}

fn no_progress(_: u64, _: u64) {}

#[test]
fn an_honest_log_passes_incrementally() {
    let first = honest_entries(&[vec![issue(1), issue(2)]]);
    let mut a = auditor();
    let r = a
        .run(&Forged::new(first.clone(), &log_signer()), &mut no_progress)
        .unwrap();
    assert_eq!(
        (r.previous_size, r.size, r.events),
        (0, first.len() as u64, 2)
    );
    assert_eq!(r.registry_changes, 1);
    // More batches, including a replacement and a revocation; > 256 entries
    // so full tiles and a second bundle are checked.
    let mut batches = vec![vec![issue(1), issue(2)]];
    batches.push((3..=200).map(issue).collect());
    batches.push(vec![event(
        1,
        Action::Suspend {
            reason: Reason::Lost,
        },
        &issuer(),
    )]);
    batches.push(vec![event(
        2,
        Action::Revoke {
            reason: Reason::HolderRequest,
        },
        &issuer(),
    )]);
    batches.push((201..=255).map(issue).collect());
    batches.push(vec![event(1, Action::Resume, &issuer())]);
    let all = honest_entries(&batches);
    assert!(all.len() > 256);
    let r = a
        .run(&Forged::new(all.clone(), &log_signer()), &mut no_progress)
        .unwrap();
    assert_eq!(r.previous_size, first.len() as u64);
    assert_eq!(r.size, all.len() as u64);
    assert_eq!(r.events, 256);
    assert_eq!(a.trusted().unwrap().size(), all.len() as u64);
}

#[test]
fn a_bad_checkpoint_signature_is_caught() {
    let entries = honest_entries(&[vec![issue(1)]]);
    let other = NoteSigner::from_seed(
        KeyName::new("example.com/revledger-audit").unwrap(),
        [99; 32],
    );
    let (what, ev) = finding(auditor().run(&Forged::new(entries, &other), &mut no_progress));
    assert!(
        matches!(what, Misbehaviour::BadCheckpointSignature(_)),
        "{what}"
    );
    assert_eq!(ev.len(), 1);
}

#[test]
fn a_fork_is_caught_with_both_checkpoints_as_evidence() {
    let mut a = auditor();
    let honest = honest_entries(&[vec![issue(1)]]);
    a.run(
        &Forged::new(honest.clone(), &log_signer()),
        &mut no_progress,
    )
    .unwrap();
    // Same size, other history (another event), signed by the log key.
    let other = honest_entries(&[vec![issue(2)]]);
    assert_eq!(other.len(), honest.len());
    let forged = Forged::new(other, &log_signer());
    let (what, ev) = finding(a.run(&forged, &mut no_progress));
    assert_eq!(
        what,
        Misbehaviour::Fork {
            size: honest.len() as u64
        }
    );
    assert_eq!(ev.len(), 2);
    assert_ne!(ev[0], ev[1]);
    // A longer fork: replayed on top of the trusted history, its head
    // records and root cannot match.
    let longer = honest_entries(&[vec![issue(2)], vec![issue(3)]]);
    let (what, _) = finding(a.run(&Forged::new(longer, &log_signer()), &mut no_progress));
    assert!(
        matches!(
            what,
            Misbehaviour::MapRootMismatch { .. } | Misbehaviour::RootMismatch { .. }
        ),
        "{what}"
    );
}

#[test]
fn a_rollback_is_caught() {
    let mut a = auditor();
    let small = honest_entries(&[vec![issue(1)]]);
    let big = honest_entries(&[vec![issue(1)], vec![issue(2)]]);
    a.run(&Forged::new(big.clone(), &log_signer()), &mut no_progress)
        .unwrap();
    let (what, ev) = finding(a.run(&Forged::new(small.clone(), &log_signer()), &mut no_progress));
    assert_eq!(
        what,
        Misbehaviour::Rollback {
            trusted: big.len() as u64,
            new: small.len() as u64
        }
    );
    assert_eq!(ev.len(), 2);
}

/// Replaces the map root of the last head record.
fn with_wrong_map_root(mut entries: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let last = entries.len() - 1;
    let Entry::Head(h) = Entry::decode(&entries[last]).unwrap() else {
        panic!("not a head")
    };
    entries[last] = HeadRecord {
        map_root: Hash([0x42; 32]),
        ..h
    }
    .encode();
    entries
}

#[test]
fn a_wrong_map_root_is_caught() {
    let entries = with_wrong_map_root(honest_entries(&[vec![issue(1)]]));
    let (what, _) = finding(auditor().run(
        &Forged::new(entries.clone(), &log_signer()),
        &mut no_progress,
    ));
    assert!(
        matches!(what, Misbehaviour::MapRootMismatch { index, .. } if index == entries.len() as u64 - 1),
        "{what}"
    );
}

#[test]
fn an_event_from_an_unregistered_key_is_caught() {
    let mut entries = honest_entries(&[vec![issue(1)]]);
    let stranger = NoteSigner::from_seed(KeyName::new("stranger").unwrap(), [13; 32]);
    let at = entries.len() as u64;
    entries.push(event(
        9,
        Action::Issue {
            not_before_ms: 0,
            not_after_ms: 1,
            replaces: None,
        },
        &stranger,
    ));
    entries.push(entries[entries.len() - 2].clone()); // a head record
    let (what, _) = finding(auditor().run(&Forged::new(entries, &log_signer()), &mut no_progress));
    assert!(
        matches!(what, Misbehaviour::Unauthorized { index, .. } if index == at),
        "{what}"
    );
}

/// A second issuer, for registry changes in the middle of a log.
fn second_issuer() -> NoteSigner {
    NoteSigner::from_seed(KeyName::new("second.example").unwrap(), [14; 32])
}

/// The entry of an issue event for credential `n`, signed by `key`.
fn issue_by(n: u32, key: &NoteSigner) -> Vec<u8> {
    let mut id = [0xa5; 32];
    id[..4].copy_from_slice(&n.to_be_bytes());
    Event {
        action: Action::Issue {
            not_before_ms: T0,
            not_after_ms: T0 + 1_000_000_000,
            replaces: None,
        },
        credential: CredentialId(id),
        holder: HolderTag(id),
        issuer_key_id: key.id(),
        issued_at_ms: T0,
    }
    .sign(key.signing_key())
    .encode()
}

/// A registry of `keys`, each allowed every kind of event.
fn registered(keys: &[&NoteSigner]) -> Vec<Submitter> {
    keys.iter()
        .map(|k| Submitter {
            key: k.verifier(),
            kinds: KindSet::ALL,
        })
        .collect()
}

/// Appends issue events signed by `key`, 50 per batch, from credential
/// `*n` on, until the log holds `size` entries.
fn append_until(l: &mut Ledger<Arc<MemStore>>, n: &mut u32, size: u64, key: &NoteSigner) {
    while l.checkpoint().size() < size {
        let batch: Vec<Vec<u8>> = (*n..*n + 50).map(|i| issue_by(i, key)).collect();
        *n += 50;
        l.append_events(&batch, T0).unwrap();
    }
}

#[test]
fn a_key_removed_between_a_check_ahead_and_the_replay_is_caught() {
    // Bundles are fetched, and their signatures checked, some bundles
    // ahead of the replay (32: `audit::AHEAD`), against the registry of
    // that moment. Here bundle 48 is checked while `issuer` is still
    // registered, bundle 47 then removes it, and bundle 48 holds an event
    // it signed: that check must not be used.
    let second = second_issuer();
    let mut l = Ledger::open(Arc::new(MemStore::new()), log_signer(), T0).unwrap();
    l.reconcile_submitters(&registered(&[&issuer(), &second]), T0)
        .unwrap();
    let mut n = 0u32;
    append_until(&mut l, &mut n, 47 * 256 + 10, &issuer());
    l.reconcile_submitters(&registered(&[&second]), T0).unwrap();
    let removed_at = l.checkpoint().size();
    assert_eq!(removed_at / 256, 47, "the removal is in bundle 47");
    append_until(&mut l, &mut n, 49 * 256 + 10, &second);
    let mut entries: Vec<Vec<u8>> = (0..l.checkpoint().size())
        .map(|i| l.entry(i).unwrap())
        .collect();
    let at = 48 * 256 + 17;
    assert!(matches!(Entry::decode(&entries[at]), Ok(Entry::Event(_))));
    entries[at] = issue_by(1_000_000, &issuer());
    let (what, _) = finding(auditor().run(&Forged::new(entries, &log_signer()), &mut no_progress));
    assert!(
        matches!(what, Misbehaviour::Unauthorized { index, .. } if index == at as u64),
        "{what}"
    );
}

#[test]
fn a_key_added_while_later_bundles_wait_is_honoured() {
    // The converse: bundles 48 to 79 are checked ahead while only
    // `issuer` is registered; bundle 47 then adds `second`, whose events
    // fill bundles 48 and 49. Those checks are stale, and the honest log
    // must still pass, every event counted.
    let second = second_issuer();
    let mut l = Ledger::open(Arc::new(MemStore::new()), log_signer(), T0).unwrap();
    l.reconcile_submitters(&registered(&[&issuer()]), T0)
        .unwrap();
    let mut n = 0u32;
    append_until(&mut l, &mut n, 47 * 256 + 10, &issuer());
    l.reconcile_submitters(&registered(&[&issuer(), &second]), T0)
        .unwrap();
    assert_eq!(
        l.checkpoint().size() / 256,
        47,
        "the addition is in bundle 47"
    );
    append_until(&mut l, &mut n, 49 * 256 + 10, &second);
    let entries: Vec<Vec<u8>> = (0..l.checkpoint().size())
        .map(|i| l.entry(i).unwrap())
        .collect();
    let r = auditor()
        .run(&Forged::new(entries, &log_signer()), &mut no_progress)
        .unwrap();
    assert_eq!(r.events, u64::from(n));
    assert_eq!(r.registry_changes, 2);
}

#[test]
fn a_lie_is_reported_even_when_the_next_bundle_cannot_be_fetched() {
    // Bundle 1 is fetched while bundle 0 is replayed; its fetch failing
    // must not hide the lie in bundle 0.
    let batch = |r: std::ops::RangeInclusive<u8>| r.map(issue).collect::<Vec<_>>();
    let mut entries = honest_entries(&[batch(1..=200), batch(201..=255)]);
    assert!(entries.len() > 256, "{}", entries.len());
    let stranger = NoteSigner::from_seed(KeyName::new("stranger").unwrap(), [13; 32]);
    entries[3] = event(
        3,
        Action::Issue {
            not_before_ms: 0,
            not_after_ms: 1,
            replaces: None,
        },
        &stranger,
    );
    let mut node = Forged::new(entries.clone(), &log_signer());
    node.unreachable_bundle = Some(1);
    let (what, _) = finding(auditor().run(&node, &mut no_progress));
    assert!(
        matches!(what, Misbehaviour::Unauthorized { index: 3, .. }),
        "{what}"
    );
    // An honest bundle 0 followed by an unreachable bundle 1: a fetch error.
    let mut node = Forged::new(
        honest_entries(&[batch(1..=200), batch(201..=255)]),
        &log_signer(),
    );
    node.unreachable_bundle = Some(1);
    match auditor().run(&node, &mut no_progress) {
        Err(AuditError::Fetch(m)) => assert!(m.contains("connection reset"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_invalid_transition_is_caught() {
    // Revoke then resume: the issuer's key signed it, but the rules forbid it.
    let mut entries = honest_entries(&[
        vec![issue(1)],
        vec![event(
            1,
            Action::Revoke {
                reason: Reason::Lost,
            },
            &issuer(),
        )],
    ]);
    let at = entries.len() as u64;
    entries.push(event(1, Action::Resume, &issuer()));
    entries.push(entries[entries.len() - 2].clone());
    let (what, _) = finding(auditor().run(&Forged::new(entries, &log_signer()), &mut no_progress));
    assert!(
        matches!(what, Misbehaviour::RuleViolation { index, .. } if index == at),
        "{what}"
    );
}

#[test]
fn a_tampered_tile_is_caught() {
    let entries = honest_entries(&[vec![issue(1), issue(2)]]);
    let size = entries.len();
    let mut forged = Forged::new(entries, &log_signer());
    forged.tamper_tile = Some(format!("tile/0/000.p/{size}"));
    let (what, _) = finding(auditor().run(&forged, &mut no_progress));
    assert_eq!(
        what,
        Misbehaviour::TileMismatch {
            tile: format!("tile/0/000.p/{size}")
        }
    );
    // A tampered entry bundle changes the recomputed root.
    let mut forged = Forged::new(honest_entries(&[vec![issue(1)]]), &log_signer());
    let n = forged.entries.len();
    forged.tamper_tile = Some(format!("tile/entries/000.p/{n}"));
    // Whichever check meets the flipped byte first reports it; `finding`
    // fails the test unless some misbehaviour is reported.
    let _ = finding(auditor().run(&forged, &mut no_progress));
}

#[test]
fn a_checkpoint_must_end_on_a_head_record() {
    let mut entries = honest_entries(&[vec![issue(1)]]);
    entries.push(issue(7));
    let (what, _) = finding(auditor().run(
        &Forged::new(entries.clone(), &log_signer()),
        &mut no_progress,
    ));
    assert_eq!(
        what,
        Misbehaviour::CheckpointNotOnHead {
            size: entries.len() as u64
        }
    );
}

#[test]
fn head_times_never_decrease() {
    let mut entries = honest_entries(&[vec![issue(1)]]);
    let last = entries.len() - 1;
    let Entry::Head(h) = Entry::decode(&entries[last]).unwrap() else {
        panic!()
    };
    entries.push(issue(2));
    // A later head with an earlier time (and the right map root would not
    // matter: time is checked first).
    entries.push(
        HeadRecord {
            time_ms: h.time_ms - 1,
            ..h
        }
        .encode(),
    );
    let (what, _) = finding(auditor().run(&Forged::new(entries, &log_signer()), &mut no_progress));
    assert!(
        matches!(what, Misbehaviour::HeadTimeDecreased { .. }),
        "{what}"
    );
}

#[test]
fn progress_is_reported() {
    let entries = honest_entries(&[vec![issue(1), issue(2)]]);
    let calls = RefCell::new(Vec::new());
    let mut p = |d: u64, t: u64| calls.borrow_mut().push((d, t));
    auditor()
        .run(&Forged::new(entries.clone(), &log_signer()), &mut p)
        .unwrap();
    let n = entries.len() as u64;
    assert_eq!(calls.borrow().last(), Some(&(n, n)));
}
