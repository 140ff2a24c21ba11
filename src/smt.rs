//! The status map: a compressed sparse Merkle tree (a binary prefix tree over
//! 256-bit keys) with membership and non-membership proofs.
//!
//! Architecture Invariant: pure. No I/O, no async, no storage. Nodes are read
//! through [`NodeReader`]; [`update`] returns the writes for the caller to
//! persist. The wire contract (hashing, node layout, proof encoding and
//! verifier rules) is specified in `docs/MAP.md`.
//!
//! Definition (for a set `S` of (key, value) pairs whose keys share the first
//! `d` bits):
//!
//! ```text
//! hash(S, d) = EMPTY                                  if |S| = 0   (32 zero bytes)
//!            = SHA-256(0x10 ‖ key ‖ value)            if S = {(key, value)}
//!            = SHA-256(0x11 ‖ hash(S₀, d+1) ‖ hash(S₁, d+1))   if |S| ≥ 2
//! ```
//!
//! where `S_b` is the subset whose key has bit `d` equal to `b`. The map root
//! is `hash(S, 0)`.

use crate::hash::Hash;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;

/// The hash of an empty subtree, and the root of the empty map: 32 zero bytes.
pub const EMPTY: Hash = Hash([0u8; 32]);

/// The largest value (status record) the map accepts, in bytes.
pub const MAX_VALUE_LEN: usize = 1024;

/// The largest depth of a node: a node at depth 256 holds exactly one key.
pub const MAX_DEPTH: u16 = 256;

/// Domain separator for leaf hashes.
pub const LEAF_PREFIX: u8 = 0x10;

/// Domain separator for interior hashes.
pub const INTERIOR_PREFIX: u8 = 0x11;

/// Domain string of [`map_key`].
pub const MAP_KEY_DOMAIN: &[u8] = b"revledger/map-key/v1";

/// The version byte that starts an encoded [`MapProof`].
pub const PROOF_VERSION: u8 = 0x01;

/// Everything that can go wrong in this module.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// The [`NodeReader`] failed.
    #[error("node storage failed: {source}")]
    Storage {
        /// The reader's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// A value is longer than [`MAX_VALUE_LEN`].
    #[error("value is {len} bytes, the maximum is {max}")]
    ValueTooLong {
        /// Its length.
        len: usize,
        /// [`MAX_VALUE_LEN`].
        max: usize,
    },
    /// A depth above [`MAX_DEPTH`].
    #[error("depth {depth} exceeds 256")]
    DepthTooLarge {
        /// The depth found.
        depth: u16,
    },
    /// Input ended early.
    #[error("{what}: truncated, needed {needed} more bytes, {available} available")]
    Truncated {
        /// What was being decoded.
        what: &'static str,
        /// Bytes needed for the next field.
        needed: usize,
        /// Bytes left.
        available: usize,
    },
    /// Input continued after its end.
    #[error("{what}: {extra} trailing bytes")]
    TrailingBytes {
        /// What was being decoded.
        what: &'static str,
        /// How many bytes were left over.
        extra: usize,
    },
    /// An unknown proof version byte.
    #[error("unsupported proof version {version:#04x}")]
    UnsupportedVersion {
        /// The byte found.
        version: u8,
    },
    /// An unknown tag byte.
    #[error("{what}: unknown tag {tag:#04x}")]
    UnknownTag {
        /// What was being decoded.
        what: &'static str,
        /// The byte found.
        tag: u8,
    },
    /// Bits past `depth` (bitmap or node-id prefix padding) are not zero.
    #[error("{what}: nonzero padding bits after depth {depth}")]
    NonzeroPadding {
        /// What was being checked.
        what: &'static str,
        /// The depth after which bits must be zero.
        depth: u16,
    },
    /// The bitmap is not `ceil(depth/8)` bytes.
    #[error("bitmap is {actual} bytes, depth {depth} needs {expected}")]
    BitmapLength {
        /// The proof depth.
        depth: u16,
        /// `ceil(depth/8)`.
        expected: usize,
        /// The bitmap length.
        actual: usize,
    },
    /// The number of siblings is not the number of set bitmap bits.
    #[error("proof lists {actual} siblings, the bitmap marks {expected}")]
    SiblingCount {
        /// popcount(bitmap).
        expected: usize,
        /// siblings.len().
        actual: usize,
    },
    /// A sibling marked present has the empty hash (it must be omitted).
    #[error("sibling at depth {depth} is marked present but is EMPTY")]
    EmptySiblingListed {
        /// The sibling's depth.
        depth: u16,
    },
    /// The sibling at the proof's depth is absent: an honest compressed tree
    /// never ends a path next to an empty sibling.
    #[error("sibling at the terminal depth {depth} is absent: non-canonical path")]
    DeepestSiblingAbsent {
        /// The proof depth.
        depth: u16,
    },
    /// A terminal `Empty` at depth 256: impossible in a compressed tree.
    #[error("empty terminal at depth 256: non-canonical path")]
    EmptyAtMaxDepth,
    /// The terminal leaf's key does not share the first `depth` bits with the
    /// queried key, so it is not on the queried key's path.
    #[error("terminal leaf is not on the queried key's path at depth {depth}")]
    LeafOffPath {
        /// The proof depth.
        depth: u16,
    },
    /// The recomputed root differs from the trusted root.
    #[error("proof computes root {computed}, expected {expected}")]
    RootMismatch {
        /// The trusted root.
        expected: Hash,
        /// The root the proof hashes to.
        computed: Hash,
    },
    /// Stored nodes are inconsistent with a compressed tree.
    #[error("corrupt node storage at {id}: {reason}")]
    Corrupt {
        /// The offending node.
        id: NodeId,
        /// What is wrong.
        reason: &'static str,
    },
}

