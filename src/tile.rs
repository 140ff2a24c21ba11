//! Tile paths and tile bodies of c2sp.org/tlog-tiles.
//!
//! Architecture Invariant: pure. No I/O, no async, no storage; hashes come
//! from a caller-supplied [`HashReader`].
//!
//! # Tiles
//!
//! Tiles have height 8: a full tile holds 2^8 = 256 hashes. The level-`L`
//! hash tile with index `N` holds the tree hashes at tree level `8·L` with
//! indexes `256·N .. 256·N + W`, where the width `W` (1..=256) is the number
//! of those level-`8·L` subtrees that are complete:
//!
//! ```text
//! W(L, N, size) = min(256, ⌊size / 2^(8·L)⌋ − 256·N)      (a tile exists iff W ≥ 1)
//! ```
//!
//! A tile body is the concatenation of its `W` 32-byte hashes. An entry
//! bundle (`tile/entries/…`) holds the entries `256·N .. 256·N + W`, each
//! prefixed by its length as a big-endian `u16`.
//!
//! # Paths
//!
//! Paths are written and parsed *with* the `tile/` prefix and *without* a
//! leading slash: `tile/<L>/<N>[.p/<W>]` for hash tiles and
//! `tile/entries/<N>[.p/<W>]` for entry bundles. `<N>` is written in
//! zero-padded 3-digit groups, all but the last prefixed by `x`
//! (1234067 → `x001/x234/067`); `<L>` (0..=63) and the partial width `<W>`
//! (1..=255) are decimal without leading zeros. A full tile has no `.p/`
//! suffix.

use crate::hash::Hash;
use crate::merkle::{stored_hash_index, HashReader, MerkleError, MAX_TREE_SIZE};
use std::convert::Infallible;
use std::fmt;
use std::str::FromStr;

/// Tile height: each tile spans 8 tree levels.
pub const TILE_HEIGHT: u32 = 8;

/// Hashes (or entries) in a full tile: 2^[`TILE_HEIGHT`].
pub const FULL_WIDTH: u16 = 256;

/// The highest hash-tile level c2sp.org/tlog-tiles allows.
pub const MAX_LEVEL: u8 = 63;

/// Errors of tile path parsing, tile reading and entry bundles.
///
/// `E` is the error type of the [`HashReader`] used by [`read_tile`]; the
/// other functions use the default, [`Infallible`].
#[derive(Debug, thiserror::Error)]
pub enum TileError<E = Infallible> {
    /// The string is not a tile path in the exact c2sp.org/tlog-tiles
    /// grammar.
    #[error("invalid tile path {path:?}: {reason}")]
    InvalidPath {
        /// The rejected path.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A hash-tile level above [`MAX_LEVEL`].
    #[error("tile level {level} exceeds the maximum of {MAX_LEVEL}")]
    InvalidLevel {
        /// The rejected level.
        level: u8,
    },
    /// A tile width outside 1..=256.
    #[error("tile width {width} is outside 1..=256")]
    InvalidWidth {
        /// The rejected width.
        width: u16,
    },
    /// [`read_tile`] was asked for an entry bundle.
    #[error("{tile} is an entry bundle, not a hash tile")]
    NotAHashTile {
        /// The requested tile.
        tile: TilePath,
    },
    /// The tile (with this width) does not exist in the tree of this size.
    #[error("{tile} is not available in a tree of {size} leaves")]
    NotAvailable {
        /// The requested tile.
        tile: TilePath,
        /// The tree size.
        size: u64,
    },
    /// An entry too long for its big-endian `u16` length prefix.
    #[error("entry {index} is {len} bytes long, the maximum is 65535")]
    EntryTooLong {
        /// Position of the entry in the bundle.
        index: usize,
        /// Its length in bytes.
        len: usize,
    },
    /// An entry bundle ends in the middle of a length prefix or an entry.
    #[error("entry bundle truncated at byte {offset}")]
    TruncatedBundle {
        /// Offset of the incomplete length prefix or entry.
        offset: usize,
    },
    /// Reading the stored hashes failed, or the size is out of range.
    #[error(transparent)]
    Merkle(#[from] MerkleError<E>),
}

/// What a tile holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TileKind {
    /// Tree hashes at tree level `8·level`; `level` is 0..=63.
    Hash {
        /// The tile level.
        level: u8,
    },
    /// Log entries (an entry bundle).
    Entries,
}

/// A tile: its kind, its index `N` within its level, and its width
/// (1..=256; 256 is a full tile, anything less a partial one).
///
/// The fields are private so that every `TilePath` is valid; build one with
/// [`TilePath::new`], [`TilePath::hash`], [`TilePath::entries`] or
/// [`TilePath::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TilePath {
    kind: TileKind,
    index: u64,
    width: u16,
}

