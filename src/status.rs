//! Status proofs (DESIGN §4): the bundle a node serves and a wallet staples,
//! and the offline verifier a bank or an airport runs with nothing but the
//! log's verifier key and its own clock.
//!
//! Architecture Invariant: pure. No I/O, no storage, no async; usable with
//! `--no-default-features`.

use crate::checkpoint::{self, VerifiedCheckpoint};
use crate::entry::{Action, CredentialId, Entry, HeadRecord, Reason};
use crate::hash::{leaf_hash, Hash};
use crate::merkle;
use crate::note::NoteVerifier;
use crate::rules::{State, StatusRecord};
use crate::smt::{self, Lookup, MapProof};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// An entry of the log with its inclusion proof in the checkpoint's tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedEntry {
    pub index: u64,
    pub entry: Vec<u8>,
    /// RFC 9162 inclusion proof, leaf level first.
    pub inclusion: Vec<Hash>,
}

/// A status proof for one credential against one signed checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusProof {
    pub credential: CredentialId,
    /// The signed checkpoint (signed-note text) of size N.
    pub checkpoint: String,
    /// The head record at index N−1.
    pub head: LoggedEntry,
    /// The map proof for `map_key(credential)` under the head's map root
    /// (encoding of `smt::MapProof`).
    pub map_proof: Vec<u8>,
    /// The event that last changed the credential, when the log knows it.
    pub event: Option<LoggedEntry>,
}

/// JSON shape: hashes and bytes in standard base64, the credential in hex.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireProof {
    version: u8,
    credential: String,
    checkpoint: String,
    head: WireEntry,
    map_proof: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    event: Option<WireEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireEntry {
    index: u64,
    entry: String,
    inclusion: Vec<Hash>,
}

/// The JSON of a status proof could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProofFormatError {
    #[error("status proof JSON: {0}")]
    Json(String),
    #[error("unsupported status proof version {0}")]
    Version(u8),
    #[error("field `{0}` is not valid")]
    Field(&'static str),
}

#[cfg(test)]
fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn unb64(s: &str, field: &'static str) -> Result<Vec<u8>, ProofFormatError> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|_| ProofFormatError::Field(field))
}

impl LoggedEntry {
    #[cfg(test)]
    fn to_wire(&self) -> WireEntry {
        WireEntry {
            index: self.index,
            entry: b64(&self.entry),
            inclusion: self.inclusion.clone(),
        }
    }
    fn from_wire(w: WireEntry, field: &'static str) -> Result<LoggedEntry, ProofFormatError> {
        Ok(LoggedEntry {
            index: w.index,
            entry: unb64(&w.entry, field)?,
            inclusion: w.inclusion,
        })
    }
}

impl StatusProof {
    /// The JSON document (`version` 1) served at `/status/<id>`.
    ///
    /// Written directly, byte for byte as `serde_json::to_string_pretty` of
    /// the wire shape writes it (a test holds the two equal), because it is
    /// written for every status proof served and the generic serializer
    /// scanned every base64 and hex byte for characters to escape; only the
    /// checkpoint's text can hold any.
    pub fn to_json(&self) -> String {
        fn entry(out: &mut String, e: &LoggedEntry) {
            out.push_str("{\n    \"index\": ");
            out.push_str(&e.index.to_string());
            out.push_str(",\n    \"entry\": \"");
            base64::engine::general_purpose::STANDARD.encode_string(&e.entry, out);
            out.push_str("\",\n    \"inclusion\": [");
            for (i, h) in e.inclusion.iter().enumerate() {
                out.push_str(if i == 0 { "\n      \"" } else { ",\n      \"" });
                base64::engine::general_purpose::STANDARD.encode_string(h.0, out);
                out.push('"');
            }
            out.push_str(if e.inclusion.is_empty() {
                "]\n  }"
            } else {
                "\n    ]\n  }"
            });
        }
        let hashes =
            self.head.inclusion.len() + self.event.as_ref().map_or(0, |e| e.inclusion.len());
        let mut out = String::with_capacity(
            400 + self.checkpoint.len()
                + 4 * (self.head.entry.len() + self.map_proof.len()) / 3
                + self.event.as_ref().map_or(0, |e| 4 * e.entry.len() / 3)
                + 54 * hashes,
        );
        out.push_str("{\n  \"version\": 1,\n  \"credential\": \"");
        out.push_str(&self.credential.to_hex());
        out.push_str("\",\n  \"checkpoint\": ");
        // A JSON string of plain text cannot fail to serialize.
        out.push_str(&serde_json::to_string(&self.checkpoint).unwrap_or_default());
        out.push_str(",\n  \"head\": ");
        entry(&mut out, &self.head);
        out.push_str(",\n  \"map_proof\": \"");
        base64::engine::general_purpose::STANDARD.encode_string(&self.map_proof, &mut out);
        out.push('"');
        if let Some(e) = &self.event {
            out.push_str(",\n  \"event\": ");
            entry(&mut out, e);
        }
        out.push_str("\n}");
        out
    }

