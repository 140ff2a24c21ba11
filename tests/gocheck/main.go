// Command gocheck is an independent cross-check of a tlog-tiles log directory
// with Go's reference implementation (golang.org/x/mod/sumdb/{note,tlog}).
//
// Usage:
//
//	gocheck DIR VKEY [OLDSIZE OLDROOT]
//
// DIR is laid out like a c2sp.org/tlog-tiles server: DIR/checkpoint,
// DIR/tile/<L>/<N>[.p/<W>] and DIR/tile/entries/<N>[.p/<W>]. VKEY is the log's
// verifier key, <name>+<hex id>+<base64>. OLDSIZE and OLDROOT (base64) name an
// older checkpoint to check a consistency proof against.
//
// It checks: the checkpoint note verifies with VKEY (note.Open); its body is
// <origin>\n<size>\n<base64 root>\n with origin = key name; the root that
// tlog.TreeHash computes from the hash tiles (both through the verifying
// tlog.TileHashReader and through a raw, unverified tile reader) equals the
// checkpoint root; every full tile hashes to its hash in the tile above (see
// authenticateFullTiles); every entry bundle decodes and tlog.RecordHash of every
// entry equals the level-0 hash in the tiles; tlog.ProveRecord/CheckRecord
// for a few indexes; tlog.ProveTree/CheckTree from OLDSIZE. It prints
// "ok size=N entries=N" and exits 0, or prints the failure and exits 1.
//
// It uses only the standard library and golang.org/x/mod/sumdb/{note,tlog}.
package main

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// tileHeight is the c2sp.org/tlog-tiles tile height.
const tileHeight = 8

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "gocheck: FAIL: "+format+"\n", args...)
	os.Exit(1)
}

// localPath maps Go's tile path (tile/8/L/N[.p/W], tile/8/data/N[.p/W]) to the
// tlog-tiles layout (tile/L/N[.p/W], tile/entries/N[.p/W]).
func localPath(t tlog.Tile) (string, error) {
	p := t.Path()
	prefix := fmt.Sprintf("tile/%d/", tileHeight)
	rest := strings.TrimPrefix(p, prefix)
	if rest == p {
		return "", fmt.Errorf("unexpected Go tile path %q", p)
	}
	if strings.HasPrefix(rest, "data/") {
		return "tile/entries/" + strings.TrimPrefix(rest, "data/"), nil
	}
	return "tile/" + rest, nil
}

// fileTiles is a tlog.TileReader over the files in dir.
type fileTiles struct {
	dir   string
	reads int
}

func (f *fileTiles) Height() int { return tileHeight }

func (f *fileTiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		data, err := f.read(t)
		if err != nil {
			return nil, err
		}
		if t.L >= 0 && len(data) != t.W*tlog.HashSize {
			return nil, fmt.Errorf("tile %s: %d bytes, want %d (width %d × %d)",
				t.Path(), len(data), t.W*tlog.HashSize, t.W, tlog.HashSize)
		}
		out[i] = data
	}
	return out, nil
}

func (f *fileTiles) read(t tlog.Tile) ([]byte, error) {
	rel, err := localPath(t)
	if err != nil {
		return nil, err
	}
	f.reads++
	data, err := os.ReadFile(filepath.Join(f.dir, filepath.FromSlash(rel)))
	if err != nil {
		return nil, fmt.Errorf("reading tile %s (Go path %s): %v", rel, t.Path(), err)
	}
	return data, nil
}

func (f *fileTiles) SaveTiles(tiles []tlog.Tile, data [][]byte) {}

// tileFor is the tile holding stored hash index idx, at the width it has in
// the tree of the given size.
func tileFor(idx, size int64) tlog.Tile {
	t := tlog.TileForIndex(tileHeight, idx)
	nodes := size >> uint(t.L*tileHeight)
	w := nodes - t.N<<tileHeight
	if w > 1<<tileHeight {
		w = 1 << tileHeight
	}
	t.W = int(w)
	return t
}

// rawHashes is a tlog.HashReader that reads hashes straight out of the tile
// files of the tree of the given size, without checking them against any
// root: an independent way to compute the tree hash.
type rawHashes struct {
	tiles *fileTiles
	size  int64
	cache map[string][]byte
}

func (r *rawHashes) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, idx := range indexes {
		t := tileFor(idx, r.size)
		if t.W < 1 {
			return nil, fmt.Errorf("stored hash %d is not in the tree of size %d", idx, r.size)
		}
		key := t.Path()
		data, ok := r.cache[key]
		if !ok {
			d, err := r.tiles.read(t)
			if err != nil {
				return nil, err
			}
			if len(d) != t.W*tlog.HashSize {
				return nil, fmt.Errorf("tile %s: %d bytes, want %d", t.Path(), len(d), t.W*tlog.HashSize)
			}
			r.cache[key] = d
			data = d
		}
		h, err := tlog.HashFromTile(t, data, idx)
		if err != nil {
			return nil, err
		}
		out[i] = h
	}
	return out, nil
}

