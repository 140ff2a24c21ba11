//! RFC 9162 Merkle tree math over stored hashes.
//!
//! Architecture Invariant: pure. No I/O, no async, no storage; the storage
//! behind [`HashReader`] is supplied by the caller.
//!
//! # Storage layout
//!
//! Every complete (perfect) subtree of the log is hashed exactly once and
//! kept at a *stored index*. The layout is the "stored hash" layout of Go's
//! `golang.org/x/mod/sumdb/tlog`: hashes are numbered in the order in which
//! an append-only writer produces them. Appending leaf `m` writes the leaf
//! hash and then one node hash for every subtree that the leaf completes,
//! lowest level first. With `count(s)` the number of complete subtrees of a
//! tree of `s` leaves,
//!
//! ```text
//! count(s) = Σ_{l ≥ 0} ⌊s / 2^l⌋ = 2·s − popcount(s)
//! ```
//!
//! and the subtree at level `L` with index `n` (covering leaves
//! `[n·2^L, (n+1)·2^L)`) is completed by the append that makes the tree
//! `s = (n+1)·2^L` leaves big, after which `tz(n+1)` higher subtrees are
//! still written, so
//!
//! ```text
//! stored_hash_index(L, n) = count((n+1)·2^L) − 1 − tz(n+1)
//! ```
//!
//! where `tz` counts trailing zero bits.
//!
//! # Hashes
//!
//! * leaf: `SHA-256(0x00 ‖ entry)` — RFC 9162 §2.1.1
//! * node: `SHA-256(0x01 ‖ left ‖ right)` — RFC 9162 §2.1.1
//! * empty tree: `SHA-256()` — RFC 9162 §2.1.1
//!
//! Proofs are lists of hashes in RFC 9162 order (the hash nearest the leaf
//! level first).

use crate::hash::{empty_root, node_hash, Hash};
use std::convert::Infallible;

/// The largest tree size the storage functions accept: 2^62 leaves.
///
/// It keeps every stored index (`< 2·size`) and every intermediate value of
/// the index arithmetic comfortably inside a `u64`. The pure verifiers
/// ([`verify_inclusion`], [`verify_consistency`], [`root_from_inclusion`])
/// accept any `u64` size.
pub const MAX_TREE_SIZE: u64 = 1 << 62;