impl TilePath {
    /// A tile of the given kind, index and width.
    ///
    /// # Errors
    ///
    /// [`TileError::InvalidLevel`] for a hash-tile level above
    /// [`MAX_LEVEL`], [`TileError::InvalidWidth`] unless `1 ≤ width ≤ 256`.
    pub fn new(kind: TileKind, index: u64, width: u16) -> Result<TilePath, TileError> {
        if let TileKind::Hash { level } = kind {
            if level > MAX_LEVEL {
                return Err(TileError::InvalidLevel { level });
            }
        }
        if width == 0 || width > FULL_WIDTH {
            return Err(TileError::InvalidWidth { width });
        }
        Ok(TilePath { kind, index, width })
    }

    /// The level-`level` hash tile `index` of the given width.
    ///
    /// # Errors
    ///
    /// As [`TilePath::new`].
    pub fn hash(level: u8, index: u64, width: u16) -> Result<TilePath, TileError> {
        TilePath::new(TileKind::Hash { level }, index, width)
    }

    /// The entry bundle `index` of the given width.
    ///
    /// # Errors
    ///
    /// As [`TilePath::new`].
    pub fn entries(index: u64, width: u16) -> Result<TilePath, TileError> {
        TilePath::new(TileKind::Entries, index, width)
    }

    /// What the tile holds.
    pub fn kind(&self) -> TileKind {
        self.kind
    }

    /// The index `N` of the tile within its level.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The width, 1..=256.
    pub fn width(&self) -> u16 {
        self.width
    }

    /// Whether the tile is partial (width < 256).
    pub fn is_partial(&self) -> bool {
        self.width < FULL_WIDTH
    }

    /// The path, e.g. `tile/0/x001/000`, `tile/2/x001/x234/067.p/17`,
    /// `tile/entries/005.p/1` (no leading slash).
    pub fn to_path(&self) -> String {
        self.to_string()
    }

    /// Parses a path in exactly the grammar [`TilePath::to_path`] prints:
    /// `tile/<L>/<N>[.p/<W>]` or `tile/entries/<N>[.p/<W>]`, `tile/` prefix
    /// included, no leading slash. `print(parse(p)) = p` for every accepted
    /// `p`.
    ///
    /// # Errors
    ///
    /// [`TileError::InvalidPath`] for anything else: a missing prefix,
    /// empty elements or extra slashes, non-digits, leading zeros in `<L>`
    /// or `<W>`, a level above 63, groups that are not exactly three digits,
    /// a missing or misplaced `x`, a non-canonical leading `x000` group, an
    /// index above `u64::MAX`, a partial width of 0 or ≥ 256.
    pub fn parse(path: &str) -> Result<TilePath, TileError> {
        let bad = |reason: &'static str| TileError::InvalidPath {
            path: path.to_owned(),
            reason,
        };
        let rest = path
            .strip_prefix("tile/")
            .ok_or_else(|| bad("missing the tile/ prefix"))?;
        let elems: Vec<&str> = rest.split('/').collect();
        let Some((&kind_elem, elems)) = elems.split_first() else {
            return Err(bad("missing elements"));
        };
        let kind = if kind_elem == "entries" {
            TileKind::Entries
        } else {
            let level = parse_small_decimal(kind_elem)
                .filter(|&l| l <= u16::from(MAX_LEVEL))
                .ok_or_else(|| bad("level is not a decimal 0..=63 without leading zeros"))?;
            TileKind::Hash {
                level: u8::try_from(level).map_err(|_| bad("level out of range"))?,
            }
        };
        let (groups, last, width) = match elems {
            [groups @ .., last, w] if last.ends_with(".p") => {
                let width = parse_small_decimal(w)
                    .filter(|&w| (1..FULL_WIDTH).contains(&w))
                    .ok_or_else(|| {
                        bad("partial width is not a decimal 1..=255 without leading zeros")
                    })?;
                let last = last.strip_suffix(".p").unwrap_or(last);
                (groups, last, width)
            }
            [groups @ .., last] => (groups, *last, FULL_WIDTH),
            [] => return Err(bad("missing tile index")),
        };
        let mut index: u64 = 0;
        for (i, g) in groups.iter().enumerate() {
            let digits = g
                .strip_prefix('x')
                .ok_or_else(|| bad("index group without the x prefix"))?;
            let d = three_digits(digits).ok_or_else(|| bad("index group is not 3 digits"))?;
            if i == 0 && d == 0 {
                return Err(bad("non-canonical leading x000 group"));
            }
            index = push_group(index, d).ok_or_else(|| bad("index overflows u64"))?;
        }
        let d = three_digits(last).ok_or_else(|| bad("last index group is not 3 digits"))?;
        index = push_group(index, d).ok_or_else(|| bad("index overflows u64"))?;
        Ok(TilePath { kind, index, width })
    }
}

