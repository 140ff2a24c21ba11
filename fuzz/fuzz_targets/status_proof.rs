//! Status proof JSON from arbitrary bytes, verified offline.
//!
//! * `StatusProof::from_json`: for an accepted document,
//!   `from_json(to_json(p)) == p`.
//! * `verify_status` with the doc log key (docs/FORMAT.md §12.2) for the
//!   proof's own credential and for `11…11`, at the fixture clock and at
//!   clock `0` with an unlimited policy and at `u64::MAX`: never panics,
//!   and the verdict of the re-parsed proof is the same.
//! * A verdict other than `invalid` needs the proof's credential, and
//!   `valid` needs an unexpired `not_after` and a head no older than the
//!   policy allows.
#![no_main]

use libfuzzer_sys::fuzz_target;
use revledger::note::NoteVerifier;
use revledger::status::{verify_status, Policy, StatusProof, Verdict};
use std::sync::OnceLock;

fn log_key() -> &'static NoteVerifier {
    static K: OnceLock<NoteVerifier> = OnceLock::new();
    K.get_or_init(revledger_fuzz::log_verifier)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let proof = match StatusProof::from_json(text) {
        Ok(p) => p,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let again = StatusProof::from_json(&proof.to_json()).expect("to_json output parses");
    assert_eq!(again, proof, "from_json(to_json(p)) != p");

    let key = log_key();
    let doc = revledger_fuzz::cred(0x11);
    let unlimited = Policy {
        max_age_ms: u64::MAX,
        max_future_ms: u64::MAX,
    };
    let runs = [
        (revledger_fuzz::policy(), revledger_fuzz::NOW),
        (unlimited, 0),
        (revledger_fuzz::policy(), u64::MAX),
    ];
    let mut creds = vec![proof.credential];
    if proof.credential != doc {
        creds.push(doc);
    }
    for (i, (policy, now)) in runs.into_iter().enumerate() {
        for &cred in &creds {
            let v = verify_status(&proof, &cred, key, now, policy);
            if i == 0 {
                assert_eq!(v, verify_status(&again, &cred, key, now, policy));
            }
            let _ = v.name();
            if let Verdict::Invalid(e) = &v {
                let _ = e.to_string();
                continue;
            }
            assert_eq!(
                cred, proof.credential,
                "non-invalid verdict for another credential"
            );
            if let Verdict::Valid {
                not_after_ms,
                head_time_ms,
            } = v
            {
                assert!(not_after_ms > now, "valid but expired");
                assert!(now.saturating_sub(head_time_ms) <= policy.max_age_ms);
                assert!(head_time_ms <= now.saturating_add(policy.max_future_ms));
            }
        }
    }
});
