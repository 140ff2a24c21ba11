//! Transparency log checkpoints, as specified by [c2sp.org/tlog-checkpoint]:
//! a [signed note](crate::note) whose text is
//!
//! ```text
//! <origin>\n<decimal tree size>\n<base64 root hash>\n[<extension line>\n]*
//! ```
//!
//! Extension lines: [`Checkpoint::parse_body`] accepts them as the spec allows
//! (each must be non-empty) and exposes them through
//! [`Checkpoint::extensions`], so that parsing and printing round-trip
//! exactly. [`Checkpoint::new`] creates checkpoints without any, which is what
//! our log signs (the spec does not recommend them).
//!
//! Origin: in this system the origin of a checkpoint is the name of the log's
//! signing key (the spec's SHOULD), and [`sign_checkpoint`] and
//! [`verify_checkpoint`] both enforce it.
//!
//! Architecture Invariant: pure. No I/O, no async, no storage.
//!
//! [c2sp.org/tlog-checkpoint]: https://c2sp.org/tlog-checkpoint

use crate::hash::Hash;
use crate::note::{self, NoteError, NoteSigner, NoteVerifier};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use std::fmt::Write as _;

/// Why a tree size line is not canonical (c2sp.org/tlog-checkpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeProblem {
    /// The line is empty.
    Empty,
    /// The line contains something other than ASCII digits (a sign, spaces…).
    NotDecimal,
    /// The line has a leading zero and is not `0`.
    LeadingZero,
    /// The value does not fit in a `u64`.
    Overflow,
}

impl std::fmt::Display for SizeProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SizeProblem::Empty => "is empty",
            SizeProblem::NotDecimal => "is not an unsigned decimal number",
            SizeProblem::LeadingZero => "has a leading zero",
            SizeProblem::Overflow => "does not fit in 64 bits",
        })
    }
}

/// Errors from building, parsing, signing and verifying checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The body does not end with a newline.
    #[error("checkpoint body does not end with a newline")]
    MissingFinalNewline,
    /// The body has fewer than the three mandatory lines.
    #[error("checkpoint body has {lines} lines, want at least 3")]
    TooFewLines {
        /// The number of lines found.
        lines: usize,
    },
    /// The origin line is empty.
    #[error("checkpoint origin is empty")]
    EmptyOrigin,
    /// The origin or an extension line contains an ASCII control character
    /// (below U+0020, newline included), which c2sp.org/signed-note forbids.
    #[error("checkpoint line {line} contains a control character")]
    ControlCharacter {
        /// Zero-based line index (0 = origin, 3.. = extension lines).
        line: usize,
    },
    /// The tree size line is not canonical unsigned decimal.
    #[error("checkpoint tree size {problem}")]
    InvalidSize {
        /// What is wrong with it.
        problem: SizeProblem,
    },
    /// The root hash line is not standard padded base64.
    #[error("checkpoint root hash is not standard base64")]
    RootNotBase64,
    /// The root hash does not decode to 32 bytes.
    #[error("checkpoint root hash is {len} bytes, want 32")]
    RootWrongLength {
        /// The decoded length.
        len: usize,
    },
    /// An extension line is empty.
    #[error("checkpoint extension line {line} is empty")]
    EmptyExtensionLine {
        /// Zero-based line index in the body.
        line: usize,
    },
    /// The origin is not the signing (or verifying) key's name.
    #[error("checkpoint origin {origin:?} is not the key name {key_name:?}")]
    OriginMismatch {
        /// The checkpoint origin.
        origin: String,
        /// The key name.
        key_name: String,
    },
    /// The signed note is malformed or does not verify.
    #[error(transparent)]
    Note(#[from] NoteError),
}

/// A Merkle tree head: origin, tree size and root hash, plus any extension
/// lines (c2sp.org/tlog-checkpoint, "Note text").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    origin: String,
    size: u64,
    root: Hash,
    extensions: Vec<String>,
}

fn check_line(s: &str, line: usize) -> Result<(), CheckpointError> {
    if s.bytes().any(|b| b < b' ') {
        return Err(CheckpointError::ControlCharacter { line });
    }
    Ok(())
}

