//! The log's entries: issuer-signed events, log-signed registry changes and
//! the node's head records. Binary, deterministic, versioned; the layout is
//! specified in `docs/FORMAT.md`, which this module follows byte for byte.
//!
//! Every entry starts with two bytes: the entry type and the format version.
//! Decoding is strict: one byte string per value, so `encode(decode(b)) == b`
//! for every accepted `b`; unknown types, versions, kinds and reasons,
//! reserved values, trailing bytes and truncation are errors.
//!
//! Architecture Invariant: pure. No I/O, no storage, no clock; the node
//! decides what is accepted (see `rules` and `ledger`).

use crate::hash::{leaf_hash, Hash};
use crate::strict::{Pending, StrictKey};
use ed25519_dalek::{Signer as _, SigningKey};
use std::fmt;

/// Largest encoded entry accepted anywhere (DESIGN §2).
pub const MAX_ENTRY_LEN: usize = 1024;

/// Entry type byte of an issuer-signed event.
pub const TYPE_EVENT: u8 = 0x01;
/// Entry type byte of a log-signed registry change.
pub const TYPE_REGISTRY: u8 = 0x02;
/// Entry type byte of a head record.
pub const TYPE_HEAD: u8 = 0x03;
/// The only format version defined so far.
pub const VERSION_1: u8 = 0x01;

/// Domain separation for issuer signatures: the signed message is
/// `"revledger/event/v1" ‖ 0x00 ‖ encoded event without its signature`.
pub const EVENT_SIGNATURE_DOMAIN: &[u8] = b"revledger/event/v1\0";
/// Domain separation for registry changes, signed by the log key.
pub const REGISTRY_SIGNATURE_DOMAIN: &[u8] = b"revledger/registry/v1\0";

/// Errors decoding or checking an entry.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum EntryError {
    #[error("entry is {len} bytes, over the {MAX_ENTRY_LEN}-byte limit")]
    TooLong { len: usize },
    #[error("entry is truncated: needs {needed} bytes, has {len}")]
    Truncated { needed: usize, len: usize },
    #[error("entry has {extra} trailing bytes")]
    TrailingBytes { extra: usize },
    #[error("unknown entry type 0x{0:02x}")]
    UnknownType(u8),
    #[error("unsupported format version {0} for entry type 0x{1:02x}")]
    UnsupportedVersion(u8, u8),
    #[error("unknown event kind {0}")]
    UnknownKind(u8),
    #[error("unknown reason code {0}")]
    UnknownReason(u8),
    #[error("invalid flag byte {0} (must be 0 or 1)")]
    BadFlag(u8),
    #[error("unknown registry operation {0}")]
    UnknownOperation(u8),
    #[error("invalid kind set 0x{0:02x}")]
    BadKindSet(u8),
    #[error("invalid submitter name: {0}")]
    BadName(&'static str),
    #[error("validity window is empty: not_before {not_before} >= not_after {not_after}")]
    EmptyValidity { not_before: u64, not_after: u64 },
    #[error("a credential cannot replace itself")]
    SelfReplacement,
    #[error("signature does not verify (strict Ed25519)")]
    BadSignature,
}

macro_rules! id32 {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// Parses 64 hex digits.
            pub fn from_hex(s: &str) -> Option<Self> {
                let mut out = [0u8; 32];
                hex::decode_to_slice(s, &mut out).ok()?;
                Some(Self(out))
            }
            /// Lower-case hex.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_hex())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
    };
}

id32!(
    /// A credential's id: 32 opaque bytes, e.g. the hash of the credential's
    /// device key. Never personal data.
    CredentialId
);
id32!(
    /// A keyed hash of the holder's identifier, computed by the issuer, so the
    /// log can enforce one live credential per person without knowing who.
    HolderTag
);

/// The four event kinds (DESIGN §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    Issue = 1,
    Suspend = 2,
    Resume = 3,
    Revoke = 4,
}

impl EventKind {
    /// All kinds, in code order.
    pub const ALL: [EventKind; 4] = [
        EventKind::Issue,
        EventKind::Suspend,
        EventKind::Resume,
        EventKind::Revoke,
    ];

