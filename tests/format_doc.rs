//! Keeps `docs/FORMAT.md` honest: every generated block in it (between
//! `<!-- BEGIN GENERATED name -->` and `<!-- END GENERATED name -->`) must be
//! exactly what the code produces now, and the documented status proof must
//! verify with the documented verdicts.
//!
//! Regenerate the blocks with
//!
//! ```text
//! cargo test --release --test format_doc print_format_vectors -- --ignored --nocapture
//! ```
//!
//! and paste each block over the one with the same name. The `entry` block
//! is also printed by `cargo test --release --lib entry::tests::print_vectors
//! -- --ignored --nocapture` (same lines, same values).

use ed25519_dalek::SigningKey;
use revledger::entry::{
    Action, CredentialId, Entry, Event, HeadRecord, HolderTag, KindSet, Reason,
    REGISTRY_SIGNATURE_DOMAIN,
};
use revledger::hash::{leaf_hash, Hash};
use revledger::ledger::{Ledger, Outcome, Submitter};
use revledger::note::{KeyName, NoteSigner, NoteVerifier};
use revledger::rules::{State, StatusRecord};
use revledger::smt;
use revledger::status::{verify_status, Policy, StatusProof, Verdict};
use revledger::store::MemStore;
use std::collections::BTreeMap;

const DOC: &str = include_str!("../docs/FORMAT.md");

/// 2026-01-01T00:00:00Z in unix milliseconds.
const T0: u64 = 1_767_225_600_000;
/// 2031-01-01T00:00:00Z.
const NOT_AFTER: u64 = 1_924_992_000_000;
/// The documented ledger: opened at T0, registry reconciled at T0 + 1 min,
/// the example event appended at T0 + 2 min.
const T_REGISTRY: u64 = T0 + 60_000;
const T_EVENT: u64 = T0 + 120_000;
const LOG_NAME: &str = "example.com/revledger-doc";

/// RFC 8032 §7.1 TEST 1 secret key.
fn issuer_key() -> SigningKey {
    let mut seed = [0u8; 32];
    hex::decode_to_slice(
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        &mut seed,
    )
    .unwrap();
    SigningKey::from_bytes(&seed)
}

fn issuer_signer() -> NoteSigner {
    NoteSigner::from_seed(
        KeyName::new("issuer.example").unwrap(),
        issuer_key().to_bytes(),
    )
}

fn log_signer() -> NoteSigner {
    NoteSigner::from_seed(KeyName::new(LOG_NAME).unwrap(), [7; 32])
}

/// The example event (the same as `entry::tests::vector_event`).
fn vector_event() -> Event {
    Event {
        action: Action::Issue {
            not_before_ms: T0,
            not_after_ms: NOT_AFTER,
            replaces: None,
        },
        credential: CredentialId([0x11; 32]),
        holder: HolderTag([0x22; 32]),
        issuer_key_id: issuer_signer().id(),
        issued_at_ms: T0,
    }
}

fn vector_head() -> HeadRecord {
    HeadRecord {
        time_ms: T0,
        map_root: Hash([0xab; 32]),
    }
}

/// `offset length field hex` lines for `bytes` cut into `fields`.
fn fields(bytes: &[u8], layout: &[(usize, &str)]) -> String {
    let total: usize = layout.iter().map(|(n, _)| n).sum();
    assert_eq!(total, bytes.len(), "layout does not cover the bytes");
    let mut out = String::from("offset  len  field\n");
    let mut at = 0;
    for (n, name) in layout {
        out += &format!(
            "{at:>6} {n:>4}  {name:<15} {}\n",
            hex::encode(&bytes[at..at + n])
        );
        at += n;
    }
    out
}

fn block(lang: &str, body: &str) -> String {
    format!("```{lang}\n{}\n```", body.trim_end())
}

/// The documented ledger and what the doc shows of it.
struct DocLedger {
    ledger: Ledger<MemStore>,
    registry_entry: Vec<u8>,
    proof: StatusProof,
}