impl Checkpoint {
    /// A checkpoint without extension lines.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::EmptyOrigin`] or [`CheckpointError::ControlCharacter`]
    /// if `origin` is empty or contains a control character such as a newline
    /// (c2sp.org/tlog-checkpoint: the origin MUST be non-empty; c2sp.org/signed-note
    /// forbids control characters).
    pub fn new(
        origin: impl Into<String>,
        size: u64,
        root: Hash,
    ) -> Result<Checkpoint, CheckpointError> {
        let origin = origin.into();
        if origin.is_empty() {
            return Err(CheckpointError::EmptyOrigin);
        }
        check_line(&origin, 0)?;
        Ok(Checkpoint {
            origin,
            size,
            root,
            extensions: Vec::new(),
        })
    }

    /// The origin line: the log's identity.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The tree size (number of leaves).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The RFC 9162 root hash at [`Checkpoint::size`].
    pub fn root(&self) -> &Hash {
        &self.root
    }

    /// The extension lines (without newlines), empty for our own checkpoints.
    pub fn extensions(&self) -> &[String] {
        &self.extensions
    }

    /// The note text: `<origin>\n<size>\n<base64 root>\n` followed by any
    /// extension lines (c2sp.org/tlog-checkpoint).
    pub fn to_body(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            self.root.to_base64()
        );
        for e in &self.extensions {
            // Writing to a String cannot fail.
            let _ = writeln!(s, "{e}");
        }
        s
    }

    /// Parses a checkpoint note text strictly (c2sp.org/tlog-checkpoint,
    /// "Note text"): a non-empty origin; a tree size in ASCII decimal with no
    /// sign and no leading zero (except `0` itself), fitting in a `u64`; a root
    /// hash in standard padded base64 of exactly 32 bytes; then non-empty
    /// extension lines, kept as they are. Every line ends with a newline.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::MissingFinalNewline`],
    /// [`CheckpointError::TooFewLines`], [`CheckpointError::EmptyOrigin`],
    /// [`CheckpointError::ControlCharacter`], [`CheckpointError::InvalidSize`],
    /// [`CheckpointError::RootNotBase64`], [`CheckpointError::RootWrongLength`]
    /// or [`CheckpointError::EmptyExtensionLine`].
    pub fn parse_body(body: &str) -> Result<Checkpoint, CheckpointError> {
        let content = body
            .strip_suffix('\n')
            .ok_or(CheckpointError::MissingFinalNewline)?;
        let lines: Vec<&str> = content.split('\n').collect();
        let [origin, size, root, extensions @ ..] = lines.as_slice() else {
            return Err(CheckpointError::TooFewLines { lines: lines.len() });
        };
        if origin.is_empty() {
            return Err(CheckpointError::EmptyOrigin);
        }
        check_line(origin, 0)?;
        let size = parse_size(size)?;
        let root = parse_root(root)?;
        let extensions = extensions
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let line = i + 3;
                if e.is_empty() {
                    return Err(CheckpointError::EmptyExtensionLine { line });
                }
                check_line(e, line)?;
                Ok((*e).to_owned())
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Checkpoint {
            origin: (*origin).to_owned(),
            size,
            root,
            extensions,
        })
    }
}

fn parse_size(s: &str) -> Result<u64, CheckpointError> {
    let problem = |problem| CheckpointError::InvalidSize { problem };
    if s.is_empty() {
        return Err(problem(SizeProblem::Empty));
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(problem(SizeProblem::NotDecimal));
    }
    if s.len() > 1 && s.starts_with('0') {
        return Err(problem(SizeProblem::LeadingZero));
    }
    s.parse::<u64>().map_err(|_| problem(SizeProblem::Overflow))
}

fn parse_root(s: &str) -> Result<Hash, CheckpointError> {
    let raw = B64.decode(s).map_err(|_| CheckpointError::RootNotBase64)?;
    Hash::from_slice(&raw).ok_or(CheckpointError::RootWrongLength { len: raw.len() })
}

/// A checkpoint and the exact signed note text that carries it (the text
/// served at `/checkpoint`). Only [`sign_checkpoint`] constructs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    checkpoint: Checkpoint,
    note_text: String,
}

impl SignedCheckpoint {
    /// The checkpoint.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// The signed note text.
    pub fn note_text(&self) -> &str {
        &self.note_text
    }