/// Decimal 0..=999 without leading zeros ("0" itself is allowed).
fn parse_small_decimal(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 3 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if s.len() > 1 && s.starts_with('0') {
        return None;
    }
    s.parse().ok()
}

/// Exactly three ASCII digits.
fn three_digits(s: &str) -> Option<u64> {
    if s.len() != 3 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `acc · 1000 + d`, checked.
fn push_group(acc: u64, d: u64) -> Option<u64> {
    acc.checked_mul(1000)?.checked_add(d)
}

impl fmt::Display for TilePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            TileKind::Hash { level } => write!(f, "tile/{level}/")?,
            TileKind::Entries => f.write_str("tile/entries/")?,
        }
        // 3-digit groups, most significant first (u64 has at most 7).
        let mut groups = [0u64; 7];
        let mut count = 0;
        let mut n = self.index;
        loop {
            if let Some(slot) = groups.get_mut(count) {
                *slot = n % 1000;
            }
            count += 1;
            n /= 1000;
            if n == 0 {
                break;
            }
        }
        for i in (1..count).rev() {
            write!(f, "x{:03}/", groups.get(i).copied().unwrap_or(0))?;
        }
        write!(f, "{:03}", groups[0])?;
        if self.is_partial() {
            write!(f, ".p/{}", self.width)?;
        }
        Ok(())
    }
}

impl FromStr for TilePath {
    type Err = TileError;

    fn from_str(s: &str) -> Result<TilePath, TileError> {
        TilePath::parse(s)
    }
}

/// The width of hash tile (`level`, `index`) in the tree of `size` leaves:
/// `min(256, ⌊size / 2^(8·level)⌋ − 256·index)`, or `None` if the tile does
/// not exist yet (or `level > 63`, or the arithmetic leaves `u64`).
/// Entry bundle `index` has the width of hash tile (0, `index`).
pub fn tile_width(level: u8, index: u64, size: u64) -> Option<u16> {
    if level > MAX_LEVEL {
        return None;
    }
    let nodes = size
        .checked_shr(u32::from(level) * TILE_HEIGHT)
        .unwrap_or(0);
    let start = index.checked_mul(u64::from(FULL_WIDTH))?;
    let available = nodes.checked_sub(start).filter(|&w| w > 0)?;
    u16::try_from(available.min(u64::from(FULL_WIDTH))).ok()
}

/// Every hash tile of the tree of `size` leaves — full tiles and the
/// partial tile at the right edge of each level — ordered by level, then
/// index. Levels run while `⌊size / 2^(8·L)⌋ ≥ 1`.
///
/// The result has about `size / 255` elements; callers serving clients
/// should not call it with untrusted sizes.
pub fn tiles_for_size(size: u64) -> Vec<TilePath> {
    let mut out = Vec::new();
    for level in 0..=MAX_LEVEL {
        let nodes = size
            .checked_shr(u32::from(level) * TILE_HEIGHT)
            .unwrap_or(0);
        if nodes == 0 {
            break;
        }
        let full = nodes / u64::from(FULL_WIDTH);
        let rest = nodes % u64::from(FULL_WIDTH);
        let kind = TileKind::Hash { level };
        out.extend((0..full).map(|index| TilePath {
            kind,
            index,
            width: FULL_WIDTH,
        }));
        if let Ok(width @ 1..) = u16::try_from(rest) {
            out.push(TilePath {
                kind,
                index: full,
                width,
            });
        }
    }
    out
}