fn doc_ledger() -> DocLedger {
    let mut ledger = Ledger::open(MemStore::new(), log_signer(), T0).unwrap();
    let changes = ledger
        .reconcile_submitters(
            &[Submitter {
                key: issuer_signer().verifier(),
                kinds: KindSet::ALL,
            }],
            T_REGISTRY,
        )
        .unwrap();
    assert_eq!(changes.len(), 1);
    let event = vector_event().sign(&issuer_key()).encode();
    let result = ledger.append_events(&[event], T_EVENT).unwrap();
    assert!(matches!(
        result.outcomes[..],
        [Outcome::Accepted { index: 3, .. }]
    ));
    assert_eq!(ledger.checkpoint().size(), 5);
    let registry_entry = ledger.entry(1).unwrap();
    let proof = ledger.status_proof(&CredentialId([0x11; 32])).unwrap();
    DocLedger {
        ledger,
        registry_entry,
        proof,
    }
}

/// The verification cases of the `verify` block: `(now_ms, policy)`.
fn verify_cases() -> Vec<(u64, Policy)> {
    let policy = |max_age_ms, max_future_ms| Policy {
        max_age_ms,
        max_future_ms,
    };
    vec![
        (T0 + 180_000, policy(600_000, 300_000)),
        (T_EVENT + 600_000, policy(600_000, 300_000)),
        (T_EVENT + 600_001, policy(600_000, 300_000)),
        (NOT_AFTER - 1, policy(u64::MAX, 300_000)),
        (NOT_AFTER, policy(600_000, 300_000)),
        (T_EVENT - 300_000, policy(600_000, 300_000)),
        (T_EVENT - 300_001, policy(600_000, 300_000)),
    ]
}

fn verdict_text(v: &Verdict) -> String {
    let detail = match v {
        Verdict::Valid {
            not_after_ms,
            head_time_ms,
        } => format!("not_after_ms={not_after_ms} head_time_ms={head_time_ms}"),
        Verdict::Suspended { reason } | Verdict::Revoked { reason } => format!("reason={reason}"),
        Verdict::Expired { not_after_ms } => format!("not_after_ms={not_after_ms}"),
        Verdict::Unknown => String::new(),
        Verdict::Stale {
            head_time_ms,
            age_ms,
        } => format!("head_time_ms={head_time_ms} age_ms={age_ms}"),
        Verdict::Invalid(e) => e.to_string(),
    };
    format!("{} {detail}", v.name()).trim_end().to_string()
}

