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
use std::sync::Arc;

/// Levels of the map per page.
pub const PAGE_LEVELS: u16 = 4;

/// Positions in one page: 1 + 2 + 4 + 8.
const SLOTS: usize = (1 << PAGE_LEVELS) - 1;

/// A page: which nodes of its four levels are stored.
pub(crate) type Page = [Option<Node>; SLOTS];

/// Which page holds a node: named by the node at its top, whose depth is a
/// multiple of [`PAGE_LEVELS`] (the stratum times four).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct PageId(NodeId);

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

/// Strata kept decoded in memory by [`HotPages`]: depths 0 … 15.
const HOT_STRATA: u16 = 4;

/// Pages in the hot strata: 1 + 16 + 256 + 4096.
const HOT_PAGES: usize = ((1 << (4 * HOT_STRATA)) - 1) / 15;

/// Where a page of the hot strata sits in [`HotPages`]: the strata in
/// order, each by the integer its `4s` prefix bits read.
fn hot_index(id: &PageId) -> Option<usize> {
    let s = id.0.depth() / PAGE_LEVELS;
    if s >= HOT_STRATA {
        return None;
    }
    let p = id.0.prefix();
    // At most 12 prefix bits: the first two bytes hold them.
    let bits = usize::from(u16::from_be_bytes([p[0], p[1]])) >> (16 - 4 * s);
    Some(((1usize << (4 * s)) - 1) / 15 + bits)
}

/// The pages of the map's top [`HOT_STRATA`] strata as they are in the
/// store after the last committed batch, decoded. Every status proof and
/// every update walks them, so the ledger's writer keeps them in memory
/// ([`HotPages::load`] at open, [`HotPages::absorb`] after each commit) and
/// publishes each version with the checkpoint it belongs to; readers never
/// change them. A slot is `None` when the page is not known (then it is read
/// from the store); an absent page is known as an empty one.
#[derive(Clone, PartialEq)]
pub(crate) struct HotPages(Vec<Option<Arc<Page>>>);

impl HotPages {
    /// Nothing known: every page is read from the store.
    pub(crate) fn unknown() -> HotPages {
        HotPages(vec![None; HOT_PAGES])
    }

    /// Reads every page of the hot strata from `store`, top down; the
    /// children of an absent page are absent without a read.
    ///
    /// # Errors
    /// [`StoreError`] when a page cannot be read or decoded.
    pub(crate) fn load<S: ReadStore + ?Sized>(store: &S) -> Result<HotPages, StoreError> {
        let empty = Arc::new(Page::default());
        let mut hot = HotPages::unknown();
        let mut stratum = vec![PageId(NodeId::root())];
        for s in 0..HOT_STRATA {
            let mut next = Vec::new();
            for id in stratum {
                let page = read_page(store, &id)?;
                let present = page.is_some();
                if let Some(i) = hot_index(&id) {
                    hot.0[i] = Some(page.map_or_else(|| empty.clone(), Arc::new));
                }
                if present && s + 1 < HOT_STRATA {
                    next.extend((0..16u8).filter_map(|nibble| child_page(&id, nibble)));
                } else if s + 1 < HOT_STRATA {
                    mark_empty_below(&mut hot, &id, s, &empty);
                }
            }
            stratum = next;
        }
        Ok(hot)
    }

    /// This version with the pages a committed update read or wrote
    /// (`MapPages::into_pages`), which are the store's pages after it.
    pub(crate) fn absorb(&self, pages: HashMap<PageId, Page>) -> HotPages {
        let mut next = self.clone();
        for (id, page) in pages {
            if let Some(slot) = hot_index(&id).and_then(|i| next.0.get_mut(i)) {
                *slot = Some(Arc::new(page));
            }
        }
        next
    }

    fn get(&self, id: &PageId) -> Option<&Page> {
        self.0.get(hot_index(id)?)?.as_deref()
    }
}

/// The page below `id` along four more bits (`None` below depth 256).
fn child_page(id: &PageId, nibble: u8) -> Option<PageId> {
    let depth = id.0.depth();
    let mut prefix = *id.0.prefix();
    let byte = usize::from(depth / 8);
    let shift = if depth.is_multiple_of(8) { 4 } else { 0 };
    if let Some(b) = prefix.get_mut(byte) {
        *b |= nibble << shift;
    }
    NodeId::new(depth + PAGE_LEVELS, prefix).ok().map(PageId)
}

/// Marks every hot page under the absent page `id` (stratum `s`) empty.
fn mark_empty_below(hot: &mut HotPages, id: &PageId, s: u16, empty: &Arc<Page>) {
    for child in (0..16u8).filter_map(|nibble| child_page(id, nibble)) {
        if let Some(slot) = hot_index(&child).and_then(|i| hot.0.get_mut(i)) {
            *slot = Some(empty.clone());
        }
        if s + 2 < HOT_STRATA {
            mark_empty_below(hot, &child, s + 1, empty);
        }
    }
}