    /// The kind with this code.
    pub fn from_code(c: u8) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| *k as u8 == c)
    }

    /// Lower-case name used on the command line and in submitter files.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Issue => "issue",
            EventKind::Suspend => "suspend",
            EventKind::Resume => "resume",
            EventKind::Revoke => "revoke",
        }
    }

    /// Parses a lower-case kind name.
    pub fn from_name(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// A set of event kinds, one bit per kind: bit (code − 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct KindSet(u8);

impl KindSet {
    /// Every kind.
    pub const ALL: KindSet = KindSet(0x0f);
    /// No kind.
    pub const NONE: KindSet = KindSet(0);

    /// The set from its byte; bits above the four kinds are an error.
    pub fn from_bits(b: u8) -> Option<KindSet> {
        (b & !0x0f == 0).then_some(KindSet(b))
    }
    /// The set's byte.
    pub fn bits(self) -> u8 {
        self.0
    }
    /// This set plus `k`.
    pub fn with(self, k: EventKind) -> KindSet {
        KindSet(self.0 | 1 << (k as u8 - 1))
    }
    /// Whether `k` is in the set.
    pub fn contains(self, k: EventKind) -> bool {
        self.0 & (1 << (k as u8 - 1)) != 0
    }
    /// The kinds in the set.
    pub fn kinds(self) -> impl Iterator<Item = EventKind> {
        EventKind::ALL
            .into_iter()
            .filter(move |k| self.contains(*k))
    }
    /// Parses `all` or a comma-separated list of kind names.
    pub fn parse(s: &str) -> Option<KindSet> {
        if s == "all" {
            return Some(KindSet::ALL);
        }
        s.split(',').try_fold(KindSet::NONE, |set, name| {
            Some(set.with(EventKind::from_name(name)?))
        })
    }
}

impl fmt::Display for KindSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == KindSet::ALL {
            return f.write_str("all");
        }
        let names: Vec<&str> = self.kinds().map(EventKind::name).collect();
        f.write_str(&names.join(","))
    }
}

/// Coarse public reasons for suspension and revocation (DESIGN §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The holder asked, or the credential reached the end of its use.
    HolderRequest = 1,
    /// The phone was lost or stolen.
    Lost = 2,
    /// Replaced by a new credential (set by an issue with `replaces`).
    Superseded = 3,
    /// The credential's key may be known to someone else.
    KeyCompromise = 4,
    /// An administrative decision.
    Administrative = 5,
}

impl Reason {
    /// All reasons, in code order.
    pub const ALL: [Reason; 5] = [
        Reason::HolderRequest,
        Reason::Lost,
        Reason::Superseded,
        Reason::KeyCompromise,
        Reason::Administrative,
    ];
    /// The reason with this code.
    pub fn from_code(c: u8) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| *r as u8 == c)
    }
    /// Stable snake-case name used in JSON and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Reason::HolderRequest => "holder_request",
            Reason::Lost => "lost",
            Reason::Superseded => "superseded",
            Reason::KeyCompromise => "key_compromise",
            Reason::Administrative => "administrative",
        }
    }
    /// Parses a snake-case reason name.
    pub fn from_name(s: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.name() == s)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What an event does, with the fields that only that kind carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// A new credential, valid in `[not_before, not_after)` (unix ms), that
    /// may replace the holder's previous live credential.
    Issue {
        not_before_ms: u64,
        not_after_ms: u64,
        replaces: Option<CredentialId>,
    },
    /// Temporarily locked, e.g. phone reported lost.
    Suspend { reason: Reason },
    /// Unlocked after a suspension.
    Resume,
    /// Final.
    Revoke { reason: Reason },
}

impl Action {
    /// The kind of this action.
    pub fn kind(&self) -> EventKind {
        match self {
            Action::Issue { .. } => EventKind::Issue,
            Action::Suspend { .. } => EventKind::Suspend,
            Action::Resume => EventKind::Resume,
            Action::Revoke { .. } => EventKind::Revoke,
        }
    }
}

/// An event before it is signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Event {
    pub action: Action,
    pub credential: CredentialId,
    pub holder: HolderTag,
    /// The submitter's signed-note key id (see `note::key_id`).
    pub issuer_key_id: u32,
    /// The issuer's clock when it signed, unix milliseconds.
    pub issued_at_ms: u64,
}