// perfectRoot is the Merkle root of a full tile's 2^tileHeight hashes.
func perfectRoot(data []byte) tlog.Hash {
	hs := make([]tlog.Hash, len(data)/tlog.HashSize)
	for i := range hs {
		copy(hs[i][:], data[i*tlog.HashSize:])
	}
	for len(hs) > 1 {
		next := make([]tlog.Hash, len(hs)/2)
		for i := range next {
			next[i] = tlog.NodeHash(hs[2*i], hs[2*i+1])
		}
		hs = next
	}
	return hs[0]
}

// authenticateFullTiles checks every full hash tile of the tree against the
// hash one level up (in the parent tile). tlog.TileHashReader is meant to do
// this, but its loop "for i := len(stx); i < len(tiles); i++" starts at the
// number of subtree indexes, not the number of distinct tiles they fall in,
// so it skips child tiles whenever several of them share a tile: for size 663
// (subtrees 512+128+16+4+2+1 in 2 tiles) tile/0/000 and tile/0/001 are never
// authenticated. Together with the root recomputed from the raw tiles
// (which covers every hash of every partial tile), this authenticates every
// hash tile against the checkpoint root.
func authenticateFullTiles(tiles *fileTiles, size int64) (int, error) {
	checked := 0
	for level := 0; size>>uint(level*tileHeight) > 0; level++ {
		full := (size >> uint(level*tileHeight)) >> tileHeight
		for n := int64(0); n < full; n++ {
			t := tlog.Tile{H: tileHeight, L: level, N: n, W: 1 << tileHeight}
			data, err := tiles.read(t)
			if err != nil {
				return checked, err
			}
			if len(data) != t.W*tlog.HashSize {
				return checked, fmt.Errorf("tile %s: %d bytes, want %d", t.Path(), len(data), t.W*tlog.HashSize)
			}
			idx := tlog.StoredHashIndex((level+1)*tileHeight, n)
			pt := tileFor(idx, size)
			pdata, err := tiles.read(pt)
			if err != nil {
				return checked, err
			}
			want, err := tlog.HashFromTile(pt, pdata, idx)
			if err != nil {
				return checked, fmt.Errorf("parent of tile %s: %v", t.Path(), err)
			}
			if got := perfectRoot(data); got != want {
				rel, _ := localPath(t)
				prel, _ := localPath(pt)
				return checked, fmt.Errorf("full tile %s hashes to %s, but its parent %s holds %s", rel, got, prel, want)
			}
			checked++
		}
	}
	return checked, nil
}

// parseCheckpoint parses a c2sp.org/tlog-checkpoint body. tlog.ParseTree
// wants the go.sum database's "go.sum database tree" header, so the three
// lines are parsed here; extension lines are allowed and ignored.
func parseCheckpoint(text string) (origin string, size int64, root tlog.Hash, err error) {
	if !strings.HasSuffix(text, "\n") {
		return "", 0, root, errors.New("checkpoint body does not end in a newline")
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) < 3 {
		return "", 0, root, fmt.Errorf("checkpoint body has %d lines, want at least 3", len(lines))
	}
	origin = lines[0]
	if origin == "" {
		return "", 0, root, errors.New("empty origin")
	}
	if lines[1] != "0" && (strings.HasPrefix(lines[1], "0") || strings.HasPrefix(lines[1], "+")) {
		return "", 0, root, fmt.Errorf("non-canonical tree size %q", lines[1])
	}
	size, err = strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 {
		return "", 0, root, fmt.Errorf("bad tree size %q", lines[1])
	}
	root, err = tlog.ParseHash(lines[2])
	if err != nil {
		return "", 0, root, fmt.Errorf("bad root hash %q: %v", lines[2], err)
	}
	if base64.StdEncoding.EncodeToString(root[:]) != lines[2] {
		return "", 0, root, fmt.Errorf("non-canonical base64 root %q", lines[2])
	}
	for i, l := range lines[3:] {
		if l == "" {
			return "", 0, root, fmt.Errorf("empty extension line %d", i+4)
		}
	}
	return origin, size, root, nil
}

// decodeBundle splits an entry bundle: each entry is prefixed by its
// big-endian u16 length.
func decodeBundle(b []byte) ([][]byte, error) {
	var out [][]byte
	for off := 0; off < len(b); {
		if len(b)-off < 2 {
			return nil, fmt.Errorf("truncated length prefix at byte %d", off)
		}
		n := int(binary.BigEndian.Uint16(b[off:]))
		off += 2
		if len(b)-off < n {
			return nil, fmt.Errorf("entry at byte %d: length %d runs past the end (%d bytes left)", off-2, n, len(b)-off)
		}
		out = append(out, b[off:off+n])
		off += n
	}
	return out, nil
}