    /// The same checkpoint as a [`VerifiedCheckpoint`]: it was produced by our
    /// own signer, so it needs no verification.
    pub fn to_verified(&self) -> VerifiedCheckpoint {
        VerifiedCheckpoint {
            checkpoint: self.checkpoint.clone(),
            note_text: self.note_text.clone(),
        }
    }

    /// [`SignedCheckpoint::to_verified`], consuming `self`.
    pub fn into_verified(self) -> VerifiedCheckpoint {
        VerifiedCheckpoint {
            checkpoint: self.checkpoint,
            note_text: self.note_text,
        }
    }
}

/// Proof that a checkpoint note was signed by a trusted log key and that its
/// origin is that key's name. Only [`verify_checkpoint`] and
/// [`SignedCheckpoint::to_verified`] construct it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCheckpoint {
    checkpoint: Checkpoint,
    note_text: String,
}

impl VerifiedCheckpoint {
    /// The checkpoint.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// The origin (equal to the verifying key's name).
    pub fn origin(&self) -> &str {
        self.checkpoint.origin()
    }

    /// The tree size.
    pub fn size(&self) -> u64 {
        self.checkpoint.size()
    }

    /// The root hash.
    pub fn root(&self) -> &Hash {
        self.checkpoint.root()
    }

    /// The signed note text that was verified, byte for byte.
    pub fn note_text(&self) -> &str {
        &self.note_text
    }
}

/// Signs `checkpoint` as a c2sp.org/tlog-checkpoint signed note.
///
/// # Errors
///
/// [`CheckpointError::OriginMismatch`] if the origin is not the signer's key
/// name (the spec's SHOULD, a MUST here); [`CheckpointError::Note`] if the
/// note cannot be signed (e.g. it would exceed
/// [`note::MAX_NOTE_LEN`]).
pub fn sign_checkpoint(
    signer: &NoteSigner,
    checkpoint: &Checkpoint,
) -> Result<SignedCheckpoint, CheckpointError> {
    if checkpoint.origin() != signer.name().as_str() {
        return Err(CheckpointError::OriginMismatch {
            origin: checkpoint.origin.clone(),
            key_name: signer.name().to_string(),
        });
    }
    let note_text = signer.sign_note(&checkpoint.to_body())?;
    Ok(SignedCheckpoint {
        checkpoint: checkpoint.clone(),
        note_text,
    })
}