fn read_page<S: ReadStore + ?Sized>(store: &S, id: &PageId) -> Result<Option<Page>, StoreError> {
    match store.get(Space::MapPage, &id.key())? {
        None => Ok(None),
        Some(v) => decode_page(&v)
            .map(Some)
            .map_err(|e| StoreError::Io(format!("status map page {}: {e}", hex::encode(id.key())))),
    }
}

/// The status map's nodes in `store`, read (and, for one update, written)
/// page by page. Each page is read from the store at most once per value
/// of this type, so make one per update or per proof; pages of the hot
/// strata come from [`HotPages`] when it knows them.
pub(crate) struct MapPages<'a, S: ReadStore + ?Sized> {
    store: &'a S,
    hot: Option<&'a HotPages>,
    pages: RefCell<HashMap<PageId, Page>>,
}

impl<'a, S: ReadStore + ?Sized> MapPages<'a, S> {
    #[cfg(test)]
    pub(crate) fn new(store: &'a S) -> Self {
        MapPages {
            store,
            hot: None,
            pages: RefCell::default(),
        }
    }

    /// Reads through `hot`, which must hold the store's pages as they are
    /// (the writer's current version), or as they were at the checkpoint a
    /// reader serves: proofs are verified against that checkpoint's root
    /// before they are served.
    pub(crate) fn with_hot(store: &'a S, hot: &'a HotPages) -> Self {
        MapPages {
            store,
            hot: Some(hot),
            pages: RefCell::default(),
        }
    }

    /// The pages read or written, as they are after this update's writes.
    pub(crate) fn into_pages(self) -> HashMap<PageId, Page> {
        self.pages.into_inner()
    }

    /// Runs `f` on the page, loading it first if needed.
    fn with_page<T>(&self, id: &PageId, f: impl FnOnce(&mut Page) -> T) -> Result<T, StoreError> {
        let mut pages = self.pages.borrow_mut();
        if let Some(p) = pages.get_mut(id) {
            return Ok(f(p));
        }
        let mut page = match self.hot.and_then(|h| h.get(id)) {
            Some(p) => p.clone(),
            None => read_page(self.store, id)?.unwrap_or_default(),
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
        if let Some(p) = self.pages.borrow().get(&page) {
            return Ok(p.get(slot).cloned().flatten());
        }
        // A hot page is read in place, not copied: a copy is made only to
        // write it.
        if let Some(p) = self.hot.and_then(|h| h.get(&page)) {
            return Ok(p.get(slot).cloned().flatten());
        }
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

    /// Every page of the hot strata has its own place, in order.
    #[test]
    fn hot_pages_are_numbered_densely() {
        let mut seen = vec![false; HOT_PAGES];
        let mut stratum = vec![PageId(NodeId::root())];
        for s in 0..HOT_STRATA {
            let mut next = Vec::new();
            for id in &stratum {
                let i = hot_index(id).unwrap();
                assert!(!seen[i], "page {} numbered twice", hex::encode(id.key()));
                seen[i] = true;
                next.extend((0..16).filter_map(|n| child_page(id, n)));
            }
            assert_eq!(stratum.len(), 1 << (4 * s));
            stratum = next;
        }
        assert!(seen.iter().all(|s| *s));
        assert_eq!(hot_index(&stratum[0]), None);
        assert_eq!(stratum[0].0.depth(), 16);
        // The last page of stratum 3 has prefix bits 1111 1111 1111.
        assert_eq!(
            child_page(&PageId(NodeId::on_path(&Hash([0xff; 32]), 8).unwrap()), 15)
                .map(|p| hot_index(&p)),
            Some(Some(HOT_PAGES - 1))
        );
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
        // Kept across batches as the ledger's writer keeps it.
        let mut hot = HotPages::load(&store).unwrap();
        for batch_len in [1u32, 2, 7, 100, 1, 300, 50] {
            let updates: Vec<(Hash, Vec<u8>)> = (n..n + batch_len)
                .map(|i| (key(i % 350), i.to_be_bytes().to_vec()))
                .collect();
            n += batch_len;
            let pages = MapPages::with_hot(&store, &hot);
            let paged = smt::update(&pages, &updates).unwrap();
            let mut b = Batch::new();
            pages.write(&paged.writes, &mut b).unwrap();
            hot = hot.absorb(pages.into_pages());
            store.commit(b).unwrap();
            let plain = smt::update(&nodes, &updates).unwrap();
            plain.apply_to(&mut nodes);
            assert_eq!(paged, plain);
            assert!(hot == HotPages::load(&store).unwrap());
            for fresh in [MapPages::new(&store), MapPages::with_hot(&store, &hot)] {
                assert_eq!(smt::root(&fresh).unwrap(), paged.root);
                for i in [0, 5, 349, 1000] {
                    assert_eq!(
                        smt::prove(&fresh, &key(i)).unwrap(),
                        smt::prove(&nodes, &key(i)).unwrap()
                    );
                }
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
