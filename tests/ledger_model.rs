//! The whole ledger checked against a naive model: a `Vec` of entries, a
//! `BTreeMap` of statuses, a from-the-definition RFC 9162 root and a
//! from-the-definition status map root, over random operation sequences
//! that include invalid transitions, resubmissions and reopening.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use revledger::entry::{
    Action, CredentialId, Entry, Event, EventKind, HolderTag, KindSet, Reason, SignedEvent,
};
use revledger::hash::{leaf_hash, node_hash, Hash};
use revledger::ledger::{Ledger, Outcome, Submitter};
use revledger::merkle;
use revledger::note::{KeyName, NoteSigner};
use revledger::rules::{State, StatusRecord};
use revledger::smt;
use revledger::status::{verify_status, Policy, Verdict};
use revledger::store::MemStore;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;

const ORIGIN: &str = "example.com/revledger-model";
const DAY: u64 = 86_400_000;

fn log_signer() -> NoteSigner {
    NoteSigner::from_seed(KeyName::new(ORIGIN).unwrap(), [7; 32])
}

/// RFC 9162 §2.1.1 from the definition, over all entries.
fn naive_root(entries: &[Vec<u8>]) -> Hash {
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => Hash::of(b""),
            1 => leaves[0],
            n => {
                // The largest power of two smaller than n.
                let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }
    let leaves: Vec<Hash> = entries.iter().map(|e| leaf_hash(e)).collect();
    mth(&leaves)
}

