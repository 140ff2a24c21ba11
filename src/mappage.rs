//! How the status map's nodes are laid out in the store: in pages of four
//! levels, so that an update writes one storage value per four levels of a
//! path instead of one per node.
//!
//! Architecture Invariant: a storage adapter only. It reads pages through
//! [`ReadStore`] and adds page writes to a [`Batch`] the ledger (or the
//! auditor, on its own state) commits; it never commits. The map itself
//! (hashing, proofs, update rules) is `smt`, which sees nodes through
//! [`NodeReader`] and does not know pages exist.
//!
//! Page `(s, p)` holds the nodes at depths `4s … 4s+3` whose first `4s`
//! bits are `p`: up to 15 positions (1 + 2 + 4 + 8). The node at depth
//! `4s + r` whose prefix bits `4s … 4s+r−1` read `b` (most significant
//! first) sits in slot `2^r − 1 + b`. Depth-256 nodes are page 64's slot 0.
//!
//! ```text
//! page key   = s (u8) ‖ p[0 .. ⌈4s/8⌉]          bits of p past 4s are 0
//! page value = slots (u16, bit i = slot i present; bit 15 is 0)
//!              ‖ for each present slot, in order: len (u16) ‖ node bytes
//! ```
//!
//! Node bytes are `smt::Node::encode`. A page with no node is deleted. The
//! layout is storage only: no hash, proof or wire format depends on it.

use crate::hash::Hash;
use crate::smt::{key_bit, Node, NodeId, NodeReader};
use crate::store::{Batch, ReadStore, Space, StoreError};
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};

/// Levels of the map per page.
pub const PAGE_LEVELS: u16 = 4;

/// Positions in one page: 1 + 2 + 4 + 8.
const SLOTS: usize = (1 << PAGE_LEVELS) - 1;

/// A page: which nodes of its four levels are stored.
type Page = [Option<Node>; SLOTS];

/// Which page holds a node: named by the node at its top, whose depth is a
/// multiple of [`PAGE_LEVELS`] (the stratum times four).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct PageId(NodeId);

impl PageId {
    fn key(&self) -> Vec<u8> {
        let bits = usize::from(self.0.depth());
        let prefix = self.0.prefix();
        let mut k = Vec::with_capacity(1 + bits.div_ceil(8));
        // At most 64: depth 256 / 4.
        k.push((self.0.depth() / PAGE_LEVELS) as u8);
        k.extend_from_slice(prefix.get(..bits.div_ceil(8)).unwrap_or(prefix));
        k
    }
}

/// The page and slot of a node.
fn locate(id: &NodeId) -> Result<(PageId, usize), StoreError> {
    let depth = id.depth();
    let base = depth / PAGE_LEVELS * PAGE_LEVELS;
    let prefix = Hash(*id.prefix());
    let top = NodeId::on_path(&prefix, base)
        .map_err(|e| StoreError::Io(format!("status map node {id}: {e}")))?;
    let bits = (base..depth).fold(0usize, |acc, i| acc << 1 | usize::from(key_bit(&prefix, i)));
    let slot = (1usize << (depth - base)) - 1 + bits;
    Ok((PageId(top), slot))
}

fn encode_page(page: &Page) -> Option<Vec<u8>> {
    let mut slots = 0u16;
    let mut body = Vec::new();
    for (i, node) in page.iter().enumerate() {
        if let Some(n) = node {
            slots |= 1 << i;
            let bytes = n.encode();
            // A node is at most 1 + 32 + 2 + 1024 bytes.
            body.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
            body.extend_from_slice(&bytes);
        }
    }
    if slots == 0 {
        return None;
    }
    let mut out = Vec::with_capacity(2 + body.len());
    out.extend_from_slice(&slots.to_be_bytes());
    out.extend_from_slice(&body);
    Some(out)
}

fn decode_page(bytes: &[u8]) -> Result<Page, String> {
    let (head, mut rest) = bytes.split_at_checked(2).ok_or("truncated slot bitmap")?;
    let slots = u16::from_be_bytes([head[0], head[1]]);
    if slots == 0 || slots >> SLOTS != 0 {
        return Err(format!("invalid slot bitmap {slots:#06x}"));
    }
    let mut page: Page = Default::default();
    for (i, slot) in page.iter_mut().enumerate() {
        if slots & (1 << i) == 0 {
            continue;
        }
        let (len, tail) = rest.split_at_checked(2).ok_or("truncated node length")?;
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        let (node, tail) = tail.split_at_checked(len).ok_or("truncated node")?;
        *slot = Some(Node::decode(node).map_err(|e| format!("slot {i}: {e}"))?);
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(format!("{} trailing bytes", rest.len()));
    }
    Ok(page)
}

/// The status map's nodes in `store`, read (and, for one update, written)
/// page by page. Each page is read from the store at most once per value
/// of this type, so make one per update or per proof.
pub(crate) struct MapPages<'a, S: ReadStore + ?Sized> {
    store: &'a S,
    pages: RefCell<HashMap<PageId, Page>>,
}

impl<'a, S: ReadStore + ?Sized> MapPages<'a, S> {
    pub(crate) fn new(store: &'a S) -> Self {
        MapPages {
            store,
            pages: RefCell::default(),
        }
    }