func main() {
	if len(os.Args) != 3 && len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: gocheck DIR VKEY [OLDSIZE OLDROOT]")
		os.Exit(2)
	}
	dir, vkey := os.Args[1], os.Args[2]

	// 1. The checkpoint: a signed note that verifies with the log key.
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		fail("verifier key %q: %v", vkey, err)
	}
	msg, err := os.ReadFile(filepath.Join(dir, "checkpoint"))
	if err != nil {
		fail("reading checkpoint: %v", err)
	}
	n, err := note.Open(msg, note.VerifierList(verifier))
	if err != nil {
		fail("checkpoint note does not verify with %s: %v", verifier.Name(), err)
	}
	if len(n.Sigs) < 1 || n.Sigs[0].Name != verifier.Name() || n.Sigs[0].Hash != verifier.KeyHash() {
		fail("checkpoint note: no verified signature by %s", verifier.Name())
	}
	origin, size, root, err := parseCheckpoint(n.Text)
	if err != nil {
		fail("checkpoint body: %v", err)
	}
	if origin != verifier.Name() {
		fail("checkpoint origin %q is not the key name %q", origin, verifier.Name())
	}
	if size < 1 {
		fail("checkpoint size is %d; nothing to check", size)
	}
	tree := tlog.Tree{N: size, Hash: root}

	// 2. The root from the hash tiles, through Go's verifying tile reader
	// (it checks the tiles it loads against tree.Hash) and through a raw
	// reader that checks nothing; then every full tile against its parent.
	tiles := &fileTiles{dir: dir}
	hr := tlog.TileHashReader(tree, tiles)
	th, err := tlog.TreeHash(size, hr)
	if err != nil {
		fail("tlog.TreeHash(%d) through TileHashReader: %v", size, err)
	}
	if th != root {
		fail("tree hash from tiles %s != checkpoint root %s", th, root)
	}
	raw := &rawHashes{tiles: tiles, size: size, cache: map[string][]byte{}}
	rth, err := tlog.TreeHash(size, raw)
	if err != nil {
		fail("tlog.TreeHash(%d) from raw tiles: %v", size, err)
	}
	if rth != root {
		fail("tree hash from raw tiles %s != checkpoint root %s", rth, root)
	}

	if _, err := authenticateFullTiles(tiles, size); err != nil {
		fail("%v", err)
	}

	// 3. Every entry bundle: entries hash (tlog.RecordHash) to the level-0
	// hashes of the tiles.
	leafIdx := make([]int64, size)
	for i := range leafIdx {
		leafIdx[i] = tlog.StoredHashIndex(0, int64(i))
	}
	leaves, err := hr.ReadHashes(leafIdx)
	if err != nil {
		fail("reading the %d level-0 hashes: %v", size, err)
	}
	var entries int64
	for bundle := int64(0); bundle<<tileHeight < size; bundle++ {
		w := size - bundle<<tileHeight
		if w > 1<<tileHeight {
			w = 1 << tileHeight
		}
		t := tlog.Tile{H: tileHeight, L: -1, N: bundle, W: int(w)}
		data, err := tiles.read(t)
		if err != nil {
			fail("%v", err)
		}
		es, err := decodeBundle(data)
		if err != nil {
			p, _ := localPath(t)
			fail("entry bundle %s: %v", p, err)
		}
		if int64(len(es)) != w {
			p, _ := localPath(t)
			fail("entry bundle %s holds %d entries, want %d", p, len(es), w)
		}
		for k, e := range es {
			i := bundle<<tileHeight + int64(k)
			if rh := tlog.RecordHash(e); rh != leaves[i] {
				fail("entry %d: RecordHash %s != level-0 tile hash %s", i, rh, leaves[i])
			}
			entries++
		}
	}
	if entries != size {
		fail("read %d entries, checkpoint size is %d", entries, size)
	}

	// 4. Inclusion proofs for a few indexes.
	for _, i := range []int64{0, 1, size / 3, size / 2, 255, 256, size - 2, size - 1} {
		if i < 0 || i >= size {
			continue
		}
		p, err := tlog.ProveRecord(size, i, hr)
		if err != nil {
			fail("tlog.ProveRecord(%d, %d): %v", size, i, err)
		}
		if err := tlog.CheckRecord(p, size, root, i, leaves[i]); err != nil {
			fail("tlog.CheckRecord(%d, %d): %v", size, i, err)
		}
	}

	// 5. Consistency with an older checkpoint.
	if len(os.Args) == 5 {
		old, err := strconv.ParseInt(os.Args[3], 10, 64)
		if err != nil || old < 1 || old > size {
			fail("bad OLDSIZE %q (size is %d)", os.Args[3], size)
		}
		oldRoot, err := tlog.ParseHash(os.Args[4])
		if err != nil {
			fail("bad OLDROOT %q: %v", os.Args[4], err)
		}
		oth, err := tlog.TreeHash(old, hr)
		if err != nil {
			fail("tlog.TreeHash(%d): %v", old, err)
		}
		if oth != oldRoot {
			fail("tree hash at old size %d from tiles %s != given old root %s", old, oth, oldRoot)
		}
		p, err := tlog.ProveTree(size, old, hr)
		if err != nil {
			fail("tlog.ProveTree(%d, %d): %v", size, old, err)
		}
		if err := tlog.CheckTree(p, size, root, old, oldRoot); err != nil {
			fail("tlog.CheckTree(%d, %d): %v", size, old, err)
		}
	}

	fmt.Printf("ok size=%d entries=%d\n", size, entries)
}
