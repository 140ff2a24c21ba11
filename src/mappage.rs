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
//! Layout 6. Page `(s, p)` (`p` = the first `4s` bits of a path) holds the
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
//! page value = slots (u32, bit i = slot i present; bit 0 only in page
//!              (0, ε); bit 31 set: compact)
//!              ‖ for each present slot, in order, its node bytes (they
//!              say their own length), but in a compact page for none of
//!              slots 0 … 14 that has a child present
//! layout key = 0xff (one byte), value 0x06: written with the first page
//! ```
//!
//! Node bytes are `smt::Node::encode`. A page with no node is deleted. The
//! node's store (written through [`HotPages`]) also omits each page of
//! strata 1 and 2 (depths 5 … 12, 272 pages) that holds interior nodes
//! only: those nodes are hashes of the ones below, and [`HotPages::load`]
//! derives them again from stratum 3 at open, while every batch would
//! otherwise rewrite nearly all of them. Pages with a leaf there (a small
//! map) are stored, and so is the root page. An auditor's store
//! ([`PageCache`]) stores every page.
//! The node's pages may lag its log: its writer keeps the pages each batch
//! changes in memory ([`MapPages::defer`], [`HotPages::absorb`]), where its
//! readers find them too, and writes them back some batches later
//! ([`HotPages::write_back`]); the ledger keeps each batch's map changes
//! until then, and replays them at open.
//! Pages of strata 5 … 63 are stored compact when the map allows
//! (it always does): a node of their upper three levels that has a child
//! in the page is an interior node, and its hash is not stored but
//! derived from the page's lower nodes when the page is decoded.
//! The layout is storage only: no hash, proof or wire format depends on it.
//! Layout 5 (until 2026-12-03: no page compact), layout 4 (until commit
//! 19c4f8f, 2026-12-02: layout 5's pages, each written with the
//! batch that changed it) and layout 3 (until 2026-12-02: every page
//! stored, layout key 0x03) are read as they are, and become layout 6 with
//! their first batch. Other layouts are
//! refused with an error at open: layout 1 (until 2026-12-01: pages of
//! depths `4s … 4s+3`, a `u16` bitmap, no layout key) and layout 2 (for
//! some hours on 2026-12-01: this one with a `u16` length before each
//! node).

use crate::hash::Hash;
use crate::smt::{self, key_bit, Node, NodeId, NodeReader};
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

/// The layout this build reads and writes: layout 5's pages, those of
/// strata from [`COMPACT_FROM_STRATUM`] on stored compact.
const LAYOUT: &[u8] = &[6];

/// The older layout this build also reads: layout 4's pages, which the
/// node may write back some batches after they changed (the ledger keeps
/// each batch's map changes until then, [`HotPages::absorb`]); none is
/// compact.
const LAYOUT_DEFERRED: &[u8] = &[5];

/// The older layout this build also reads: pages as in this one, each
/// written with the batch that changed it.
const LAYOUT_WRITTEN: &[u8] = &[4];

/// The older layout this build also reads: every page stored.
const LAYOUT_ALL_STORED: &[u8] = &[3];

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

/// Bit 31 of a page's slot bitmap: the page is stored compact. Its
/// interior nodes above its bottom level (slots 0 … 14) are then not
/// stored but derived at decoding from the nodes under them, which are in
/// the page: such a slot holds an interior node exactly when one of its two
/// children is present, and otherwise a leaf, which is stored.
const COMPACT: u32 = 1 << 31;

/// The slots whose children are in the same page: all but the bottom
/// level's 16.
const UPPER_SLOTS: usize = (1 << PAGE_LEVELS) - 1;

/// The first stratum whose pages are stored compact: those below the
/// store's top pages. There a page holds a few keys' paths, and its upper
/// interior nodes were a quarter of its bytes (5.8 million entries,
/// 2026-12-03), rewritten and compacted with each of its changes; a
/// decoding derives them again with a handful of hashes. The top strata
/// are dense (14 derived hashes a page) and every path reads them.
const COMPACT_FROM_STRATUM: u16 = 5;

/// Whether either child of slot `i` (below [`UPPER_SLOTS`]) is present in
/// the slot bitmap `slots`.
fn has_children(slots: u32, i: usize) -> bool {
    slots & (0b11 << (2 * i + 1)) != 0
}

/// Whether `page` can be stored compact: each upper slot is empty, a leaf
/// with no child present, or an interior node with one. (The map never
/// makes another kind; a page that is not is stored as it is.)
fn compactable(page: &Page, slots: u32) -> bool {
    page.iter()
        .take(UPPER_SLOTS)
        .enumerate()
        .all(|(i, n)| match n {
            None => true,
            Some(Node::Leaf { .. }) => !has_children(slots, i),
            Some(Node::Interior(_)) => has_children(slots, i),
        })
}

/// Encodes page `id`, compact from [`COMPACT_FROM_STRATUM`] on when the
/// page allows it; `None` when it holds no node.
fn encode_page(id: &PageId, page: &Page) -> Option<Vec<u8>> {
    let mut slots = 0u32;
    for (i, node) in page.iter().enumerate() {
        if node.is_some() {
            slots |= 1 << i;
        }
    }
    if slots == 0 {
        return None;
    }
    let compact = id.0.depth() / PAGE_LEVELS >= COMPACT_FROM_STRATUM && compactable(page, slots);
    let stored = |i: usize| !(compact && i < UPPER_SLOTS && has_children(slots, i));
    let len: usize = page
        .iter()
        .enumerate()
        .filter(|(i, _)| stored(*i))
        .filter_map(|(_, n)| n.as_ref().map(Node::encoded_len))
        .sum();
    let mut out = Vec::with_capacity(4 + len);
    out.extend_from_slice(&(slots | if compact { COMPACT } else { 0 }).to_be_bytes());
    for (i, n) in page.iter().enumerate() {
        if let Some(n) = n.as_ref().filter(|_| stored(i)) {
            // Self-delimiting: the tag gives the length (a leaf's value has its own).
            n.encode_into(&mut out);
        }
    }
    debug_assert!(
        !compact || decode_page(id, &out).as_ref() == Ok(page),
        "page {} does not hold the hashes of its own nodes",
        hex::encode(id.key())
    );
    Some(out)
}