/// An event with its issuer's Ed25519 signature: one log entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SignedEvent {
    pub event: Event,
    pub signature: [u8; 64],
}

/// A registry change: a submitter key added (or its kinds changed) or removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryChange {
    pub op: RegistryOp,
    /// The kinds the key may submit after this change; empty for a removal.
    pub kinds: KindSet,
    pub public_key: [u8; 32],
    /// The log's clock, unix milliseconds.
    pub time_ms: u64,
    /// The key's signed-note name (1–255 bytes, no whitespace or `+`).
    pub name: String,
}

/// Add (or replace the kinds of) a key, or remove it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegistryOp {
    Add = 1,
    Remove = 2,
}

/// A registry change signed by the log key: one log entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedRegistryChange {
    pub change: RegistryChange,
    pub signature: [u8; 64],
}

/// Written by the node as the last entry of every sequenced batch: the
/// node's time and the status map root after the batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadRecord {
    pub time_ms: u64,
    pub map_root: Hash,
}

/// A decoded log entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Event(SignedEvent),
    Registry(SignedRegistryChange),
    Head(HeadRecord),
}

/// A strict cursor over input bytes.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EntryError> {
        let end = self.pos + n;
        let s = self.buf.get(self.pos..end).ok_or(EntryError::Truncated {
            needed: end,
            len: self.buf.len(),
        })?;
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, EntryError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, EntryError> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(b))
    }
    fn u64(&mut self) -> Result<u64, EntryError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(b))
    }
    fn arr32(&mut self) -> Result<[u8; 32], EntryError> {
        let mut b = [0u8; 32];
        b.copy_from_slice(self.take(32)?);
        Ok(b)
    }
    fn arr64(&mut self) -> Result<[u8; 64], EntryError> {
        let mut b = [0u8; 64];
        b.copy_from_slice(self.take(64)?);
        Ok(b)
    }
    fn reason(&mut self) -> Result<Reason, EntryError> {
        let c = self.u8()?;
        Reason::from_code(c).ok_or(EntryError::UnknownReason(c))
    }
    fn finish(&self) -> Result<(), EntryError> {
        match self.buf.len() - self.pos {
            0 => Ok(()),
            extra => Err(EntryError::TrailingBytes { extra }),
        }
    }
}

/// Checks a registry name: a valid signed-note key name
/// ([`crate::note::KeyName`], the same rule everywhere) of at most 255 bytes
/// (its length is one byte in the encoding).
///
/// # Errors
/// [`EntryError::BadName`] saying what is wrong.
pub fn check_key_name(name: &str) -> Result<(), EntryError> {
    if name.len() > 255 {
        return Err(EntryError::BadName("must be at most 255 bytes"));
    }
    crate::note::KeyName::new(name).map(|_| ()).map_err(|_| {
        EntryError::BadName(
            "not a signed-note key name (empty, or has '+', whitespace or a control character)",
        )
    })
}

impl Event {
    /// A first issuance (replacing nothing) of `credential` to `holder`,
    /// signed at `at_ms` and valid from then for `valid_ms`.
    pub fn issue(
        credential: CredentialId,
        holder: HolderTag,
        issuer_key_id: u32,
        at_ms: u64,
        valid_ms: u64,
    ) -> Event {
        Event {
            action: Action::Issue {
                not_before_ms: at_ms,
                not_after_ms: at_ms.saturating_add(valid_ms),
                replaces: None,
            },
            credential,
            holder,
            issuer_key_id,
            issued_at_ms: at_ms,
        }
    }

    /// The event's bytes without the signature: exactly what the issuer signs
    /// (after [`EVENT_SIGNATURE_DOMAIN`]).
    pub fn encode_unsigned(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(160);
        b.extend_from_slice(&[TYPE_EVENT, VERSION_1, self.action.kind() as u8]);
        b.extend_from_slice(&self.credential.0);
        b.extend_from_slice(&self.holder.0);
        b.extend_from_slice(&self.issuer_key_id.to_be_bytes());
        b.extend_from_slice(&self.issued_at_ms.to_be_bytes());
        match self.action {
            Action::Issue {
                not_before_ms,
                not_after_ms,
                replaces,
            } => {
                b.extend_from_slice(&not_before_ms.to_be_bytes());
                b.extend_from_slice(&not_after_ms.to_be_bytes());
                match replaces {
                    None => b.push(0),
                    Some(r) => {
                        b.push(1);
                        b.extend_from_slice(&r.0);
                    }
                }
            }
            Action::Suspend { reason } | Action::Revoke { reason } => b.push(reason as u8),
            Action::Resume => {}
        }
        b
    }