fn storage_err<E: std::error::Error + Send + Sync + 'static>(e: E) -> MapError {
    MapError::Storage {
        source: Box::new(e),
    }
}

fn check_value_len(value: &[u8]) -> Result<(), MapError> {
    if value.len() > MAX_VALUE_LEN {
        return Err(MapError::ValueTooLong {
            len: value.len(),
            max: MAX_VALUE_LEN,
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Hashing and bits
// ---------------------------------------------------------------------------

/// The map key of a credential:
/// `SHA-256("revledger/map-key/v1" ‖ 0x00 ‖ credential_id)`.
pub fn map_key(credential_id: &[u8; 32]) -> Hash {
    // SHA-256(MAP_KEY_DOMAIN ‖ 0x00 ‖ credential_id)
    let mut h = Sha256::new();
    h.update(MAP_KEY_DOMAIN);
    h.update([0x00]);
    h.update(credential_id);
    Hash(h.finalize().into())
}

/// Leaf hash: `SHA-256(0x10 ‖ key ‖ value)`. The key is fixed-length and the
/// value is the last field, so the preimage parses uniquely without a length.
pub fn leaf_hash(key: &Hash, value: &[u8]) -> Hash {
    // SHA-256(0x10 ‖ key ‖ value)
    let mut h = Sha256::new();
    h.update([LEAF_PREFIX]);
    h.update(key.0);
    h.update(value);
    Hash(h.finalize().into())
}

/// Interior hash: `SHA-256(0x11 ‖ left ‖ right)`.
pub fn interior_hash(left: &Hash, right: &Hash) -> Hash {
    // SHA-256(0x11 ‖ left ‖ right)
    let mut h = Sha256::new();
    h.update([INTERIOR_PREFIX]);
    h.update(left.0);
    h.update(right.0);
    Hash(h.finalize().into())
}

/// Bit `i` of a 256-bit string, MSB first: bit `7 - i%8` of byte `i/8`.
/// Out-of-range bits read as 0.
fn bit_of(bytes: &[u8], i: usize) -> bool {
    // (bytes[i/8] >> (7 - i%8)) & 1
    bytes
        .get(i / 8)
        .is_some_and(|b| (b >> (7 - (i % 8))) & 1 == 1)
}

/// Bit `i` of a key (0 = left, 1 = right at depth `i`).
pub fn key_bit(key: &Hash, i: u16) -> bool {
    bit_of(&key.0, usize::from(i))
}

fn set_bit(bytes: &mut [u8], i: usize) {
    if let Some(b) = bytes.get_mut(i / 8) {
        *b |= 0x80 >> (i % 8);
    }
}

/// `ceil(depth / 8)`: bytes needed for `depth` bits.
fn bytes_for(depth: u16) -> usize {
    usize::from(depth).div_ceil(8)
}

/// True iff all bits at positions `>= depth` of `bytes` are zero.
fn padding_is_zero(bytes: &[u8], depth: u16) -> bool {
    let depth = usize::from(depth);
    bytes.iter().enumerate().all(|(i, b)| {
        let first_bit = i * 8;
        if first_bit + 8 <= depth {
            true
        } else if first_bit >= depth {
            *b == 0
        } else {
            // keep the low (8 - (depth - first_bit)) bits
            let used = depth - first_bit;
            b & (0xffu8 >> used) == 0
        }
    })
}

/// Clears all bits at positions `>= depth`.
fn mask_prefix(bytes: &[u8; 32], depth: u16) -> [u8; 32] {
    // Word by word with fixed-size copies: a copy of `depth / 8` bytes
    // was a call to memmove, and this runs for every node a map walk or a
    // page lookup touches.
    let depth = u32::from(depth).min(256);
    let mut out = [0u8; 32];
    for (i, (o, b)) in out
        .chunks_exact_mut(8)
        .zip(bytes.chunks_exact(8))
        .enumerate()
    {
        let mut w = [0u8; 8];
        w.copy_from_slice(b);
        // The prefix bits in this word: 0 to 64.
        let kept = depth.saturating_sub(64 * i as u32).min(64);
        let mask = u64::MAX.checked_shl(64 - kept).unwrap_or(0);
        o.copy_from_slice(&(u64::from_be_bytes(w) & mask).to_be_bytes());
    }
    out
}

/// True iff `a` and `b` agree on their first `depth` bits.
fn shares_prefix(a: &Hash, b: &Hash, depth: u16) -> bool {
    mask_prefix(&a.0, depth) == mask_prefix(&b.0, depth)
}

// ---------------------------------------------------------------------------
// Node identifiers and stored nodes
// ---------------------------------------------------------------------------

/// Identifies a node: its depth (0..=256) and the first `depth` bits of its
/// keys, remaining bits zero.
///
/// The derived order (depth, then prefix) equals the byte order of
/// [`NodeId::to_bytes`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    depth: u16,
    prefix: [u8; 32],
}

impl NodeId {
    /// The root: depth 0, empty prefix.
    pub fn root() -> NodeId {
        NodeId {
            depth: 0,
            prefix: [0; 32],
        }
    }

    /// A node id from a depth and a prefix whose bits past `depth` are zero.
    ///
    /// # Errors
    /// [`MapError::DepthTooLarge`] if `depth > 256`;
    /// [`MapError::NonzeroPadding`] if a bit at position `>= depth` is set.
    pub fn new(depth: u16, prefix: [u8; 32]) -> Result<NodeId, MapError> {
        if depth > MAX_DEPTH {
            return Err(MapError::DepthTooLarge { depth });
        }
        if !padding_is_zero(&prefix, depth) {
            return Err(MapError::NonzeroPadding {
                what: "node id",
                depth,
            });
        }
        Ok(NodeId { depth, prefix })
    }

    /// The node at `depth` on `key`'s path (the first `depth` bits of `key`).
    ///
    /// # Errors
    /// [`MapError::DepthTooLarge`] if `depth > 256`.
    pub fn on_path(key: &Hash, depth: u16) -> Result<NodeId, MapError> {
        if depth > MAX_DEPTH {
            return Err(MapError::DepthTooLarge { depth });
        }
        Ok(NodeId {
            depth,
            prefix: mask_prefix(&key.0, depth),
        })
    }

    /// The depth (0 = root).
    pub fn depth(&self) -> u16 {
        self.depth
    }

    /// The prefix bits, zero-padded to 32 bytes.
    pub fn prefix(&self) -> &[u8; 32] {
        &self.prefix
    }

    /// True iff `key` lies in this node's subtree (its first `depth` bits
    /// equal the prefix).
    pub fn contains(&self, key: &Hash) -> bool {
        mask_prefix(&key.0, self.depth) == self.prefix
    }

    /// The child chosen by `bit` (`false` = left, `true` = right): prefix
    /// extended by `bit` at position `depth`. `None` at depth 256.
    pub fn child(&self, bit: bool) -> Option<NodeId> {
        if self.depth >= MAX_DEPTH {
            return None;
        }
        let mut prefix = self.prefix;
        if bit {
            set_bit(&mut prefix, usize::from(self.depth));
        }
        Some(NodeId {
            depth: self.depth + 1,
            prefix,
        })
    }

    /// The other child of this node's parent: bit `depth-1` flipped. `None`
    /// for the root.
    pub fn sibling(&self) -> Option<NodeId> {
        let last = usize::from(self.depth.checked_sub(1)?);
        let mut prefix = self.prefix;
        if let Some(b) = prefix.get_mut(last / 8) {
            *b ^= 0x80 >> (last % 8);
        }
        Some(NodeId {
            depth: self.depth,
            prefix,
        })
    }

    /// Storage key: `depth (u16 BE) ‖ first ceil(depth/8) prefix bytes`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let n = bytes_for(self.depth);
        let mut out = Vec::with_capacity(2 + n);
        out.extend_from_slice(&self.depth.to_be_bytes());
        out.extend_from_slice(self.prefix.get(..n).unwrap_or(&self.prefix));
        out
    }

    /// Parses [`NodeId::to_bytes`] strictly.
    ///
    /// # Errors
    /// [`MapError::Truncated`] / [`MapError::TrailingBytes`] if the length is
    /// not `2 + ceil(depth/8)`; [`MapError::DepthTooLarge`] if `depth > 256`;
    /// [`MapError::NonzeroPadding`] if a bit past `depth` is set.
    pub fn from_bytes(bytes: &[u8]) -> Result<NodeId, MapError> {
        let mut r = Reader::new("node id", bytes);
        let depth = r.u16()?;
        if depth > MAX_DEPTH {
            return Err(MapError::DepthTooLarge { depth });
        }
        let body = r.take(bytes_for(depth))?;
        r.finish()?;
        let mut prefix = [0u8; 32];
        prefix
            .iter_mut()
            .zip(body.iter())
            .for_each(|(p, b)| *p = *b);
        NodeId::new(depth, prefix)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

impl fmt::Display for NodeId {
    /// `depth/hex(prefix bytes)`, e.g. `3/a0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = bytes_for(self.depth);
        let shown = self.prefix.get(..n).unwrap_or(&self.prefix);
        write!(f, "{}/{}", self.depth, hex::encode(shown))
    }
}

/// Node encoding tag of [`Node::Leaf`] (same byte as its hash domain).
const NODE_TAG_LEAF: u8 = 0x10;
/// Node encoding tag of [`Node::Interior`] (same byte as its hash domain).
const NODE_TAG_INTERIOR: u8 = 0x11;

/// A stored node. Empty subtrees are not stored.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Node {
    /// A subtree with ≥ 2 keys; holds its own hash
    /// `SHA-256(0x11 ‖ left ‖ right)`.
    Interior(Hash),
    /// A subtree with exactly one key, at the shallowest depth where the key
    /// is alone.
    Leaf {
        /// The key.
        key: Hash,
        /// The value.
        value: Vec<u8>,
    },
}

impl Node {
    /// The node's hash: the stored hash of an interior node, or
    /// `SHA-256(0x10 ‖ key ‖ value)` for a leaf.
    pub fn hash(&self) -> Hash {
        match self {
            Node::Interior(h) => *h,
            Node::Leaf { key, value } => leaf_hash(key, value),
        }
    }

    /// Storage encoding: `0x11 ‖ hash (32)` for interior nodes,
    /// `0x10 ‖ key (32) ‖ value length (u16 BE) ‖ value` for leaves.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    /// The length of [`Node::encode`].
    pub fn encoded_len(&self) -> usize {
        match self {
            Node::Interior(_) => 33,
            Node::Leaf { value, .. } => 35 + value.len(),
        }
    }

    /// Appends [`Node::encode`] to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Node::Interior(h) => {
                out.push(NODE_TAG_INTERIOR);
                out.extend_from_slice(&h.0);
            }
            Node::Leaf { key, value } => {
                out.push(NODE_TAG_LEAF);
                out.extend_from_slice(&key.0);
                put_value(out, value);
            }
        }
    }

    /// Parses [`Node::encode`] strictly.
    ///
    /// # Errors
    /// [`MapError::UnknownTag`], [`MapError::Truncated`],
    /// [`MapError::TrailingBytes`], or [`MapError::ValueTooLong`] if the
    /// length field exceeds [`MAX_VALUE_LEN`].
    pub fn decode(bytes: &[u8]) -> Result<Node, MapError> {
        let (node, rest) = Node::decode_prefix(bytes)?;
        Reader::new("node", rest).finish()?;
        Ok(node)
    }

    /// Parses one [`Node::encode`] from the start of `bytes` (a node says
    /// its own length) and returns it with the bytes after it.
    ///
    /// # Errors
    /// As [`Node::decode`], except that trailing bytes are returned.
    pub fn decode_prefix(bytes: &[u8]) -> Result<(Node, &[u8]), MapError> {
        let mut r = Reader::new("node", bytes);
        let node = match r.u8()? {
            NODE_TAG_INTERIOR => Node::Interior(r.hash()?),
            NODE_TAG_LEAF => {
                let key = r.hash()?;
                let value = r.value()?;
                Node::Leaf { key, value }
            }
            tag => return Err(MapError::UnknownTag { what: "node", tag }),
        };
        Ok((node, r.rest()))
    }
}