/// Decodes the page `id`.
fn decode_page(id: &PageId, bytes: &[u8]) -> Result<Page, String> {
    let (head, mut rest) = bytes.split_at_checked(4).ok_or("truncated slot bitmap")?;
    let word = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let compact = word & COMPACT != 0;
    let slots = word & !COMPACT;
    let above = u32::from(id.0.depth() != 0);
    if slots == 0 || slots & above != 0 {
        return Err(format!("invalid slot bitmap {word:#010x}"));
    }
    let derived =
        |i: usize| compact && i < UPPER_SLOTS && slots & (1 << i) != 0 && has_children(slots, i);
    let mut page: Page = Default::default();
    for (i, slot) in page.iter_mut().enumerate() {
        if slots & (1 << i) == 0 || derived(i) {
            continue;
        }
        let (node, tail) = Node::decode_prefix(rest).map_err(|e| format!("slot {i}: {e}"))?;
        if compact && i < UPPER_SLOTS && matches!(node, Node::Interior(_)) {
            return Err(format!(
                "slot {i}: an interior node with no child in a compact page"
            ));
        }
        *slot = Some(node);
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(format!("{} trailing bytes", rest.len()));
    }
    // Bottom up: a slot's children come after it.
    for i in (0..UPPER_SLOTS).rev().filter(|&i| derived(i)) {
        let h = |j: usize| page[j].as_ref().map_or(smt::EMPTY, Node::hash);
        page[i] = Some(Node::Interior(smt::interior_hash(
            &h(2 * i + 1),
            &h(2 * i + 2),
        )));
    }
    Ok(page)
}

/// Strata kept decoded in memory by [`HotPages`]: depths 0 … 16.
const HOT_STRATA: u16 = 4;

/// The first hot index of stratum `s`: the pages of the strata above it,
/// 1 + 16 + … + 16^(s−1).
const fn stratum_start(s: u16) -> usize {
    ((1usize << (4 * s)) - 1) / 15
}

/// Pages in the hot strata: 1 + 16 + 256 + 4096.
const HOT_PAGES: usize = stratum_start(HOT_STRATA);

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
    Some(stratum_start(s) + bits)
}

/// Strata whose pages, but for the root page, the node's store omits
/// when they hold interior nodes only (layout 4): depths 5 … 12. Their
/// nodes are hashes of the nodes below, which [`HotPages::load`] derives
/// again from stratum [`DERIVED_STRATA`]; a batch then writes none of
/// these pages, which it otherwise rewrote whole (nearly all of them
/// change in every batch). The root page is always stored: builds of
/// layout 3 look for the layout key only when it exists, and so refuse
/// a layout-4 store with a clear error instead of finding its map empty.
const DERIVED_STRATA: u16 = 3;

/// Pages in the derived strata: 1 + 16 + 256. They are the first in
/// [`hot_index`] order.
const DERIVED_PAGES: usize = stratum_start(DERIVED_STRATA);

/// Whether the node's store may omit the page at hot index `i`.
fn omissible(i: usize) -> bool {
    (1..DERIVED_PAGES).contains(&i)
}

/// The stratum of hot index `i`.
fn stratum_of(i: usize) -> u16 {
    (0..HOT_STRATA)
        .rev()
        .find(|&s| i >= stratum_start(s))
        .unwrap_or(0)
}

/// The pages of the map's top [`HOT_STRATA`] strata as they are in the
/// store after the last committed batch, decoded. Every status proof and
/// every update walks them, so the ledger's writer keeps them in memory
/// ([`HotPages::load`] at open, [`HotPages::absorb`] after each commit) and
/// publishes each version with the checkpoint it belongs to; readers never
/// change them. A slot is `None` when the page is not known (then it is read
/// from the store); an absent page is known as an empty one.
#[derive(Clone, PartialEq)]
pub struct HotPages {
    pages: Vec<Option<Arc<Page>>>,
    /// For each page of the [`DERIVED_STRATA`] but the root page, by hot
    /// index: whether the store holds it (an omitted page is derived; a
    /// stored one is read). The root page's entry is unused.
    stored: Vec<bool>,
    /// Whether the store's layout key says [`LAYOUT`] already.
    layout_current: bool,
    /// The pages changed by committed batches whose changes are not
    /// written back to the store yet ([`MapPages::defer`]), a batch at a
    /// time, oldest first. A page not found here nor in the hot strata is
    /// read from the store, which holds it as it was before them.
    unwritten: Vec<Arc<Unwritten>>,
}

/// The pages one batch changed, as they are after it.
#[derive(Clone, PartialEq)]
pub(crate) struct Unwritten {
    /// The tree size the batch ended at.
    pub(crate) size: u64,
    pages: FxHashMap<PageId, Arc<Page>>,
}

/// What [`MapPages::write`] or [`MapPages::defer`] did besides its pages,
/// for [`HotPages::absorb`].
#[derive(Default)]
pub(crate) struct Written {
    /// Pages of the derived strata stored (true) or dropped (false), by
    /// hot index.
    stored: Vec<(usize, bool)>,
    /// The layout key was written.
    layout: bool,
    /// Pages changed and not written ([`MapPages::defer`]), in key order.
    deferred: Vec<PageId>,
}

