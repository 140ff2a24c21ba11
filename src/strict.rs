//! Strict Ed25519 verification with the key decoded once.
//!
//! The decision is exactly that of ed25519-dalek's `verify_strict`: the
//! signature's S must be canonical, neither the key nor R may have small
//! order, and `[S]B - [k]A` must encode to the signature's R bytes, where
//! `k = SHA-512(R ‖ A ‖ M)`. The node and every auditor must agree on it
//! (DESIGN §2), so the rule itself is not changed, only its cost:
//!
//! - `verify_strict` decompresses the key's point on every call: a field
//!   exponentiation. [`StrictKey`] holds the negated point, decoded once.
//! - `verify_strict` also decompresses R, only to test its order: a
//!   second exponentiation. Here R is not decoded. When `[S]B - [k]A`
//!   encodes to R's bytes, those bytes are that point's canonical encoding,
//!   so R is that point and its order is tested on it (three doublings).
//!   When the encodings differ, both refuse. A non-canonical encoding of R
//!   never equals a computed encoding, so both refuse it too.
//! - Compressing `[S]B - [k]A` costs a field inversion. [`decide_all`]
//!   decides a whole list of signatures (an entry bundle, a request's
//!   events) with one inversion for all of them (Montgomery's trick), and
//!   then compares each encoding as [`StrictKey::verify`] does: the
//!   decision for each signature is the same, only cheaper.
//!
//! Batch verification (one random linear combination for many signatures)
//! would be cheaper still, but it is not this rule: it cannot tell a
//! signature whose R carries a small-order component (refused here) from a
//! valid one with probability better than 1/2, and such signatures can be
//! made from any valid one. `tests` below checks this rule, alone and in
//! lists, against `verify_strict` on such signatures, among others.

use curve25519_dalek_5::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek_5::scalar::Scalar;
use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha512};

/// A public key prepared for strict verification.
#[derive(Clone, Copy, Debug)]
pub struct StrictKey {
    key: VerifyingKey,
    /// `-A`, or `None` when the key has small order (nothing verifies).
    minus_a: Option<EdwardsPoint>,
}

impl PartialEq for StrictKey {
    fn eq(&self, o: &Self) -> bool {
        self.key == o.key
    }
}

impl Eq for StrictKey {}

/// A signature checked but for its last step: `[S]B - [k]A` is computed,
/// and whether it encodes to R's bytes (and has large order) is decided by
/// [`Pending::decide`], or for many at once by [`decide_all`].
#[derive(Clone, Copy, Debug)]
pub struct Pending {
    computed: EdwardsPoint,
    r: [u8; 32],
}

impl Pending {
    /// Whether the signature is strictly valid.
    pub fn decide(&self) -> bool {
        self.matches(&self.computed.compress())
    }

    fn matches(&self, encoded: &CompressedEdwardsY) -> bool {
        encoded.as_bytes() == &self.r && !self.computed.is_small_order()
    }
}

/// [`Pending::decide`] for each of `pending`, in order, with one field
/// inversion for them all.
pub fn decide_all(pending: &[Pending]) -> Vec<bool> {
    if pending.is_empty() {
        // The inversion of an empty product would be spent for nothing.
        return Vec::new();
    }
    let points: Vec<EdwardsPoint> = pending.iter().map(|p| p.computed).collect();
    EdwardsPoint::compress_batch_alloc(&points)
        .iter()
        .zip(pending)
        .map(|(encoded, p)| p.matches(encoded))
        .collect()
}

impl StrictKey {
    /// Prepares `key`. A small-order key is kept, and verifies nothing, as
    /// with `verify_strict`.
    pub fn new(key: &VerifyingKey) -> StrictKey {
        // A `VerifyingKey` was made by decoding these very bytes, so this
        // decoding succeeds; should it not, the key verifies nothing.
        let minus_a = CompressedEdwardsY(key.to_bytes())
            .decompress()
            .filter(|a| !a.is_small_order())
            .map(|a| -a);
        StrictKey { key: *key, minus_a }
    }

    /// The public key.
    pub fn key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Whether `sig` is a strictly valid signature by this key of the
    /// message `parts` concatenated (parts spare callers a copy of the
    /// signing domain and the message).
    pub fn verify(&self, parts: &[&[u8]], sig: &[u8; 64]) -> bool {
        self.pending(parts, sig).is_some_and(|p| p.decide())
    }