/// Verifies a checkpoint note against the log key `verifier`
/// (c2sp.org/tlog-checkpoint, c2sp.org/signed-note): the note must carry a
/// valid signature by `verifier` (other signatures, e.g. witness cosignatures,
/// are ignored), its text must parse with [`Checkpoint::parse_body`], and its
/// origin must equal the key name.
///
/// # Errors
///
/// [`CheckpointError::Note`] if the note is malformed or not validly signed by
/// `verifier`; the errors of [`Checkpoint::parse_body`];
/// [`CheckpointError::OriginMismatch`] if the origin is not the key name.
pub fn verify_checkpoint(
    note_text: &str,
    verifier: &NoteVerifier,
) -> Result<VerifiedCheckpoint, CheckpointError> {
    let verified = note::open(note_text, std::slice::from_ref(verifier))?;
    let checkpoint = Checkpoint::parse_body(verified.text())?;
    if checkpoint.origin() != verifier.name().as_str() {
        return Err(CheckpointError::OriginMismatch {
            origin: checkpoint.origin,
            key_name: verifier.name().to_string(),
        });
    }
    Ok(VerifiedCheckpoint {
        checkpoint,
        note_text: note_text.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::{KeyName, NoteError};
    use proptest::prelude::*;

    const VECTORS: &str = include_str!("../tests/data/tlog-vectors.json");

    fn vectors() -> serde_json::Value {
        serde_json::from_str::<serde_json::Value>(VECTORS).unwrap()["signed_note"].clone()
    }

    fn field<'a>(v: &'a serde_json::Value, k: &str) -> &'a str {
        v[k].as_str().unwrap()
    }

    fn signer() -> NoteSigner {
        let v = vectors();
        let mut seed = [0u8; 32];
        hex::decode_to_slice(field(&v, "ed25519_seed_hex"), &mut seed).unwrap();
        NoteSigner::from_seed(KeyName::new(field(&v, "origin")).unwrap(), seed)
    }

    fn body(origin: &str, size: &str, root: &str) -> String {
        format!("{origin}\n{size}\n{root}\n")
    }

    const ROOT: &str = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";

    #[test]
    fn known_answers_from_go() {
        let v = vectors();
        let s = signer();
        let vk = s.verifier();
        assert_eq!(
            hex::encode(vk.key().as_bytes()),
            field(&v, "public_key_hex")
        );
        assert_eq!(format!("{:08x}", vk.id()), field(&v, "key_id_hex"));
        assert_eq!(vk.to_vkey_string(), field(&v, "vkey"));
        assert_eq!(NoteVerifier::parse_vkey(field(&v, "vkey")).unwrap(), vk);
        let cps = v["checkpoints"].as_array().unwrap();
        assert_eq!(cps.len(), 3);
        for c in cps {
            let body = field(c, "body");
            let cp = Checkpoint::parse_body(body).unwrap();
            assert_eq!(cp.to_body(), body);
            assert_eq!(cp.size(), c["size"].as_u64().unwrap());
            assert_eq!(cp.origin(), field(&v, "origin"));
            let signed = sign_checkpoint(&s, &cp).unwrap();
            assert_eq!(signed.note_text(), field(c, "signed_note"));
            assert_eq!(signed.checkpoint(), &cp);
            let ok = verify_checkpoint(field(c, "signed_note"), &vk).unwrap();
            assert_eq!(ok.size(), cp.size());
            assert_eq!(ok.root(), cp.root());
            assert_eq!(ok.origin(), cp.origin());
            assert_eq!(ok.note_text(), field(c, "signed_note"));
            assert_eq!(ok, signed.to_verified());
            assert_eq!(ok, signed.into_verified());
        }
    }

    #[test]
    fn rejects_bad_bodies() {
        let o = "example.com/log";
        let p = |s: &str| Checkpoint::parse_body(s).err();
        let size = |problem| Some(CheckpointError::InvalidSize { problem });
        assert_eq!(p(&body(o, "0", ROOT)), None);
        assert_eq!(p(&body(o, "00", ROOT)), size(SizeProblem::LeadingZero));
        assert_eq!(p(&body(o, "0100", ROOT)), size(SizeProblem::LeadingZero));
        assert_eq!(p(&body(o, "-1", ROOT)), size(SizeProblem::NotDecimal));
        assert_eq!(p(&body(o, "+1", ROOT)), size(SizeProblem::NotDecimal));
        assert_eq!(p(&body(o, " 1", ROOT)), size(SizeProblem::NotDecimal));
        assert_eq!(p(&body(o, "١", ROOT)), size(SizeProblem::NotDecimal));
        assert_eq!(p(&body(o, "", ROOT)), size(SizeProblem::Empty));
        let max = Checkpoint::parse_body(&body(o, "18446744073709551615", ROOT)).unwrap();
        assert_eq!(max.size(), u64::MAX);
        assert_eq!(
            p(&body(o, "18446744073709551616", ROOT)),
            size(SizeProblem::Overflow)
        );
        let root31 = B64.encode([7u8; 31]);
        assert_eq!(
            p(&body(o, "1", &root31)),
            Some(CheckpointError::RootWrongLength { len: 31 })
        );
        assert_eq!(
            p(&body(o, "1", &B64.encode([7u8; 33]))),
            Some(CheckpointError::RootWrongLength { len: 33 })
        );
        let unpadded = ROOT.trim_end_matches('=');
        assert_eq!(
            p(&body(o, "1", unpadded)),
            Some(CheckpointError::RootNotBase64)
        );
        let url_safe = "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU=";
        assert_eq!(
            p(&body(o, "1", url_safe)),
            Some(CheckpointError::RootNotBase64)
        );
        assert_eq!(p(&body("", "1", ROOT)), Some(CheckpointError::EmptyOrigin));
        assert_eq!(
            p(&body("a\tb", "1", ROOT)),
            Some(CheckpointError::ControlCharacter { line: 0 })
        );
        let b = body(o, "1", ROOT);
        assert_eq!(
            p(&b[..b.len() - 1]),
            Some(CheckpointError::MissingFinalNewline)
        );
        assert_eq!(
            p(&format!("{o}\n1\n")),
            Some(CheckpointError::TooFewLines { lines: 2 })
        );
        assert_eq!(
            p(&format!("{b}\n")),
            Some(CheckpointError::EmptyExtensionLine { line: 3 })
        );
        assert_eq!(
            Checkpoint::new("a\nb", 1, Hash::default()).err(),
            Some(CheckpointError::ControlCharacter { line: 0 })
        );
        assert_eq!(
            Checkpoint::new("", 1, Hash::default()).err(),
            Some(CheckpointError::EmptyOrigin)
        );
    }

    #[test]
    fn extension_lines_are_kept() {
        let b = format!("{}ext one\n— two\n", body("o", "5", ROOT));
        let cp = Checkpoint::parse_body(&b).unwrap();
        assert_eq!(cp.extensions(), ["ext one", "— two"]);
        assert_eq!(cp.to_body(), b);
        assert!(Checkpoint::new("o", 5, cp.root().to_owned())
            .unwrap()
            .extensions()
            .is_empty());
    }

    #[test]
    fn rejects_bad_signatures_and_origins() {
        let s = signer();
        let vk = s.verifier();
        let v = vectors();
        let note = field(&v["checkpoints"][1], "signed_note");
        let tampered = note.replace("\n1000\n", "\n1001\n");
        assert!(matches!(
            verify_checkpoint(&tampered, &vk),
            Err(CheckpointError::Note(NoteError::InvalidSignature { .. }))
        ));
        let other = NoteSigner::from_seed(s.name().clone(), [1; 32]);
        assert_eq!(
            verify_checkpoint(note, &other.verifier()),
            Err(CheckpointError::Note(NoteError::NoVerifiedSignature))
        );
        // Signed by the right key, but the origin is another log's.
        let foreign = s.sign_note(&body("example.com/other", "1", ROOT)).unwrap();
        assert_eq!(
            verify_checkpoint(&foreign, &vk),
            Err(CheckpointError::OriginMismatch {
                origin: "example.com/other".into(),
                key_name: "example.com/revledger-test".into()
            })
        );
        let cp = Checkpoint::new("example.com/other", 1, Hash::default()).unwrap();
        assert!(matches!(
            sign_checkpoint(&s, &cp),
            Err(CheckpointError::OriginMismatch { .. })
        ));
        // Validly signed, but not a checkpoint.
        let junk = s.sign_note("example.com/revledger-test\n01\nx\n").unwrap();
        assert_eq!(
            verify_checkpoint(&junk, &vk),
            Err(CheckpointError::InvalidSize {
                problem: SizeProblem::LeadingZero
            })
        );
        // A witness cosignature from an unknown key is ignored.
        let witness = NoteSigner::from_seed(KeyName::new("witness").unwrap(), [2; 32]);
        let cosigned = witness
            .sign_note(
                &Checkpoint::parse_body(&note[..note.find("\n\n").unwrap() + 1])
                    .unwrap()
                    .to_body(),
            )
            .unwrap();
        let both = format!(
            "{note}{}",
            &cosigned[cosigned.find("\u{2014} witness").unwrap()..]
        );
        let ok = verify_checkpoint(&both, &vk).unwrap();
        assert_eq!(ok.size(), 1000);
        assert_eq!(ok.note_text(), both);
    }

    proptest! {
        #[test]
        fn body_round_trip(
            origin in "[^\u{0}-\u{1f}]{1,40}",
            size in any::<u64>(),
            root in any::<[u8; 32]>(),
        ) {
            let cp = Checkpoint::new(origin, size, Hash(root)).unwrap();
            let body = cp.to_body();
            prop_assert_eq!(Checkpoint::parse_body(&body).unwrap(), cp);
        }

        #[test]
        fn sign_verify_round_trip(size in any::<u64>(), root in any::<[u8; 32]>()) {
            let s = signer();
            let cp = Checkpoint::new(s.name().as_str(), size, Hash(root)).unwrap();
            let signed = sign_checkpoint(&s, &cp).unwrap();
            let ok = verify_checkpoint(signed.note_text(), &s.verifier()).unwrap();
            prop_assert_eq!(ok.checkpoint(), &cp);
        }

        #[test]
        fn parsers_never_panic(s in any::<String>(), t in "[a-z0-9+/=\n-]{0,80}") {
            let vk = signer().verifier();
            let _ = Checkpoint::parse_body(&s);
            let _ = Checkpoint::parse_body(&t);
            let _ = verify_checkpoint(&s, &vk);
            let _ = verify_checkpoint(&t, &vk);
        }
    }
}