impl HotPages {
    /// Nothing known: every page is read from the store.
    pub(crate) fn unknown() -> HotPages {
        HotPages {
            pages: vec![None; HOT_PAGES],
            // As if stored: a page that is not would only be deleted again.
            stored: vec![true; DERIVED_PAGES],
            layout_current: false,
            unwritten: Vec::new(),
        }
    }

    /// Reads every page of the hot strata from `store`, and derives those
    /// of the [`DERIVED_STRATA`] that it omits, bottom up.
    ///
    /// # Errors
    /// [`StoreError`] when a page cannot be read or decoded, or the store's
    /// pages are in a layout this build does not read.
    pub fn load<S: ReadStore + ?Sized>(store: &S) -> Result<HotPages, StoreError> {
        let empty = Arc::new(Page::default());
        let root = PageId(NodeId::root());
        let root_raw = store.get(Space::MapPage, &root.key())?;
        let layout = store.get(Space::MapPage, LAYOUT_KEY)?;
        if layout.is_some() || root_raw.is_some() {
            // Before any page is decoded: another layout's bytes would only
            // fail to decode.
            check_layout_value(layout.as_deref())?;
        }
        if root_raw.is_none() {
            // No map stored yet: every layout stores the root page of a
            // map that is not empty. (The layout key comes with the first
            // pages, or, where they are written back later, with the first
            // batch that changes the map.)
            return Ok(HotPages {
                pages: vec![Some(empty); HOT_PAGES],
                stored: vec![false; DERIVED_PAGES],
                layout_current: layout.as_deref() == Some(LAYOUT),
                unwritten: Vec::new(),
            });
        }
        // Every page id of the hot strata, in hot-index order.
        let mut ids = vec![root];
        for s in 0..HOT_STRATA - 1 {
            let from = stratum_start(s);
            let parents = ids[from..].to_vec();
            ids.extend(
                parents
                    .iter()
                    .flat_map(|id| (0..16u8).filter_map(move |nibble| child_page(id, nibble))),
            );
        }
        // Top down. A page is read unless the page above is stored and
        // has no interior node over it (then its subtree is empty); below
        // an omitted page every page is read, since the omitted one is
        // derived from them.
        let mut pages: Vec<Option<Page>> = Vec::with_capacity(HOT_PAGES);
        let mut read = vec![false; HOT_PAGES];
        read[0] = true;
        let mut root_raw = root_raw;
        for (i, id) in ids.iter().enumerate() {
            debug_assert_eq!(hot_index(id), Some(i));
            let raw = match i {
                0 => root_raw.take(),
                _ if read[i] => store.get(Space::MapPage, &id.key())?,
                _ => None,
            };
            let page = raw.map(|v| decode_stored(id, &v)).transpose()?;
            if read[i] && i < stratum_start(HOT_STRATA - 1) {
                let first_child =
                    stratum_start(stratum_of(i) + 1) + (i - stratum_start(stratum_of(i))) * 16;
                for j in 0..16 {
                    read[first_child + j] = match &page {
                        Some(p) => matches!(p[15 + j], Some(Node::Interior(_))),
                        None => true,
                    };
                }
            }
            pages.push(page);
        }
        let stored: Vec<bool> = (0..DERIVED_PAGES)
            .map(|i| omissible(i) && pages[i].is_some())
            .collect();
        for i in (0..DERIVED_PAGES).rev().filter(|&i| omissible(i)) {
            if pages[i].is_none() {
                let derived = derive_page(i, &pages);
                pages[i] = Some(derived);
            }
        }
        let pages = pages
            .into_iter()
            .map(|p| match p {
                Some(p) if p.iter().any(Option::is_some) => Some(Arc::new(p)),
                _ => Some(empty.clone()),
            })
            .collect();
        Ok(HotPages {
            pages,
            stored,
            layout_current: layout.as_deref() == Some(LAYOUT),
            unwritten: Vec::new(),
        })
    }

    /// This version with the pages a committed update read or wrote, which
    /// are the store's pages after it, and the derived-strata pages that
    /// update stored or dropped (both from [`MapPages::into_parts`]). The
    /// pages it changed without writing them ([`MapPages::defer`]) are
    /// kept as the changes of the batch that ended at tree size `size`.
    pub(crate) fn absorb(
        &self,
        (pages, written): (FxHashMap<PageId, Arc<Page>>, Written),
        size: u64,
    ) -> HotPages {
        let mut next = self.clone();
        next.layout_current |= written.layout;
        if !written.deferred.is_empty() {
            let changed = written
                .deferred
                .iter()
                .filter_map(|id| Some((*id, pages.get(id)?.clone())))
                .collect();
            next.unwritten.push(Arc::new(Unwritten {
                size,
                pages: changed,
            }));
        }
        for (id, page) in pages {
            if let Some(slot) = hot_index(&id).and_then(|i| next.pages.get_mut(i)) {
                *slot = Some(page);
            }
        }
        next.mark_stored(&written.stored);
        next
    }

    fn mark_stored(&mut self, stored: &[(usize, bool)]) {
        for &(i, is_stored) in stored {
            if let Some(s) = self.stored.get_mut(i) {
                *s = is_stored;
            }
        }
    }