/// Read access to stored nodes.
pub trait NodeReader {
    /// The storage error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The node stored at `id`, or `None` (an empty subtree, or a position
    /// below or beside a compressed leaf).
    ///
    /// # Errors
    /// Whatever the storage reports.
    fn get_node(&self, id: &NodeId) -> Result<Option<Node>, Self::Error>;
}

/// In-memory nodes, for tests and tools.
impl NodeReader for BTreeMap<NodeId, Node> {
    type Error = std::convert::Infallible;

    fn get_node(&self, id: &NodeId) -> Result<Option<Node>, Self::Error> {
        Ok(self.get(id).cloned())
    }
}

fn read<R: NodeReader>(reader: &R, id: &NodeId) -> Result<Option<Node>, MapError> {
    let node = reader.get_node(id).map_err(storage_err)?;
    match &node {
        Some(Node::Leaf { key, value }) => {
            if !id.contains(key) {
                return Err(MapError::Corrupt {
                    id: *id,
                    reason: "leaf key is not under the node's prefix",
                });
            }
            if value.len() > MAX_VALUE_LEN {
                return Err(MapError::Corrupt {
                    id: *id,
                    reason: "leaf value longer than MAX_VALUE_LEN",
                });
            }
        }
        Some(Node::Interior(_)) if id.depth >= MAX_DEPTH => {
            return Err(MapError::Corrupt {
                id: *id,
                reason: "interior node at depth 256",
            });
        }
        _ => {}
    }
    Ok(node)
}