    /// [`StrictKey::verify`] up to its last step; `None` when the signature
    /// is refused already (a small-order key, a non-canonical S).
    pub fn pending(&self, parts: &[&[u8]], sig: &[u8; 64]) -> Option<Pending> {
        let minus_a = self.minus_a?;
        let (r, s) = sig.split_at(32);
        let r = <[u8; 32]>::try_from(r).ok()?;
        let s = <[u8; 32]>::try_from(s).ok()?;
        let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s))?;
        let mut h = Sha512::new();
        h.update(r);
        h.update(self.key.as_bytes());
        for p in parts {
            h.update(p);
        }
        let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        let computed = EdwardsPoint::vartime_double_scalar_mul_basepoint(&k, &minus_a, &s);
        Some(Pending { computed, r })
    }
}

#[cfg(test)]
mod tests {
    use super::{decide_all, StrictKey};
    // Hostile signatures are made with the curve ed25519-dalek 2 uses.
    use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
    use curve25519_dalek::edwards::EdwardsPoint;
    use curve25519_dalek::scalar::Scalar;
    use curve25519_dalek::traits::IsIdentity;
    use ed25519_dalek::VerifyingKey;
    use ed25519_dalek::{Signature, Signer, SigningKey};
    use rand_core::{OsRng, RngCore};
    use sha2::{Digest, Sha512};