    /// The batches whose map changes are not written back, oldest first:
    /// the tree size each ended at.
    pub(crate) fn unwritten_sizes(&self) -> impl Iterator<Item = u64> + '_ {
        self.unwritten.iter().map(|u| u.size)
    }

    /// How many batches' changes are not written back, and how many pages
    /// they hold (a page changed by two batches counts twice).
    pub(crate) fn unwritten_len(&self) -> (usize, usize) {
        let pages = self.unwritten.iter().map(|u| u.pages.len()).sum();
        (self.unwritten.len(), pages)
    }

    /// Adds to `batch` every page the unwritten batches changed, as the
    /// last of them left it, in key order, as [`MapPages::write`] would
    /// have; returns the version whose store holds them (once `batch` is
    /// committed).
    pub(crate) fn write_back(&self, batch: &mut Batch) -> HotPages {
        let mut latest: FxHashMap<PageId, &Arc<Page>> = FxHashMap::default();
        for u in &self.unwritten {
            latest.extend(u.pages.iter().map(|(id, p)| (*id, p)));
        }
        let mut latest: Vec<(PageId, &Arc<Page>)> = latest.into_iter().collect();
        latest.sort_unstable_by_key(|(id, _)| *id);
        let mut stored = Vec::new();
        for (id, page) in latest {
            put_changed(Some(self), &id, Some(page), batch, &mut stored);
        }
        let mut next = self.clone();
        next.mark_stored(&stored);
        next.unwritten.clear();
        next
    }

    fn get(&self, id: &PageId) -> Option<&Arc<Page>> {
        if let Some(p) = hot_index(id).and_then(|i| self.pages.get(i)?.as_ref()) {
            return Some(p);
        }
        self.unwritten.iter().rev().find_map(|u| u.pages.get(id))
    }
}

/// The page at hot index `i` (of the derived strata) from the pages of
/// the stratum below, already known: each node is the interior node over
/// its two children, or absent when both are.
fn derive_page(i: usize, pages: &[Option<Page>]) -> Page {
    let s = stratum_of(i);
    let bits = i - stratum_start(s);
    let over = |l: &Option<Node>, r: &Option<Node>| match (l, r) {
        (None, None) => None,
        _ => {
            let h = |n: &Option<Node>| n.as_ref().map_or(smt::EMPTY, Node::hash);
            Some(Node::Interior(smt::interior_hash(&h(l), &h(r))))
        }
    };
    let mut page: Page = Default::default();
    // The bottom level (16 nodes): over the top two nodes of each child.
    for j in 0..16 {
        let child = pages
            .get(stratum_start(s + 1) + bits * 16 + j)
            .and_then(Option::as_ref);
        page[15 + j] = match child {
            Some(c) => over(&c[1], &c[2]),
            None => None,
        };
    }
    // Then up the page: level k's node j is over level k+1's 2j and 2j+1.
    for k in (1..PAGE_LEVELS as usize).rev() {
        for j in 0..1 << k {
            let below = (1 << (k + 1)) - 1 + 2 * j;
            page[(1 << k) - 1 + j] = over(&page[below], &page[below + 1]);
        }
    }
    if s == 0 {
        page[0] = over(&page[1], &page[2]);
    }
    page
}

/// Refuses a store that holds map pages unless its layout key says
/// [`LAYOUT`], [`LAYOUT_DEFERRED`], [`LAYOUT_WRITTEN`] or
/// [`LAYOUT_ALL_STORED`].
fn check_layout<S: ReadStore + ?Sized>(store: &S) -> Result<(), StoreError> {
    check_layout_value(store.get(Space::MapPage, LAYOUT_KEY)?.as_deref())
}