    /// [`StatusProof::to_json`] through serde: the reference its output is
    /// tested against.
    #[cfg(test)]
    fn to_json_serde(&self) -> String {
        let w = WireProof {
            version: 1,
            credential: self.credential.to_hex(),
            checkpoint: self.checkpoint.clone(),
            head: self.head.to_wire(),
            map_proof: b64(&self.map_proof),
            event: self.event.as_ref().map(LoggedEntry::to_wire),
        };
        serde_json::to_string_pretty(&w).unwrap_or_default()
    }

    /// Parses the JSON document.
    ///
    /// # Errors
    /// [`ProofFormatError`] for bad JSON, unknown fields or version, or a
    /// field that is not valid hex/base64.
    pub fn from_json(s: &str) -> Result<StatusProof, ProofFormatError> {
        let w: WireProof =
            serde_json::from_str(s).map_err(|e| ProofFormatError::Json(e.to_string()))?;
        if w.version != 1 {
            return Err(ProofFormatError::Version(w.version));
        }
        Ok(StatusProof {
            credential: CredentialId::from_hex(&w.credential)
                .ok_or(ProofFormatError::Field("credential"))?,
            checkpoint: w.checkpoint,
            head: LoggedEntry::from_wire(w.head, "head.entry")?,
            map_proof: unb64(&w.map_proof, "map_proof")?,
            event: w
                .event
                .map(|e| LoggedEntry::from_wire(e, "event.entry"))
                .transpose()?,
        })
    }
}

/// What a verifier accepts.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// The oldest head record accepted, as an age: minutes for opening a
    /// bank account, hours for an age check.
    pub max_age_ms: u64,
    /// How far in the verifier's future a head record may be before the
    /// proof is rejected (clock skew between node and verifier).
    pub max_future_ms: u64,
}

impl Policy {
    /// A policy with the given freshness limit and 5 minutes of clock skew.
    pub fn with_max_age_ms(max_age_ms: u64) -> Policy {
        Policy {
            max_age_ms,
            max_future_ms: 5 * 60 * 1000,
        }
    }
}

/// Which check of a status proof failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum Invalid {
    #[error("the proof is for credential {proof}, not {asked}")]
    WrongCredential {
        proof: CredentialId,
        asked: CredentialId,
    },
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error("head record is at index {index}, but must be the last entry of tree size {size}")]
    HeadNotLast { index: u64, size: u64 },
    #[error("the head entry is not a head record")]
    HeadMalformed,
    #[error("head record inclusion: {0}")]
    HeadInclusion(String),
    #[error(
        "head record time {head_ms} is after the verifier's clock {now_ms} beyond the allowed skew"
    )]
    HeadInFuture { head_ms: u64, now_ms: u64 },
    #[error("map proof: {0}")]
    MapProof(String),
    #[error("status record in the map: {0}")]
    Record(String),
    #[error("the map holds the credential but the proof has no event")]
    MissingEvent,
    #[error("the map does not hold the credential but the proof carries an event")]
    UnexpectedEvent,
    #[error("event is at index {got}, but the status record names {expected}")]
    EventIndex { expected: u64, got: u64 },
    #[error("event's leaf hash differs from the one in the status record")]
    EventLeafHash,
    #[error("event inclusion: {0}")]
    EventInclusion(String),
    #[error("event entry is not an event: {0}")]
    EventMalformed(String),
    #[error("the event does not produce the status the map records")]
    EventContradictsStatus,
}