/// The body of a hash tile for the tree of `size` leaves: the
/// `tile.width()` hashes at tree level `8·L`, indexes `256·N ..`, each at
/// stored index `stored_hash_index(8·L, k)`, concatenated (32 bytes each).
///
/// A request for a width smaller than the tile's current width is served
/// (its hashes never change); a full tile stays valid forever.
///
/// # Errors
///
/// [`TileError::NotAHashTile`] for an entry bundle,
/// [`TileError::NotAvailable`] if `tile.width()` exceeds
/// [`tile_width`]`(L, N, size)` (or the tile does not exist),
/// [`TileError::Merkle`] for a size above
/// [`MAX_TREE_SIZE`](crate::merkle::MAX_TREE_SIZE) or a reader failure.
pub fn read_tile<R: HashReader + ?Sized>(
    tile: &TilePath,
    size: u64,
    reader: &R,
) -> Result<Vec<u8>, TileError<R::Error>> {
    let TileKind::Hash { level } = tile.kind else {
        return Err(TileError::NotAHashTile { tile: *tile });
    };
    if size > MAX_TREE_SIZE {
        return Err(MerkleError::SizeOutOfRange {
            size,
            max: MAX_TREE_SIZE,
        }
        .into());
    }
    let not_available = || TileError::NotAvailable { tile: *tile, size };
    match tile_width(level, tile.index, size) {
        Some(w) if tile.width <= w => {}
        _ => return Err(not_available()),
    }
    let tree_level = u32::from(level) * TILE_HEIGHT;
    let start = tile
        .index
        .checked_mul(u64::from(FULL_WIDTH))
        .ok_or_else(not_available)?;
    let indexes: Vec<u64> = (0..u64::from(tile.width))
        .map(|k| stored_hash_index(tree_level, start + k))
        .collect();
    let hashes = reader
        .read_hashes(&indexes)
        .map_err(|e| TileError::Merkle(MerkleError::Read(e)))?;
    if hashes.len() != indexes.len() {
        return Err(MerkleError::ShortRead {
            expected: indexes.len(),
            got: hashes.len(),
        }
        .into());
    }
    let mut body = Vec::with_capacity(hashes.len() * Hash::LEN);
    for h in &hashes {
        body.extend_from_slice(h.as_bytes());
    }
    Ok(body)
}

/// Encodes an entry bundle: every entry as `u16_be(len) ‖ entry`.
///
/// # Errors
///
/// [`TileError::EntryTooLong`] for an entry longer than 65535 bytes.
pub fn encode_entry_bundle(entries: &[&[u8]]) -> Result<Vec<u8>, TileError> {
    let total: usize = entries.iter().map(|e| e.len().saturating_add(2)).sum();
    let mut out = Vec::with_capacity(total);
    for (index, e) in entries.iter().enumerate() {
        let len = u16::try_from(e.len()).map_err(|_| TileError::EntryTooLong {
            index,
            len: e.len(),
        })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(e);
    }
    Ok(out)
}

