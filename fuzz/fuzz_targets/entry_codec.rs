//! Decodes arbitrary bytes as a log entry (and as the map's status and
//! credential records). For every accepted input `b`:
//! `encode(decode(b)) == b`, `SignedEvent::decode` agrees with
//! `Entry::decode`, and signature verification against the issuer key and
//! the log key (docs/FORMAT.md §12) never panics and is deterministic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use revledger::entry::{Entry, SignedEvent, MAX_ENTRY_LEN};
use revledger::hash::leaf_hash;
use revledger::note::NoteVerifier;
use revledger::rules::{Credential, StatusRecord};
use std::sync::OnceLock;

struct Keys {
    issuer: NoteVerifier,
    log: NoteVerifier,
}

fn keys() -> &'static Keys {
    static K: OnceLock<Keys> = OnceLock::new();
    K.get_or_init(|| Keys {
        issuer: revledger_fuzz::issuer().verifier(),
        log: revledger_fuzz::log_verifier(),
    })
}

fuzz_target!(|data: &[u8]| {
    let k = keys();
    match Entry::decode(data) {
        Ok(entry) => {
            assert!(data.len() <= MAX_ENTRY_LEN);
            let encoded = entry.encode();
            assert_eq!(encoded, data, "encode(decode(b)) != b for {entry:?}");
            assert_eq!(Entry::decode(&encoded).as_ref(), Ok(&entry));
            match &entry {
                Entry::Event(e) => {
                    assert_eq!(SignedEvent::decode(data).as_ref(), Ok(e));
                    assert_eq!(e.leaf_hash(), leaf_hash(data));
                    let unsigned = e.event.encode_unsigned();
                    assert_eq!(&data[..data.len() - 64], &unsigned[..]);
                    assert_eq!(&data[data.len() - 64..], &e.signature[..]);
                    let a = e.verify(k.issuer.key());
                    let b = e.verify(k.log.key());
                    // Deterministic.
                    assert_eq!(a, e.verify(k.issuer.key()));
                    assert_eq!(b, e.verify(k.log.key()));
                }
                Entry::Registry(r) => {
                    assert!(SignedEvent::decode(data).is_err());
                    assert!(revledger::entry::check_key_name(&r.change.name).is_ok());
                    let a = r.verify(k.log.key());
                    let _ = r.verify(k.issuer.key());
                    assert_eq!(a, r.verify(k.log.key()));
                }
                Entry::Head(h) => {
                    assert!(SignedEvent::decode(data).is_err());
                    assert_eq!(data.len(), revledger::entry::HeadRecord::LEN);
                    assert_eq!(h.encode(), data);
                }
            }
        }
        Err(e) => {
            assert!(SignedEvent::decode(data).is_err());
            // Error messages must format.
            let _ = e.to_string();
        }
    }
    // The map's leaf value and the ledger's credential record.
    if let Ok(r) = StatusRecord::decode(data) {
        assert_eq!(&r.encode()[..], data, "StatusRecord round trip");
    }
    if let Ok(c) = Credential::decode(data) {
        assert_eq!(c.encode(), data, "Credential round trip");
    }
});