fn children_of(id: &NodeId) -> Result<(NodeId, NodeId), MapError> {
    match (id.child(false), id.child(true)) {
        (Some(l), Some(r)) => Ok((l, r)),
        _ => Err(MapError::Corrupt {
            id: *id,
            reason: "interior node at depth 256",
        }),
    }
}

/// Reads both children of the interior node `id`, checking that together
/// they hold ≥ 2 keys.
fn read_children<R: NodeReader>(
    reader: &R,
    id: &NodeId,
) -> Result<(Option<Node>, Option<Node>), MapError> {
    let (l, r) = children_of(id)?;
    let ln = read(reader, &l)?;
    let rn = read(reader, &r)?;
    match (&ln, &rn) {
        (None, None) => Err(MapError::Corrupt {
            id: *id,
            reason: "interior node without children",
        }),
        (None, Some(Node::Leaf { .. })) | (Some(Node::Leaf { .. }), None) => {
            Err(MapError::Corrupt {
                id: *id,
                reason: "interior node holding a single key",
            })
        }
        _ => Ok((ln, rn)),
    }
}

// ---------------------------------------------------------------------------
// Reads: root, get
// ---------------------------------------------------------------------------

/// The map root: the hash of the root node, or [`EMPTY`].
///
/// # Errors
/// [`MapError::Storage`] if the reader fails; [`MapError::Corrupt`] if the
/// root node is inconsistent.
pub fn root<R: NodeReader>(reader: &R) -> Result<Hash, MapError> {
    Ok(read(reader, &NodeId::root())?.map_or(EMPTY, |n| n.hash()))
}