/// The verdict on a credential.
#[derive(Debug, PartialEq, Eq, Clone)]
pub enum Verdict {
    /// Every check passed; the credential is active, unexpired and the
    /// proof fresh.
    Valid {
        not_after_ms: u64,
        head_time_ms: u64,
    },
    /// Locked (e.g. phone lost); may be resumed.
    Suspended { reason: Reason },
    /// Final.
    Revoked { reason: Reason },
    /// `not_after` has passed on the verifier's clock.
    Expired { not_after_ms: u64 },
    /// The log has never seen this credential.
    Unknown,
    /// The proof checks, but its head record is older than the policy
    /// allows; fetch a fresh one.
    Stale { head_time_ms: u64, age_ms: u64 },
    /// Some check failed: the proof proves nothing.
    Invalid(Invalid),
}

impl Verdict {
    /// Stable lower-case name.
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Valid { .. } => "valid",
            Verdict::Suspended { .. } => "suspended",
            Verdict::Revoked { .. } => "revoked",
            Verdict::Expired { .. } => "expired",
            Verdict::Unknown => "unknown",
            Verdict::Stale { .. } => "stale",
            Verdict::Invalid(_) => "invalid",
        }
    }
}

/// Verifies a status proof for `credential` against the log's verifier key
/// and the verifier's clock (`now_ms`, unix ms), and says what it proves.
///
/// Accepts "valid" only when every signature and hash checks, the state is
/// active, `not_after` is in the future and the head record is no older
/// than `policy.max_age_ms`. Revocation and expiry are final, so they are
/// reported even from a stale proof; suspension and absence are not.
pub fn verify_status(
    proof: &StatusProof,
    credential: &CredentialId,
    log_key: &NoteVerifier,
    now_ms: u64,
    policy: Policy,
) -> Verdict {
    match check(proof, credential, log_key, now_ms, policy) {
        Ok(v) => v,
        Err(e) => Verdict::Invalid(e),
    }
}

fn check(
    proof: &StatusProof,
    credential: &CredentialId,
    log_key: &NoteVerifier,
    now_ms: u64,
    policy: Policy,
) -> Result<Verdict, Invalid> {
    if proof.credential != *credential {
        return Err(Invalid::WrongCredential {
            proof: proof.credential,
            asked: *credential,
        });
    }
    // 1. The checkpoint is signed by the log.
    let ckpt = checkpoint::verify_checkpoint(&proof.checkpoint, log_key)
        .map_err(|e| Invalid::Checkpoint(e.to_string()))?;
    if !ckpt.checkpoint().extensions().is_empty() {
        // DESIGN §1/§2: our checkpoints carry no extension lines; nothing
        // outside the log may carry state.
        return Err(Invalid::Checkpoint("unexpected extension lines".into()));
    }
    // 2. The head record is the tree's last entry, and included.
    let head = check_head(&proof.head, &ckpt)?;
    if head.time_ms > now_ms.saturating_add(policy.max_future_ms) {
        return Err(Invalid::HeadInFuture {
            head_ms: head.time_ms,
            now_ms,
        });
    }
    // 3. The map proof under the head's map root.
    let map_proof =
        MapProof::decode(&proof.map_proof).map_err(|e| Invalid::MapProof(e.to_string()))?;
    let lookup = smt::verify(&head.map_root, &smt::map_key(&credential.0), &map_proof)
        .map_err(|e| Invalid::MapProof(e.to_string()))?;
    // 4. For a known credential, the event that set its status.
    let record = match lookup {
        Lookup::Absent => {
            if proof.event.is_some() {
                return Err(Invalid::UnexpectedEvent);
            }
            None
        }
        Lookup::Present(value) => {
            let record =
                StatusRecord::decode(&value).map_err(|e| Invalid::Record(e.to_string()))?;
            let event = proof.event.as_ref().ok_or(Invalid::MissingEvent)?;
            check_event(event, &record, credential, &ckpt)?;
            Some(record)
        }
    };
    // 5. The verdict: final states first, then freshness.
    let age_ms = now_ms.saturating_sub(head.time_ms);
    let stale = age_ms > policy.max_age_ms;
    Ok(match record {
        Some(StatusRecord {
            state: State::Revoked,
            reason,
            ..
        }) => Verdict::Revoked {
            // decode() guarantees a reason for a revoked record.
            reason: reason.unwrap_or(Reason::Administrative),
        },
        Some(r) if r.not_after_ms <= now_ms => Verdict::Expired {
            not_after_ms: r.not_after_ms,
        },
        _ if stale => Verdict::Stale {
            head_time_ms: head.time_ms,
            age_ms,
        },
        None => Verdict::Unknown,
        Some(StatusRecord {
            state: State::Suspended,
            reason,
            ..
        }) => Verdict::Suspended {
            reason: reason.unwrap_or(Reason::Administrative),
        },
        Some(r) => Verdict::Valid {
            not_after_ms: r.not_after_ms,
            head_time_ms: head.time_ms,
        },
    })
}