/// Every generated block of docs/FORMAT.md, by name, fences included.
fn generated_blocks() -> BTreeMap<&'static str, String> {
    let mut out = BTreeMap::new();
    let issuer = issuer_signer();
    let signed = vector_event().sign(&issuer_key());
    let event = signed.encode();

    // The lines of `entry::tests::print_vectors`.
    out.insert(
        "entry",
        block(
            "text",
            &format!(
                "issuer vkey {}\nevent      {}\nsignature  {}\nleaf hash  {}\nhead       {}\nhead leaf  {}",
                issuer.verifier().to_vkey_string(),
                hex::encode(&event),
                hex::encode(signed.signature),
                signed.leaf_hash().to_hex(),
                hex::encode(vector_head().encode()),
                leaf_hash(&vector_head().encode()).to_hex(),
            ),
        ),
    );

    out.insert(
        "event-fields",
        block(
            "text",
            &format!(
                "{}\nsigned message = {}",
                fields(
                    &event,
                    &[
                        (1, "type"),
                        (1, "version"),
                        (1, "kind"),
                        (32, "credential"),
                        (32, "holder"),
                        (4, "issuer_key_id"),
                        (8, "issued_at_ms"),
                        (8, "not_before_ms"),
                        (8, "not_after_ms"),
                        (1, "has_replaces"),
                        (64, "signature"),
                    ],
                ),
                hex::encode(signed.event.signing_message()),
            ),
        ),
    );

    let doc = doc_ledger();
    let log = doc.ledger.verifier();
    let reg = &doc.registry_entry;
    let name_len = reg[44] as usize;
    let unsigned = &reg[..reg.len() - 64];
    let mut message = REGISTRY_SIGNATURE_DOMAIN.to_vec();
    message.extend_from_slice(unsigned);
    out.insert(
        "registry",
        block(
            "text",
            &format!(
                "log vkey   {}\nentry      {}\nleaf hash  {}\n\n{}\nsigned message = {}",
                log.to_vkey_string(),
                hex::encode(reg),
                leaf_hash(reg).to_hex(),
                fields(
                    reg,
                    &[
                        (1, "type"),
                        (1, "version"),
                        (1, "op"),
                        (1, "kinds"),
                        (32, "public_key"),
                        (8, "time_ms"),
                        (1, "name_len"),
                        (name_len, "name"),
                        (64, "signature"),
                    ],
                ),
                hex::encode(message),
            ),
        ),
    );

    let record = doc
        .ledger
        .credential(&CredentialId([0x11; 32]))
        .unwrap()
        .unwrap()
        .status;
    let revoked = StatusRecord {
        state: State::Revoked,
        reason: Some(Reason::KeyCompromise),
        not_after_ms: NOT_AFTER,
        last_index: 7,
        last_leaf_hash: Hash([0x33; 32]),
    };
    let layout = [
        (1, "version"),
        (1, "state"),
        (1, "reason"),
        (8, "not_after_ms"),
        (8, "last_index"),
        (32, "last_leaf_hash"),
    ];
    out.insert(
        "status-record",
        block(
            "text",
            &format!(
                "active record of credential 11…11 in the example ledger:\n{}\n{}\nrevoked (key_compromise), last changed by entry 7 with leaf hash 33…33:\n{}\n{}",
                hex::encode(record.encode()),
                fields(&record.encode(), &layout),
                hex::encode(revoked.encode()),
                fields(&revoked.encode(), &layout),
            ),
        ),
    );

    let ckpt = doc.ledger.checkpoint();
    let mut ledger_lines = String::from(
        "index  leaf hash (hex)                                                   entry (hex)\n",
    );
    for i in 0..ckpt.size() {
        let e = doc.ledger.entry(i).unwrap();
        ledger_lines += &format!("{i:>5}  {}  {}\n", leaf_hash(&e).to_hex(), hex::encode(&e));
    }
    let key = smt::map_key(&[0x11; 32]);
    let head = match Entry::decode(&doc.ledger.entry(ckpt.size() - 1).unwrap()).unwrap() {
        Entry::Head(h) => h,
        other => panic!("last entry is {other:?}"),
    };
    out.insert(
        "ledger",
        block(
            "text",
            &format!(
                "{ledger_lines}\ntree size {}\nroot      {} (base64 {})\nmap_key(11…11) {}\nmap root       {}\nmap proof      {}\n\ncheckpoint (signed note):\n{}",
                ckpt.size(),
                ckpt.root().to_hex(),
                ckpt.root().to_base64(),
                key.to_hex(),
                head.map_root.to_hex(),
                hex::encode(&doc.proof.map_proof),
                ckpt.note_text(),
            ),
        ),
    );

    out.insert("status-proof", block("json", &doc.proof.to_json()));

    let mut verify = format!(
        "log vkey    {}\ncredential  {}\n\nnow_ms         max_age_ms            max_future_ms  verdict\n",
        log.to_vkey_string(),
        CredentialId([0x11; 32]).to_hex()
    );
    for (now, policy) in verify_cases() {
        let v = verify_status(&doc.proof, &CredentialId([0x11; 32]), log, now, policy);
        verify += &format!(
            "{now:<14} {:<21} {:<14} {}\n",
            policy.max_age_ms,
            policy.max_future_ms,
            verdict_text(&v)
        );
    }
    out.insert("verify", block("text", &verify));
    out
}

/// The generated blocks of the document, by name.
fn doc_blocks() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = DOC;
    while let Some(start) = rest.find("<!-- BEGIN GENERATED ") {
        let after = &rest[start + "<!-- BEGIN GENERATED ".len()..];
        let name_end = after.find(" -->").expect("unterminated BEGIN marker");
        let name = &after[..name_end];
        let body_start = &after[name_end + " -->".len()..];
        let end_marker = format!("<!-- END GENERATED {name} -->");
        let end = body_start
            .find(&end_marker)
            .unwrap_or_else(|| panic!("no END marker for block {name}"));
        let body = body_start[..end].trim().to_string();
        assert!(
            out.insert(name.to_string(), body).is_none(),
            "block {name} appears twice"
        );
        rest = &body_start[end + end_marker.len()..];
    }
    out
}

