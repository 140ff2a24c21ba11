//! A filter of the keys an index space holds, so that most reads of a key
//! it does not hold are answered without the index.
//!
//! The node asks its dedup and holder spaces about every event, and for a
//! new event the answer is nearly always "absent". The index answers that
//! after a search of its in-memory buffers (a skip list of up to 8 MiB) and
//! the bloom filters of its sorted runs: about an eighth of the sequencer's
//! time (BENCHMARKS.md, thirteenth session). This filter is a blocked bloom
//! filter (Putze, Sanders and Singler, "Cache-, hash- and space-efficient
//! bloom filters", 2007): a key sets and tests bits of one 512-bit block,
//! one cache line, so a test costs one memory access.
//!
//! It may say "present" for a key that is absent (then the index is asked,
//! as before), never "absent" for a key that is present. That holds
//! because every key the space holds is inserted before it can be read:
//! - a key committed after the filter was made: [`KeyFilter::insert`] by
//!   the writer, before the commit that makes it visible;
//! - a key committed before: by the scan of the space that fills a new
//!   filter. The scan's snapshot is taken after the filter exists, so it
//!   sees every key not inserted by the writer.
//!
//! Until its scan is done a filter is not [`ready`](KeyFilter::is_ready),
//! and every key is looked up in the index. Removed keys stay set; that
//! only costs a lookup. Bits are atomics: the writer and a scan insert
//! concurrently, and readers test while they do.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Bits of one block: a cache line.
const BLOCK_WORDS: usize = 8;
/// Bits set per key, all in the key's block.
const BITS_PER_KEY: u32 = 6;

/// A blocked bloom filter over byte-string keys.
pub struct KeyFilter {
    blocks: Box<[[AtomicU64; BLOCK_WORDS]]>,
    ready: AtomicBool,
    inserted: AtomicU64,
}

impl std::fmt::Debug for KeyFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFilter")
            .field("bytes", &self.bytes())
            .field("ready", &self.is_ready())
            .field("inserted", &self.inserted())
            .finish()
    }
}

/// A 64-bit hash of `key`. Keys are hashes or prefixes of hashes already;
/// the finalizer of SplitMix64 spreads whatever structure is left. A key
/// made to collide only costs its maker index lookups.
fn hash(key: &[u8]) -> u64 {
    let mut h = key.len() as u64 ^ 0x9e37_79b9_7f4a_7c15;
    for chunk in key.chunks(8) {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h ^= h >> 31;
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

impl KeyFilter {
    /// A filter of `bytes` bytes (rounded up to a power of two blocks, at
    /// least one), not ready.
    pub fn with_bytes(bytes: usize) -> KeyFilter {
        let blocks = bytes.div_ceil(BLOCK_WORDS * 8).max(1).next_power_of_two();
        KeyFilter {
            blocks: (0..blocks).map(|_| Default::default()).collect(),
            ready: AtomicBool::new(false),
            inserted: AtomicU64::new(0),
        }
    }

    /// A filter for `keys` keys at about `bits_per_key` bits each (a
    /// power of two bytes, so between that and twice as many).
    pub fn for_keys(keys: u64, bits_per_key: u64) -> KeyFilter {
        let bytes = keys.saturating_mul(bits_per_key) / 8;
        KeyFilter::with_bytes(usize::try_from(bytes).unwrap_or(usize::MAX / 2))
    }

    /// The filter's size in bytes.
    pub fn bytes(&self) -> usize {
        self.blocks.len() * BLOCK_WORDS * 8
    }

    /// Insertions so far (keys inserted twice count twice).
    pub fn inserted(&self) -> u64 {
        self.inserted.load(Ordering::Relaxed)
    }

    /// Whether every key of the space has been inserted.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Declares that every key of the space has been inserted.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// The block of `h` and the bit of each probe: 9 bits per probe, taken
    /// from the hash's bits that do not choose the block.
    fn probes(
        &self,
        h: u64,
    ) -> (
        &[AtomicU64; BLOCK_WORDS],
        impl Iterator<Item = (usize, u64)>,
    ) {
        // Probes from the low 54 bits; the block from the top bits of
        // the hash times an odd constant, which depend on all of its
        // bits, so that a key's block says nothing of its probes.
        let shift = 64 - self.blocks.len().trailing_zeros();
        let block = h
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .checked_shr(shift)
            .unwrap_or(0) as usize;
        let probes = (0..BITS_PER_KEY).map(move |i| {
            let bit = (h >> (9 * i)) as usize & 511;
            (bit / 64, 1u64 << (bit % 64))
        });
        (&self.blocks[block], probes)
    }

    /// Adds `key`.
    pub fn insert(&self, key: &[u8]) {
        let (block, probes) = self.probes(hash(key));
        for (word, bit) in probes {
            block[word].fetch_or(bit, Ordering::Release);
        }
        self.inserted.fetch_add(1, Ordering::Relaxed);
    }

    /// False only when `key` was never inserted; true as well for a filter
    /// that is not ready.
    pub fn may_contain(&self, key: &[u8]) -> bool {
        if !self.is_ready() {
            return true;
        }
        self.bits_set(key)
    }

    /// Whether every bit of `key` is set, ready or not.
    fn bits_set(&self, key: &[u8]) -> bool {
        let (block, mut probes) = self.probes(hash(key));
        probes.all(|(word, bit)| block[word].load(Ordering::Acquire) & bit != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::KeyFilter;

    fn key(i: u64, salt: u8) -> [u8; 8] {
        let mut k = crate::hash::leaf_hash(&[&i.to_be_bytes()[..], &[salt]].concat()).0;
        k[0] ^= salt;
        k[..8].try_into().unwrap()
    }

    #[test]
    fn never_says_absent_of_an_inserted_key_and_rarely_of_others() {
        // 100,000 keys in 128 KiB: about 10.5 bits per key.
        let f = KeyFilter::for_keys(100_000, 8);
        assert_eq!(f.bytes(), 128 << 10);
        for i in 0..100_000 {
            f.insert(&key(i, 1));
        }
        assert_eq!(f.inserted(), 100_000);
        // Not ready: nothing is said absent.
        assert!(f.may_contain(&key(7, 2)));
        f.set_ready();
        assert!((0..100_000).all(|i| f.may_contain(&key(i, 1))));
        let false_positives = (0..100_000).filter(|&i| f.may_contain(&key(i, 2))).count();
        // 833 of 100,000 (0.8 %; 1,471 when the block came from hash
        // bits that some probes also used). An unblocked filter of this
        // size would have about 0.7 %.
        assert_eq!(false_positives, 833);
    }

    #[test]
    fn keys_of_any_length_are_filtered() {
        let f = KeyFilter::with_bytes(4096);
        f.set_ready();
        let keys: [&[u8]; 5] = [
            b"",
            b"a",
            b"holder-tag-of-32-bytes-0123456789",
            &[0; 9],
            &[0; 8],
        ];
        assert!(keys.iter().all(|k| !f.bits_set(k)));
        for k in keys {
            f.insert(k);
        }
        assert!(keys.iter().all(|k| f.may_contain(k)));
    }

    #[test]
    fn a_tiny_filter_has_one_block() {
        assert_eq!(KeyFilter::with_bytes(0).bytes(), 64);
        assert_eq!(KeyFilter::for_keys(0, 8).bytes(), 64);
        assert_eq!(KeyFilter::with_bytes(65).bytes(), 128);
    }
}