/// The value stored under `key`, if any. Reads one node per level of the
/// key's path.
///
/// # Errors
/// [`MapError::Storage`] if the reader fails; [`MapError::Corrupt`] if the
/// stored nodes are inconsistent.
pub fn get<R: NodeReader>(reader: &R, key: &Hash) -> Result<Option<Vec<u8>>, MapError> {
    let mut id = NodeId::root();
    loop {
        match read(reader, &id)? {
            None => return Ok(None),
            Some(Node::Leaf { key: k, value }) => return Ok((k == *key).then_some(value)),
            Some(Node::Interior(_)) => {
                id = id.child(key_bit(key, id.depth)).ok_or(MapError::Corrupt {
                    id,
                    reason: "interior node at depth 256",
                })?;
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Update
// ---------------------------------------------------------------------------

/// The result of [`update`]: the new root and the node writes that turn the
/// stored tree into the new tree.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MapUpdate {
    /// The new map root.
    pub root: Hash,
    /// Nodes to put (`Some`) or delete (`None`), each id at most once, children
    /// before parents. Insert-only updates never delete (a subtree's key count
    /// only grows, so no stored node disappears: a leaf's position becomes an
    /// interior node and the leaf moves deeper), so today every entry is
    /// `Some`; storage must still honour `None`.
    pub writes: Vec<(NodeId, Option<Node>)>,
}

impl MapUpdate {
    /// Applies the writes to an in-memory node map.
    pub fn apply_to(&self, nodes: &mut BTreeMap<NodeId, Node>) {
        for (id, node) in &self.writes {
            match node {
                Some(n) => {
                    nodes.insert(*id, n.clone());
                }
                None => {
                    nodes.remove(id);
                }
            }
        }
    }
}

/// A subtree during [`update`]: before (as stored) or after (as built).
enum Subtree {
    Empty,
    /// Exactly one key. `stored` = a leaf with this exact key and value is
    /// already stored at this subtree's own position.
    Leaf {
        key: Hash,
        value: Vec<u8>,
        stored: bool,
    },
    /// ≥ 2 keys; the interior node is (or has just been written) at this
    /// position.
    Interior(Hash),
}

impl Subtree {
    fn from_stored(node: Option<Node>) -> Subtree {
        match node {
            None => Subtree::Empty,
            Some(Node::Interior(h)) => Subtree::Interior(h),
            Some(Node::Leaf { key, value }) => Subtree::Leaf {
                key,
                value,
                stored: true,
            },
        }
    }
}

type Writes = Vec<(NodeId, Option<Node>)>;

/// Inserts or changes keys. `updates` are (key, new value) pairs in any
/// order; if a key appears more than once the **last** occurrence wins.
/// Keys are never removed.
///
/// Reads only the nodes on the touched paths and their siblings: the updates
/// are sorted and the tree is walked once, partitioning the sorted updates by
/// the key bit at each depth, so shared path prefixes are read and hashed
/// once. Subtrees without updates are not entered. An insert that meets a
/// subtree represented by a single other leaf pushes that leaf down to the
/// depth where the two keys diverge.
///
/// # Errors
/// [`MapError::ValueTooLong`] if a value exceeds [`MAX_VALUE_LEN`] (checked
/// before any read); [`MapError::Storage`] if the reader fails;
/// [`MapError::Corrupt`] if the stored nodes are inconsistent.
pub fn update<R: NodeReader>(
    reader: &R,
    updates: &[(Hash, Vec<u8>)],
) -> Result<MapUpdate, MapError> {
    for (_, v) in updates {
        check_value_len(v)?;
    }
    // Stable sort by key, then keep the last occurrence of each key.
    let mut sorted: Vec<(Hash, &[u8])> = updates.iter().map(|(k, v)| (*k, v.as_slice())).collect();
    sorted.sort_by_key(|(k, _)| *k);
    let mut ups: Vec<(Hash, &[u8])> = Vec::with_capacity(sorted.len());
    for (k, v) in sorted {
        match ups.last_mut() {
            Some(last) if last.0 == k => last.1 = v,
            _ => ups.push((k, v)),
        }
    }

    let root_id = NodeId::root();
    let current = Subtree::from_stored(read(reader, &root_id)?);
    let mut writes = Writes::new();
    let built = build(reader, root_id, current, &ups, &mut writes)?;
    let root = place(root_id, built, &mut writes);
    Ok(MapUpdate { root, writes })
}

/// Records `sub` at position `id` if it is a leaf not yet stored there, and
/// returns its hash (EMPTY for an empty subtree).
fn place(id: NodeId, sub: Subtree, writes: &mut Writes) -> Hash {
    match sub {
        Subtree::Empty => EMPTY,
        Subtree::Interior(h) => h,
        Subtree::Leaf { key, value, stored } => {
            let h = leaf_hash(&key, &value);
            if !stored {
                writes.push((id, Some(Node::Leaf { key, value })));
            }
            h
        }
    }
}

/// Applies `ups` (sorted, unique, all under `id`) to the subtree `current`
/// at `id`. Interior nodes are written here; a resulting single leaf is
/// returned unplaced, because its position is decided by the parent.
fn build<R: NodeReader>(
    reader: &R,
    id: NodeId,
    current: Subtree,
    ups: &[(Hash, &[u8])],
    writes: &mut Writes,
) -> Result<Subtree, MapError> {
    if ups.is_empty() {
        return Ok(current);
    }
    // Outcomes with exactly one key: a leaf, placed by the caller.
    match (&current, ups) {
        (Subtree::Empty, [(k, v)]) => {
            return Ok(Subtree::Leaf {
                key: *k,
                value: v.to_vec(),
                stored: false,
            })
        }
        (Subtree::Leaf { key, value, stored }, [(k, v)]) if key == k => {
            return Ok(Subtree::Leaf {
                key: *k,
                value: v.to_vec(),
                stored: *stored && value.as_slice() == *v,
            })
        }
        _ => {}
    }
    // ≥ 2 keys: an interior node at `id`.
    let d = id.depth;
    let (left_id, right_id) = children_of(&id)?;
    let (old_hash, cur_l, cur_r) = match current {
        Subtree::Empty => (None, Subtree::Empty, Subtree::Empty),
        Subtree::Leaf { key, value, .. } => {
            // Push the lone leaf one level down; it is not stored there yet.
            let moved = Subtree::Leaf {
                key,
                value,
                stored: false,
            };
            if key_bit(&key, d) {
                (None, Subtree::Empty, moved)
            } else {
                (None, moved, Subtree::Empty)
            }
        }
        Subtree::Interior(h) => {
            let (l, r) = read_children(reader, &id)?;
            (Some(h), Subtree::from_stored(l), Subtree::from_stored(r))
        }
    };
    let split = ups.partition_point(|(k, _)| !key_bit(k, d));
    let (ups_l, ups_r) = ups.split_at(split);
    let new_l = build(reader, left_id, cur_l, ups_l, writes)?;
    let new_r = build(reader, right_id, cur_r, ups_r, writes)?;
    let hl = place(left_id, new_l, writes);
    let hr = place(right_id, new_r, writes);
    // SHA-256(0x11 ‖ left ‖ right)
    let h = interior_hash(&hl, &hr);
    if old_hash != Some(h) {
        writes.push((id, Some(Node::Interior(h))));
    }
    Ok(Subtree::Interior(h))
}

// ---------------------------------------------------------------------------
// Proofs
// ---------------------------------------------------------------------------

/// Where a proof's path ends.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Terminal {
    /// An empty subtree: the queried key is absent.
    Empty,
    /// A leaf: the queried key itself (membership) or another key on the
    /// queried key's path (non-membership).
    Leaf {
        /// The leaf's key.
        key: Hash,
        /// The leaf's value.
        value: Vec<u8>,
    },
}

/// A membership or non-membership proof for one key.
///
/// Encoding: `0x01 ‖ depth (u16 BE) ‖ bitmap (ceil(depth/8) bytes) ‖
/// siblings (32 bytes × popcount(bitmap)) ‖ 0x00` or
/// `… ‖ 0x01 ‖ key (32) ‖ value length (u16 BE) ‖ value`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MapProof {
    /// Depth of the terminal node, 0..=256.
    pub depth: u16,
    /// Bit `i` (MSB first) set iff the sibling at depth `i+1` is non-empty.
    /// `ceil(depth/8)` bytes, padding bits zero.
    pub bitmap: Vec<u8>,
    /// The non-empty siblings, top-down (increasing depth).
    pub siblings: Vec<Hash>,
    /// Where the path ends.
    pub terminal: Terminal,
}

const TERMINAL_EMPTY: u8 = 0x00;
const TERMINAL_LEAF: u8 = 0x01;

impl MapProof {
    /// The canonical binary encoding (see the type docs and `docs/MAP.md`).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(3 + self.bitmap.len() + 32 * self.siblings.len() + 36);
        out.push(PROOF_VERSION);
        out.extend_from_slice(&self.depth.to_be_bytes());
        out.extend_from_slice(&self.bitmap);
        for s in &self.siblings {
            out.extend_from_slice(&s.0);
        }
        match &self.terminal {
            Terminal::Empty => out.push(TERMINAL_EMPTY),
            Terminal::Leaf { key, value } => {
                out.push(TERMINAL_LEAF);
                out.extend_from_slice(&key.0);
                put_value(&mut out, value);
            }
        }
        out
    }

    /// Parses the encoding strictly. Checks syntax only; [`verify`] checks
    /// the rest.
    ///
    /// # Errors
    /// [`MapError::UnsupportedVersion`], [`MapError::DepthTooLarge`],
    /// [`MapError::NonzeroPadding`] (bitmap), [`MapError::UnknownTag`]
    /// (terminal), [`MapError::ValueTooLong`], [`MapError::Truncated`],
    /// [`MapError::TrailingBytes`].
    pub fn decode(bytes: &[u8]) -> Result<MapProof, MapError> {
        let mut r = Reader::new("map proof", bytes);
        let version = r.u8()?;
        if version != PROOF_VERSION {
            return Err(MapError::UnsupportedVersion { version });
        }
        let depth = r.u16()?;
        if depth > MAX_DEPTH {
            return Err(MapError::DepthTooLarge { depth });
        }
        let bitmap = r.take(bytes_for(depth))?.to_vec();
        if !padding_is_zero(&bitmap, depth) {
            return Err(MapError::NonzeroPadding {
                what: "proof bitmap",
                depth,
            });
        }
        let count = popcount(&bitmap);
        let mut siblings = Vec::with_capacity(count);
        for _ in 0..count {
            siblings.push(r.hash()?);
        }
        let terminal = match r.u8()? {
            TERMINAL_EMPTY => Terminal::Empty,
            TERMINAL_LEAF => {
                let key = r.hash()?;
                let value = r.value()?;
                Terminal::Leaf { key, value }
            }
            tag => {
                return Err(MapError::UnknownTag {
                    what: "proof terminal",
                    tag,
                })
            }
        };
        r.finish()?;
        Ok(MapProof {
            depth,
            bitmap,
            siblings,
            terminal,
        })
    }
}