/// The compressed sparse Merkle tree of DESIGN §4 / docs/MAP.md from the
/// definition: empty = 0³², one key = SHA-256(0x10 ‖ key ‖ value),
/// more = SHA-256(0x11 ‖ left ‖ right).
fn naive_map_root(items: &[(Hash, Vec<u8>)], depth: usize) -> Hash {
    match items {
        [] => Hash([0; 32]),
        [(k, v)] => {
            let mut h = Sha256::new();
            h.update([0x10]);
            h.update(k.0);
            h.update(v);
            Hash(h.finalize().into())
        }
        _ => {
            let bit = |k: &Hash| k.0[depth / 8] >> (7 - depth % 8) & 1;
            let split = items.partition_point(|(k, _)| bit(k) == 0);
            let (l, r) = items.split_at(split);
            let mut h = Sha256::new();
            h.update([0x11]);
            h.update(naive_map_root(l, depth + 1).0);
            h.update(naive_map_root(r, depth + 1).0);
            Hash(h.finalize().into())
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct ModelCred {
    state: State,
    reason: Option<Reason>,
    holder: u8,
    not_after: u64,
    last_index: u64,
    last_leaf: Hash,
}

struct Model {
    creds: BTreeMap<CredentialId, ModelCred>,
    /// Every submitted event that was accepted, by leaf hash.
    logged: BTreeMap<Hash, u64>,
}

impl Model {
    fn live(&self, holder: u8) -> Option<CredentialId> {
        self.creds
            .iter()
            .find(|(_, c)| c.holder == holder && c.state != State::Revoked)
            .map(|(id, _)| *id)
    }

    /// What the rules say about `ev`, as (accepted?, refusal code).
    fn predict(&self, ev: &Event) -> Result<(), &'static str> {
        let cur = self.creds.get(&ev.credential);
        let holder = ev.holder.0[0];
        match ev.action {
            Action::Issue { replaces, .. } => {
                if cur.is_some() {
                    return Err("already_issued");
                }
                match (self.live(holder), replaces) {
                    (None, None) => Ok(()),
                    (Some(_), None) => Err("holder_has_live_credential"),
                    (live, Some(r)) if live == Some(r) => Ok(()),
                    _ => Err("replaces_mismatch"),
                }
            }
            _ => {
                let Some(c) = cur else {
                    return Err("unknown_credential");
                };
                if c.holder != holder {
                    return Err("holder_mismatch");
                }
                let ok = match ev.action {
                    Action::Suspend { .. } => c.state == State::Active,
                    Action::Resume => c.state == State::Suspended,
                    _ => c.state != State::Revoked,
                };
                if !ok {
                    return Err("invalid_transition");
                }
                Ok(())
            }
        }
    }

    fn apply(&mut self, ev: &Event, index: u64, leaf: Hash) {
        let c = ev.credential;
        match ev.action {
            Action::Issue {
                not_after_ms,
                replaces,
                ..
            } => {
                self.creds.insert(
                    c,
                    ModelCred {
                        state: State::Active,
                        reason: None,
                        holder: ev.holder.0[0],
                        not_after: not_after_ms,
                        last_index: index,
                        last_leaf: leaf,
                    },
                );
                if let Some(r) = replaces {
                    let old = self.creds.get_mut(&r).unwrap();
                    old.state = State::Revoked;
                    old.reason = Some(Reason::Superseded);
                    old.last_index = index;
                    old.last_leaf = leaf;
                }
            }
            Action::Suspend { reason } | Action::Revoke { reason } => {
                let m = self.creds.get_mut(&c).unwrap();
                m.state = if ev.action.kind() == EventKind::Suspend {
                    State::Suspended
                } else {
                    State::Revoked
                };
                m.reason = Some(reason);
                m.last_index = index;
                m.last_leaf = leaf;
            }
            Action::Resume => {
                let m = self.creds.get_mut(&c).unwrap();
                m.state = State::Active;
                m.reason = None;
                m.last_index = index;
                m.last_leaf = leaf;
            }
        }
    }

    fn map_root(&self) -> Hash {
        let mut items: Vec<(Hash, Vec<u8>)> = self
            .creds
            .iter()
            .map(|(id, c)| {
                let rec = StatusRecord {
                    state: c.state,
                    reason: c.reason,
                    not_after_ms: c.not_after,
                    last_index: c.last_index,
                    last_leaf_hash: c.last_leaf,
                };
                (smt::map_key(&id.0), rec.encode().to_vec())
            })
            .collect();
        items.sort();
        naive_map_root(&items, 0)
    }
}

fn random_event(rng: &mut ChaCha8Rng, model: &Model, issuer: u32, next_cred: &mut u8) -> Event {
    let known: Vec<CredentialId> = model.creds.keys().copied().collect();
    let pick_known = |rng: &mut ChaCha8Rng| known[rng.gen_range(0..known.len())];
    let holder = rng.gen_range(0..6u8);
    let reason = Reason::ALL[rng.gen_range(0..Reason::ALL.len())];
    let reason = if reason == Reason::Superseded {
        Reason::Lost
    } else {
        reason
    };
    let (credential, holder, action) = match rng.gen_range(0..10) {
        0..=3 => {
            *next_cred = next_cred.wrapping_add(1);
            let mut id = [0u8; 32];
            id[0] = *next_cred;
            id[1] = rng.gen();
            let replaces = match rng.gen_range(0..3) {
                0 => model.live(holder),
                1 if !known.is_empty() => Some(pick_known(rng)),
                _ => None,
            };
            let action = Action::Issue {
                not_before_ms: 0,
                not_after_ms: rng.gen_range(1..4) * 1000 * DAY,
                replaces,
            };
            (CredentialId(id), holder, action)
        }
        _ if known.is_empty() => (CredentialId([0xee; 32]), holder, Action::Resume),
        k => {
            let c = pick_known(rng);
            // Usually the right holder; sometimes another (must be refused).
            let h = if rng.gen_range(0..8) == 0 {
                holder
            } else {
                model.creds[&c].holder
            };
            let action = match k {
                4..=5 => Action::Suspend { reason },
                6..=7 => Action::Resume,
                _ => Action::Revoke { reason },
            };
            (c, h, action)
        }
    };
    Event {
        action,
        credential,
        holder: HolderTag([holder; 32]),
        issuer_key_id: issuer,
        issued_at_ms: rng.gen_range(0..1_000_000),
    }
}

fn check_everything(ledger: &Ledger<Arc<MemStore>>, model: &Model, now: u64, rng: &mut ChaCha8Rng) {
    let ckpt = ledger.checkpoint().clone();
    let size = ckpt.size();
    let entries: Vec<Vec<u8>> = (0..size).map(|i| ledger.entry(i).unwrap()).collect();
    assert_eq!(naive_root(&entries), *ckpt.root(), "root at size {size}");
    // Every accepted event sits at its acknowledged index.
    for (leaf, index) in &model.logged {
        assert_eq!(leaf_hash(&entries[*index as usize]), *leaf);
    }
    // The last entry is a head record with the model's map root.
    let head = match Entry::decode(&entries[size as usize - 1]).unwrap() {
        Entry::Head(h) => h,
        other => panic!("last entry is not a head record: {other:?}"),
    };
    assert_eq!(head.map_root, model.map_root());
    assert!(head.time_ms <= now);
    let stale = now - head.time_ms > DAY;
    // Statuses, and status proofs whose verdict is the model's.
    let vkey = ledger.verifier().clone();
    for (id, m) in &model.creds {
        let rec = ledger.credential(id).unwrap().unwrap();
        assert_eq!((rec.status.state, rec.status.reason), (m.state, m.reason));
        assert_eq!(rec.status.last_index, m.last_index);
        let proof = ledger.status_proof(id).unwrap();
        let proof = revledger::status::StatusProof::from_json(&proof.to_json()).unwrap();
        let verdict = verify_status(&proof, id, &vkey, now, Policy::with_max_age_ms(DAY));
        let expected = match m.state {
            State::Revoked => Verdict::Revoked {
                reason: m.reason.unwrap(),
            },
            _ if m.not_after <= now => Verdict::Expired {
                not_after_ms: m.not_after,
            },
            _ if stale => Verdict::Stale {
                head_time_ms: head.time_ms,
                age_ms: now - head.time_ms,
            },
            State::Suspended => Verdict::Suspended {
                reason: m.reason.unwrap(),
            },
            State::Active => Verdict::Valid {
                not_after_ms: m.not_after,
                head_time_ms: head.time_ms,
            },
        };
        assert_eq!(verdict, expected, "credential {id}");
    }
    let never = CredentialId([0xfe; 32]);
    let p = ledger.status_proof(&never).unwrap();
    let expected = if stale {
        Verdict::Stale {
            head_time_ms: head.time_ms,
            age_ms: now - head.time_ms,
        }
    } else {
        Verdict::Unknown
    };
    assert_eq!(
        verify_status(&p, &never, &vkey, now, Policy::with_max_age_ms(DAY)),
        expected
    );
    // Random inclusion and consistency proofs against naive roots.
    for _ in 0..5 {
        let n = rng.gen_range(1..=size);
        let i = rng.gen_range(0..n);
        let root = naive_root(&entries[..n as usize]);
        let p = ledger.inclusion_proof(i, n).unwrap();
        merkle::verify_inclusion(&leaf_hash(&entries[i as usize]), i, n, &p, &root).unwrap();
        let m = rng.gen_range(1..=n);
        let p = ledger.consistency_proof(m, n).unwrap();
        let old = naive_root(&entries[..m as usize]);
        merkle::verify_consistency(m, n, &old, &root, &p).unwrap();
    }
}

fn run(seed: u64, steps: usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let store = Arc::new(MemStore::new());
    let issuer = NoteSigner::from_seed(KeyName::new("issuer.example").unwrap(), [9; 32]);
    let carrier = NoteSigner::from_seed(KeyName::new("carrier.example").unwrap(), [10; 32]);
    let submitters = vec![
        Submitter {
            key: issuer.verifier(),
            kinds: KindSet::ALL,
        },
        Submitter {
            key: carrier.verifier(),
            kinds: KindSet::NONE.with(EventKind::Suspend),
        },
    ];
    let mut now = 1_000 * DAY;
    let mut ledger = Ledger::open(store.clone(), log_signer(), now).unwrap();
    ledger.reconcile_submitters(&submitters, now).unwrap();
    let mut model = Model {
        creds: BTreeMap::new(),
        logged: BTreeMap::new(),
    };
    let mut next_cred = 0u8;
    let mut submitted: Vec<Vec<u8>> = Vec::new();
    for _ in 0..steps {
        now += rng.gen_range(0..DAY / 4);
        match rng.gen_range(0..20) {
            0 => {
                drop(ledger);
                ledger = Ledger::open(store.clone(), log_signer(), now).unwrap();
            }
            1 => {
                let before = ledger.checkpoint().size();
                ledger.append_heartbeat(now).unwrap();
                assert_eq!(ledger.checkpoint().size(), before + 1);
            }
            _ => {
                let n = rng.gen_range(1..6);
                let mut batch = Vec::new();
                let mut expect = Vec::new();
                let mut next_index = ledger.checkpoint().size();
                let mut pending: BTreeMap<Hash, u64> = BTreeMap::new();
                for _ in 0..n {
                    // Sometimes resubmit an old event verbatim; else a new one.
                    let bytes = if !submitted.is_empty() && rng.gen_range(0..6) == 0 {
                        submitted[rng.gen_range(0..submitted.len())].clone()
                    } else {
                        let ev = random_event(&mut rng, &model, 0, &mut next_cred);
                        let key = if rng.gen_range(0..4) == 0 {
                            &carrier
                        } else {
                            &issuer
                        };
                        let ev = Event {
                            issuer_key_id: key.id(),
                            ..ev
                        };
                        let signed: SignedEvent = ev.sign(key.signing_key());
                        signed.encode()
                    };
                    let leaf = leaf_hash(&bytes);
                    let ev = SignedEvent::decode(&bytes).unwrap().event;
                    let seen = model.logged.get(&leaf).or(pending.get(&leaf)).copied();
                    if let Some(i) = seen {
                        expect.push(Ok(Some(i)));
                    } else if ev.issuer_key_id == carrier.id()
                        && ev.action.kind() != EventKind::Suspend
                    {
                        expect.push(Err("kind_not_allowed"));
                    } else {
                        match model.predict(&ev) {
                            Ok(()) => {
                                model.apply(&ev, next_index, leaf);
                                pending.insert(leaf, next_index);
                                expect.push(Ok(None));
                                next_index += 1;
                            }
                            Err(code) => expect.push(Err(code)),
                        }
                    }
                    submitted.push(bytes.clone());
                    batch.push(bytes);
                }
                let accepted_any = expect.iter().any(|e| matches!(e, Ok(None)));
                let before = ledger.checkpoint().size();
                let res = ledger.append_events(&batch, now).unwrap();
                for (i, (got, want)) in res.outcomes.iter().zip(&expect).enumerate() {
                    let leaf = leaf_hash(&batch[i]);
                    match (got, want) {
                        (Outcome::Accepted { index, leaf_hash }, Ok(None)) => {
                            assert_eq!(*leaf_hash, leaf);
                            assert_eq!(Some(index), pending.get(&leaf));
                        }
                        (Outcome::Duplicate { index, .. }, Ok(Some(i))) => assert_eq!(index, i),
                        (Outcome::Refused(r), Err(code)) => assert_eq!(r.code(), *code, "{r}"),
                        other => panic!("outcome {i}: {other:?}"),
                    }
                }
                model.logged.extend(pending);
                let expected_size = before + (next_index - before) + u64::from(accepted_any);
                assert_eq!(res.checkpoint.size(), expected_size);
            }
        }
        check_everything(&ledger, &model, now, &mut rng);
    }
}

#[test]
fn ledger_matches_model_seed_1() {
    run(1, 120);
}

#[test]
fn ledger_matches_model_seed_2() {
    run(2, 120);
}

#[test]
fn ledger_matches_model_many_seeds() {
    for seed in 3..23 {
        run(seed, 40);
    }
}