/// [`check_layout`] on the layout key's value, read already.
fn check_layout_value(layout: Option<&[u8]>) -> Result<(), StoreError> {
    let read = || {
        format!(
            "{}, {}, {} and {}",
            LAYOUT_ALL_STORED[0], LAYOUT_WRITTEN[0], LAYOUT_DEFERRED[0], LAYOUT[0]
        )
    };
    match layout {
        Some(v) if [LAYOUT, LAYOUT_DEFERRED, LAYOUT_WRITTEN, LAYOUT_ALL_STORED].contains(&v) => {
            Ok(())
        }
        Some(v) => Err(StoreError::Io(format!(
            "the status map's pages are in layout {}; this build reads layouts {}",
            hex::encode(v),
            read()
        ))),
        None => Err(StoreError::Io(format!(
            "the status map's pages are in layout 1 (written before 2026-12-01); this build \
             reads layouts {} only, and no converter exists yet",
            read()
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
    /// What [`MapPages::write`] did besides the pages.
    written: RefCell<Written>,
}

impl<'a, S: ReadStore + ?Sized> MapPages<'a, S> {
    /// Reads (and writes) every page in the store: right for a store that
    /// stores every page (layout 3, an auditor's), not for the node's.
    #[cfg(test)]
    pub(crate) fn new(store: &'a S) -> Self {
        MapPages {
            store,
            hot: None,
            pages: RefCell::default(),
            written: RefCell::default(),
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
            written: RefCell::default(),
        }
    }

    /// The pages read or written, as they are after this update's writes.
    pub(crate) fn into_pages(self) -> FxHashMap<PageId, Arc<Page>> {
        self.pages.into_inner()
    }

    /// [`MapPages::into_pages`], and which pages of the derived strata
    /// [`MapPages::write`] stored or dropped: what [`HotPages::absorb`]
    /// takes after the commit.
    pub(crate) fn into_parts(self) -> (FxHashMap<PageId, Arc<Page>>, Written) {
        (self.pages.into_inner(), self.written.into_inner())
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
    /// Through [`HotPages`] (the node's writer), a changed page of the
    /// [`DERIVED_STRATA`] that holds interior nodes only is not written:
    /// it is dropped from the store if the store holds it, and derived
    /// again at open (layout 4).
    ///
    /// # Errors
    /// [`StoreError`] when a page cannot be read or decoded.
    pub fn write(
        &self,
        writes: &[(NodeId, Option<Node>)],
        batch: &mut Batch,
    ) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        let mut written = self.written.borrow_mut();
        // The first pages need the layout key; through HotPages, so does a
        // store of layout 3 (every page stored), which becomes one of
        // layout 4 with the first page it omits.
        let root = PageId(NodeId::root());
        let layout_needed = match self.hot {
            Some(hot) => !hot.layout_current,
            None => self.with_page(&root, |p| p.iter().all(Option::is_none))?,
        };
        if layout_needed {
            batch.put(Space::MapPage, LAYOUT_KEY, LAYOUT);
            written.layout = true;
        }
        let dirty = self.stage(writes)?;
        let pages = self.pages.borrow();
        for id in dirty {
            let page = pages.get(&id).map(|p| &**p);
            put_changed(self.hot, &id, page, batch, &mut written.stored);
        }
        Ok(())
    }

    /// [`MapPages::stage`], keeping the changed pages for
    /// [`HotPages::absorb`] instead of writing them: the node's writer
    /// writes them back some batches later ([`HotPages::write_back`]).
    /// Adds the layout key to `batch` if the store does not say
    /// [`LAYOUT`] yet, so that no older build reads a map whose pages lag.
    ///
    /// # Errors
    /// [`StoreError`] when a page cannot be read or decoded, or this map
    /// has no [`HotPages`] to keep the pages in.
    pub(crate) fn defer(
        &self,
        writes: &[(NodeId, Option<Node>)],
        batch: &mut Batch,
    ) -> Result<(), StoreError> {
        let Some(hot) = self.hot else {
            return Err(StoreError::Io(
                "deferred map pages need the writer's hot pages".into(),
            ));
        };
        if writes.is_empty() {
            return Ok(());
        }
        let dirty = self.stage(writes)?;
        let mut written = self.written.borrow_mut();
        if !hot.layout_current {
            batch.put(Space::MapPage, LAYOUT_KEY, LAYOUT);
            written.layout = true;
        }
        written.deferred.extend(dirty);
        written.deferred.sort_unstable();
        written.deferred.dedup();
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

/// Adds changed page `id` to `batch` as the store keeps it: through
/// `hot` (the node's store), a page of the [`DERIVED_STRATA`] that holds
/// interior nodes only is not stored, and a stored copy is dropped (noted
/// in `stored`); any other page is put, or deleted when it holds no node.
fn put_changed(
    hot: Option<&HotPages>,
    id: &PageId,
    page: Option<&Page>,
    batch: &mut Batch,
    stored: &mut Vec<(usize, bool)>,
) {
    let Some((hot, i)) = hot.zip(hot_index(id).filter(|&i| omissible(i))) else {
        put_page(id, page, batch);
        return;
    };
    let derivable = page.is_none_or(|p| {
        p.iter()
            .all(|n| matches!(n, None | Some(Node::Interior(_))))
    });
    if derivable {
        // Nothing to store: drop what the store holds, if anything.
        if hot.stored.get(i).copied().unwrap_or(true) {
            batch.delete(Space::MapPage, id.key());
        }
        stored.push((i, false));
    } else {
        put_page(id, page, batch);
        stored.push((i, true));
    }
}

/// Puts page `id` into `batch`, or deletes it when it holds no node.
fn put_page(id: &PageId, page: Option<&Page>, batch: &mut Batch) {
    match page.and_then(|p| encode_page(id, p)) {
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
            written: RefCell::default(),
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
        let bytes = encode_page(&root, &page).unwrap();
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
        let bytes = encode_page(&lower, &page).unwrap();
        assert_eq!(decode_page(&lower, &bytes).unwrap(), page);
        assert!(decode_page(&lower, &bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode_page(&lower, &longer).is_err());
        assert!(decode_page(&root, &[0x80, 0, 0, 0]).is_err());
        assert!(decode_page(&root, &[0, 0, 0, 0]).is_err());
        assert!(decode_page(&root, &[0, 1]).is_err());
        assert_eq!(encode_page(&lower, &Page::default()), None);
    }

    /// A page of stratum 5 or deeper stores its upper interior nodes'
    /// hashes only by their place: the bytes are exact, the hashes come
    /// back at decoding, and a page the map would not make is stored whole.
    #[test]
    fn deep_pages_are_compact_and_decode_to_the_same_nodes() {
        let deep = PageId(NodeId::on_path(&Hash([0x5a; 32]), 20).unwrap());
        let top = PageId(NodeId::on_path(&Hash([0x5a; 32]), 16).unwrap());
        let (a, b) = (
            Node::Leaf {
                key: Hash([1; 32]),
                value: vec![7],
            },
            Node::Leaf {
                key: Hash([2; 32]),
                value: vec![8, 9],
            },
        );
        let mut page: Page = Default::default();
        page[3] = Some(a.clone());
        page[4] = Some(b.clone());
        page[1] = Some(Node::Interior(smt::interior_hash(&a.hash(), &b.hash())));
        page[29] = Some(Node::Interior(Hash([6; 32])));
        page[30] = Some(Node::Interior(Hash([7; 32])));
        let h = |n: &Option<Node>| n.as_ref().map_or(smt::EMPTY, Node::hash);
        page[14] = Some(Node::Interior(smt::interior_hash(
            &h(&page[29]),
            &h(&page[30]),
        )));
        page[6] = Some(Node::Interior(smt::interior_hash(
            &smt::EMPTY,
            &h(&page[14]),
        )));
        page[2] = Some(Node::Interior(smt::interior_hash(
            &smt::EMPTY,
            &h(&page[6]),
        )));
        let bytes = encode_page(&deep, &page).unwrap();
        // Bit 31, slots 1 2 3 4 6 14 29 30; then the leaves in slots 3 and
        // 4 and the bottom level's nodes, nothing for slots 1, 2, 6 and 14.
        let mut want =
            (COMPACT | 1 << 1 | 1 << 2 | 1 << 3 | 1 << 4 | 1 << 6 | 1 << 14 | 1 << 29 | 1 << 30)
                .to_be_bytes()
                .to_vec();
        want.extend_from_slice(&a.encode());
        want.extend_from_slice(&b.encode());
        want.extend_from_slice(&page[29].as_ref().unwrap().encode());
        want.extend_from_slice(&page[30].as_ref().unwrap().encode());
        assert_eq!(bytes, want);
        assert_eq!(decode_page(&deep, &bytes).unwrap(), page);
        // The top strata are stored whole, with every hash.
        let whole = encode_page(&top, &page).unwrap();
        assert_eq!(whole.len(), want.len() + 4 * 33);
        assert_eq!(whole[0] & 0x80, 0);
        assert_eq!(decode_page(&top, &whole).unwrap(), page);
        // Without bit 31 the same bytes lack four nodes; with an interior
        // node where a compact page must store a leaf (slot 5, with no
        // child present), they are refused too.
        let mut bad = want.clone();
        bad[0] &= 0x7f;
        assert!(decode_page(&deep, &bad).is_err());
        let mut bad = (u32::from_be_bytes([want[0], want[1], want[2], want[3]]) | 1 << 5)
            .to_be_bytes()
            .to_vec();
        bad.extend_from_slice(&a.encode());
        bad.extend_from_slice(&b.encode());
        bad.extend_from_slice(&Node::Interior(Hash([9; 32])).encode());
        bad.extend_from_slice(&want[4 + a.encoded_len() + b.encoded_len()..]);
        let err = decode_page(&deep, &bad).unwrap_err();
        assert!(err.contains("slot 5"), "{err}");
        // An interior node with no child, or a leaf over nodes of the
        // page: not the map's, so stored whole and read back as it was.
        let mut odd = page.clone();
        odd[8] = Some(Node::Interior(Hash([8; 32])));
        let bytes = encode_page(&deep, &odd).unwrap();
        assert_eq!(bytes[0] & 0x80, 0);
        assert_eq!(decode_page(&deep, &bytes).unwrap(), odd);
        let mut odd = page.clone();
        odd[14] = Some(a.clone());
        let bytes = encode_page(&deep, &odd).unwrap();
        assert_eq!(bytes[0] & 0x80, 0);
        assert_eq!(decode_page(&deep, &bytes).unwrap(), odd);
    }

    /// Keys that share their first 22 to 30 bits: their paths run through
    /// pages of strata 5 to 7, stored compact, which give the same root
    /// and proofs as the node-by-node map, also reloaded.
    #[test]
    fn compact_pages_give_the_node_maps_proofs() {
        let deep_key = |i: u32| {
            let mut k = key(i).0;
            k[0] = 0xc3;
            k[1] = 0x3c;
            k[2] = (k[2] & 0x03) | if i.is_multiple_of(3) { 0x50 } else { 0x54 };
            if i.is_multiple_of(5) {
                k[3] &= 0x0f;
            }
            Hash(k)
        };
        let store = MemStore::new();
        let mut hot = HotPages::load(&store).unwrap();
        let mut nodes: BTreeMap<NodeId, Node> = BTreeMap::new();
        for round in 0..4u32 {
            let updates: Vec<(Hash, Vec<u8>)> = (0..60u32)
                .map(|i| {
                    (
                        deep_key(i * (round + 1) % 150),
                        vec![round as u8; 1 + i as usize % 5],
                    )
                })
                .collect();
            let paged = update_and_commit(&store, &mut hot, &updates);
            let plain = smt::update(&nodes, &updates).unwrap();
            plain.apply_to(&mut nodes);
            assert_eq!(paged, plain);
            let fresh = HotPages::load(&store).unwrap();
            let fresh = MapPages::with_hot(&store, &fresh);
            assert_eq!(smt::root(&fresh).unwrap(), paged.root);
            for i in 0..160u32 {
                assert_eq!(
                    smt::prove(&fresh, &deep_key(i)).unwrap(),
                    smt::prove(&nodes, &deep_key(i)).unwrap()
                );
            }
        }
        assert_store_holds(&store, &nodes);
        let (mut compact, mut derived) = (0, 0);
        let mut older = Batch::new();
        for (k, v) in store.dump() {
            let Some((&s, prefix)) = k.get(1..).and_then(<[u8]>::split_first) else {
                continue;
            };
            if k[0] != Space::MapPage as u8 || k.len() < 3 {
                continue;
            }
            assert_eq!(
                v[0] & 0x80 != 0,
                u16::from(s) >= COMPACT_FROM_STRATUM,
                "page {}",
                hex::encode(&k[1..])
            );
            if u16::from(s) >= COMPACT_FROM_STRATUM {
                let mut p = [0u8; 32];
                p[..prefix.len()].copy_from_slice(prefix);
                let id = PageId(NodeId::new(u16::from(s) * PAGE_LEVELS, p).unwrap());
                let page = decode_page(&id, &v).unwrap();
                let upper = page[..UPPER_SLOTS]
                    .iter()
                    .filter(|n| matches!(n, Some(Node::Interior(_))))
                    .count();
                assert_eq!(v.len(), 4 + whole_len(&page) - 33 * upper);
                compact += 1;
                derived += upper;
                if compact % 2 == 0 {
                    // As a store of layout 5 holds it: whole.
                    let whole = encode_page(&PageId(NodeId::root()), &page).unwrap();
                    assert_eq!(whole.len(), 4 + whole_len(&page));
                    older.put(Space::MapPage, k[1..].to_vec(), whole);
                }
            }
        }
        assert!(
            compact >= 10 && derived >= 20,
            "{compact} compact pages, {derived} derived nodes"
        );
        // A store of layout 5 with these pages whole reads the same, and
        // becomes one of layout 6 with its next batch.
        older.put(Space::MapPage, LAYOUT_KEY, LAYOUT_DEFERRED);
        store.commit(older).unwrap();
        let mut hot = HotPages::load(&store).unwrap();
        assert!(!hot.layout_current);
        assert_store_holds(&store, &nodes);
        let updates: Vec<(Hash, Vec<u8>)> = (0..150u32)
            .step_by(7)
            .map(|i| (deep_key(i), vec![9]))
            .collect();
        let paged = update_and_commit(&store, &mut hot, &updates);
        let plain = smt::update(&nodes, &updates).unwrap();
        plain.apply_to(&mut nodes);
        assert_eq!(paged, plain);
        assert_eq!(
            store.get(Space::MapPage, LAYOUT_KEY).unwrap().as_deref(),
            Some(LAYOUT)
        );
        assert_store_holds(&store, &nodes);
        let fresh = HotPages::load(&store).unwrap();
        let fresh = MapPages::with_hot(&store, &fresh);
        for i in 0..160u32 {
            assert_eq!(
                smt::prove(&fresh, &deep_key(i)).unwrap(),
                smt::prove(&nodes, &deep_key(i)).unwrap()
            );
        }
    }

    /// The bytes of a page's nodes, each stored.
    fn whole_len(page: &Page) -> usize {
        page.iter().flatten().map(Node::encoded_len).sum()
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
            Some(vec![6])
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
        // Layouts 3, 4 and 5 are read as they are.
        for older in [3u8, 4, 5] {
            let mut b = Batch::new();
            b.put(Space::MapPage, LAYOUT_KEY.to_vec(), vec![older]);
            store.commit(b).unwrap();
            let loaded = HotPages::load(&store).unwrap();
            assert!(!loaded.layout_current);
            assert!(PageCache::open(&store).is_ok());
        }
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
        *hot = hot.absorb(pages.into_parts(), 0);
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
            assert_only_underivable_top_pages_stored(&store);
            for fresh in [
                MapPages::with_hot(&store, &HotPages::load(&store).unwrap()),
                MapPages::with_hot(&store, &hot),
            ] {
                assert_eq!(smt::root(&fresh).unwrap(), paged.root);
                for i in [0, 5, 349, 1000] {
                    assert_eq!(
                        smt::prove(&fresh, &key(i)).unwrap(),
                        smt::prove(&nodes, &key(i)).unwrap()
                    );
                }
            }
        }
        assert_store_holds(&store, &nodes);
    }

    /// The store, loaded as the node opens it (its hot pages first), holds
    /// exactly `nodes`: each of them, and their root.
    fn assert_store_holds(store: &MemStore, nodes: &BTreeMap<NodeId, Node>) {
        let hot = HotPages::load(store).unwrap();
        let fresh = MapPages::with_hot(store, &hot);
        for (id, node) in nodes {
            assert_eq!(fresh.get_node(id).unwrap().as_ref(), Some(node));
        }
        assert_eq!(smt::root(&fresh).unwrap(), smt::root(nodes).unwrap());
    }

    /// Whether a full key of a [`MemStore`] dump is a page the node's
    /// store may omit: strata 1 and 2 (the root page and the layout key,
    /// 0xff, are not).
    fn is_derived_page_key(k: &[u8]) -> bool {
        k.first() == Some(&(Space::MapPage as u8))
            && k.get(1)
                .is_some_and(|&s| (1..DERIVED_STRATA).contains(&u16::from(s)))
    }

    /// A node's store holds a page of the derived strata only when the
    /// page has a leaf.
    fn assert_only_underivable_top_pages_stored(store: &MemStore) {
        for (k, v) in store.dump() {
            if is_derived_page_key(&k) {
                let s = u16::from(k[1]);
                let mut prefix = [0u8; 32];
                prefix[..k.len() - 2].copy_from_slice(&k[2..]);
                let id = PageId(NodeId::new(s * PAGE_LEVELS, prefix).unwrap());
                let page = decode_page(&id, &v).unwrap();
                assert!(
                    page.iter()
                        .flatten()
                        .any(|n| matches!(n, Node::Leaf { .. })),
                    "page {} holds interior nodes only and is stored",
                    hex::encode(&k[1..])
                );
            }
        }
    }

    /// Two keys under each of the 4,096 depth-12 prefixes: the top three
    /// strata hold interior nodes only. The node's store then holds none
    /// of their 273 pages and derives them at open; a store of layout 3
    /// (every page stored) reads the same, and drops those pages as its
    /// batches change them.
    #[test]
    fn top_pages_are_derived_not_stored() {
        let mut updates = Vec::new();
        for p in 0..4096u32 {
            for j in 0..2u32 {
                let mut k = key(p * 2 + j);
                k.0[0] = (p >> 4) as u8;
                k.0[1] = (k.0[1] & 0x0f) | (((p & 0x0f) as u8) << 4);
                updates.push((k, vec![j as u8]));
            }
        }
        let node = MemStore::new();
        let mut hot = HotPages::load(&node).unwrap();
        let up = update_and_commit(&node, &mut hot, &updates);
        assert!(node.dump().keys().all(|k| !is_derived_page_key(k)));
        // The root page is kept (older builds check the layout with it).
        assert!(node.get(Space::MapPage, &[0]).unwrap().is_some());
        assert!(HotPages::load(&node).unwrap() == hot);

        // Layout 3: every page, and its layout key.
        let legacy = MemStore::new();
        let pages = MapPages::new(&legacy);
        let all = smt::update(&pages, &updates).unwrap();
        assert_eq!(all, up);
        let mut b = Batch::new();
        pages.write(&all.writes, &mut b).unwrap();
        b.put(Space::MapPage, LAYOUT_KEY, vec![3]);
        legacy.commit(b).unwrap();
        let top_stored = |s: &MemStore| s.dump().keys().filter(|k| is_derived_page_key(k)).count();
        assert_eq!(top_stored(&legacy), DERIVED_PAGES - 1);
        let mut legacy_hot = HotPages::load(&legacy).unwrap();
        assert!(legacy_hot.pages == hot.pages);
        assert!(!legacy_hot.layout_current);

        // One more batch on both: 41 changed values.
        let changes: Vec<(Hash, Vec<u8>)> = updates
            .iter()
            .step_by(200)
            .map(|(k, _)| (*k, vec![9, 9]))
            .collect();
        let a = update_and_commit(&node, &mut hot, &changes);
        let b = update_and_commit(&legacy, &mut legacy_hot, &changes);
        assert_eq!(a, b);
        assert_eq!(
            legacy.get(Space::MapPage, LAYOUT_KEY).unwrap(),
            Some(vec![6])
        );
        let left = top_stored(&legacy);
        assert!(
            left < DERIVED_PAGES - 1 - 40,
            "{left} pages of the top strata still stored"
        );
        for store in [&node, &legacy] {
            let loaded = HotPages::load(store).unwrap();
            assert!(loaded.pages == hot.pages);
            assert_eq!(
                smt::root(&MapPages::with_hot(store, &loaded)).unwrap(),
                a.root
            );
        }
        assert!(HotPages::load(&legacy).unwrap() == legacy_hot);
        assert!(node.dump().keys().all(|k| !is_derived_page_key(k)));
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
            let next = hot.absorb(pages.into_parts(), 0);
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
        assert_store_holds(&store, &nodes);
    }

    /// The node's writer keeps each batch's changed pages unwritten
    /// ([`MapPages::defer`]) and writes them back some batches later: it
    /// reads every node as the per-update way does meanwhile, and once
    /// written back its store holds byte for byte what that way's holds,
    /// layout key, dropped top pages and all.
    #[test]
    fn pages_written_back_equal_pages_written_with_every_update() {
        let per_update = MemStore::new();
        let deferred = MemStore::new();
        let mut eager = HotPages::load(&per_update).unwrap();
        let mut hot = HotPages::load(&deferred).unwrap();
        let mut n = 0u32;
        // Small rounds first (a map with leaves in the top strata), then
        // thousands of keys (interior-only top pages, which are dropped,
        // and pages below the hot strata).
        let rounds = [1u32, 2, 7, 100, 1, 300, 2000, 3, 4000, 20, 1, 600];
        for (round, len) in rounds.into_iter().enumerate() {
            let updates: Vec<(Hash, Vec<u8>)> = if len < 1000 {
                next_updates(&mut n, len)
            } else {
                (n..n + len)
                    .map(|i| (key(i + 1_000_000), i.to_be_bytes().to_vec()))
                    .collect()
            };
            n += if len < 1000 { 0 } else { len };
            let expected = update_and_commit(&per_update, &mut eager, &updates);

            let pages = MapPages::with_hot(&deferred, &hot);
            let got = smt::update(&pages, &updates).unwrap();
            let mut b = Batch::new();
            pages.defer(&got.writes, &mut b).unwrap();
            hot = hot.absorb(pages.into_parts(), round as u64 + 1);
            // Only the layout key, with the first batch.
            assert!(b
                .ops()
                .iter()
                .all(|(space, k, _)| *space == Space::MapPage && k == LAYOUT_KEY));
            assert_eq!(b.is_empty(), round > 0, "round {round}");
            deferred.commit(b).unwrap();
            assert_eq!(got, expected, "round {round}");
            // Every node read through the unwritten pages is the store's.
            let through = MapPages::with_hot(&deferred, &hot);
            assert_eq!(smt::root(&through).unwrap(), expected.root);
            // (A later update of a key in the same round wins.)
            let last: BTreeMap<&Hash, &Vec<u8>> = updates.iter().map(|(k, v)| (k, v)).collect();
            for (k, v) in last {
                assert_eq!(smt::get(&through, k).unwrap().as_ref(), Some(v));
            }
            if round % 4 == 3 || round + 1 == rounds.len() {
                assert!(hot.unwritten_len().0 > 0);
                let sizes: Vec<u64> = hot.unwritten_sizes().collect();
                assert_eq!(sizes.last(), Some(&(round as u64 + 1)));
                let mut b = Batch::new();
                hot = hot.write_back(&mut b);
                deferred.commit(b).unwrap();
                assert_eq!(hot.unwritten_len(), (0, 0));
                assert_eq!(deferred.dump(), per_update.dump(), "round {round}");
                assert!(HotPages::load(&deferred).unwrap() == hot, "round {round}");
            }
        }
        assert_eq!(
            deferred.get(Space::MapPage, LAYOUT_KEY).unwrap().as_deref(),
            Some(LAYOUT)
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
                // The same pages, but for those of the derived strata the
                // node's way omits (it holds interior nodes only there).
                let not_derived = |store: &MemStore| {
                    let mut d = store.dump();
                    d.retain(|k, _| !is_derived_page_key(k));
                    d
                };
                assert_eq!(
                    not_derived(&cached),
                    not_derived(&per_update),
                    "round {round}"
                );
                assert!(
                    HotPages::load(&cached).unwrap().pages
                        == HotPages::load(&per_update).unwrap().pages,
                    "round {round}"
                );
                // Only the top strata stay decoded.
                assert!(cache.pages.keys().all(|id| hot_index(id).is_some()));
            }
        }
    }
}