fn popcount(bytes: &[u8]) -> usize {
    bytes.iter().map(|b| b.count_ones() as usize).sum()
}

/// Builds the proof for `key`: walks from the root along `key`'s bits to an
/// empty subtree or a leaf, collecting the non-empty siblings.
///
/// # Errors
/// [`MapError::Storage`] if the reader fails; [`MapError::Corrupt`] if the
/// stored nodes are inconsistent (e.g. an interior node without two
/// non-trivial children). Stored interior hashes are not re-checked; verify
/// the proof against the root to detect such corruption.
pub fn prove<R: NodeReader>(reader: &R, key: &Hash) -> Result<MapProof, MapError> {
    let mut id = NodeId::root();
    let mut node = read(reader, &id)?;
    let mut bitmap = [0u8; 32];
    let mut siblings = Vec::new();
    let terminal = loop {
        match node {
            None => break Terminal::Empty,
            Some(Node::Leaf { key: k, value }) => break Terminal::Leaf { key: k, value },
            Some(Node::Interior(_)) => {
                let (l, r) = read_children(reader, &id)?;
                let b = key_bit(key, id.depth);
                let (next, sib) = if b { (r, l) } else { (l, r) };
                let next_id = id.child(b).ok_or(MapError::Corrupt {
                    id,
                    reason: "interior node at depth 256",
                })?;
                if let Some(s) = sib {
                    // bit i of the bitmap ↔ sibling at depth i+1
                    set_bit(&mut bitmap, usize::from(id.depth));
                    siblings.push(s.hash());
                }
                id = next_id;
                node = next;
            }
        }
    };
    let bitmap = bitmap
        .get(..bytes_for(id.depth))
        .unwrap_or(&bitmap)
        .to_vec();
    Ok(MapProof {
        depth: id.depth,
        bitmap,
        siblings,
        terminal,
    })
}