    /// The message an issuer signs: the domain prefix then the unsigned bytes.
    pub fn signing_message(&self) -> Vec<u8> {
        let mut m = EVENT_SIGNATURE_DOMAIN.to_vec();
        m.extend_from_slice(&self.encode_unsigned());
        m
    }

    /// Signs the event with the issuer's key.
    pub fn sign(self, key: &SigningKey) -> SignedEvent {
        let signature = key.sign(&self.signing_message()).to_bytes();
        SignedEvent {
            event: self,
            signature,
        }
    }

    fn decode_unsigned(r: &mut Reader<'_>) -> Result<Event, EntryError> {
        let kind_code = r.u8()?;
        let kind = EventKind::from_code(kind_code).ok_or(EntryError::UnknownKind(kind_code))?;
        let credential = CredentialId(r.arr32()?);
        let holder = HolderTag(r.arr32()?);
        let issuer_key_id = r.u32()?;
        let issued_at_ms = r.u64()?;
        let action = match kind {
            EventKind::Issue => {
                let not_before_ms = r.u64()?;
                let not_after_ms = r.u64()?;
                if not_before_ms >= not_after_ms {
                    return Err(EntryError::EmptyValidity {
                        not_before: not_before_ms,
                        not_after: not_after_ms,
                    });
                }
                let replaces = match r.u8()? {
                    0 => None,
                    1 => Some(CredentialId(r.arr32()?)),
                    f => return Err(EntryError::BadFlag(f)),
                };
                if replaces == Some(credential) {
                    return Err(EntryError::SelfReplacement);
                }
                Action::Issue {
                    not_before_ms,
                    not_after_ms,
                    replaces,
                }
            }
            EventKind::Suspend => Action::Suspend {
                reason: r.reason()?,
            },
            EventKind::Resume => Action::Resume,
            EventKind::Revoke => Action::Revoke {
                reason: r.reason()?,
            },
        };
        Ok(Event {
            action,
            credential,
            holder,
            issuer_key_id,
            issued_at_ms,
        })
    }
}

impl SignedEvent {
    /// The entry bytes: unsigned event ‖ 64-byte signature.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = self.event.encode_unsigned();
        b.extend_from_slice(&self.signature);
        b
    }

    /// The RFC 9162 leaf hash of this entry.
    pub fn leaf_hash(&self) -> Hash {
        leaf_hash(&self.encode())
    }

    /// Decodes an event entry.
    ///
    /// # Errors
    /// Any [`EntryError`] of the codec; the bytes must be an event.
    pub fn decode(bytes: &[u8]) -> Result<SignedEvent, EntryError> {
        match Entry::decode(bytes)? {
            Entry::Event(e) => Ok(e),
            _ => Err(EntryError::UnknownType(bytes.first().copied().unwrap_or(0))),
        }
    }

    /// Checks the issuer's signature strictly (canonical encodings, no
    /// small-order keys: ed25519-dalek's `verify_strict`).
    ///
    /// # Errors
    /// [`EntryError::BadSignature`].
    pub fn verify(&self, key: &StrictKey) -> Result<(), EntryError> {
        self.pending(key)
            .is_some_and(|p| p.decide())
            .then_some(())
            .ok_or(EntryError::BadSignature)
    }

    /// [`SignedEvent::verify`] but for its last step, which
    /// [`crate::strict::decide_all`] takes for many signatures at once;
    /// `None` when the signature is refused already.
    pub fn pending(&self, key: &StrictKey) -> Option<Pending> {
        let unsigned = self.event.encode_unsigned();
        key.pending(&[EVENT_SIGNATURE_DOMAIN, &unsigned], &self.signature)
    }
}

