//! Signed notes, checkpoints and key texts from arbitrary bytes.
//!
//! * `parse_note_bytes`: for an accepted note, printing its text, the blank
//!   line and its signature lines back gives the input byte for byte.
//! * `open_bytes` with fixed verifiers (the doc log key, the issuer key,
//!   Go's PeterNeumann key) agrees with `parse_note_bytes` (accepted only if
//!   parsed) and returns the parsed text.
//! * `Checkpoint::parse_body` on the whole input and on an accepted note's
//!   text: `to_body(parse_body(t)) == t`.
//! * `verify_checkpoint` with the log key: a verified checkpoint's body is
//!   the verified note text and its origin is the key name.
//! * `NoteVerifier::parse_vkey`, `NoteSigner::parse_private_key`: printing
//!   an accepted key gives the input.
//! * sign → open: a text that `sign_note` accepts opens with the signer's
//!   verifier to the same text, and its checkpoint (if it parses) verifies.
#![no_main]

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use revledger::checkpoint::{verify_checkpoint, Checkpoint};
use revledger::note::{open, open_bytes, parse_note_bytes, NoteSigner, NoteVerifier};
use std::sync::OnceLock;

const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";

struct Keys {
    log_signer: NoteSigner,
    verifiers: Vec<NoteVerifier>,
}

fn keys() -> &'static Keys {
    static K: OnceLock<Keys> = OnceLock::new();
    K.get_or_init(|| Keys {
        log_signer: revledger_fuzz::log_signer(),
        verifiers: vec![
            revledger_fuzz::log_verifier(),
            revledger_fuzz::issuer().verifier(),
            NoteVerifier::parse_vkey(PETER_VKEY).unwrap(),
        ],
    })
}

fuzz_target!(|data: &[u8]| {
    let k = keys();
    let log = &k.verifiers[0];

    // 1. Parse without verifying; print back.
    let parsed = parse_note_bytes(data);
    if let Ok(note) = &parsed {
        let mut printed = note.text().to_owned();
        printed.push('\n');
        for s in note.signatures() {
            let mut blob = s.id().to_be_bytes().to_vec();
            blob.extend_from_slice(s.bytes());
            printed.push_str(&format!("\u{2014} {} {}\n", s.name(), B64.encode(blob)));
        }
        assert_eq!(printed.as_bytes(), data, "note print(parse(n)) != n");
        assert!(note.text().ends_with('\n'));
    }

    // 2. Open with trusted keys.
    match open_bytes(data, &k.verifiers) {
        Ok(v) => {
            let note = parsed.as_ref().expect("opened a note that does not parse");
            assert_eq!(v.text(), note.text());
            assert!(!v.verified_by().is_empty());
            assert!(v.verified_by().iter().any(|s| k
                .verifiers
                .iter()
                .any(|kv| { kv.name() == s.name() && kv.id() == s.id() })));
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }

    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    // 3. Checkpoint bodies.
    if let Ok(c) = Checkpoint::parse_body(text) {
        assert_eq!(c.to_body(), text, "checkpoint to_body(parse_body(t)) != t");
    }
    if let Ok(note) = &parsed {
        if let Ok(c) = Checkpoint::parse_body(note.text()) {
            assert_eq!(c.to_body(), note.text());
        }
    }

    // 4. Checkpoint verification against the log key.
    match verify_checkpoint(text, log) {
        Ok(vc) => {
            assert_eq!(vc.origin(), log.name().as_str());
            assert_eq!(vc.note_text(), text);
            assert_eq!(vc.checkpoint().to_body(), parsed.as_ref().unwrap().text());
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }

    // 5. Key texts.
    if let Ok(v) = NoteVerifier::parse_vkey(text) {
        assert_eq!(v.to_vkey_string(), text, "vkey round trip");
    }
    if let Ok(s) = NoteSigner::parse_private_key(text) {
        assert_eq!(s.to_private_key_string(), text, "private key round trip");
        assert_eq!(s.verifier().id(), s.id());
    }

    // 6. Sign, then open: the signer's own note always opens.
    if let Ok(signed) = k.log_signer.sign_note(text) {
        let v = open(&signed, std::slice::from_ref(log))
            .unwrap_or_else(|e| panic!("own signed note does not open: {e}"));
        assert_eq!(v.text(), text);
        if let Ok(c) = Checkpoint::parse_body(text) {
            if c.origin() == log.name().as_str() {
                let vc = verify_checkpoint(&signed, log)
                    .unwrap_or_else(|e| panic!("own checkpoint does not verify: {e}"));
                assert_eq!(vc.checkpoint(), &c);
            }
        }
    }
});
