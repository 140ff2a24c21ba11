//! How the status map's nodes are laid out in the store: in pages of four
//! levels, so that an update or a proof reads one storage value per four
//! levels of a path instead of one or two per node.
//!
//! Architecture Invariant: a storage adapter only. It reads pages through
//! [`ReadStore`] and adds page writes to a [`Batch`] the ledger (or the
//! auditor, on its own state) commits; it never commits. The map itself
//! (hashing, proofs, update rules) is `smt`, which sees nodes through
//! [`NodeReader`] and does not know pages exist.
//!
//! Layout 3. Page `(s, p)` (`p` = the first `4s` bits of a path) holds the
//! nodes at depths `4s+1 … 4s+4` below `p`: up to 30 positions
//! (2 + 4 + 8 + 16), and page `(0, ε)` also holds the root. A page thus
//! holds both children of every node whose children it holds any of, so
//! walking a path (an update needs the sibling of every node on it, a proof
//! too) reads one page per four levels. The node at depth `d` sits in
//! stratum `s = ⌊(d−1)/4⌋` (0 for the root); if its prefix bits
//! `4s … d−1` read `b` (most significant first), it is slot
//! `2^(d−4s) − 1 + b`. Depth-256 nodes are in stratum 63.
//!
//! ```text
//! page key   = s (u8) ‖ p[0 .. ⌈4s/8⌉]          bits of p past 4s are 0
//! page value = slots (u32, bit i = slot i present; bit 31 is 0, and bit 0
//!              only in page (0, ε))
//!              ‖ for each present slot, in order, its node bytes (they
//!              say their own length)
//! layout key = 0xff (one byte), value 0x03: written with the first page
//! ```
//!
//! Node bytes are `smt::Node::encode`. A page with no node is deleted. The
//! layout is storage only: no hash, proof or wire format depends on it.
//! Other layouts are refused with an error at open: layout 1 (until
//! 2026-12-01: pages of depths `4s … 4s+3`, a `u16` bitmap, no layout key)
//! and layout 2 (for some hours on 2026-12-01: this one with a `u16` length
//! before each node).

use crate::hash::Hash;
use crate::smt::{key_bit, Node, NodeId, NodeReader};
use crate::store::{Batch, ReadStore, Space, StoreError};
use rustc_hash::FxHashMap;
use std::cell::RefCell;
use std::sync::Arc;

/// Levels of the map per page.
pub const PAGE_LEVELS: u16 = 4;

/// Positions in one page: the node above the page (used in the root page
/// only), then 2 + 4 + 8 + 16.
const SLOTS: usize = (1 << (PAGE_LEVELS + 1)) - 1;

/// A page: which nodes of its levels are stored.
pub(crate) type Page = [Option<Node>; SLOTS];

/// The key in [`Space::MapPage`] that records the layout (no page key is
/// one byte long with this value: strata are 0 … 63).
const LAYOUT_KEY: &[u8] = &[0xff];

/// The layout this build reads and writes.
const LAYOUT: &[u8] = &[3];

/// Which page holds a node: named by the node just above the page, whose
/// depth is a multiple of [`PAGE_LEVELS`] (the stratum times four).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub(crate) struct PageId(NodeId);

impl PageId {
    fn key(&self) -> Vec<u8> {
        let bits = usize::from(self.0.depth());
        let prefix = self.0.prefix();
        let mut k = Vec::with_capacity(1 + bits.div_ceil(8));
        // At most 63: depth 252 / 4.
        k.push((self.0.depth() / PAGE_LEVELS) as u8);
        k.extend_from_slice(prefix.get(..bits.div_ceil(8)).unwrap_or(prefix));
        k
    }
}

/// The page and slot of a node.
fn locate(id: &NodeId) -> Result<(PageId, usize), StoreError> {
    let depth = id.depth();
    let base = depth.saturating_sub(1) / PAGE_LEVELS * PAGE_LEVELS;
    let prefix = Hash(*id.prefix());
    let top = NodeId::on_path(&prefix, base)
        .map_err(|e| StoreError::Io(format!("status map node {id}: {e}")))?;
    let bits = (base..depth).fold(0usize, |acc, i| acc << 1 | usize::from(key_bit(&prefix, i)));
    let slot = (1usize << (depth - base)) - 1 + bits;
    Ok((PageId(top), slot))
}