/// The result of verifying a proof.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Lookup {
    /// The key maps to this value.
    Present(Vec<u8>),
    /// The key is not in the map.
    Absent,
}

/// Verifies `proof` for `key` against a trusted `root`.
///
/// Rules, in this order (each failure has its own error):
/// 1. `depth ≤ 256`; `bitmap.len() = ceil(depth/8)`; bitmap padding bits
///    zero; `siblings.len() = popcount(bitmap)`; a leaf value is at most
///    [`MAX_VALUE_LEN`] bytes.
/// 2. Canonical shape: no listed sibling equals EMPTY; if `depth ≥ 1` the
///    sibling at depth `depth` is present; a terminal `Empty` is not at depth
///    256.
/// 3. A terminal leaf's key shares the first `depth` bits with `key`.
/// 4. `h ← EMPTY` or `SHA-256(0x10 ‖ leaf key ‖ value)`; for `d = depth … 1`:
///    `h ← SHA-256(0x11 ‖ h ‖ s_d)` if bit `d-1` of `key` is 0, else
///    `SHA-256(0x11 ‖ s_d ‖ h)` (`s_d` = sibling at depth `d`, EMPTY if
///    absent); `h` must equal `root`.
///
/// Then a terminal leaf with `key` gives `Present(value)`; a terminal leaf
/// with another key, or `Empty`, gives `Absent`.
///
/// # Errors
/// [`MapError::DepthTooLarge`], [`MapError::BitmapLength`],
/// [`MapError::NonzeroPadding`], [`MapError::SiblingCount`],
/// [`MapError::ValueTooLong`], [`MapError::EmptySiblingListed`],
/// [`MapError::DeepestSiblingAbsent`], [`MapError::EmptyAtMaxDepth`],
/// [`MapError::LeafOffPath`], [`MapError::RootMismatch`].
pub fn verify(root: &Hash, key: &Hash, proof: &MapProof) -> Result<Lookup, MapError> {
    let depth = proof.depth;
    // Rule 1: structure.
    if depth > MAX_DEPTH {
        return Err(MapError::DepthTooLarge { depth });
    }
    let expected = bytes_for(depth);
    if proof.bitmap.len() != expected {
        return Err(MapError::BitmapLength {
            depth,
            expected,
            actual: proof.bitmap.len(),
        });
    }
    if !padding_is_zero(&proof.bitmap, depth) {
        return Err(MapError::NonzeroPadding {
            what: "proof bitmap",
            depth,
        });
    }
    let expected = popcount(&proof.bitmap);
    if proof.siblings.len() != expected {
        return Err(MapError::SiblingCount {
            expected,
            actual: proof.siblings.len(),
        });
    }
    if let Terminal::Leaf { value, .. } = &proof.terminal {
        check_value_len(value)?;
    }
    // Rule 2: canonical shape.
    let present = |d: u16| d >= 1 && bit_of(&proof.bitmap, usize::from(d - 1));
    let mut listed = proof.siblings.iter();
    for d in 1..=depth {
        if present(d) && listed.next() == Some(&EMPTY) {
            return Err(MapError::EmptySiblingListed { depth: d });
        }
    }
    if depth >= 1 && !present(depth) {
        return Err(MapError::DeepestSiblingAbsent { depth });
    }
    if depth == MAX_DEPTH && proof.terminal == Terminal::Empty {
        return Err(MapError::EmptyAtMaxDepth);
    }
    // Rule 3: the terminal leaf is on the queried key's path.
    let (mut h, lookup) = match &proof.terminal {
        Terminal::Empty => (EMPTY, Lookup::Absent),
        Terminal::Leaf { key: k, value } => {
            if !shares_prefix(k, key, depth) {
                return Err(MapError::LeafOffPath { depth });
            }
            let lookup = if k == key {
                Lookup::Present(value.clone())
            } else {
                Lookup::Absent
            };
            // SHA-256(0x10 ‖ key ‖ value)
            (leaf_hash(k, value), lookup)
        }
    };
    // Rule 4: hash up to the root.
    let mut listed = proof.siblings.iter().rev();
    for d in (1..=depth).rev() {
        let s = if present(d) {
            listed.next().copied().unwrap_or(EMPTY)
        } else {
            EMPTY
        };
        h = if key_bit(key, d - 1) {
            // SHA-256(0x11 ‖ s_d ‖ h)
            interior_hash(&s, &h)
        } else {
            // SHA-256(0x11 ‖ h ‖ s_d)
            interior_hash(&h, &s)
        };
    }
    if h != *root {
        return Err(MapError::RootMismatch {
            expected: *root,
            computed: h,
        });
    }
    Ok(lookup)
}