impl RegistryChange {
    /// The change's bytes without the signature.
    pub fn encode_unsigned(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(64 + self.name.len());
        b.extend_from_slice(&[TYPE_REGISTRY, VERSION_1, self.op as u8, self.kinds.bits()]);
        b.extend_from_slice(&self.public_key);
        b.extend_from_slice(&self.time_ms.to_be_bytes());
        // check_key_name bounds the name to 255 bytes; encode() callers
        // construct names through it.
        b.push(self.name.len().min(255) as u8);
        b.extend_from_slice(self.name.as_bytes());
        b
    }

    /// `"revledger/registry/v1" ‖ 0x00 ‖ unsigned bytes`.
    pub fn signing_message(&self) -> Vec<u8> {
        let mut m = REGISTRY_SIGNATURE_DOMAIN.to_vec();
        m.extend_from_slice(&self.encode_unsigned());
        m
    }

    /// Signs the change with the log key.
    ///
    /// # Errors
    /// [`EntryError::BadName`] when the name is not a valid key name, and
    /// [`EntryError::BadKindSet`] for a removal with kinds or an add without.
    pub fn sign(self, log_key: &SigningKey) -> Result<SignedRegistryChange, EntryError> {
        check_key_name(&self.name)?;
        match (self.op, self.kinds.bits()) {
            (RegistryOp::Add, 0) => return Err(EntryError::BadKindSet(0)),
            (RegistryOp::Remove, b) if b != 0 => return Err(EntryError::BadKindSet(b)),
            _ => {}
        }
        let signature = log_key.sign(&self.signing_message()).to_bytes();
        Ok(SignedRegistryChange {
            change: self,
            signature,
        })
    }

    fn decode_unsigned(r: &mut Reader<'_>) -> Result<RegistryChange, EntryError> {
        let op = match r.u8()? {
            1 => RegistryOp::Add,
            2 => RegistryOp::Remove,
            o => return Err(EntryError::UnknownOperation(o)),
        };
        let bits = r.u8()?;
        let kinds = KindSet::from_bits(bits).ok_or(EntryError::BadKindSet(bits))?;
        match (op, bits) {
            (RegistryOp::Add, 0) => return Err(EntryError::BadKindSet(0)),
            (RegistryOp::Remove, b) if b != 0 => return Err(EntryError::BadKindSet(b)),
            _ => {}
        }
        let public_key = r.arr32()?;
        let time_ms = r.u64()?;
        let len = r.u8()? as usize;
        let name = std::str::from_utf8(r.take(len)?)
            .map_err(|_| EntryError::BadName("not UTF-8"))?
            .to_owned();
        check_key_name(&name)?;
        Ok(RegistryChange {
            op,
            kinds,
            public_key,
            time_ms,
            name,
        })
    }
}

impl SignedRegistryChange {
    /// The entry bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = self.change.encode_unsigned();
        b.extend_from_slice(&self.signature);
        b
    }

    /// Checks the log key's signature strictly.
    ///
    /// # Errors
    /// [`EntryError::BadSignature`].
    pub fn verify(&self, log_key: &StrictKey) -> Result<(), EntryError> {
        let unsigned = self.change.encode_unsigned();
        log_key
            .verify(&[REGISTRY_SIGNATURE_DOMAIN, &unsigned], &self.signature)
            .then_some(())
            .ok_or(EntryError::BadSignature)
    }
}

impl HeadRecord {
    /// Encoded length: type, version, time, map root.
    pub const LEN: usize = 2 + 8 + 32;

    /// The entry bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(Self::LEN);
        b.extend_from_slice(&[TYPE_HEAD, VERSION_1]);
        b.extend_from_slice(&self.time_ms.to_be_bytes());
        b.extend_from_slice(&self.map_root.0);
        b
    }
}

