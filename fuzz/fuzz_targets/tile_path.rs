//! c2sp.org/tlog-tiles paths and entry bundles from arbitrary bytes.
//!
//! * `TilePath::parse`: for an accepted path, `to_path()` and `Display`
//!   give the input back, `FromStr` agrees, and `TilePath::new` with the
//!   parsed fields accepts and gives the same tile.
//! * `decode_entry_bundle`: `encode_entry_bundle(decode(b)) == b`.
//! * `tile_width` and `read_tile` (against a small in-memory hash store)
//!   with arbitrary level, index, width and size, taken from the input's
//!   first bytes: never panic; a tile that `read_tile` serves has
//!   `width × 32` bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use revledger::hash::{leaf_hash, Hash};
use revledger::merkle::Frontier;
use revledger::tile::{
    decode_entry_bundle, encode_entry_bundle, read_tile, tile_width, TileKind, TilePath,
};
use std::sync::OnceLock;

/// Stored hashes of a 700-leaf tree (level-0 tiles 0..=2, a level-1 tile).
fn store() -> &'static Vec<Hash> {
    static S: OnceLock<Vec<Hash>> = OnceLock::new();
    S.get_or_init(|| {
        let mut f = Frontier::new();
        let mut hashes = Vec::new();
        for i in 0u32..700 {
            for (idx, h) in f.append(leaf_hash(&i.to_be_bytes())).unwrap() {
                assert_eq!(idx as usize, hashes.len());
                hashes.push(h);
            }
        }
        hashes
    })
}

fuzz_target!(|data: &[u8]| {
    // 1. Paths.
    if let Ok(s) = std::str::from_utf8(data) {
        match TilePath::parse(s) {
            Ok(t) => {
                assert_eq!(t.to_path(), s, "print(parse(p)) != p");
                assert_eq!(t.to_string(), s);
                assert_eq!(s.parse::<TilePath>().ok(), Some(t));
                assert_eq!(TilePath::new(t.kind(), t.index(), t.width()).ok(), Some(t));
                assert!((1..=256).contains(&t.width()));
                assert_eq!(t.is_partial(), t.width() < 256);
                if let TileKind::Hash { level } = t.kind() {
                    assert!(level <= 63);
                }
            }
            Err(e) => {
                assert!(s.parse::<TilePath>().is_err());
                let _ = e.to_string();
            }
        }
    }

    // 2. Entry bundles.
    if let Ok(entries) = decode_entry_bundle(data) {
        let again = encode_entry_bundle(&entries).expect("decoded entries re-encode");
        assert_eq!(again, data, "encode(decode(bundle)) != bundle");
    }

    // 3. Tile arithmetic and reads.
    if data.len() >= 19 {
        let level = data[0];
        let index = u64::from_be_bytes(data[1..9].try_into().unwrap());
        let size = u64::from_be_bytes(data[9..17].try_into().unwrap());
        let width = u16::from_be_bytes([data[17], data[18]]);
        // Small sizes too, so that read_tile reaches the store.
        let sizes = [size, size % 1024, size % 701];
        let indexes = [index, index % 4];
        for &size in &sizes {
            for &index in &indexes {
                if let Some(w) = tile_width(level, index, size) {
                    assert!((1..=256).contains(&w));
                }
                let kinds = [
                    TileKind::Hash { level },
                    TileKind::Hash { level: level % 3 },
                    TileKind::Entries,
                ];
                for kind in kinds {
                    let Ok(tile) = TilePath::new(kind, index, width) else {
                        continue;
                    };
                    let parsed = TilePath::parse(&tile.to_path()).expect("printed path parses");
                    assert_eq!(parsed, tile);
                    if let Ok(body) = read_tile(&tile, size, store().as_slice()) {
                        assert_eq!(body.len(), usize::from(tile.width()) * 32);
                    }
                }
            }
        }
    }
});