fn encode_page(page: &Page) -> Option<Vec<u8>> {
    let mut slots = 0u32;
    let mut len = 4;
    for (i, node) in page.iter().enumerate() {
        if let Some(n) = node {
            slots |= 1 << i;
            len += n.encoded_len();
        }
    }
    if slots == 0 {
        return None;
    }
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&slots.to_be_bytes());
    for n in page.iter().flatten() {
        // Self-delimiting: the tag gives the length (a leaf's value has its own).
        n.encode_into(&mut out);
    }
    Some(out)
}

/// Decodes the page `id`.
fn decode_page(id: &PageId, bytes: &[u8]) -> Result<Page, String> {
    let (head, mut rest) = bytes.split_at_checked(4).ok_or("truncated slot bitmap")?;
    let slots = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let above = u32::from(id.0.depth() != 0);
    if slots == 0 || slots >> SLOTS != 0 || slots & above != 0 {
        return Err(format!("invalid slot bitmap {slots:#010x}"));
    }
    let mut page: Page = Default::default();
    for (i, slot) in page.iter_mut().enumerate() {
        if slots & (1 << i) == 0 {
            continue;
        }
        let (node, tail) = Node::decode_prefix(rest).map_err(|e| format!("slot {i}: {e}"))?;
        *slot = Some(node);
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(format!("{} trailing bytes", rest.len()));
    }
    Ok(page)
}