impl Entry {
    /// Decodes any entry strictly.
    ///
    /// # Errors
    /// Any [`EntryError`] of the codec (not [`EntryError::BadSignature`]:
    /// signatures are checked by the caller, who knows the keys).
    pub fn decode(bytes: &[u8]) -> Result<Entry, EntryError> {
        if bytes.len() > MAX_ENTRY_LEN {
            return Err(EntryError::TooLong { len: bytes.len() });
        }
        let mut r = Reader { buf: bytes, pos: 0 };
        let ty = r.u8()?;
        let version = r.u8()?;
        if !matches!(ty, TYPE_EVENT | TYPE_REGISTRY | TYPE_HEAD) {
            return Err(EntryError::UnknownType(ty));
        }
        if version != VERSION_1 {
            return Err(EntryError::UnsupportedVersion(version, ty));
        }
        let entry = match ty {
            TYPE_EVENT => {
                let event = Event::decode_unsigned(&mut r)?;
                Entry::Event(SignedEvent {
                    event,
                    signature: r.arr64()?,
                })
            }
            TYPE_REGISTRY => {
                let change = RegistryChange::decode_unsigned(&mut r)?;
                Entry::Registry(SignedRegistryChange {
                    change,
                    signature: r.arr64()?,
                })
            }
            _ => Entry::Head(HeadRecord {
                time_ms: r.u64()?,
                map_root: Hash(r.arr32()?),
            }),
        };
        r.finish()?;
        Ok(entry)
    }