/// Decodes an entry bundle (`u16_be(len) ‖ entry`, repeated), borrowing
/// the entries from `bundle`. The empty bundle has no entries.
///
/// # Errors
///
/// [`TileError::TruncatedBundle`] if the bundle ends inside a length
/// prefix or an entry.
pub fn decode_entry_bundle(bundle: &[u8]) -> Result<Vec<&[u8]>, TileError> {
    let mut out = Vec::new();
    let mut rest = bundle;
    while !rest.is_empty() {
        let offset = bundle.len() - rest.len();
        let truncated = TileError::TruncatedBundle { offset };
        let Some((prefix, tail)) = rest.split_first_chunk::<2>() else {
            return Err(truncated);
        };
        let len = usize::from(u16::from_be_bytes(*prefix));
        let Some((entry, tail)) = tail.split_at_checked(len) else {
            return Err(truncated);
        };
        out.push(entry);
        rest = tail;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::tests::{entry, test_log, vectors};
    use crate::merkle::{stored_hash_count, tree_hash};
    use proptest::prelude::*;
    use serde_json::Value;

    fn hash_tile_vectors(v: &Value) -> Vec<(String, u64, String)> {
        v["tiles_for_size_70000"]
            .as_array()
            .expect("tiles")
            .iter()
            .map(|t| {
                (
                    t["path"].as_str().expect("path").to_owned(),
                    t["bytes"].as_u64().expect("bytes"),
                    t["sha256_hex"].as_str().expect("sha").to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn tile_path_vectors() {
        let v = vectors();
        let paths = v["tile_paths"].as_array().expect("tile_paths");
        assert_eq!(paths.len(), 7);
        for p in paths {
            let path = p["path"].as_str().expect("path");
            let index = p["index"].as_u64().expect("index");
            let width = u16::try_from(p["width"].as_u64().expect("width")).expect("u16");
            let want = match &p["level"] {
                Value::String(s) if s == "entries" => TilePath::entries(index, width),
                l => TilePath::hash(
                    u8::try_from(l.as_u64().expect("level")).expect("u8"),
                    index,
                    width,
                ),
            }
            .expect("valid");
            assert_eq!(TilePath::parse(path).expect("parses"), want, "{path}");
            assert_eq!(want.to_path(), path);
            assert_eq!(path.parse::<TilePath>().expect("FromStr"), want);
        }
    }

    #[test]
    fn tiles_of_size_70000() {
        let v = vectors();
        let log = test_log();
        let size = 70_000;
        let all = hash_tile_vectors(&v);
        assert_eq!(all.len(), 279);
        let (entries, hashes): (Vec<_>, Vec<_>) =
            all.iter().partition(|t| t.0.starts_with("tile/entries/"));
        let tiles = tiles_for_size(size);
        assert_eq!(tiles.len(), hashes.len());
        assert_eq!(tiles.len(), 277);
        for (tile, (path, bytes, sha)) in tiles.iter().zip(&hashes) {
            assert_eq!(&tile.to_path(), path);
            let body = read_tile(tile, size, log).expect("tile");
            assert_eq!(body.len() as u64, *bytes, "{path}");
            assert_eq!(&Hash::of(&body).to_hex(), sha, "{path}");
            let level = match tile.kind() {
                TileKind::Hash { level } => level,
                TileKind::Entries => unreachable!(),
            };
            assert_eq!(tile_width(level, tile.index(), size), Some(tile.width()));
        }
        // Entry bundles 000 and 273.p/112 of the same log.
        assert_eq!(entries.len(), 2);
        for (path, bytes, sha) in entries {
            let tile = TilePath::parse(path).expect("parses");
            assert_eq!(tile_width(0, tile.index(), size), Some(tile.width()));
            let start = tile.index() * 256;
            let data: Vec<Vec<u8>> = (start..start + u64::from(tile.width()))
                .map(entry)
                .collect();
            let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
            let body = encode_entry_bundle(&refs).expect("encodes");
            assert_eq!(body.len() as u64, *bytes, "{path}");
            assert_eq!(&Hash::of(&body).to_hex(), sha, "{path}");
            assert_eq!(decode_entry_bundle(&body).expect("decodes"), refs);
        }
        // The first hash of tile/1/000 is the root of the first 256 leaves;
        // the one hash of tile/2/000.p/1 is the root of the first 65536.
        let t1 = read_tile(&TilePath::hash(1, 0, 256).expect("tile"), size, log).expect("body");
        assert_eq!(&t1[..32], tree_hash(256, log).expect("root").as_bytes());
        let t2 = read_tile(&TilePath::hash(2, 0, 1).expect("tile"), size, log).expect("body");
        assert_eq!(&t2[..], tree_hash(65536, log).expect("root").as_bytes());
    }

    #[test]
    fn tile_availability() {
        let log = test_log();
        let size = 70_000;
        assert_eq!(tile_width(0, 273, size), Some(112));
        assert_eq!(tile_width(0, 274, size), None);
        assert_eq!(tile_width(1, 1, size), Some(17));
        assert_eq!(tile_width(2, 0, size), Some(1));
        assert_eq!(tile_width(3, 0, size), None);
        assert_eq!(tile_width(7, 0, u64::MAX), Some(255));
        assert_eq!(tile_width(8, 0, u64::MAX), None);
        assert_eq!(tile_width(64, 0, u64::MAX), None);
        assert_eq!(tile_width(0, u64::MAX, u64::MAX), None);
        assert_eq!(tile_width(0, 0, 0), None);
        assert!(tiles_for_size(0).is_empty());
        assert_eq!(tiles_for_size(1), vec![TilePath::hash(0, 0, 1).expect("t")]);
        assert_eq!(
            tiles_for_size(256),
            vec![
                TilePath::hash(0, 0, 256).expect("t"),
                TilePath::hash(1, 0, 1).expect("t")
            ]
        );

        // Narrower requests are served from a wider (or full) tile.
        let full = read_tile(&TilePath::hash(0, 0, 256).expect("t"), size, log).expect("full");
        let narrow = read_tile(&TilePath::hash(0, 0, 5).expect("t"), size, log).expect("narrow");
        assert_eq!(narrow, full[..5 * 32]);
        let p5 = read_tile(&TilePath::hash(0, 273, 5).expect("t"), size, log).expect("p5");
        assert_eq!(p5.len(), 160);
        // Wider than what exists, or not existing at all: typed errors.
        for (level, index, width) in [(0, 273, 113), (0, 273, 256), (0, 274, 1), (3, 0, 1)] {
            let t = TilePath::hash(level, index, width).expect("t");
            assert!(
                matches!(
                    read_tile(&t, size, log),
                    Err(TileError::NotAvailable { .. })
                ),
                "{t}"
            );
        }
        assert!(matches!(
            read_tile(&TilePath::entries(0, 1).expect("t"), size, log),
            Err(TileError::NotAHashTile { .. })
        ));
        assert!(matches!(
            read_tile(&TilePath::hash(0, 0, 1).expect("t"), u64::MAX, log),
            Err(TileError::Merkle(MerkleError::SizeOutOfRange { .. }))
        ));
        // A store that lacks the hashes gives a typed read error.
        let short = &log[..stored_hash_count(100) as usize];
        assert!(matches!(
            read_tile(&TilePath::hash(0, 0, 256).expect("t"), 300, short),
            Err(TileError::Merkle(MerkleError::Read(_)))
        ));
    }

    #[test]
    fn constructors_validate() {
        assert!(matches!(
            TilePath::hash(64, 0, 1),
            Err(TileError::InvalidLevel { level: 64 })
        ));
        assert!(matches!(
            TilePath::hash(0, 0, 0),
            Err(TileError::InvalidWidth { width: 0 })
        ));
        assert!(matches!(
            TilePath::entries(0, 257),
            Err(TileError::InvalidWidth { width: 257 })
        ));
        let t = TilePath::hash(63, u64::MAX, 255).expect("valid");
        assert_eq!(
            t.to_path(),
            "tile/63/x018/x446/x744/x073/x709/x551/615.p/255"
        );
        assert_eq!(TilePath::parse(&t.to_path()).expect("parses"), t);
        assert_eq!(
            TilePath::entries(0, 256).expect("t").to_path(),
            "tile/entries/000"
        );
    }

    #[test]
    fn strict_rejects() {
        let bad = [
            "",
            "tile",
            "tile/",
            "/tile/0/000",
            "tiles/0/000",
            "Tile/0/000",
            "tile/0",
            "tile/0/",
            "tile/0/000/",
            "tile//000",
            "tile/0//000",
            "tile/00/000",
            "tile/01/000",
            "tile/64/000",
            "tile/100/000",
            "tile/-1/000",
            "tile/+1/000",
            "tile/a/000",
            "tile/0/0",
            "tile/0/00",
            "tile/0/0000",
            "tile/0/x000",
            "tile/0/x001",
            "tile/0/001/000",
            "tile/0/x000/001",
            "tile/0/x001/x000",
            "tile/0/X001/000",
            "tile/0/xx001/000",
            "tile/0/x01/000",
            "tile/0/x0001/000",
            "tile/0/+01",
            "tile/0/ 01",
            "tile/0/01a",
            "tile/0/١٢٣",
            "tile/0/000.p",
            "tile/0/000.p/",
            "tile/0/000.p/0",
            "tile/0/000.p/00",
            "tile/0/000.p/01",
            "tile/0/000.p/256",
            "tile/0/000.p/1000",
            "tile/0/000.p/-1",
            "tile/0/000.p/1/",
            "tile/0/000.p/1/2",
            "tile/0/000.P/1",
            "tile/0/000p/1",
            "tile/0/x001.p/1/000",
            "tile/0/000.p.p/1",
            "tile/0/../000",
            "tile/0/./000",
            "tile/entries",
            "tile/entries/",
            "tile/entries/5",
            "tile/entries/x005",
            "tile/entries/000.p/256",
            "tile/Entries/000",
            "tile/data/000",
            // u64::MAX + 1 and beyond.
            "tile/0/x018/x446/x744/x073/x709/x551/616",
            "tile/0/x999/x999/x999/x999/x999/x999/999",
            "tile/0/x001/x000/x000/x000/x000/x000/x000/000",
            "tile/0/000 ",
            " tile/0/000",
            "tile/0/000\n",
        ];
        for p in bad {
            assert!(
                matches!(TilePath::parse(p), Err(TileError::InvalidPath { .. })),
                "accepted {p:?}"
            );
        }
    }

    #[test]
    fn entry_bundles() {
        assert_eq!(encode_entry_bundle(&[]).expect("empty"), Vec::<u8>::new());
        assert!(decode_entry_bundle(&[]).expect("empty").is_empty());
        let body = encode_entry_bundle(&[b"", b"ab"]).expect("encodes");
        assert_eq!(body, [0, 0, 0, 2, b'a', b'b']);
        assert_eq!(
            decode_entry_bundle(&body).expect("decodes"),
            [&b""[..], &b"ab"[..]]
        );
        // Cutting after the first (empty) entry is a valid one-entry bundle.
        assert_eq!(decode_entry_bundle(&body[..2]).expect("one"), [&b""[..]]);
        for (cut, offset) in [(1, 0), (3, 2), (4, 2), (5, 2)] {
            let err = decode_entry_bundle(&body[..cut]).expect_err("truncated");
            assert!(
                matches!(err, TileError::TruncatedBundle { offset: o } if o == offset),
                "cut {cut}"
            );
        }
        let max = vec![7u8; 65535];
        let big = encode_entry_bundle(&[&max]).expect("65535 fits");
        assert_eq!(big.len(), 65537);
        assert_eq!(&big[..2], [0xff, 0xff]);
        let too_big = vec![7u8; 65536];
        assert!(matches!(
            encode_entry_bundle(&[b"x", &too_big]),
            Err(TileError::EntryTooLong {
                index: 1,
                len: 65536
            })
        ));
    }

    fn any_tile() -> impl Strategy<Value = TilePath> {
        let kind = prop_oneof![
            (0u8..=MAX_LEVEL).prop_map(|level| TileKind::Hash { level }),
            Just(TileKind::Entries),
        ];
        let index = prop_oneof![0u64..2000, any::<u64>()];
        (kind, index, 1u16..=256).prop_map(|(k, i, w)| TilePath::new(k, i, w).expect("valid"))
    }

    proptest! {
        #[test]
        fn path_round_trip(tile in any_tile()) {
            let path = tile.to_path();
            prop_assert_eq!(TilePath::parse(&path).expect("parses"), tile);
        }

        #[test]
        fn parse_is_canonical(s in "tile/(entries|[0-9]{1,3})(/x?[0-9]{1,4}){1,8}(\\.p/[0-9]{1,4})?") {
            // Never panics; whatever is accepted prints back identically.
            if let Ok(t) = TilePath::parse(&s) {
                prop_assert_eq!(t.to_path(), s);
            }
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,60}") {
            if let Ok(t) = TilePath::parse(&s) {
                prop_assert_eq!(t.to_path(), s);
            }
        }

        #[test]
        fn bundle_round_trip(entries in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..20)) {
            let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
            let body = encode_entry_bundle(&refs).expect("encodes");
            prop_assert_eq!(decode_entry_bundle(&body).expect("decodes"), refs);
            if !body.is_empty() {
                prop_assert!(decode_entry_bundle(&body[..body.len() - 1]).is_err());
            }
        }
    }
}