/// Errors of the functions that read stored hashes.
///
/// `E` is the error type of the [`HashReader`]; functions that read nothing
/// use the default, [`Infallible`].
#[derive(Debug, thiserror::Error)]
pub enum MerkleError<E = Infallible> {
    /// The hash reader failed.
    #[error("reading stored hashes failed: {0}")]
    Read(#[source] E),
    /// The reader returned a different number of hashes than requested.
    #[error("hash reader returned {got} hashes for {expected} stored indexes")]
    ShortRead {
        /// Number of stored indexes requested.
        expected: usize,
        /// Number of hashes returned.
        got: usize,
    },
    /// A leaf index is not below the tree size.
    #[error("leaf index {index} is out of range for tree size {size}")]
    IndexOutOfRange {
        /// The leaf index.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// A tree size exceeds [`MAX_TREE_SIZE`].
    #[error("tree size {size} exceeds the maximum of {max}")]
    SizeOutOfRange {
        /// The offending tree size.
        size: u64,
        /// [`MAX_TREE_SIZE`].
        max: u64,
    },
    /// A consistency proof was requested from a larger to a smaller tree.
    #[error("old tree size {old} is greater than new tree size {new}")]
    OldGreaterThanNew {
        /// The old (first) tree size.
        old: u64,
        /// The new (second) tree size.
        new: u64,
    },
}

/// Reasons a proof fails verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The leaf index is not below the tree size (RFC 9162 §2.1.3.2 step 1).
    #[error("leaf index {index} is out of range for tree size {size}")]
    IndexOutOfRange {
        /// The leaf index.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// The old tree is larger than the new one.
    #[error("old tree size {old} is greater than new tree size {new}")]
    OldGreaterThanNew {
        /// The old (first) tree size.
        old: u64,
        /// The new (second) tree size.
        new: u64,
    },
    /// The proof does not have the number of hashes the sizes dictate.
    #[error("proof has {got} hashes, expected {expected}")]
    WrongLength {
        /// Number of hashes the sizes dictate.
        expected: usize,
        /// Number of hashes supplied.
        got: usize,
    },
    /// The root recomputed from an inclusion proof differs from the root.
    #[error("inclusion proof leads to root {computed}, expected {expected}")]
    RootMismatch {
        /// The trusted root.
        expected: Hash,
        /// The root recomputed from the proof.
        computed: Hash,
    },
    /// The old root recomputed from a consistency proof differs.
    #[error("consistency proof leads to old root {computed}, expected {expected}")]
    OldRootMismatch {
        /// The trusted old root.
        expected: Hash,
        /// The old root recomputed from the proof.
        computed: Hash,
    },
    /// The new root recomputed from a consistency proof differs.
    #[error("consistency proof leads to new root {computed}, expected {expected}")]
    NewRootMismatch {
        /// The trusted new root.
        expected: Hash,
        /// The new root recomputed from the proof.
        computed: Hash,
    },
}

/// Random access to stored hashes (see the module docs for the layout).
pub trait HashReader {
    /// The storage error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Returns the stored hashes at the given stored indexes, in the same
    /// order.
    ///
    /// # Errors
    ///
    /// Any storage failure, including a missing index.
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, Self::Error>;
}

/// A stored index that a slice-backed [`HashReader`] does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored index {index} is out of range (the store holds {len} hashes)")]
pub struct MissingHash {
    /// The requested stored index.
    pub index: u64,
    /// The number of stored hashes held.
    pub len: u64,
}

/// A slice indexed by stored index (for tests and small in-memory logs).
impl HashReader for [Hash] {
    type Error = MissingHash;

    /// # Errors
    ///
    /// [`MissingHash`] for an index at or beyond the slice length.
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, MissingHash> {
        indexes
            .iter()
            .map(|&index| {
                usize::try_from(index)
                    .ok()
                    .and_then(|i| self.get(i).copied())
                    .ok_or(MissingHash {
                        index,
                        len: self.len() as u64,
                    })
            })
            .collect()
    }
}

/// A vector indexed by stored index (for tests and small in-memory logs).
impl HashReader for Vec<Hash> {
    type Error = MissingHash;

    /// # Errors
    ///
    /// [`MissingHash`] for an index at or beyond the vector length.
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, MissingHash> {
        self.as_slice().read_hashes(indexes)
    }
}

// ---------------------------------------------------------------------------
// Stored-hash index arithmetic
// ---------------------------------------------------------------------------

/// Number of complete subtrees of a tree of `s` leaves:
/// `Σ_{l ≥ 0} ⌊s / 2^l⌋ = 2·s − popcount(s)`, computed without overflow.
fn count_u128(s: u64) -> u128 {
    2 * u128::from(s) - u128::from(s.count_ones())
}

/// The stored index of the hash of the level-`level` subtree number `n`,
/// i.e. of the subtree over leaves `[n·2^level, (n+1)·2^level)`:
///
/// `count((n+1)·2^level) − 1 − tz(n+1)` with `count(s) = 2·s − popcount(s)`.
///
/// For example the leaves 0 and 1 are at 0 and 1, their parent (level 1,
/// `n` = 0) at 2, leaf 2 at 3.
///
/// The result is meaningful for subtrees of trees of at most
/// [`MAX_TREE_SIZE`] leaves. For a subtree that cannot exist in any tree of
/// 2^64 − 1 leaves the function saturates to `u64::MAX`, which is never a
/// valid stored index.
pub fn stored_hash_index(level: u32, n: u64) -> u64 {
    let Some(next) = n.checked_add(1) else {
        return u64::MAX;
    };
    // s = (n+1)·2^level must fit in a u64.
    if level >= 64 || next.leading_zeros() < level {
        return u64::MAX;
    }
    let s = next << level;
    let index = count_u128(s) - 1 - u128::from(next.trailing_zeros());
    u64::try_from(index).unwrap_or(u64::MAX)
}

/// Number of hashes stored for a tree of `size` leaves:
/// `2·size − popcount(size)` (one per complete subtree).
///
/// Saturates to `u64::MAX` for sizes above 2^63 (whose count does not fit a
/// `u64`); all sizes up to [`MAX_TREE_SIZE`] are exact.
pub fn stored_hash_count(size: u64) -> u64 {
    u64::try_from(count_u128(size)).unwrap_or(u64::MAX)
}

/// The inverse of [`stored_hash_index`]: the `(level, n)` of the subtree
/// whose hash lives at stored index `index`.
///
/// The hash at `index` is written while appending leaf `m`, the largest `m`
/// with `count(m) ≤ index`; it is the `(index − count(m))`-th hash written by
/// that append, so `level = index − count(m)` and `n = m >> level`.
pub fn split_stored_hash_index(index: u64) -> (u32, u64) {
    let target = u128::from(index);
    // count is strictly increasing with count(m) ≥ m and count(0) = 0, so
    // the answer lies in [0, index].
    let (mut lo, mut hi) = (0u64, index);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if count_u128(mid) <= target {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let m = lo;
    // index − count(m) ≤ tz(m+1) ≤ 64, so it fits in u32.
    let level = u32::try_from(target - count_u128(m)).unwrap_or(u32::MAX);
    let n = m.checked_shr(level).unwrap_or(0);
    (level, n)
}

/// The largest power of two strictly less than `n` (`n ≥ 2`), the split
/// point `k` of RFC 9162 §2.1.1: `k < n ≤ 2k`.
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    // n ≥ 2 ⇒ n−1 ≥ 1 and the highest set bit of n−1 is the answer.
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Decomposes the leaf range `[lo, hi)` into perfect aligned subtrees,
/// left to right, as `(level, n)` pairs. For the ranges that occur in
/// RFC 9162 proofs (`lo` a multiple of a power of two ≥ `hi − lo`) the
/// subtrees strictly decrease in size, so folding their hashes from the
/// right yields `MTH(D[lo:hi])`.
fn perfect_subtrees(mut lo: u64, hi: u64, out: &mut Vec<(u32, u64)>) {
    while lo < hi {
        let width = hi - lo;
        // Largest power of two that divides lo (any, for lo = 0) and fits.
        let align = if lo == 0 { 63 } else { lo.trailing_zeros() };
        let fit = 63 - width.leading_zeros();
        let level = align.min(fit);
        out.push((level, lo >> level));
        lo += 1u64 << level;
    }
}

/// Folds subtree hashes from the right:
/// `h₀ ⊕ (h₁ ⊕ (… ⊕ hₖ))` with `a ⊕ b = SHA-256(0x01 ‖ a ‖ b)`.
fn fold_right(hashes: &[Hash]) -> Option<Hash> {
    let (last, rest) = hashes.split_last()?;
    Some(rest.iter().rev().fold(*last, |acc, h| node_hash(h, &acc)))
}

fn check_size<E>(size: u64) -> Result<(), MerkleError<E>> {
    if size > MAX_TREE_SIZE {
        return Err(MerkleError::SizeOutOfRange {
            size,
            max: MAX_TREE_SIZE,
        });
    }
    Ok(())
}

/// Reads the hashes of leaf ranges in one `read_hashes` call and returns
/// `MTH(D[lo:hi])` for every range, in order.
fn range_hashes<R: HashReader + ?Sized>(
    ranges: &[(u64, u64)],
    reader: &R,
) -> Result<Vec<Hash>, MerkleError<R::Error>> {
    let mut pieces = Vec::new();
    let mut bounds = Vec::with_capacity(ranges.len());
    for &(lo, hi) in ranges {
        let start = pieces.len();
        perfect_subtrees(lo, hi, &mut pieces);
        bounds.push(start..pieces.len());
    }
    let indexes: Vec<u64> = pieces
        .iter()
        .map(|&(level, n)| stored_hash_index(level, n))
        .collect();
    let hashes = read_exact(reader, &indexes)?;
    bounds
        .into_iter()
        .map(|b| {
            hashes
                .get(b)
                .and_then(fold_right)
                .ok_or(MerkleError::ShortRead {
                    expected: indexes.len(),
                    got: hashes.len(),
                })
        })
        .collect()
}

fn read_exact<R: HashReader + ?Sized>(
    reader: &R,
    indexes: &[u64],
) -> Result<Vec<Hash>, MerkleError<R::Error>> {
    if indexes.is_empty() {
        return Ok(Vec::new());
    }
    let hashes = reader.read_hashes(indexes).map_err(MerkleError::Read)?;
    if hashes.len() != indexes.len() {
        return Err(MerkleError::ShortRead {
            expected: indexes.len(),
            got: hashes.len(),
        });
    }
    Ok(hashes)
}

// ---------------------------------------------------------------------------
// Frontier (compact range of the right edge)
// ---------------------------------------------------------------------------

/// The right edge of a tree: the hashes of the perfect subtrees that make up
/// a tree of `size` leaves, largest (leftmost) first — one per set bit of
/// `size`, so at most 64.
///
/// It is enough to compute the root and to append leaves without reading
/// storage: appending merges equal-sized subtrees like a binary counter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// Subtree hashes, largest first; `hashes[i]` has level equal to the
    /// i-th highest set bit of `size`.
    hashes: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Frontier {
        Frontier::default()
    }

    /// Loads the frontier of the tree of `size` leaves by reading its
    /// `popcount(size)` perfect-subtree hashes in one `read_hashes` call.
    ///
    /// # Errors
    ///
    /// [`MerkleError::SizeOutOfRange`] above [`MAX_TREE_SIZE`],
    /// [`MerkleError::Read`] / [`MerkleError::ShortRead`] from the reader.
    pub fn load<R: HashReader + ?Sized>(
        size: u64,
        reader: &R,
    ) -> Result<Frontier, MerkleError<R::Error>> {
        check_size(size)?;
        let mut pieces = Vec::new();
        perfect_subtrees(0, size, &mut pieces);
        let indexes: Vec<u64> = pieces
            .iter()
            .map(|&(level, n)| stored_hash_index(level, n))
            .collect();
        let hashes = read_exact(reader, &indexes)?;
        Ok(Frontier { size, hashes })
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The perfect-subtree hashes, largest (leftmost) first.
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// `MTH(D[0:size])` — RFC 9162 §2.1.1: the subtree hashes folded from
    /// the right, `h₀ ⊕ (h₁ ⊕ (… ⊕ hₖ))`; `SHA-256()` for the empty tree.
    pub fn root(&self) -> Hash {
        fold_right(&self.hashes).unwrap_or_else(empty_root)
    }

    /// Appends the leaf hash `leaf` (already `SHA-256(0x00 ‖ entry)`) and
    /// returns the stored hashes this append creates, as
    /// `(stored index, hash)` in increasing stored-index order: the leaf
    /// itself at `stored_hash_count(size)`, then one node
    /// `SHA-256(0x01 ‖ left ‖ right)` per subtree the leaf completes.
    ///
    /// # Errors
    ///
    /// [`MerkleError::SizeOutOfRange`] if the tree already has
    /// [`MAX_TREE_SIZE`] leaves; the frontier is left unchanged.
    pub fn append(&mut self, leaf: Hash) -> Result<Vec<(u64, Hash)>, MerkleError> {
        if self.size >= MAX_TREE_SIZE {
            return Err(MerkleError::SizeOutOfRange {
                size: self.size.saturating_add(1),
                max: MAX_TREE_SIZE,
            });
        }
        // size < 2^62, so every index below fits.
        let mut index = stored_hash_count(self.size);
        let completes = self.size.trailing_ones();
        let mut out = Vec::with_capacity(completes as usize + 1);
        let mut current = leaf;
        out.push((index, current));
        for _ in 0..completes {
            // Each trailing one bit of `size` is a subtree of the same level
            // as `current`, sitting immediately to its left.
            let Some(left) = self.hashes.pop() else {
                break; // unreachable: popcount(size) ≥ trailing_ones(size)
            };
            current = node_hash(&left, &current);
            index += 1;
            out.push((index, current));
        }
        self.hashes.push(current);
        self.size += 1;
        Ok(out)
    }
}

/// `MTH(D[0:size])` — RFC 9162 §2.1.1 — from the `popcount(size)` stored
/// perfect-subtree hashes (decompose left to right, fold from the right).
/// The empty tree has root `SHA-256()`.
///
/// # Errors
///
/// [`MerkleError::SizeOutOfRange`] above [`MAX_TREE_SIZE`],
/// [`MerkleError::Read`] / [`MerkleError::ShortRead`] from the reader.
pub fn tree_hash<R: HashReader + ?Sized>(
    size: u64,
    reader: &R,
) -> Result<Hash, MerkleError<R::Error>> {
    Ok(Frontier::load(size, reader)?.root())
}

// ---------------------------------------------------------------------------
// Proof generation
// ---------------------------------------------------------------------------

/// The audit path `PATH(index, D[0:size])` — RFC 9162 §2.1.3.1:
///
/// ```text
/// PATH(0, D[0:1])  = {}
/// PATH(m, D[0:n])  = PATH(m, D[0:k]) : MTH(D[k:n])      if m < k
///                  = PATH(m−k, D[k:n]) : MTH(D[0:k])    if m ≥ k
/// ```
///
/// with `k` the largest power of two `< n`; leaf level first. Every
/// `MTH(D[a:b])` is computed from stored perfect-subtree hashes, all read
/// in a single `read_hashes` call.
///
/// # Errors
///
/// [`MerkleError::IndexOutOfRange`] unless `index < size`,
/// [`MerkleError::SizeOutOfRange`] above [`MAX_TREE_SIZE`],
/// [`MerkleError::Read`] / [`MerkleError::ShortRead`] from the reader.
pub fn inclusion_proof<R: HashReader + ?Sized>(
    index: u64,
    size: u64,
    reader: &R,
) -> Result<Vec<Hash>, MerkleError<R::Error>> {
    check_size(size)?;
    range_hashes(&audit_ranges(index, size)?, reader)
}

/// The leaf ranges whose `MTH` make up `PATH(index, D[0:size])`, leaf
/// level first.
fn audit_ranges<E>(index: u64, size: u64) -> Result<Vec<(u64, u64)>, MerkleError<E>> {
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    // Walk from the root down; collect sibling ranges root level first.
    let mut ranges = Vec::new();
    let (mut lo, mut hi) = (0u64, size);
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        if index - lo < k {
            ranges.push((lo + k, hi));
            hi = lo + k;
        } else {
            ranges.push((lo, lo + k));
            lo += k;
        }
    }
    ranges.reverse();
    Ok(ranges)
}

/// [`inclusion_proof`] for each of `indexes` in the tree of `size`, in
/// order, computing each `MTH(D[a:b])` once for all of them, from one
/// `read_hashes` call. The paths of neighbouring leaves share their ranges
/// above the level where they part, and the leaves a batch has just
/// appended all have the tree's ragged right edge on their paths, whose
/// ranges are the costly ones: each is folded from up to `log2(size)`
/// stored hashes.
///
/// # Errors
///
/// As [`inclusion_proof`], for the first failing index.
pub fn inclusion_proofs<R: HashReader + ?Sized>(
    indexes: &[u64],
    size: u64,
    reader: &R,
) -> Result<Vec<Vec<Hash>>, MerkleError<R::Error>> {
    check_size(size)?;
    let mut unique = Vec::new();
    let mut slot_of: rustc_hash::FxHashMap<(u64, u64), usize> = Default::default();
    let mut paths = Vec::with_capacity(indexes.len());
    for &index in indexes {
        let path: Vec<usize> = audit_ranges(index, size)?
            .into_iter()
            .map(|range| {
                *slot_of.entry(range).or_insert_with(|| {
                    unique.push(range);
                    unique.len() - 1
                })
            })
            .collect();
        paths.push(path);
    }
    let hashes = range_hashes(&unique, reader)?;
    paths
        .into_iter()
        .map(|path| {
            path.into_iter()
                .map(|slot| {
                    hashes.get(slot).copied().ok_or(MerkleError::ShortRead {
                        expected: unique.len(),
                        got: hashes.len(),
                    })
                })
                .collect()
        })
        .collect()
}

/// The consistency proof `PROOF(old, D[0:new])` — RFC 9162 §2.1.4.1:
///
/// ```text
/// PROOF(m, D[n])            = SUBPROOF(m, D[n], true)
/// SUBPROOF(m, D[m], true)   = {}
/// SUBPROOF(m, D[m], false)  = {MTH(D[m])}
/// SUBPROOF(m, D[n], b)      = SUBPROOF(m, D[0:k], b) : MTH(D[k:n])        if m ≤ k
///                           = SUBPROOF(m−k, D[k:n], false) : MTH(D[0:k])  if m > k
/// ```
///
/// RFC 9162 defines the proof for `0 < old ≤ new`; for `old = 0` (the empty
/// tree is a prefix of every tree) this returns the empty proof, as Go's
/// `tlog` does, and so does `old = new`.
///
/// # Errors
///
/// [`MerkleError::OldGreaterThanNew`] if `old > new`,
/// [`MerkleError::SizeOutOfRange`] if `new` exceeds [`MAX_TREE_SIZE`],
/// [`MerkleError::Read`] / [`MerkleError::ShortRead`] from the reader.
pub fn consistency_proof<R: HashReader + ?Sized>(
    old: u64,
    new: u64,
    reader: &R,
) -> Result<Vec<Hash>, MerkleError<R::Error>> {
    check_size(new)?;
    if old > new {
        return Err(MerkleError::OldGreaterThanNew { old, new });
    }
    if old == 0 || old == new {
        return Ok(Vec::new());
    }
    let mut ranges = Vec::new();
    let (mut lo, mut hi) = (0u64, new);
    let mut whole = true; // the `b` flag of SUBPROOF
    while old != hi {
        // lo < old < hi here.
        let k = split_point(hi - lo);
        if old - lo <= k {
            ranges.push((lo + k, hi));
            hi = lo + k;
        } else {
            ranges.push((lo, lo + k));
            lo += k;
            whole = false;
        }
    }
    if !whole {
        ranges.push((lo, hi));
    }
    ranges.reverse();
    range_hashes(&ranges, reader)
}

// ---------------------------------------------------------------------------
// Proof verification
// ---------------------------------------------------------------------------

/// The number of hashes in the inclusion proof of leaf `index` in a tree of
/// `size` leaves (`index < size`): one per iteration of RFC 9162 §2.1.3.2
/// step 4 until `sn` reaches 0.
fn inclusion_len(index: u64, size: u64) -> usize {
    let (mut fnode, mut snode) = (index, size - 1);
    let mut len = 0;
    while snode != 0 {
        len += 1;
        if fnode & 1 == 0 && fnode == snode {
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        }
        fnode >>= 1;
        snode >>= 1;
    }
    len
}

/// The number of hashes in a consistency proof between `0 < old < new`:
/// one per iteration of RFC 9162 §2.1.4.2 step 6 until `sn` reaches 0, plus
/// the seed element, minus one when `old` is a power of two (the verifier
/// prepends `old_root` itself).
fn consistency_len(old: u64, new: u64) -> usize {
    let (mut fnode, mut snode) = (old - 1, new - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let mut len = 1;
    while snode != 0 {
        len += 1;
        if fnode & 1 == 0 && fnode == snode {
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if old.is_power_of_two() {
        len - 1
    } else {
        len
    }
}

/// Recomputes the root from an inclusion proof — RFC 9162 §2.1.3.2 steps
/// 1–4: `fn = index`, `sn = size − 1`, `r = leaf`; for each `p`:
/// if `LSB(fn)` or `fn = sn`, `r = SHA-256(0x01 ‖ p ‖ r)` (and, if `LSB(fn)`
/// was clear, shift `fn`, `sn` right until `LSB(fn)` is set or `fn = 0`),
/// else `r = SHA-256(0x01 ‖ r ‖ p)`; then shift `fn`, `sn` right once.
/// Finally `sn` must be 0.
///
/// # Errors
///
/// [`ProofError::IndexOutOfRange`] unless `index < size`,
/// [`ProofError::WrongLength`] if `proof` does not have exactly the number
/// of hashes dictated by `index` and `size`.
pub fn root_from_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
) -> Result<Hash, ProofError> {
    root_hashing(leaf, index, size, proof, &mut node_hash)
}

/// [`root_from_inclusion`] with `hash` as the interior node hash (which
/// must be [`node_hash`], or remember its results).
fn root_hashing(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    hash: &mut impl FnMut(&Hash, &Hash) -> Hash,
) -> Result<Hash, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let expected = inclusion_len(index, size);
    if proof.len() != expected {
        return Err(ProofError::WrongLength {
            expected,
            got: proof.len(),
        });
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return Err(ProofError::WrongLength {
                expected,
                got: proof.len(),
            });
        }
        if fnode & 1 == 1 || fnode == snode {
            r = hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength {
            expected,
            got: proof.len(),
        });
    }
    Ok(r)
}

/// Verifies that `leaf` is the leaf hash at `index` of the tree of `size`
/// leaves with root `root` — RFC 9162 §2.1.3.2 (see
/// [`root_from_inclusion`]; step 5 compares the result with `root`).
///
/// # Errors
///
/// [`ProofError::IndexOutOfRange`], [`ProofError::WrongLength`] as in
/// [`root_from_inclusion`]; [`ProofError::RootMismatch`] if the recomputed
/// root differs from `root`.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    let computed = root_from_inclusion(leaf, index, size, proof)?;
    if computed != *root {
        return Err(ProofError::RootMismatch {
            expected: *root,
            computed,
        });
    }
    Ok(())
}

/// [`verify_inclusion`] for each `(leaf, index, proof)` against one tree
/// of `size` with `root`, with the same verdict for each, but each
/// distinct interior node hashed once: the paths of neighbouring leaves
/// meet below the root and hash the same nodes from there on. (A
/// remembered result of a pure function changes no verdict.)
///
/// # Errors
///
/// The index of the first proof that fails, and why.
pub fn verify_inclusions<'p>(
    items: impl IntoIterator<Item = (Hash, u64, &'p [Hash])>,
    size: u64,
    root: &Hash,
) -> Result<(), (u64, ProofError)> {
    let mut seen: rustc_hash::FxHashMap<(Hash, Hash), Hash> = Default::default();
    let mut hash = |l: &Hash, r: &Hash| *seen.entry((*l, *r)).or_insert_with(|| node_hash(l, r));
    for (leaf, index, proof) in items {
        let computed =
            root_hashing(&leaf, index, size, proof, &mut hash).map_err(|e| (index, e))?;
        if computed != *root {
            let e = ProofError::RootMismatch {
                expected: *root,
                computed,
            };
            return Err((index, e));
        }
    }
    Ok(())
}

/// Verifies that the tree of `old` leaves with root `old_root` is a prefix
/// of the tree of `new` leaves with root `new_root` — RFC 9162 §2.1.4.2.
///
/// * `old > new`: error.
/// * `old = 0`: only the empty proof is accepted, and `old_root` must be the
///   empty-tree root `SHA-256()` (RFC 9162 §2.1.1); if also `new = 0`,
///   `new_root` must equal it too.
/// * `old = new`: only the empty proof is accepted, and the roots must be
///   equal.
/// * otherwise the RFC algorithm: prepend `old_root` if `old` is a power of
///   two; `fn = old − 1`, `sn = new − 1`; shift both right while `LSB(fn)`;
///   `fr = sr = proof[0]`; for each further `c`: if `LSB(fn)` or `fn = sn`,
///   `fr = SHA-256(0x01 ‖ c ‖ fr)`, `sr = SHA-256(0x01 ‖ c ‖ sr)` (and, if
///   `LSB(fn)` was clear, shift until `LSB(fn)` or `fn = 0`), else
///   `sr = SHA-256(0x01 ‖ sr ‖ c)`; shift once. Finally `fr = old_root`,
///   `sr = new_root` and `sn = 0`.
///
/// # Errors
///
/// [`ProofError::OldGreaterThanNew`], [`ProofError::WrongLength`] if the
/// proof does not have exactly the number of hashes the sizes dictate,
/// [`ProofError::OldRootMismatch`] / [`ProofError::NewRootMismatch`] if a
/// recomputed root differs.
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old > new {
        return Err(ProofError::OldGreaterThanNew { old, new });
    }
    if old == 0 || old == new {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength {
                expected: 0,
                got: proof.len(),
            });
        }
        if old == 0 && *old_root != empty_root() {
            return Err(ProofError::OldRootMismatch {
                expected: *old_root,
                computed: empty_root(),
            });
        }
        if old == new && old_root != new_root {
            return Err(ProofError::NewRootMismatch {
                expected: *new_root,
                computed: *old_root,
            });
        }
        return Ok(());
    }
    let expected = consistency_len(old, new);
    if proof.len() != expected {
        return Err(ProofError::WrongLength {
            expected,
            got: proof.len(),
        });
    }
    let seeded: Vec<Hash>;
    let path: &[Hash] = if old.is_power_of_two() {
        seeded = std::iter::once(*old_root)
            .chain(proof.iter().copied())
            .collect();
        &seeded
    } else {
        proof
    };
    let wrong_length = ProofError::WrongLength {
        expected,
        got: proof.len(),
    };
    let Some((first, rest)) = path.split_first() else {
        return Err(wrong_length);
    };
    let (mut fnode, mut snode) = (old - 1, new - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if snode == 0 {
            return Err(wrong_length);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(wrong_length);
    }
    if fr != *old_root {
        return Err(ProofError::OldRootMismatch {
            expected: *old_root,
            computed: fr,
        });
    }
    if sr != *new_root {
        return Err(ProofError::NewRootMismatch {
            expected: *new_root,
            computed: sr,
        });
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::hash::leaf_hash;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};
    use serde_json::Value;
    use std::sync::OnceLock;

    pub(crate) const VECTORS: &str = include_str!("../tests/data/tlog-vectors.json");
    const TEST_LOG_SIZE: u64 = 70_000;

    pub(crate) fn vectors() -> Value {
        serde_json::from_str(VECTORS).expect("vectors parse")
    }

    pub(crate) fn b64(v: &Value) -> Hash {
        Hash::from_base64(v.as_str().expect("string")).expect("base64 hash")
    }

    fn hashes(v: &Value) -> Vec<Hash> {
        v.as_array().expect("array").iter().map(b64).collect()
    }

    fn u(v: &Value) -> u64 {
        v.as_u64().expect("u64")
    }

    pub(crate) fn entry(i: u64) -> Vec<u8> {
        format!("entry {i}").into_bytes()
    }

    /// Stored hashes of the test log (entry i = `entry <i>`), 70000 leaves,
    /// built with `Frontier::append`, plus the frontier root after every
    /// size in `roots` checked on the way.
    pub(crate) fn test_log() -> &'static Vec<Hash> {
        static LOG: OnceLock<Vec<Hash>> = OnceLock::new();
        LOG.get_or_init(|| {
            let mut log = Vec::new();
            let mut f = Frontier::new();
            for i in 0..TEST_LOG_SIZE {
                for (index, h) in f.append(leaf_hash(&entry(i))).expect("append") {
                    assert_eq!(index, log.len() as u64);
                    log.push(h);
                }
            }
            log
        })
    }

    #[test]
    fn go_tlog_vectors() {
        let v = vectors();
        let log = test_log();
        assert_eq!(log.len() as u64, stored_hash_count(TEST_LOG_SIZE));

        // Roots: from storage and from a frontier grown leaf by leaf.
        let roots = v["roots"].as_array().expect("roots");
        assert_eq!(roots.len(), 19);
        let mut f = Frontier::new();
        let mut checked = 0;
        for r in roots {
            let size = u(&r["size"]);
            let root = b64(&r["root"]);
            assert_eq!(
                tree_hash(size, log).expect("tree_hash"),
                root,
                "size {size}"
            );
            assert_eq!(Frontier::load(size, log).expect("load").root(), root);
            while f.size() < size {
                f.append(leaf_hash(&entry(f.size()))).expect("append");
            }
            assert_eq!(f.root(), root, "frontier size {size}");
            checked += 1;
        }
        assert_eq!(checked, 19);

        for l in v["leaf_hashes"].as_array().expect("leaf_hashes") {
            let index = u(&l["index"]);
            let data = hex::decode(l["entry_hex"].as_str().expect("hex")).expect("hex");
            assert_eq!(data, entry(index));
            assert_eq!(leaf_hash(&data), b64(&l["leaf_hash"]));
            assert_eq!(log[stored_hash_index(0, index) as usize], leaf_hash(&data));
        }

        let incl = v["inclusion"].as_array().expect("inclusion");
        assert_eq!(incl.len(), 14);
        for p in incl {
            let (index, size) = (u(&p["index"]), u(&p["size"]));
            let (leaf, root, want) = (b64(&p["leaf_hash"]), b64(&p["root"]), hashes(&p["hashes"]));
            assert_eq!(leaf, leaf_hash(&entry(index)));
            assert_eq!(tree_hash(size, log).expect("root"), root);
            let got = inclusion_proof(index, size, log).expect("proof");
            assert_eq!(got, want, "inclusion {index} in {size}");
            verify_inclusion(&leaf, index, size, &got, &root).expect("verifies");
            assert_eq!(root_from_inclusion(&leaf, index, size, &got), Ok(root));
        }

        let cons = v["consistency"].as_array().expect("consistency");
        assert_eq!(cons.len(), 12);
        for p in cons {
            let (old, new) = (u(&p["old"]), u(&p["new"]));
            let (old_root, new_root) = (b64(&p["old_root"]), b64(&p["new_root"]));
            assert_eq!(tree_hash(old, log).expect("root"), old_root);
            assert_eq!(tree_hash(new, log).expect("root"), new_root);
            let got = consistency_proof(old, new, log).expect("proof");
            assert_eq!(got, hashes(&p["hashes"]), "consistency {old} -> {new}");
            verify_consistency(old, new, &old_root, &new_root, &got).expect("verifies");
        }
    }

    fn dh(s: &str) -> Hash {
        Hash::from_hex(s).expect("hex hash")
    }

    /// RFC 6962 test leaves as used by github.com/transparency-dev/merkle
    /// (`proof/verify_test.go`): leaves, roots of every prefix 1..=8, and
    /// the published inclusion and consistency proofs.
    mod rfc6962 {
        pub(super) const LEAVES: [&str; 8] = [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ];
        pub(super) const ROOTS: [&str; 8] = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        /// (leaf index (0-based), tree size, proof)
        pub(super) const INCLUSION: [(u64, u64, &[&str]); 4] = [
            (
                0,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                8,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                3,
                &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
            ),
            (
                1,
                5,
                &[
                    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        /// (old, new, proof)
        pub(super) const CONSISTENCY: [(u64, u64, &[&str]); 4] = [
            (
                1,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
            (
                6,
                7,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
        ];
    }

    #[test]
    fn rfc6962_test_leaves() {
        let mut store = Vec::new();
        let mut f = Frontier::new();
        for (i, leaf) in rfc6962::LEAVES.iter().enumerate() {
            let data = hex::decode(leaf).expect("hex");
            store.extend(
                f.append(leaf_hash(&data))
                    .expect("append")
                    .into_iter()
                    .map(|(_, h)| h),
            );
            let want = dh(rfc6962::ROOTS[i]);
            assert_eq!(f.root(), want, "root of size {}", i + 1);
            assert_eq!(tree_hash(i as u64 + 1, &store).expect("root"), want);
        }
        // Mandatory checks, spelled out.
        assert_eq!(
            tree_hash(8, &store).expect("root").to_hex(),
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
        );
        assert_eq!(
            tree_hash(7, &store).expect("root").to_hex(),
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"
        );

        for (index, size, proof) in rfc6962::INCLUSION {
            let want: Vec<Hash> = proof.iter().map(|h| dh(h)).collect();
            let got = inclusion_proof(index, size, &store).expect("proof");
            assert_eq!(got, want, "inclusion {index} in {size}");
            let leaf = leaf_hash(&hex::decode(rfc6962::LEAVES[index as usize]).expect("hex"));
            let root = dh(rfc6962::ROOTS[size as usize - 1]);
            verify_inclusion(&leaf, index, size, &got, &root).expect("verifies");
            // Corruptions in the style of the transparency-dev probes.
            let bad = |i: u64, s: u64, p: &[Hash], r: &Hash| verify_inclusion(&leaf, i, s, p, r);
            assert!(bad(index.wrapping_sub(1), size, &got, &root).is_err());
            assert!(bad(index + 1, size, &got, &root).is_err());
            assert!(bad(index ^ 2, size, &got, &root).is_err());
            assert!(bad(index, size * 2, &got, &root).is_err());
            assert!(bad(index, size / 2, &got, &root).is_err());
            assert!(bad(index, size, &got, &empty_root()).is_err());
            let mut ext = got.clone();
            ext.push(root);
            assert!(bad(index, size, &ext, &root).is_err());
            let mut pre = vec![root];
            pre.extend_from_slice(&got);
            assert!(bad(index, size, &pre, &root).is_err());
            for i in 0..got.len() {
                let mut p = got.clone();
                p[i].0[0] ^= 8;
                assert!(bad(index, size, &p, &root).is_err());
            }
            assert!(bad(index, size, &got[..got.len() - 1], &root).is_err());
        }

        for (old, new, proof) in rfc6962::CONSISTENCY {
            let want: Vec<Hash> = proof.iter().map(|h| dh(h)).collect();
            let got = consistency_proof(old, new, &store).expect("proof");
            assert_eq!(got, want, "consistency {old} -> {new}");
            let r1 = dh(rfc6962::ROOTS[old as usize - 1]);
            let r2 = dh(rfc6962::ROOTS[new as usize - 1]);
            verify_consistency(old, new, &r1, &r2, &got).expect("verifies");
            let bad =
                |o: u64, n: u64, a: &Hash, b: &Hash, p: &[Hash]| verify_consistency(o, n, a, b, p);
            assert!(bad(old - 1, new, &r1, &r2, &got).is_err());
            assert!(bad(old + 1, new, &r1, &r2, &got).is_err());
            assert!(bad(old ^ 2, new, &r1, &r2, &got).is_err());
            assert!(bad(old, new * 2, &r1, &r2, &got).is_err());
            assert!(bad(old, new / 2, &r1, &r2, &got).is_err());
            assert!(bad(old, new, &r2, &r1, &got).is_err());
            assert!(bad(old, new, &r1, &r2, &[]).is_err());
            for extra in [r1, r2, got[0]] {
                let mut ext = got.clone();
                ext.push(extra);
                assert!(bad(old, new, &r1, &r2, &ext).is_err());
                let mut pre = vec![extra];
                pre.extend_from_slice(&got);
                assert!(bad(old, new, &r1, &r2, &pre).is_err());
            }
            assert!(bad(old, new, &r1, &r2, &got[..got.len() - 1]).is_err());
            for i in 0..got.len() {
                let mut p = got.clone();
                p[i].0[0] ^= 16;
                assert!(bad(old, new, &r1, &r2, &p).is_err());
            }
        }
    }

    /// The proofs of many leaves at once are each leaf's own proof, and
    /// checking them at once gives each proof its own verdict: the first
    /// that fails is named, with [`verify_inclusion`]'s error.
    #[test]
    fn batched_proofs_and_checks_equal_one_by_one() {
        let log = test_log();
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x1c1);
        for size in [1u64, 2, 3, 7, 8, 9, 63, 64, 65, 1000, 4097, 69_999, 70_000] {
            let root = tree_hash(size, log).expect("root");
            let sets: [Vec<u64>; 3] = [
                (0..size.min(200)).collect(),
                (size.saturating_sub(200)..size).collect(),
                (0..50).map(|_| rng.gen_range(0..size)).collect(),
            ];
            for indexes in sets {
                let got = inclusion_proofs(&indexes, size, log).expect("proofs");
                assert_eq!(got.len(), indexes.len());
                for (&i, p) in indexes.iter().zip(&got) {
                    assert_eq!(
                        *p,
                        inclusion_proof(i, size, log).expect("proof"),
                        "{i} in {size}"
                    );
                }
                let leaves: Vec<Hash> = indexes.iter().map(|&i| leaf_hash(&entry(i))).collect();
                let items = |proofs: &[Vec<Hash>], leaves: &[Hash]| {
                    let v: Vec<(Hash, u64, Vec<Hash>)> = leaves
                        .iter()
                        .zip(&indexes)
                        .zip(proofs)
                        .map(|((l, &i), p)| (*l, i, p.clone()))
                        .collect();
                    v
                };
                let check = |v: &[(Hash, u64, Vec<Hash>)]| {
                    verify_inclusions(
                        v.iter().map(|(l, i, p)| (*l, *i, p.as_slice())),
                        size,
                        &root,
                    )
                };
                assert_eq!(check(&items(&got, &leaves)), Ok(()), "size {size}");
                // One bad proof, leaf or length, in the middle: its index and
                // the error verify_inclusion gives it alone.
                let k = indexes.len() / 2;
                let bad_index = indexes[k];
                let mut wrong_leaf = leaves.clone();
                wrong_leaf[k].0[0] ^= 1;
                let mut longer = got.clone();
                longer[k].push(root);
                let mut cases = vec![items(&got, &wrong_leaf), items(&longer, &leaves)];
                if !got[k].is_empty() {
                    let mut flipped = got.clone();
                    let last = flipped[k].len() - 1;
                    flipped[k][last].0[31] ^= 0x80;
                    cases.push(items(&flipped, &leaves));
                }
                for case in cases {
                    let (l, i, p) = &case[k];
                    let alone = verify_inclusion(l, *i, size, p, &root).expect_err("tampered");
                    // An earlier proof of the same index fails first.
                    let first = indexes.iter().position(|&x| x == bad_index).expect("there");
                    if first == k {
                        assert_eq!(check(&case), Err((bad_index, alone)), "size {size}");
                    } else {
                        assert!(check(&case).is_err());
                    }
                }
            }
        }
        assert!(matches!(
            inclusion_proofs(&[0, 5], 5, log),
            Err(MerkleError::IndexOutOfRange { index: 5, size: 5 })
        ));
        assert!(matches!(
            inclusion_proofs(&[0], MAX_TREE_SIZE + 1, log),
            Err(MerkleError::SizeOutOfRange { .. })
        ));
        assert_eq!(
            inclusion_proofs(&[], 5, log).expect("none"),
            Vec::<Vec<Hash>>::new()
        );
    }

    #[test]
    fn trivial_consistency_cases() {
        let e = empty_root();
        let x = leaf_hash(b"x");
        let y = leaf_hash(b"y");
        assert_eq!(verify_consistency(0, 0, &e, &e, &[]), Ok(()));
        assert_eq!(verify_consistency(0, 5, &e, &x, &[]), Ok(()));
        assert_eq!(verify_consistency(1, 1, &x, &x, &[]), Ok(()));
        assert!(matches!(
            verify_consistency(0, 5, &x, &y, &[]),
            Err(ProofError::OldRootMismatch { .. })
        ));
        assert!(matches!(
            verify_consistency(0, 5, &e, &x, &[e]),
            Err(ProofError::WrongLength {
                expected: 0,
                got: 1
            })
        ));
        assert!(matches!(
            verify_consistency(3, 3, &x, &y, &[]),
            Err(ProofError::NewRootMismatch { .. })
        ));
        assert!(matches!(
            verify_consistency(3, 3, &x, &x, &[x]),
            Err(ProofError::WrongLength {
                expected: 0,
                got: 1
            })
        ));
        assert!(matches!(
            verify_consistency(2, 1, &x, &x, &[]),
            Err(ProofError::OldGreaterThanNew { old: 2, new: 1 })
        ));
        assert!(matches!(
            verify_inclusion(&x, 0, 0, &[], &x),
            Err(ProofError::IndexOutOfRange { index: 0, size: 0 })
        ));
        assert_eq!(verify_inclusion(&x, 0, 1, &[], &x), Ok(()));
        assert!(matches!(
            verify_inclusion(&x, 0, 1, &[], &y),
            Err(ProofError::RootMismatch { .. })
        ));

        let log = test_log();
        assert!(consistency_proof(0, 10, log).expect("old = 0").is_empty());
        assert!(consistency_proof(10, 10, log)
            .expect("old = new")
            .is_empty());
        assert!(matches!(
            consistency_proof(11, 10, log),
            Err(MerkleError::OldGreaterThanNew { old: 11, new: 10 })
        ));
        assert!(matches!(
            inclusion_proof(10, 10, log),
            Err(MerkleError::IndexOutOfRange {
                index: 10,
                size: 10
            })
        ));
        assert!(matches!(
            tree_hash(u64::MAX, log),
            Err(MerkleError::SizeOutOfRange { .. })
        ));
        // Reading past the store is a typed read error.
        assert!(matches!(
            tree_hash(TEST_LOG_SIZE + 1, log),
            Err(MerkleError::Read(MissingHash { .. }))
        ));
        assert_eq!(tree_hash(0, log).expect("empty"), empty_root());
        assert_eq!(Frontier::new().root(), empty_root());
    }

    #[test]
    fn stored_index_layout() {
        // Hand-checked layout of the first leaves.
        let want = [
            (0, 0),
            (0, 1),
            (1, 0),
            (0, 2),
            (0, 3),
            (1, 1),
            (2, 0),
            (0, 4),
        ];
        for (i, &(level, n)) in want.iter().enumerate() {
            assert_eq!(stored_hash_index(level, n), i as u64);
            assert_eq!(split_stored_hash_index(i as u64), (level, n));
        }
        // Round trip over the first 200000 stored indexes.
        for i in 0..200_000u64 {
            let (level, n) = split_stored_hash_index(i);
            assert_eq!(stored_hash_index(level, n), i, "index {i}");
        }
        // Counts equal the number of hashes produced by appends.
        let mut f = Frontier::new();
        let mut total = 0u64;
        for size in 0..5000u64 {
            assert_eq!(stored_hash_count(size), total, "size {size}");
            total += f.append(leaf_hash(&entry(size))).expect("append").len() as u64;
        }
        // Extremes never panic.
        assert_eq!(stored_hash_index(64, 0), u64::MAX);
        assert_eq!(stored_hash_index(0, u64::MAX), u64::MAX);
        assert_eq!(stored_hash_index(63, 2), u64::MAX);
        assert_eq!(stored_hash_count(MAX_TREE_SIZE), 2 * MAX_TREE_SIZE - 1);
        assert_eq!(stored_hash_count(u64::MAX), u64::MAX);
        let top = stored_hash_index(62, 0);
        assert_eq!(top, 2 * MAX_TREE_SIZE - 2);
        assert_eq!(split_stored_hash_index(top), (62, 0));
        let _ = split_stored_hash_index(u64::MAX);
        // A frontier at the maximum size refuses to grow.
        let mut full = Frontier {
            size: MAX_TREE_SIZE,
            hashes: vec![empty_root()],
        };
        assert!(matches!(
            full.append(empty_root()),
            Err(MerkleError::SizeOutOfRange { .. })
        ));
        assert_eq!(full.size(), MAX_TREE_SIZE);
    }

    #[derive(Clone)]
    struct Rfc9162Sha256;

    impl rs_merkle::Hasher for Rfc9162Sha256 {
        type Hash = [u8; 32];

        fn hash(data: &[u8]) -> [u8; 32] {
            Hash::of(data).0
        }

        /// SHA-256(0x01 ‖ l ‖ r); a lone left node is promoted unchanged.
        fn concat_and_hash(left: &[u8; 32], right: Option<&[u8; 32]>) -> [u8; 32] {
            match right {
                Some(r) => node_hash(&Hash(*left), &Hash(*r)).0,
                None => *left,
            }
        }
    }

    fn oracle_check(size: u64, indexes: impl Iterator<Item = u64>) {
        let log = test_log();
        let store = &log[..stored_hash_count(size) as usize];
        let leaves: Vec<[u8; 32]> = (0..size).map(|i| leaf_hash(&entry(i)).0).collect();
        let tree = rs_merkle::MerkleTree::<Rfc9162Sha256>::from_leaves(&leaves);
        let root = tree_hash(size, store).expect("root");
        assert_eq!(tree.root(), Some(root.0), "root of size {size}");
        for i in indexes {
            let theirs: Vec<Hash> = tree
                .proof(&[i as usize])
                .proof_hashes()
                .iter()
                .map(|h| Hash(*h))
                .collect();
            let ours = inclusion_proof(i, size, store).expect("proof");
            assert_eq!(ours, theirs, "proof of {i} in {size}");
            verify_inclusion(&Hash(leaves[i as usize]), i, size, &theirs, &root).expect("ok");
        }
    }

    #[test]
    fn rs_merkle_oracle() {
        for size in 1..=300u64 {
            oracle_check(size, 0..size);
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9162);
        for _ in 0..20 {
            let size = rng.gen_range(301..=5000u64);
            let idx: Vec<u64> = (0..20).map(|_| rng.gen_range(0..size)).collect();
            oracle_check(size, idx.into_iter().chain([0, size - 1]));
        }
    }

    /// The left/right decisions of RFC 9162 §2.1.3.1 PATH(index, D[0:size]),
    /// root first (true: the sibling subtree is on the left).
    fn inclusion_shape(index: u64, size: u64) -> Vec<bool> {
        let (mut lo, mut hi, mut shape) = (0, size, Vec::new());
        while hi - lo > 1 {
            let k = split_point(hi - lo);
            shape.push(index - lo >= k);
            if index - lo < k {
                hi = lo + k;
            } else {
                lo += k;
            }
        }
        shape
    }

    /// The decisions of RFC 9162 §2.1.4.1 SUBPROOF(old, D[0:new], true),
    /// root first, and the final `b` flag (0 < old < new).
    fn consistency_shape(old: u64, new: u64) -> (Vec<bool>, bool) {
        let (mut lo, mut hi, mut shape, mut b) = (0, new, Vec::new(), true);
        while old != hi {
            let k = split_point(hi - lo);
            shape.push(old - lo > k);
            if old - lo <= k {
                hi = lo + k;
            } else {
                lo += k;
                b = false;
            }
        }
        (shape, b)
    }

    fn root_of(size: u64) -> Hash {
        tree_hash(size, test_log()).expect("root")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn inclusion_proofs_verify_and_resist_tampering(
            size in 1u64..=2000,
            index_seed in any::<u64>(),
            flip in any::<(usize, u8)>(),
            extra in any::<[u8; 32]>(),
        ) {
            let log = test_log();
            let index = index_seed % size;
            let leaf = leaf_hash(&entry(index));
            let root = root_of(size);
            let proof = inclusion_proof(index, size, log).expect("proof");
            prop_assert_eq!(verify_inclusion(&leaf, index, size, &proof, &root), Ok(()));
            if !proof.is_empty() {
                let mut p = proof.clone();
                let bit = flip.0 % (p.len() * 256);
                p[bit / 256].0[(bit % 256) / 8] ^= 1 << (bit % 8);
                prop_assert!(verify_inclusion(&leaf, index, size, &p, &root).is_err());
                prop_assert!(verify_inclusion(&leaf, index, size, &proof[1..], &root).is_err());
                prop_assert!(
                    verify_inclusion(&leaf, index, size, &proof[..proof.len() - 1], &root)
                        .is_err()
                );
            }
            let mut ext = proof.clone();
            ext.push(Hash(extra));
            prop_assert!(verify_inclusion(&leaf, index, size, &ext, &root).is_err());
            // Any other index fails: the left/right path determines the leaf.
            let other = (index + 1 + u64::from(flip.1)) % size;
            if other != index {
                prop_assert!(verify_inclusion(&leaf, other, size, &proof, &root).is_err());
            }
            // Another size fails exactly when its path shape differs: a proof
            // only commits to the left/right sequence, which some sizes share.
            for s in [size + 1, size + 1 + u64::from(flip.1), size * 2, size / 2, size - 1] {
                if s != size {
                    let ok = verify_inclusion(&leaf, index, s, &proof, &root).is_ok();
                    let same = index < s && inclusion_shape(index, s) == inclusion_shape(index, size);
                    prop_assert_eq!(ok, same, "index {} size {} vs {}", index, size, s);
                }
            }
        }

        #[test]
        fn consistency_proofs_verify_and_resist_tampering(
            new in 0u64..=2000,
            old_seed in any::<u64>(),
            flip in any::<usize>(),
            extra in any::<[u8; 32]>(),
        ) {
            let log = test_log();
            let old = old_seed % (new + 1);
            let (r1, r2) = (root_of(old), root_of(new));
            let proof = consistency_proof(old, new, log).expect("proof");
            prop_assert_eq!(verify_consistency(old, new, &r1, &r2, &proof), Ok(()));
            if !proof.is_empty() {
                let mut p = proof.clone();
                let bit = flip % (p.len() * 256);
                p[bit / 256].0[(bit % 256) / 8] ^= 1 << (bit % 8);
                prop_assert!(verify_consistency(old, new, &r1, &r2, &p).is_err());
                prop_assert!(verify_consistency(old, new, &r1, &r2, &proof[1..]).is_err());
                prop_assert!(
                    verify_consistency(old, new, &r1, &r2, &proof[..proof.len() - 1]).is_err()
                );
            }
            let mut ext = proof.clone();
            ext.push(Hash(extra));
            prop_assert!(verify_consistency(old, new, &r1, &r2, &ext).is_err());
            if old > 0 && old < new {
                prop_assert!(verify_consistency(old, new, &r2, &r1, &proof).is_err());
                // Other sizes fail exactly when the SUBPROOF shape differs.
                let shape = consistency_shape(old, new);
                for (o, n) in [
                    (old - 1, new),
                    (old + 1, new),
                    (old, new + 1),
                    (old, new - 1),
                    (old, new * 2),
                    (old ^ 2, new),
                ] {
                    let ok = verify_consistency(o, n, &r1, &r2, &proof).is_ok();
                    let same = o > 0 && o < n && consistency_shape(o, n) == shape;
                    prop_assert_eq!(ok, same, "{} -> {} vs {} -> {}", old, new, o, n);
                }
            }
        }

        #[test]
        fn verifiers_never_panic(
            index in any::<u64>(),
            size in any::<u64>(),
            old in any::<u64>(),
            new in any::<u64>(),
            len in 0usize..140,
            fill in any::<u8>(),
        ) {
            let proof = vec![Hash([fill; 32]); len];
            let h = Hash([fill; 32]);
            let _ = verify_inclusion(&h, index, size, &proof, &h);
            let _ = root_from_inclusion(&h, index, size, &proof);
            let _ = verify_consistency(old, new, &h, &h, &proof);
            let _ = verify_consistency(old.min(new), new.max(old), &h, &h, &proof);
            // Proof lengths are bounded by the tree height.
            if index < size {
                prop_assert!(inclusion_len(index, size) <= 64);
            }
            let (a, b) = (old.min(new), old.max(new));
            if a > 0 && a < b {
                prop_assert!(consistency_len(a, b) <= 128);
            }
        }

        #[test]
        fn split_inverts_index(level in 0u32..62, n_seed in any::<u64>()) {
            let n = n_seed >> (level + 1);
            let i = stored_hash_index(level, n);
            prop_assert_eq!(split_stored_hash_index(i), (level, n));
        }
    }
}