    fn dalek(key_bytes: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> Option<bool> {
        let key = VerifyingKey::from_bytes(key_bytes).ok()?;
        Some(key.verify_strict(msg, &Signature::from_bytes(sig)).is_ok())
    }

    fn ours(key_bytes: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> Option<bool> {
        let key = VerifyingKey::from_bytes(key_bytes).ok()?;
        // Split the message to exercise the parts.
        let (a, b) = msg.split_at(msg.len() / 2);
        Some(StrictKey::new(&key).verify(&[a, b], sig))
    }

    /// A signature by the scalar `a` under the point `key` (which may
    /// differ from `[a]B` by a small-order component) with nonce `[r]B + t`.
    fn raw_sign(
        a: Scalar,
        key: &EdwardsPoint,
        r: Scalar,
        t: &EdwardsPoint,
        msg: &[u8],
    ) -> [u8; 64] {
        let big_r = (ED25519_BASEPOINT_POINT * r + t).compress();
        let mut h = Sha512::new();
        h.update(big_r.as_bytes());
        h.update(key.compress().as_bytes());
        h.update(msg);
        let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        let s = r + k * a;
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(big_r.as_bytes());
        sig[32..].copy_from_slice(s.as_bytes());
        sig
    }

    fn random_scalar() -> Scalar {
        let mut b = [0u8; 64];
        OsRng.fill_bytes(&mut b);
        Scalar::from_bytes_mod_order_wide(&b)
    }

    /// Every case is decided as `verify_strict` decides it; each family of
    /// cases has both outcomes or the one expected, counted exactly.
    #[test]
    fn decides_as_verify_strict_on_hostile_signatures() {
        // (family, accepted, refused)
        let mut tally: std::collections::BTreeMap<&str, (u32, u32)> = Default::default();
        // Every case with a decodable key (key, message, signature,
        // verdict), decided again in one list below.
        type Case = ([u8; 32], Vec<u8>, [u8; 64], bool);
        let mut cases: Vec<Case> = Vec::new();
        let mut check = |family: &'static str, key: &[u8; 32], msg: &[u8], sig: &[u8; 64]| {
            let want = dalek(key, msg, sig);
            if let Some(w) = want {
                cases.push((*key, msg.to_vec(), *sig, w));
            }
            assert_eq!(
                ours(key, msg, sig),
                want,
                "{family}: key {key:02x?} sig {sig:02x?}"
            );
            let t = tally.entry(family).or_default();
            match want {
                Some(true) => t.0 += 1,
                _ => t.1 += 1,
            }
        };
        let ell_minus_one = -Scalar::ONE;
        for round in 0..64u32 {
            let msg = format!("message {round}").into_bytes();
            let sk = SigningKey::generate(&mut OsRng);
            let vk = sk.verifying_key().to_bytes();
            let good = sk.sign(&msg).to_bytes();
            check("valid", &vk, &msg, &good);
            check("other message", &vk, b"another", &good);
            // S + ℓ: the same scalar, non-canonical.
            let mut s = [0u8; 32];
            s.copy_from_slice(&good[32..]);
            let s_plus_l = {
                // ℓ - 1 + 1 + S, added bytewise with carry, as an integer.
                let l_minus_1 = ell_minus_one.to_bytes();
                let mut out = [0u8; 32];
                let mut carry = 1u16; // the + 1 of ℓ = (ℓ - 1) + 1
                for i in 0..32 {
                    let v = u16::from(s[i]) + u16::from(l_minus_1[i]) + carry;
                    out[i] = v as u8;
                    carry = v >> 8;
                }
                out
            };
            let mut big_s = good;
            big_s[32..].copy_from_slice(&s_plus_l);
            check("non-canonical S", &vk, &msg, &big_s);
            // R plus each small-order point: cofactored-valid, strictly not
            // (but for the identity).
            let a = sk.to_scalar();
            let a_point = ED25519_BASEPOINT_POINT * a;
            for t in EIGHT_TORSION.iter() {
                let sig = raw_sign(a, &a_point, random_scalar(), t, &msg);
                check(
                    if t.is_identity() {
                        "valid"
                    } else {
                        "R with torsion"
                    },
                    &vk,
                    &msg,
                    &sig,
                );
            }
            // A key with a small-order component: signatures by its prime
            // part pass exactly when [k]T vanishes.
            for t in EIGHT_TORSION.iter().skip(1) {
                let mixed = a_point + t;
                let sig = raw_sign(a, &mixed, random_scalar(), &EdwardsPoint::default(), &msg);
                check("mixed-order key", mixed.compress().as_bytes(), &msg, &sig);
            }
            // Small-order keys and small-order R with S = 0.
            for (i, t) in EIGHT_TORSION.iter().enumerate() {
                let mut sig = [0u8; 64];
                sig[..32].copy_from_slice(
                    EIGHT_TORSION[(i + round as usize) % 8]
                        .compress()
                        .as_bytes(),
                );
                check("small-order key", t.compress().as_bytes(), &msg, &sig);
                check("small-order R", &vk, &msg, &sig);
            }
            // Random R bytes, including non-canonical y (≥ p) and the
            // sign bit set on x = 0.
            let mut sig = good;
            OsRng.fill_bytes(&mut sig[..32]);
            check("random R", &vk, &msg, &sig);
            let mut sig = good;
            sig[..32].copy_from_slice(&[0xff; 32]);
            sig[0] = 0xed + (round % 19) as u8; // p + (0..19), sign bit set
            check("non-canonical R", &vk, &msg, &sig);
            sig[31] = 0x7f;
            check("non-canonical R", &vk, &msg, &sig);
            let mut one = [0u8; 32];
            one[0] = 1;
            one[31] = 0x80; // the identity with x's sign bit set
            sig[..32].copy_from_slice(&one);
            check("non-canonical R", &vk, &msg, &sig);
        }
        // In one list, keys and families mixed: each decided as alone.
        let mut pending = Vec::new();
        let mut expected = Vec::new();
        for (key, msg, sig, want) in &cases {
            let key = StrictKey::new(&VerifyingKey::from_bytes(key).unwrap());
            match key.pending(&[msg], sig) {
                Some(p) => {
                    pending.push(p);
                    expected.push(*want);
                }
                None => assert!(
                    !want,
                    "refused before the point: key {key:?} sig {sig:02x?}"
                ),
            }
        }
        assert_eq!(decide_all(&pending), expected);
        // Every family reached the list but the non-canonical S and the
        // small-order keys, which are refused before it.
        assert_eq!(pending.len(), cases.len() - 64 - 64 * 8);
        let get = |f: &str| tally.get(f).copied().unwrap_or_default();
        assert_eq!(get("valid"), (128, 0));
        assert_eq!(get("other message"), (0, 64));
        assert_eq!(get("non-canonical S"), (0, 64));
        assert_eq!(get("R with torsion"), (0, 64 * 7));
        assert_eq!(get("small-order key"), (0, 64 * 8));
        assert_eq!(get("small-order R"), (0, 64 * 8));
        assert_eq!(get("random R"), (0, 64));
        assert_eq!(get("non-canonical R"), (0, 64 * 3));
        // [k]T = 0 for about 1 in ord(T): both outcomes occur.
        let (yes, no) = get("mixed-order key");
        assert_eq!(yes + no, 64 * 7);
        assert!(
            yes > 0 && no > 0,
            "mixed-order key: {yes} accepted, {no} refused"
        );
    }
}