#[test]
#[ignore]
fn print_format_vectors() {
    for (name, body) in generated_blocks() {
        println!("<!-- BEGIN GENERATED {name} -->\n{body}\n<!-- END GENERATED {name} -->\n");
    }
}

#[test]
fn format_doc_vectors_are_current() {
    let doc = doc_blocks();
    let code = generated_blocks();
    let doc_names: Vec<&str> = doc.keys().map(String::as_str).collect();
    let code_names: Vec<&str> = code.keys().copied().collect();
    assert_eq!(doc_names, code_names, "generated blocks in docs/FORMAT.md");
    for (name, body) in &code {
        assert_eq!(
            &doc[*name], body,
            "docs/FORMAT.md block `{name}` is stale; regenerate it (see tests/format_doc.rs)"
        );
    }
}

/// The body of a fenced block, without its fences.
fn fenced(body: &str) -> &str {
    let body = body.split_once('\n').expect("fence line").1;
    body.strip_suffix("```").expect("closing fence").trim_end()
}

/// Reads the documented proof and key back from the text and checks the
/// documented verdicts, independently of the generator.
#[test]
fn documented_status_proof_verifies_as_documented() {
    let doc = doc_blocks();
    let proof = StatusProof::from_json(fenced(&doc["status-proof"])).unwrap();
    let verify = fenced(&doc["verify"]);
    let mut lines = verify.lines();
    let vkey = lines
        .next()
        .unwrap()
        .strip_prefix("log vkey")
        .unwrap()
        .trim();
    let log = NoteVerifier::parse_vkey(vkey).unwrap();
    let credential = CredentialId::from_hex(
        lines
            .next()
            .unwrap()
            .strip_prefix("credential")
            .unwrap()
            .trim(),
    )
    .unwrap();
    let mut cases = 0;
    let mut names = Vec::new();
    for line in lines.skip(2) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let [now, max_age, max_future, verdict, ..] = cols[..] else {
            panic!("bad verify line {line:?}");
        };
        let policy = Policy {
            max_age_ms: max_age.parse().unwrap(),
            max_future_ms: max_future.parse().unwrap(),
        };
        let v = verify_status(&proof, &credential, &log, now.parse().unwrap(), policy);
        assert_eq!(v.name(), verdict, "{line}");
        assert_eq!(
            verdict_text(&v),
            cols[3..].join(" "),
            "verdict detail of {line}"
        );
        names.push(verdict);
        cases += 1;
    }
    assert_eq!(cases, verify_cases().len());
    // The first case is the headline: a fresh proof of an active credential.
    assert_eq!(names[0], "valid");
    for expected in ["stale", "expired", "invalid"] {
        assert!(names.contains(&expected), "no {expected} case documented");
    }

    // The documented entries decode and their signatures verify.
    let entry = fenced(&doc["entry"]);
    let event_hex = entry.lines().nth(1).unwrap().split_whitespace().nth(1);
    let event = match Entry::decode(&hex::decode(event_hex.unwrap()).unwrap()).unwrap() {
        Entry::Event(e) => e,
        other => panic!("{other:?}"),
    };
    event
        .verify(&revledger::strict::StrictKey::new(
            &issuer_key().verifying_key(),
        ))
        .unwrap();
    let reg = fenced(&doc["registry"]);
    let reg_hex = reg.lines().nth(1).unwrap().split_whitespace().nth(1);
    match Entry::decode(&hex::decode(reg_hex.unwrap()).unwrap()).unwrap() {
        Entry::Registry(r) => {
            r.verify(log.strict()).unwrap();
            assert_eq!(r.change.name, "issuer.example");
            assert_eq!(r.change.kinds, KindSet::ALL);
        }
        other => panic!("{other:?}"),
    }
}