fn check_head(head: &LoggedEntry, ckpt: &VerifiedCheckpoint) -> Result<HeadRecord, Invalid> {
    let size = ckpt.size();
    if size == 0 || head.index != size - 1 {
        return Err(Invalid::HeadNotLast {
            index: head.index,
            size,
        });
    }
    let record = match Entry::decode(&head.entry) {
        Ok(Entry::Head(h)) => h,
        _ => return Err(Invalid::HeadMalformed),
    };
    merkle::verify_inclusion(
        &leaf_hash(&head.entry),
        head.index,
        size,
        &head.inclusion,
        ckpt.root(),
    )
    .map_err(|e| Invalid::HeadInclusion(e.to_string()))?;
    Ok(record)
}

fn check_event(
    logged: &LoggedEntry,
    record: &StatusRecord,
    credential: &CredentialId,
    ckpt: &VerifiedCheckpoint,
) -> Result<(), Invalid> {
    if logged.index != record.last_index {
        return Err(Invalid::EventIndex {
            expected: record.last_index,
            got: logged.index,
        });
    }
    let leaf = leaf_hash(&logged.entry);
    if leaf != record.last_leaf_hash {
        return Err(Invalid::EventLeafHash);
    }
    merkle::verify_inclusion(
        &leaf,
        logged.index,
        ckpt.size(),
        &logged.inclusion,
        ckpt.root(),
    )
    .map_err(|e| Invalid::EventInclusion(e.to_string()))?;
    let event = match Entry::decode(&logged.entry) {
        Ok(Entry::Event(e)) => e.event,
        Ok(_) => return Err(Invalid::EventMalformed("not an event".into())),
        Err(e) => return Err(Invalid::EventMalformed(e.to_string())),
    };
    // The event must be one that leaves the credential in the recorded
    // state (DESIGN §3).
    let (state, reason) = (record.state, record.reason);
    let consistent = match event.action {
        Action::Issue {
            not_after_ms,
            replaces,
            ..
        } => {
            if event.credential == *credential {
                state == State::Active && not_after_ms == record.not_after_ms
            } else {
                replaces == Some(*credential)
                    && state == State::Revoked
                    && reason == Some(Reason::Superseded)
            }
        }
        Action::Suspend { reason: r } => {
            event.credential == *credential && state == State::Suspended && reason == Some(r)
        }
        Action::Resume => event.credential == *credential && state == State::Active,
        Action::Revoke { reason: r } => {
            event.credential == *credential && state == State::Revoked && reason == Some(r)
        }
    };
    if !consistent {
        return Err(Invalid::EventContradictsStatus);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logged(index: u64, len: usize, hashes: usize) -> LoggedEntry {
        LoggedEntry {
            index,
            entry: (0..len as u64)
                .map(|i| i.wrapping_mul(7).wrapping_add(index) as u8)
                .collect(),
            inclusion: (0..hashes).map(|i| Hash([i as u8 ^ 0x5a; 32])).collect(),
        }
    }

    #[test]
    fn the_json_is_what_serde_writes_and_reads_back() {
        let checkpoints = [
            "example.com/log\n5\nq83vEjRWeJA=\n\n\u{2014} example.com/log AAAA\n",
            "quote \" backslash \\ tab \t bell \u{7} del \u{7f} \u{e9}\u{1F600}",
            "",
        ];
        let mut n = 0;
        for checkpoint in checkpoints {
            for (head_hashes, event) in [
                (0, None),
                (1, Some(logged(0, 0, 0))),
                (17, Some(logged(123_456_789, 115, 23))),
                (63, None),
            ] {
                let proof = StatusProof {
                    credential: CredentialId([n as u8; 32]),
                    checkpoint: checkpoint.to_string(),
                    head: logged(u64::MAX - n, 80 + n as usize, head_hashes),
                    map_proof: (0..3 * n + 1).map(|i| i as u8).collect(),
                    event,
                };
                let json = proof.to_json();
                assert_eq!(json, proof.to_json_serde());
                assert_eq!(StatusProof::from_json(&json).unwrap(), proof);
                n += 1;
            }
        }
    }
}
