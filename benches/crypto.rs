//! The ledger's signatures and hashes against the raw primitives they are
//! built on, measured in the same run: the machine's physical limits.
//!
//! Groups (IDs are `<impl>/<input bytes>`):
//! - `crypto/sha256`: `sha2::Sha256::digest` of 64 B and 1 KiB (raw),
//!   against the crate's RFC 9162 hashes: `hash::node_hash` (65 B input:
//!   0x01 ‖ l ‖ r) and `hash::leaf_hash` (0x00 ‖ entry) of a 64 B and a
//!   1 KiB entry.
//! - `crypto/sign`: `checkpoint::sign_checkpoint` (builds the body, signs
//!   it with Ed25519, formats the signed note) vs raw
//!   `ed25519_dalek::SigningKey::sign` of the same body bytes; `Event::sign`
//!   (the issuer side) vs raw sign of the same signing message.
//! - `crypto/verify`: the event admission path, `SignedEvent::decode` +
//!   `SignedEvent::verify` (`strict::StrictKey`, `verify_strict`'s rule,
//!   over the domain-separated message, from the entry bytes),
//!   `ledger::authorize` (registry lookup + the same check) and
//!   `StrictKey::verify` of the raw message, vs raw
//!   `VerifyingKey::verify_strict` (and, for reference, the non-strict
//!   `verify`) of the same message;
//!   `checkpoint::verify_checkpoint` (parse the note, `verify_strict`,
//!   parse the body) vs raw `verify_strict` of the body.
//! - `crypto/verify_list`: a list of N event entries (1, 50 as in a
//!   request, 256 as in an entry bundle) checked by `ledger::authorize_each`
//!   (one field inversion for the whole list: `strict::decide_all`) vs the
//!   same entries decoded and `ledger::authorize`d one by one. IDs are
//!   `<impl>/<N>`; the rate is per entry.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use revledger::checkpoint::{self, Checkpoint};
use revledger::entry::{CredentialId, Event, HolderTag, KindSet, SignedEvent};
use revledger::hash::{self, Hash};
use revledger::ledger::{self, Submitter};
use revledger::note::{KeyName, NoteSigner};
use revledger::strict::StrictKey;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

const SEED: u64 = 0xed25_5190;
const T0: u64 = 1_767_225_600_000;

fn configure<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(30);
    g.warm_up_time(Duration::from_millis(300));
    g.measurement_time(Duration::from_millis(1200));
    g.throughput(Throughput::Elements(1));
    g
}

fn bench_sha256(c: &mut Criterion, rng: &mut ChaCha8Rng) {
    let mut g = configure(c, "crypto/sha256");
    for len in [64usize, 1024] {
        let mut data = vec![0u8; len];
        rng.fill_bytes(&mut data);
        g.bench_with_input(BenchmarkId::new("sha2-raw", len), &data, |b, d| {
            b.iter(|| Sha256::digest(black_box(d)))
        });
        g.bench_with_input(
            BenchmarkId::new("ours-leaf_hash", len + 1),
            &data,
            |b, d| b.iter(|| hash::leaf_hash(black_box(d))),
        );
    }
    let (mut l, mut r) = (Hash([0; 32]), Hash([0; 32]));
    rng.fill_bytes(&mut l.0);
    rng.fill_bytes(&mut r.0);
    g.bench_with_input(
        BenchmarkId::new("ours-node_hash", 65),
        &(l, r),
        |b, (l, r)| b.iter(|| hash::node_hash(black_box(l), black_box(r))),
    );
    let mut data = vec![0u8; 65];
    rng.fill_bytes(&mut data);
    g.bench_with_input(BenchmarkId::new("sha2-raw", 65), &data, |b, d| {
        b.iter(|| Sha256::digest(black_box(d)))
    });
    g.finish();
}

fn event(rng: &mut ChaCha8Rng, issuer: &NoteSigner) -> Event {
    let mut id = [0u8; 32];
    rng.fill_bytes(&mut id);
    let mut holder = [0u8; 32];
    rng.fill_bytes(&mut holder);
    Event::issue(
        CredentialId(id),
        HolderTag(holder),
        issuer.id(),
        T0,
        5 * 365 * 86_400_000,
    )
}

fn bench_sign(c: &mut Criterion, rng: &mut ChaCha8Rng) {
    let log = NoteSigner::from_seed(
        KeyName::new("example.com/revledger-bench").unwrap(),
        [1; 32],
    );
    let issuer = NoteSigner::from_seed(KeyName::new("issuer.example").unwrap(), [2; 32]);
    let mut root = Hash([0; 32]);
    rng.fill_bytes(&mut root.0);
    let ckpt = Checkpoint::new(log.name().as_str(), 123_456_789, root).unwrap();
    let body = ckpt.to_body();
    let raw_key: &SigningKey = log.signing_key();

    let mut g = configure(c, "crypto/sign");
    g.bench_with_input(
        BenchmarkId::new("ours-sign_checkpoint", body.len()),
        &ckpt,
        |b, ck| b.iter(|| checkpoint::sign_checkpoint(&log, black_box(ck)).unwrap()),
    );
    g.bench_with_input(
        BenchmarkId::new("ed25519-dalek-sign", body.len()),
        &body,
        |b, m| b.iter(|| raw_key.sign(black_box(m.as_bytes()))),
    );
    let ev = event(rng, &issuer);
    let msg = ev.signing_message();
    g.bench_with_input(
        BenchmarkId::new("ours-event_sign", msg.len()),
        &ev,
        |b, ev| b.iter(|| black_box(*ev).sign(issuer.signing_key())),
    );
    g.bench_with_input(
        BenchmarkId::new("ed25519-dalek-sign", msg.len()),
        &msg,
        |b, m| b.iter(|| issuer.signing_key().sign(black_box(m))),
    );
    g.finish();
}