/// [`MapProof::decode`] then [`verify`].
///
/// # Errors
/// Any error of [`MapProof::decode`] or [`verify`].
pub fn verify_bytes(root: &Hash, key: &Hash, proof_bytes: &[u8]) -> Result<Lookup, MapError> {
    verify(root, key, &MapProof::decode(proof_bytes)?)
}

// ---------------------------------------------------------------------------
// Byte reading
// ---------------------------------------------------------------------------

fn put_value(out: &mut Vec<u8>, value: &[u8]) {
    // Callers only encode values ≤ MAX_VALUE_LEN; saturate rather than wrap.
    let len = u16::try_from(value.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
}

struct Reader<'a> {
    what: &'static str,
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(what: &'static str, bytes: &'a [u8]) -> Self {
        Reader { what, rest: bytes }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], MapError> {
        if self.rest.len() < n {
            return Err(MapError::Truncated {
                what: self.what,
                needed: n,
                available: self.rest.len(),
            });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, MapError> {
        Ok(self.take(1)?.first().copied().unwrap_or(0))
    }

    fn u16(&mut self) -> Result<u16, MapError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([
            b.first().copied().unwrap_or(0),
            b.get(1).copied().unwrap_or(0),
        ]))
    }

    fn hash(&mut self) -> Result<Hash, MapError> {
        let b = self.take(32)?;
        Hash::from_slice(b).ok_or(MapError::Truncated {
            what: self.what,
            needed: 32,
            available: b.len(),
        })
    }

    /// `length (u16 BE) ‖ value`, length ≤ MAX_VALUE_LEN.
    fn value(&mut self) -> Result<Vec<u8>, MapError> {
        let len = usize::from(self.u16()?);
        if len > MAX_VALUE_LEN {
            return Err(MapError::ValueTooLong {
                len,
                max: MAX_VALUE_LEN,
            });
        }
        Ok(self.take(len)?.to_vec())
    }

    /// The bytes not read yet.
    fn rest(self) -> &'a [u8] {
        self.rest
    }

    fn finish(self) -> Result<(), MapError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(MapError::TrailingBytes {
                what: self.what,
                extra: self.rest.len(),
            })
        }
    }
}

#[cfg(test)]
mod tests;