    /// Runs `f` on the page, loading it first if needed.
    fn with_page<T>(&self, id: &PageId, f: impl FnOnce(&mut Page) -> T) -> Result<T, StoreError> {
        let mut pages = self.pages.borrow_mut();
        if let Some(p) = pages.get_mut(id) {
            return Ok(f(p));
        }
        let mut page = match self.store.get(Space::MapPage, &id.key())? {
            None => Page::default(),
            Some(v) => decode_page(&v).map_err(|e| {
                StoreError::Io(format!("status map page {}: {e}", hex::encode(id.key())))
            })?,
        };
        let out = f(&mut page);
        pages.insert(*id, page);
        Ok(out)
    }

    /// Adds to `batch` the page writes that carry out `writes` (an
    /// `smt::update` result). Reads the pages it changes but has not seen.
    ///
    /// # Errors
    /// [`StoreError`] when a page cannot be read or decoded.
    pub(crate) fn write(
        &self,
        writes: &[(NodeId, Option<Node>)],
        batch: &mut Batch,
    ) -> Result<(), StoreError> {
        let mut dirty = BTreeSet::new();
        for (id, node) in writes {
            let (page, slot) = locate(id)?;
            self.with_page(&page, |p| {
                if let Some(s) = p.get_mut(slot) {
                    *s = node.clone();
                }
            })?;
            dirty.insert(page);
        }
        let pages = self.pages.borrow();
        for id in dirty {
            match pages.get(&id).and_then(encode_page) {
                Some(bytes) => batch.put(Space::MapPage, id.key(), bytes),
                None => batch.delete(Space::MapPage, id.key()),
            }
        }
        Ok(())
    }
}

impl<S: ReadStore + ?Sized> NodeReader for MapPages<'_, S> {
    type Error = StoreError;
    fn get_node(&self, id: &NodeId) -> Result<Option<Node>, StoreError> {
        let (page, slot) = locate(id)?;
        self.with_page(&page, |p| p.get(slot).cloned().flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smt;
    use crate::store::{MemStore, Store};
    use std::collections::BTreeMap;

    fn key(i: u32) -> Hash {
        smt::map_key(&crate::hash::leaf_hash(&i.to_be_bytes()).0)
    }

    #[test]
    fn slots_follow_the_layout() {
        let k = Hash([0b1011_0110; 32]);
        let at = |d| locate(&NodeId::on_path(&k, d).unwrap()).unwrap();
        assert_eq!(at(0).1, 0);
        assert_eq!(at(1).1, 1 + 1); // bit 0 = 1
        assert_eq!(at(2).1, 3 + 0b10);
        assert_eq!(at(3).1, 7 + 0b101);
        assert_eq!(at(4).1, 0);
        assert_eq!(at(4).0.key(), vec![1, 0b1011_0000]);
        assert_eq!(at(7).1, 7 + 0b011);
        assert_eq!(at(8).0.key(), vec![2, 0b1011_0110]);
        assert_eq!(at(256).0.key().len(), 33);
        assert_eq!(at(256).0.key()[0], 64);
        assert_eq!(at(256).1, 0);
    }

    #[test]
    fn pages_round_trip_and_decoding_is_strict() {
        let mut page: Page = Default::default();
        page[0] = Some(Node::Interior(Hash([7; 32])));
        page[14] = Some(Node::Leaf {
            key: Hash([1; 32]),
            value: vec![1, 2, 3],
        });
        let bytes = encode_page(&page).unwrap();
        assert_eq!(&bytes[..2], &[0x40, 0x01]);
        assert_eq!(decode_page(&bytes).unwrap(), page);
        assert!(decode_page(&bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode_page(&longer).is_err());
        assert!(decode_page(&[0x80, 0x00]).is_err());
        assert!(decode_page(&[0, 0]).is_err());
        assert_eq!(encode_page(&Page::default()), None);
    }

    /// Updates through pages give the same tree, root and proofs as the
    /// node-by-node map, over several batches.
    #[test]
    fn paged_map_equals_the_node_map() {
        let store = MemStore::new();
        let mut nodes: BTreeMap<NodeId, Node> = BTreeMap::new();
        let mut n = 0u32;
        for batch_len in [1u32, 2, 7, 100, 1, 300, 50] {
            let updates: Vec<(Hash, Vec<u8>)> = (n..n + batch_len)
                .map(|i| (key(i % 350), i.to_be_bytes().to_vec()))
                .collect();
            n += batch_len;
            let pages = MapPages::new(&store);
            let paged = smt::update(&pages, &updates).unwrap();
            let mut b = Batch::new();
            pages.write(&paged.writes, &mut b).unwrap();
            store.commit(b).unwrap();
            let plain = smt::update(&nodes, &updates).unwrap();
            plain.apply_to(&mut nodes);
            assert_eq!(paged, plain);
            let fresh = MapPages::new(&store);
            assert_eq!(smt::root(&fresh).unwrap(), paged.root);
            for i in [0, 5, 349, 1000] {
                assert_eq!(
                    smt::prove(&fresh, &key(i)).unwrap(),
                    smt::prove(&nodes, &key(i)).unwrap()
                );
            }
        }
        for (id, node) in &nodes {
            assert_eq!(
                MapPages::new(&store).get_node(id).unwrap().as_ref(),
                Some(node)
            );
        }
    }
}