fn bench_verify(c: &mut Criterion, rng: &mut ChaCha8Rng) {
    let log = NoteSigner::from_seed(
        KeyName::new("example.com/revledger-bench").unwrap(),
        [1; 32],
    );
    let issuer = NoteSigner::from_seed(KeyName::new("issuer.example").unwrap(), [2; 32]);
    let vkey: VerifyingKey = *issuer.verifier().key();
    let registry: BTreeMap<u32, Submitter> = [(
        issuer.id(),
        Submitter {
            key: issuer.verifier(),
            kinds: KindSet::ALL,
        },
    )]
    .into_iter()
    .collect();
    // 64 distinct signed events (seeded), cycled through.
    let events: Vec<SignedEvent> = (0..64)
        .map(|_| event(rng, &issuer).sign(issuer.signing_key()))
        .collect();
    let entries: Vec<Vec<u8>> = events.iter().map(SignedEvent::encode).collect();
    let raw: Vec<(Vec<u8>, Signature)> = events
        .iter()
        .map(|e| {
            (
                e.event.signing_message(),
                Signature::from_bytes(&e.signature),
            )
        })
        .collect();
    let strict = StrictKey::new(&vkey);
    for (e, (m, s)) in events.iter().zip(&raw) {
        e.verify(&strict).unwrap();
        vkey.verify_strict(m, s).unwrap();
        ledger::authorize(&registry, e).unwrap();
    }
    let msg_len = raw[0].0.len();
    let entry_len = entries[0].len();

    let mut g = configure(c, "crypto/verify");
    g.bench_function(
        BenchmarkId::new("ours-event_decode_verify", entry_len),
        |b| {
            let mut at = 0;
            b.iter(|| {
                let e = SignedEvent::decode(&entries[at]).unwrap();
                at = (at + 1) % entries.len();
                e.verify(&strict).unwrap()
            })
        },
    );
    g.bench_function(BenchmarkId::new("ours-event_verify", msg_len), |b| {
        let mut at = 0;
        b.iter(|| {
            let e = &events[at];
            at = (at + 1) % events.len();
            e.verify(&strict).unwrap()
        })
    });
    g.bench_function(BenchmarkId::new("ours-ledger_authorize", msg_len), |b| {
        let mut at = 0;
        b.iter(|| {
            let e = &events[at];
            at = (at + 1) % events.len();
            ledger::authorize(&registry, e).unwrap()
        })
    });
    g.bench_function(
        BenchmarkId::new("ed25519-dalek-verify_strict", msg_len),
        |b| {
            let mut at = 0;
            b.iter(|| {
                let (m, s) = &raw[at];
                at = (at + 1) % raw.len();
                vkey.verify_strict(m, s).unwrap()
            })
        },
    );
    g.bench_function(BenchmarkId::new("ours-strict_key_verify", msg_len), |b| {
        let mut at = 0;
        b.iter(|| {
            let (m, s) = &raw[at];
            at = (at + 1) % raw.len();
            assert!(strict.verify(&[m], &s.to_bytes()))
        })
    });
    g.bench_function(BenchmarkId::new("ed25519-dalek-verify", msg_len), |b| {
        let mut at = 0;
        b.iter(|| {
            let (m, s) = &raw[at];
            at = (at + 1) % raw.len();
            vkey.verify(m, s).unwrap()
        })
    });

    // Checkpoint verification (what every status-proof verifier does once).
    let mut root = Hash([0; 32]);
    rng.fill_bytes(&mut root.0);
    let ckpt = Checkpoint::new(log.name().as_str(), 123_456_789, root).unwrap();
    let signed = checkpoint::sign_checkpoint(&log, &ckpt).unwrap();
    let note = signed.note_text().to_string();
    let verifier = log.verifier();
    let body = ckpt.to_body();
    let body_sig = log.signing_key().sign(body.as_bytes());
    let log_vkey = *verifier.key();
    checkpoint::verify_checkpoint(&note, &verifier).unwrap();
    g.bench_function(
        BenchmarkId::new("ours-verify_checkpoint", note.len()),
        |b| b.iter(|| checkpoint::verify_checkpoint(black_box(&note), &verifier).unwrap()),
    );
    g.bench_function(
        BenchmarkId::new("ed25519-dalek-verify_strict", body.len()),
        |b| {
            b.iter(|| {
                log_vkey
                    .verify_strict(black_box(body.as_bytes()), &body_sig)
                    .unwrap()
            })
        },
    );
    g.finish();

    // Lists: the node's requests and the auditor's bundles. 256 distinct
    // events, so that no list repeats one.
    let entries: Vec<Vec<u8>> = (0..256)
        .map(|_| event(rng, &issuer).sign(issuer.signing_key()).encode())
        .collect();
    let mut g = configure(c, "crypto/verify_list");
    for n in [1usize, 50, 256] {
        let list = &entries[..n];
        assert!(ledger::authorize_each(&registry, list)
            .iter()
            .all(Result::is_ok));
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::new("ours-authorize_each", n), |b| {
            b.iter(|| ledger::authorize_each(&registry, black_box(list)))
        });
        g.bench_function(BenchmarkId::new("ours-authorize_one_by_one", n), |b| {
            b.iter(|| {
                for raw in black_box(list) {
                    let e = SignedEvent::decode(raw).unwrap();
                    ledger::authorize(&registry, &e).unwrap();
                }
            })
        });
    }
    g.finish();
}

fn benches(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    bench_sha256(c, &mut rng);
    bench_sign(c, &mut rng);
    bench_verify(c, &mut rng);
}

criterion_group!(crypto, benches);
criterion_main!(crypto);