/// Strata kept decoded in memory by [`HotPages`]: depths 0 … 16.
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
pub struct HotPages(Vec<Option<Arc<Page>>>);

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
    pub fn load<S: ReadStore + ?Sized>(store: &S) -> Result<HotPages, StoreError> {
        let empty = Arc::new(Page::default());
        let mut hot = HotPages::unknown();
        let mut stratum = vec![PageId(NodeId::root())];
        for s in 0..HOT_STRATA {
            let mut next = Vec::new();
            for id in stratum {
                let raw = store.get(Space::MapPage, &id.key())?;
                if s == 0 && raw.is_some() {
                    // Before the root page is decoded: another layout's
                    // bytes would only fail to decode.
                    check_layout(store)?;
                }
                let page = raw.map(|v| decode_stored(&id, &v)).transpose()?;
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
    pub(crate) fn absorb(&self, pages: FxHashMap<PageId, Arc<Page>>) -> HotPages {
        let mut next = self.clone();
        for (id, page) in pages {
            if let Some(slot) = hot_index(&id).and_then(|i| next.0.get_mut(i)) {
                *slot = Some(page);
            }
        }
        next
    }

    fn get(&self, id: &PageId) -> Option<&Arc<Page>> {
        self.0.get(hot_index(id)?)?.as_ref()
    }
}

/// Refuses a store that holds map pages (its root page exists) unless its
/// layout key says [`LAYOUT`].
fn check_layout<S: ReadStore + ?Sized>(store: &S) -> Result<(), StoreError> {
    match store.get(Space::MapPage, LAYOUT_KEY)? {
        Some(v) if v == LAYOUT => Ok(()),
        Some(v) => Err(StoreError::Io(format!(
            "the status map's pages are in layout {}; this build reads layout {}",
            hex::encode(v),
            LAYOUT[0]
        ))),
        None => Err(StoreError::Io(format!(
            "the status map's pages are in layout 1 (written before 2026-12-01); this build \
             reads layout {} only, and no converter exists yet",
            LAYOUT[0]
        ))),
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
    store
        .get(Space::MapPage, &id.key())?
        .map(|v| decode_stored(id, &v))
        .transpose()
}

/// Decodes the stored value of page `id`, naming the page in the error.
fn decode_stored(id: &PageId, bytes: &[u8]) -> Result<Page, StoreError> {
    decode_page(id, bytes)
        .map_err(|e| StoreError::Io(format!("status map page {}: {e}", hex::encode(id.key()))))
}

/// The status map's nodes in `store`, read (and, for one update, written)
/// page by page. Each page is read from the store at most once per value
/// of this type, so make one per update or per proof; pages of the hot
/// strata come from [`HotPages`] when it knows them.
pub struct MapPages<'a, S: ReadStore + ?Sized> {
    store: &'a S,
    hot: Option<&'a HotPages>,
    /// The pages read or written so far. A page is kilobytes decoded:
    /// each is shared (with [`HotPages`] when it came from there) until it
    /// is written, and moved only as a pointer. Page ids are hashes of
    /// map keys, so a fast non-keyed hasher is enough.
    pages: RefCell<FxHashMap<PageId, Arc<Page>>>,
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
    pub fn with_hot(store: &'a S, hot: &'a HotPages) -> Self {
        MapPages {
            store,
            hot: Some(hot),
            pages: RefCell::default(),
        }
    }

    /// The pages read or written, as they are after this update's writes.
    pub(crate) fn into_pages(self) -> FxHashMap<PageId, Arc<Page>> {
        self.pages.into_inner()
    }

    /// Runs `f` on the page to change it, loading it first if needed.
    fn with_page<T>(&self, id: &PageId, f: impl FnOnce(&mut Page) -> T) -> Result<T, StoreError> {
        let mut pages = self.pages.borrow_mut();
        if let Some(p) = pages.get_mut(id) {
            return Ok(f(Arc::make_mut(p)));
        }
        let mut page = match self.hot.and_then(|h| h.get(id)) {
            Some(p) => p.clone(),
            None => Arc::new(read_page(self.store, id)?.unwrap_or_default()),
        };
        let out = f(Arc::make_mut(&mut page));
        pages.insert(*id, page);
        Ok(out)
    }

    /// Adds to `batch` the page writes that carry out `writes` (an
    /// `smt::update` result). Reads the pages it changes but has not seen.
    ///
    /// # Errors
    /// [`StoreError`] when a page cannot be read or decoded.
    pub fn write(
        &self,
        writes: &[(NodeId, Option<Node>)],
        batch: &mut Batch,
    ) -> Result<(), StoreError> {
        let root = PageId(NodeId::root());
        if !writes.is_empty() && self.with_page(&root, |p| p.iter().all(Option::is_none))? {
            // The map's first nodes: the store gets its layout key with them.
            batch.put(Space::MapPage, LAYOUT_KEY, LAYOUT);
        }
        let dirty = self.stage(writes)?;
        let pages = self.pages.borrow();
        for id in dirty {
            put_page(&id, pages.get(&id).map(|p| &**p), batch);
        }
        Ok(())
    }

    /// Carries out `writes` (an `smt::update` result) on this value's
    /// pages only, reading those it has not seen; returns the pages
    /// changed, in key order. [`MapPages::write`] then encodes them, or a
    /// [`PageCache`] keeps them decoded for the next update.
    ///
    /// # Errors
    /// [`StoreError`] when a page cannot be read or decoded.
    pub(crate) fn stage(
        &self,
        writes: &[(NodeId, Option<Node>)],
    ) -> Result<Vec<PageId>, StoreError> {
        self.know_empty_pages(writes)?;
        let mut dirty = Vec::with_capacity(writes.len());
        for (id, node) in writes {
            let (page, slot) = locate(id)?;
            self.with_page(&page, |p| {
                if let Some(s) = p.get_mut(slot) {
                    *s = node.clone();
                }
            })?;
            dirty.push(page);
        }
        // In key order: the index takes sorted writes best.
        dirty.sort_unstable();
        dirty.dedup();
        Ok(dirty)
    }
}

impl<S: ReadStore + ?Sized> MapPages<'_, S> {
    /// Marks empty, without reading the store, each page that `writes`
    /// (an update, before it is staged) puts nodes into and that is not
    /// held yet, when the node just above the page was not an interior
    /// node before the update: the map keeps no node below a leaf or an
    /// empty position. These are the pages under a new leaf's split,
    /// which the update never read (they did not exist), and a read of an
    /// absent key costs the index a full search. Shallow pages first, so
    /// that a page known empty tells about the pages under it.
    fn know_empty_pages(&self, writes: &[(NodeId, Option<Node>)]) -> Result<(), StoreError> {
        let mut unread = Vec::new();
        {
            let pages = self.pages.borrow();
            for (id, _) in writes {
                let (page, _) = locate(id)?;
                let held =
                    pages.contains_key(&page) || self.hot.and_then(|h| h.get(&page)).is_some();
                if !held && page.0.depth() > 0 {
                    unread.push(page);
                }
            }
        }
        unread.sort_unstable_by_key(|p| (p.0.depth(), *p));
        unread.dedup();
        let mut pages = self.pages.borrow_mut();
        for page in unread {
            let (parent, slot) = locate(&page.0)?;
            let above = pages
                .get(&parent)
                .or_else(|| self.hot.and_then(|h| h.get(&parent)));
            let interior_above = match above {
                Some(p) => matches!(p.get(slot), Some(Some(Node::Interior(_)))),
                // Not read: say nothing, the page is read when staged.
                None => true,
            };
            if !interior_above {
                pages
                    .entry(page)
                    .or_insert_with(|| Arc::new(Page::default()));
            }
        }
        Ok(())
    }
}

/// Puts page `id` into `batch`, or deletes it when it holds no node.
fn put_page(id: &PageId, page: Option<&Page>, batch: &mut Batch) {
    match page.and_then(encode_page) {
        Some(bytes) => batch.put(Space::MapPage, id.key(), bytes),
        None => batch.delete(Space::MapPage, id.key()),
    }
}

/// Decoded map pages carried from one update to the next by a replay that
/// commits many updates at once (the auditor's): the pages an update
/// changed are encoded once per commit, not once per update, and neither
/// they nor the pages it read are decoded again by the next update. Each
/// page has one owner at a time (the cache, or the update it is lent to),
/// so changing it copies nothing.
#[derive(Default)]
pub(crate) struct PageCache {
    pages: FxHashMap<PageId, Arc<Page>>,
    /// Pages changed since the last [`PageCache::write`].
    dirty: Vec<PageId>,
}

impl PageCache {
    /// An empty cache over the map in `store`, whose layout it checks.
    ///
    /// # Errors
    /// [`StoreError`] when the store holds pages in another layout.
    pub(crate) fn open<S: ReadStore + ?Sized>(store: &S) -> Result<PageCache, StoreError> {
        if store
            .get(Space::MapPage, &PageId(NodeId::root()).key())?
            .is_some()
        {
            check_layout(store)?;
        }
        Ok(PageCache::default())
    }

    /// Pages held, changed or not.
    pub(crate) fn len(&self) -> usize {
        self.pages.len()
    }

    /// The map over `store` as this cache and its changes make it, for one
    /// update: its pages are lent to it until [`PageCache::keep`]. If the
    /// update fails, drop the cache with everything not yet committed: the
    /// changed pages went with the map.
    pub(crate) fn lend<'a, S: ReadStore + ?Sized>(&mut self, store: &'a S) -> MapPages<'a, S> {
        MapPages {
            store,
            hot: None,
            pages: RefCell::new(std::mem::take(&mut self.pages)),
        }
    }

    /// Takes back the pages lent to `map`, which changed `dirty` (from
    /// [`MapPages::stage`]).
    pub(crate) fn keep<S: ReadStore + ?Sized>(&mut self, map: MapPages<'_, S>, dirty: Vec<PageId>) {
        self.pages = map.into_pages();
        self.dirty.extend(dirty);
    }

    /// Adds the changed pages to `batch` as [`MapPages::write`] would have,
    /// in key order, with the layout key; then forgets every page below the
    /// hot strata, which bounds the cache to what the next commit changes.
    pub(crate) fn write(&mut self, batch: &mut Batch) {
        if !self.dirty.is_empty() {
            batch.put(Space::MapPage, LAYOUT_KEY, LAYOUT);
        }
        self.dirty.sort_unstable();
        self.dirty.dedup();
        for id in self.dirty.drain(..) {
            put_page(&id, self.pages.get(&id).map(|p| &**p), batch);
        }
        self.pages.retain(|id, _| hot_index(id).is_some());
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
        assert_eq!(at(0), (PageId(NodeId::root()), 0));
        assert_eq!(at(1), (PageId(NodeId::root()), 1 + 1)); // bit 0 = 1
        assert_eq!(at(2).1, 3 + 0b10);
        assert_eq!(at(3).1, 7 + 0b101);
        assert_eq!(at(4), (PageId(NodeId::root()), 15 + 0b1011));
        // Both children of a node are in one page.
        let sibling = NodeId::on_path(&k, 4).unwrap().sibling().unwrap();
        assert_eq!(
            locate(&sibling).unwrap(),
            (PageId(NodeId::root()), 15 + 0b1010)
        );
        assert_eq!(at(5).0.key(), vec![1, 0b1011_0000]);
        assert_eq!(at(5).1, 1);
        assert_eq!(at(8).0.key(), vec![1, 0b1011_0000]);
        assert_eq!(at(8).1, 15 + 0b0110);
        assert_eq!(at(9).0.key(), vec![2, 0b1011_0110]);
        assert_eq!(at(256).0.key().len(), 33);
        assert_eq!(at(256).0.key()[0], 63);
        assert_eq!(at(256).1, 15 + 0b0110);
        assert_eq!(at(253).1, 1);
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
        let root = PageId(NodeId::root());
        let lower = PageId(NodeId::on_path(&Hash([0; 32]), 4).unwrap());
        let mut page: Page = Default::default();
        page[0] = Some(Node::Interior(Hash([7; 32])));
        page[30] = Some(Node::Leaf {
            key: Hash([1; 32]),
            value: vec![1, 2, 3],
        });
        let bytes = encode_page(&page).unwrap();
        // bitmap ‖ 11 ‖ 7×32 ‖ 10 ‖ 1×32 ‖ 0003 ‖ 010203: no length fields.
        let mut want = vec![0x40, 0, 0, 0x01, 0x11];
        want.extend_from_slice(&[7; 32]);
        want.push(0x10);
        want.extend_from_slice(&[1; 32]);
        want.extend_from_slice(&[0, 3, 1, 2, 3]);
        assert_eq!(bytes, want);
        assert_eq!(decode_page(&root, &bytes).unwrap(), page);
        // An unknown tag, a value running past the end.
        let mut bad = bytes.clone();
        bad[4] = 0x12;
        assert!(decode_page(&root, &bad).is_err());
        let mut bad = bytes.clone();
        bad[4 + 33 + 1 + 32 + 1] = 4;
        assert!(decode_page(&root, &bad).is_err());
        // Slot 0 is the root: no other page has it.
        assert!(decode_page(&lower, &bytes).is_err());
        page[0] = None;
        let bytes = encode_page(&page).unwrap();
        assert_eq!(decode_page(&lower, &bytes).unwrap(), page);
        assert!(decode_page(&lower, &bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode_page(&lower, &longer).is_err());
        assert!(decode_page(&root, &[0x80, 0, 0, 0]).is_err());
        assert!(decode_page(&root, &[0, 0, 0, 0]).is_err());
        assert!(decode_page(&root, &[0, 1]).is_err());
        assert_eq!(encode_page(&Page::default()), None);
    }

    /// A store in layout 1 (no layout key) is refused at open; a new one
    /// gets the key with its first nodes.
    #[test]
    fn the_layout_is_recorded_and_checked() {
        let store = MemStore::new();
        assert!(HotPages::load(&store).is_ok());
        let mut b = Batch::new();
        b.put(Space::MapPage, vec![0], vec![0x00, 0x01, 0x00, 0x21]);
        store.commit(b).unwrap();
        let err = HotPages::load(&store).err().unwrap().to_string();
        assert!(err.contains("layout 1"), "{err}");

        let store = MemStore::new();
        let hot = HotPages::load(&store).unwrap();
        let pages = MapPages::with_hot(&store, &hot);
        let up = smt::update(&pages, &[(key(1), vec![1])]).unwrap();
        let mut b = Batch::new();
        pages.write(&up.writes, &mut b).unwrap();
        store.commit(b).unwrap();
        assert_eq!(
            store.get(Space::MapPage, LAYOUT_KEY).unwrap(),
            Some(vec![3])
        );
        assert!(HotPages::load(&store).is_ok());
        // Later batches do not write it again.
        let hot = HotPages::load(&store).unwrap();
        let pages = MapPages::with_hot(&store, &hot);
        let up = smt::update(&pages, &[(key(2), vec![2])]).unwrap();
        let mut b = Batch::new();
        pages.write(&up.writes, &mut b).unwrap();
        assert!(!b.is_empty());
        assert!(b.ops().iter().all(|(_, k, _)| k != LAYOUT_KEY));
        let mut b = Batch::new();
        b.put(Space::MapPage, LAYOUT_KEY.to_vec(), vec![2]);
        store.commit(b).unwrap();
        let err = HotPages::load(&store).err().unwrap().to_string();
        assert!(err.contains("layout 02"), "{err}");
        let err = PageCache::open(&store).err().unwrap().to_string();
        assert!(err.contains("layout 02"), "{err}");
    }

    /// The next `len` updates of a run over 350 keys (later ones change
    /// earlier keys), from update `n` on.
    fn next_updates(n: &mut u32, len: u32) -> Vec<(Hash, Vec<u8>)> {
        let updates = (*n..*n + len)
            .map(|i| (key(i % 350), i.to_be_bytes().to_vec()))
            .collect();
        *n += len;
        updates
    }

    /// One update as the ledger's writer makes it: through its hot pages,
    /// written and committed, then absorbed into them.
    fn update_and_commit(
        store: &MemStore,
        hot: &mut HotPages,
        updates: &[(Hash, Vec<u8>)],
    ) -> smt::MapUpdate {
        let pages = MapPages::with_hot(store, hot);
        let up = smt::update(&pages, updates).unwrap();
        let mut b = Batch::new();
        pages.write(&up.writes, &mut b).unwrap();
        *hot = hot.absorb(pages.into_pages());
        store.commit(b).unwrap();
        up
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
            let updates = next_updates(&mut n, batch_len);
            let paged = update_and_commit(&store, &mut hot, &updates);
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

    /// Reads of map pages the store does not hold, counted.
    struct CountingReads<'a> {
        inner: &'a MemStore,
        absent_pages: std::cell::Cell<u32>,
    }

    impl ReadStore for CountingReads<'_> {
        fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            let v = self.inner.get(space, key)?;
            if space == Space::MapPage && v.is_none() {
                self.absent_pages.set(self.absent_pages.get() + 1);
            }
            Ok(v)
        }
    }

    /// Keys that share ever longer prefixes with the first: each insert
    /// splits the last leaf further down, through pages that do not exist
    /// yet, below the hot strata. The update knows them empty without a
    /// read, and the map stays the node-by-node one.
    #[test]
    fn a_deep_split_reads_no_page_that_does_not_exist() {
        let store = MemStore::new();
        let mut hot = HotPages::load(&store).unwrap();
        let mut nodes: BTreeMap<NodeId, Node> = BTreeMap::new();
        let base = key(7);
        for (i, bit) in [None, Some(18u16), Some(41), Some(77), Some(200), Some(255)]
            .into_iter()
            .enumerate()
        {
            let mut k = base;
            if let Some(b) = bit {
                k.0[usize::from(b / 8)] ^= 0x80 >> (b % 8);
            }
            let updates = vec![(k, vec![i as u8])];
            let reads = CountingReads {
                inner: &store,
                absent_pages: Default::default(),
            };
            let pages = MapPages::with_hot(&reads, &hot);
            let up = smt::update(&pages, &updates).unwrap();
            let mut b = Batch::new();
            pages.write(&up.writes, &mut b).unwrap();
            let next = hot.absorb(pages.into_pages());
            store.commit(b).unwrap();
            hot = next;
            assert_eq!(
                reads.absent_pages.get(),
                0,
                "insert {i}, split at bit {bit:?}"
            );
            let plain = smt::update(&nodes, &updates).unwrap();
            plain.apply_to(&mut nodes);
            assert_eq!(up, plain);
        }
        // Deep pages exist now, and hold exactly the node map's nodes.
        assert!(store
            .dump()
            .keys()
            .any(|k| k.len() > 2 && (40..64).contains(&k[1])));
        for (id, node) in &nodes {
            assert_eq!(
                MapPages::new(&store).get_node(id).unwrap().as_ref(),
                Some(node)
            );
        }
        assert_eq!(
            smt::root(&MapPages::new(&store)).unwrap(),
            smt::root(&nodes).unwrap()
        );
    }

    /// The auditor's way (pages kept decoded, written at commits only)
    /// stores byte for byte what the ledger's way (pages written with every
    /// update) stores, at every commit.
    #[test]
    fn a_page_cache_commits_what_per_update_writes_commit() {
        let per_update = MemStore::new();
        let cached = MemStore::new();
        let mut hot = HotPages::load(&per_update).unwrap();
        let mut cache = PageCache::open(&cached).unwrap();
        let mut overlay = crate::store::Overlay::new(&cached);
        let mut n = 0u32;
        let rounds = [1u32, 2, 7, 100, 1, 300, 50, 3, 20];
        for (round, batch_len) in rounds.into_iter().enumerate() {
            let updates = next_updates(&mut n, batch_len);
            let expected = update_and_commit(&per_update, &mut hot, &updates);

            let pages = cache.lend(&overlay);
            let got = smt::update(&pages, &updates).unwrap();
            let dirty = pages.stage(&got.writes).unwrap();
            cache.keep(pages, dirty);
            assert_eq!(got, expected);
            if round % 3 == 2 || round + 1 == rounds.len() {
                let mut b = Batch::new();
                cache.write(&mut b);
                overlay.apply(b);
                overlay.flush().unwrap();
                assert_eq!(cached.dump(), per_update.dump(), "round {round}");
                // Only the top strata stay decoded.
                assert!(cache.pages.keys().all(|id| hot_index(id).is_some()));
            }
        }
    }
}