    /// The entry bytes.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Entry::Event(e) => e.encode(),
            Entry::Registry(r) => r.encode(),
            Entry::Head(h) => h.encode(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 8032 §7.1 TEST 1 secret key: a fixed, published issuer key.
    pub(crate) fn issuer_key() -> SigningKey {
        let mut seed = [0u8; 32];
        hex::decode_to_slice(
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            &mut seed,
        )
        .unwrap();
        SigningKey::from_bytes(&seed)
    }

    /// The issuer key as a signed-note signer named `issuer.example`.
    pub(crate) fn issuer_signer() -> crate::note::NoteSigner {
        let name = crate::note::KeyName::new("issuer.example").unwrap();
        crate::note::NoteSigner::from_seed(name, issuer_key().to_bytes())
    }

    /// The event of the docs/FORMAT.md vectors.
    pub(crate) fn vector_event() -> Event {
        Event {
            action: Action::Issue {
                not_before_ms: 1_767_225_600_000, // 2026-01-01T00:00:00Z
                not_after_ms: 1_924_992_000_000,  // 2031-01-01T00:00:00Z
                replaces: None,
            },
            credential: CredentialId([0x11; 32]),
            holder: HolderTag([0x22; 32]),
            issuer_key_id: issuer_signer().id(),
            issued_at_ms: 1_767_225_600_000,
        }
    }

    // Generated by `cargo test --lib entry::tests::print_vectors -- --ignored --nocapture`;
    // the same values are in docs/FORMAT.md.
    const VECTOR_EVENT_HEX: &str = "01010111111111111111111111111111111111111111111111111111111111111111112222222222222222222222222222222222222222222222222222222222222222785c98440000019b76daa8000000019b76daa800000001c03276e000009ce9efb5f66345d6d1bbf3f6b23e1aa2bdbe9a66b5bdabd2c60d64bd355d542cf6f1b62342bda4a200fad715f07689070125ddbf5cdeac776490c86f44b54209";
    const VECTOR_LEAF_HEX: &str =
        "e21bf145c12b1f634d07f4fb103a8ffc49cc7ed85ee03c572a1b5764bc23028d";
    const VECTOR_HEAD_HEX: &str =
        "03010000019b76daa800abababababababababababababababababababababababababababababababab";

    fn vector_head() -> HeadRecord {
        HeadRecord {
            time_ms: 1_767_225_600_000,
            map_root: Hash([0xab; 32]),
        }
    }

    #[test]
    #[ignore]
    fn print_vectors() {
        let e = vector_event().sign(&issuer_key());
        println!(
            "issuer vkey {}",
            issuer_signer().verifier().to_vkey_string()
        );
        println!("event      {}", hex::encode(e.encode()));
        println!("signature  {}", hex::encode(e.signature));
        println!("leaf hash  {}", e.leaf_hash().to_hex());
        println!("head       {}", hex::encode(vector_head().encode()));
        println!("head leaf  {}", leaf_hash(&vector_head().encode()).to_hex());
    }

    #[test]
    fn format_vectors_hold() {
        let e = vector_event().sign(&issuer_key());
        assert_eq!(hex::encode(e.encode()), VECTOR_EVENT_HEX);
        assert_eq!(e.leaf_hash().to_hex(), VECTOR_LEAF_HEX);
        assert_eq!(hex::encode(vector_head().encode()), VECTOR_HEAD_HEX);
        let decoded = Entry::decode(&hex::decode(VECTOR_EVENT_HEX).unwrap()).unwrap();
        assert_eq!(decoded, Entry::Event(e));
        e.verify(&StrictKey::new(&issuer_key().verifying_key()))
            .unwrap();
    }

    #[test]
    fn layout_offsets_are_as_documented() {
        let e = vector_event().sign(&issuer_key()).encode();
        assert_eq!(&e[..3], &[TYPE_EVENT, VERSION_1, EventKind::Issue as u8]);
        assert_eq!(&e[3..35], &[0x11; 32]);
        assert_eq!(&e[35..67], &[0x22; 32]);
        assert_eq!(&e[67..71], &issuer_signer().id().to_be_bytes());
        assert_eq!(e.len(), 3 + 32 + 32 + 4 + 8 + 8 + 8 + 1 + 64);
        let h = vector_head().encode();
        assert_eq!(h.len(), HeadRecord::LEN);
    }

    #[test]
    fn signature_is_domain_separated_and_strict() {
        let key = issuer_key();
        let ev = vector_event();
        // A signature over the bare encoding (no domain) must not verify.
        let bare = SignedEvent {
            event: ev,
            signature: key.sign(&ev.encode_unsigned()).to_bytes(),
        };
        assert_eq!(
            bare.verify(&StrictKey::new(&key.verifying_key())),
            Err(EntryError::BadSignature)
        );
        // A signature of a different event does not transfer.
        let mut other = ev;
        other.issued_at_ms += 1;
        let moved = SignedEvent {
            event: other,
            signature: ev.sign(&key).signature,
        };
        assert_eq!(
            moved.verify(&StrictKey::new(&key.verifying_key())),
            Err(EntryError::BadSignature)
        );
        // Non-canonical S (S + L) is refused by verify_strict.
        let mut s = ev.sign(&key);
        let l: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut carry = 0u16;
        for (sb, lb) in s.signature[32..].iter_mut().zip(l) {
            let v = *sb as u16 + lb as u16 + carry;
            *sb = v as u8;
            carry = v >> 8;
        }
        assert_eq!(
            s.verify(&StrictKey::new(&key.verifying_key())),
            Err(EntryError::BadSignature)
        );
    }

    #[test]
    fn strict_decoding_rejects() {
        let good = vector_event().sign(&issuer_key()).encode();
        let mut t = good.clone();
        t.push(0);
        assert_eq!(
            Entry::decode(&t),
            Err(EntryError::TrailingBytes { extra: 1 })
        );
        assert!(matches!(
            Entry::decode(&good[..good.len() - 1]),
            Err(EntryError::Truncated { .. })
        ));
        let mut t = good.clone();
        t[0] = 0x09;
        assert_eq!(Entry::decode(&t), Err(EntryError::UnknownType(0x09)));
        let mut t = good.clone();
        t[1] = 2;
        assert_eq!(
            Entry::decode(&t),
            Err(EntryError::UnsupportedVersion(2, TYPE_EVENT))
        );
        let mut t = good.clone();
        t[2] = 9;
        assert_eq!(Entry::decode(&t), Err(EntryError::UnknownKind(9)));
        // replaces flag must be 0 or 1
        let mut t = good.clone();
        t[95] = 2;
        assert_eq!(Entry::decode(&t), Err(EntryError::BadFlag(2)));
        assert_eq!(
            Entry::decode(&vec![1u8; 1025]),
            Err(EntryError::TooLong { len: 1025 })
        );
        assert!(matches!(
            Entry::decode(&[]),
            Err(EntryError::Truncated { .. })
        ));
        // empty validity
        let mut ev = vector_event();
        ev.action = Action::Issue {
            not_before_ms: 5,
            not_after_ms: 5,
            replaces: None,
        };
        let b = ev.sign(&issuer_key()).encode();
        assert_eq!(
            Entry::decode(&b),
            Err(EntryError::EmptyValidity {
                not_before: 5,
                not_after: 5
            })
        );
        // reason 0 and 6 are not reasons
        let mut ev = vector_event();
        ev.action = Action::Revoke {
            reason: Reason::Lost,
        };
        let mut b = ev.sign(&issuer_key()).encode();
        for bad in [0u8, 6] {
            b[79] = bad;
            assert_eq!(Entry::decode(&b), Err(EntryError::UnknownReason(bad)));
        }
    }

    #[test]
    fn registry_change_round_trip_and_checks() {
        let log = issuer_key();
        let c = RegistryChange {
            op: RegistryOp::Add,
            kinds: KindSet::NONE.with(EventKind::Suspend),
            public_key: [7; 32],
            time_ms: 42,
            name: "carrier.example".into(),
        };
        let s = c.clone().sign(&log).unwrap();
        let b = s.encode();
        assert_eq!(Entry::decode(&b), Ok(Entry::Registry(s.clone())));
        s.verify(&StrictKey::new(&log.verifying_key())).unwrap();
        let bad = RegistryChange {
            name: "a b".into(),
            ..c.clone()
        };
        assert!(matches!(bad.sign(&log), Err(EntryError::BadName(_))));
        let bad = RegistryChange {
            kinds: KindSet::NONE,
            ..c.clone()
        };
        assert_eq!(bad.sign(&log), Err(EntryError::BadKindSet(0)));
        let mut t = b.clone();
        t[3] = 0x10;
        assert_eq!(Entry::decode(&t), Err(EntryError::BadKindSet(0x10)));
    }

    #[test]
    fn kind_sets_parse_and_print() {
        assert_eq!(KindSet::parse("all"), Some(KindSet::ALL));
        let s = KindSet::parse("suspend").unwrap();
        assert!(s.contains(EventKind::Suspend) && !s.contains(EventKind::Issue));
        assert_eq!(
            KindSet::parse("issue,resume,revoke").unwrap().to_string(),
            "issue,resume,revoke"
        );
        assert_eq!(KindSet::parse("issue,bogus"), None);
        assert_eq!(KindSet::parse(""), None);
    }

    fn arb_action() -> impl Strategy<Value = Action> {
        let reason = (1u8..=5).prop_map(|c| Reason::from_code(c).unwrap());
        prop_oneof![
            (
                any::<u64>(),
                1u64..,
                proptest::option::of(any::<[u8; 32]>())
            )
                .prop_map(|(nb, len, r)| Action::Issue {
                    not_before_ms: nb / 2,
                    not_after_ms: nb / 2 + len / 2 + 1,
                    replaces: r.map(CredentialId),
                }),
            reason.clone().prop_map(|reason| Action::Suspend { reason }),
            Just(Action::Resume),
            reason.prop_map(|reason| Action::Revoke { reason }),
        ]
    }

    proptest! {
        #[test]
        fn decode_encode_round_trip(action in arb_action(), c in any::<[u8;32]>(), h in any::<[u8;32]>(),
                                    id in any::<u32>(), t in any::<u64>(), sig in proptest::collection::vec(any::<u8>(), 64)) {
            let event = Event { action, credential: CredentialId(c), holder: HolderTag(h), issuer_key_id: id, issued_at_ms: t };
            prop_assume!(!matches!(action, Action::Issue { replaces: Some(r), .. } if r.0 == c));
            let mut signature = [0u8; 64];
            signature.copy_from_slice(&sig);
            let e = SignedEvent { event, signature };
            let b = e.encode();
            prop_assert!(b.len() <= MAX_ENTRY_LEN);
            prop_assert_eq!(Entry::decode(&b), Ok(Entry::Event(e)));
        }

        #[test]
        fn decode_never_panics_and_is_canonical(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(e) = Entry::decode(&b) {
                prop_assert_eq!(e.encode(), b);
            }
        }

        #[test]
        fn decode_mutated_valid_entries_is_canonical(i in 0usize..200, v in any::<u8>()) {
            let mut b = vector_event().sign(&issuer_key()).encode();
            let i = i % b.len();
            b[i] = v;
            if let Ok(e) = Entry::decode(&b) {
                prop_assert_eq!(e.encode(), b);
            }
        }
    }
}
