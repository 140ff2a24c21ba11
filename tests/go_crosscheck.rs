//! Cross-check of our tlog-tiles output with Go's reference implementation,
//! `golang.org/x/mod/sumdb/{note,tlog}` (tests/gocheck/main.go).
//!
//! A small deterministic ledger is dumped as a tlog-tiles directory
//! (`checkpoint`, `tile/<L>/…`, `tile/entries/…`) and the Go checker must
//! accept it: the checkpoint note verifies with `note.Open`, the root from
//! the hash tiles (`tlog.TileHashReader`, `tlog.TreeHash`) equals the
//! checkpoint's, every entry's `tlog.RecordHash` is its level-0 tile hash,
//! and record and tree proofs check. Tampered tiles, entry bundles and
//! checkpoints must be rejected.
//!
//! Go comes from Debian (`golang-go`, `golang-golang-x-mod-dev`); the build
//! is offline (tests/gocheck/go.mod replaces golang.org/x/mod with
//! /usr/share/gocode/src/golang.org/x/mod). Without Go the test is skipped
//! unless `REVLEDGER_REQUIRE_GO=1`, which makes it fail.

use revledger::entry::{Action, CredentialId, Event, HolderTag, KindSet, Reason};
use revledger::hash::leaf_hash;
use revledger::ledger::{Ledger, Outcome, Submitter};
use revledger::note::{KeyName, NoteSigner};
use revledger::store::MemStore;
use revledger::tile::{
    decode_entry_bundle, encode_entry_bundle, tiles_for_size, TileKind, TilePath,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ORIGIN: &str = "example.com/revledger-gocheck";
/// Where Debian's golang-golang-x-mod-dev puts golang.org/x/mod (the
/// `replace` target in tests/gocheck/go.mod).
const XMOD_DIR: &str = "/usr/share/gocode/src/golang.org/x/mod";
const T0: u64 = 1_700_000_000_000;
const DAY: u64 = 86_400_000;

/// A batch: credentials to issue, then other events on earlier ones.
type Batch = (std::ops::Range<u32>, Vec<(u32, Action)>);

fn cred(i: u32) -> CredentialId {
    let mut b = [0xc5; 32];
    b[..4].copy_from_slice(&i.to_be_bytes());
    CredentialId(b)
}

fn holder(i: u32) -> HolderTag {
    let mut b = [0x4b; 32];
    b[28..].copy_from_slice(&i.to_be_bytes());
    HolderTag(b)
}

/// `None` when Go or golang.org/x/mod is missing and the test may be
/// skipped; panics when `REVLEDGER_REQUIRE_GO=1`.
fn go_available() -> Option<()> {
    let require = std::env::var("REVLEDGER_REQUIRE_GO").is_ok_and(|v| v == "1");
    let problem = match Command::new("go").arg("version").output() {
        Err(e) => Some(format!("`go` is not on PATH ({e})")),
        Ok(o) if !o.status.success() => Some(format!(
            "`go version` failed: {}",
            String::from_utf8_lossy(&o.stderr)
        )),
        Ok(_) if !Path::new(XMOD_DIR).is_dir() => Some(format!(
            "golang.org/x/mod is not at {XMOD_DIR} (Debian package golang-golang-x-mod-dev)"
        )),
        Ok(_) => None,
    };
    match problem {
        None => Some(()),
        Some(p) if require => panic!(
            "REVLEDGER_REQUIRE_GO=1 but {p}; install with \
             `apt-get install golang-go golang-golang-x-mod-dev`"
        ),
        Some(p) => {
            eprintln!(
                "NOTICE: skipping the Go tlog cross-check: {p} \
                 (set REVLEDGER_REQUIRE_GO=1 to make this a failure)"
            );
            None
        }
    }
}

/// Builds tests/gocheck offline and returns the binary.
fn build_gocheck() -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gocheck");
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("gocheck");
    std::fs::create_dir_all(&out_dir).unwrap();
    let bin = out_dir.join("gocheck");
    let mut cmd = Command::new("go");
    cmd.current_dir(&src)
        .args(["build", "-o"])
        .arg(&bin)
        .arg(".")
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GOWORK", "off")
        .env("GO111MODULE", "on");
    let no_cache_dir = ["GOCACHE", "XDG_CACHE_HOME", "HOME"]
        .iter()
        .all(|v| std::env::var_os(v).is_none());
    if no_cache_dir {
        cmd.env("GOCACHE", out_dir.join("gocache"));
    }
    let out = cmd.output().expect("running go build");
    assert!(
        out.status.success(),
        "go build of tests/gocheck failed (offline, golang.org/x/mod from {XMOD_DIR}):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

fn run(bin: &Path, dir: &Path, vkey: &str, old: Option<(u64, &str)>) -> Output {
    let mut cmd = Command::new(bin);
    cmd.arg(dir).arg(vkey);
    if let Some((size, root)) = old {
        cmd.arg(size.to_string()).arg(root);
    }
    cmd.output().expect("running gocheck")
}

fn show(o: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn assert_fails(o: &Output, what: &str) {
    assert!(
        !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("gocheck: FAIL"),
        "Go checker accepted {what}:\n{}",
        show(o)
    );
    eprintln!(
        "rejected {what}: {}",
        String::from_utf8_lossy(&o.stderr).trim()
    );
}

/// A deterministic ledger of a bit more than 600 entries: full and partial
/// level-0 tiles and entry bundles, a partial level-1 tile. Returns it with
/// an older checkpoint's (size, base64 root).
fn build_ledger() -> (Ledger<MemStore>, (u64, String)) {
    let log = NoteSigner::from_seed(KeyName::new(ORIGIN).unwrap(), [0x11; 32]);
    let issuer = NoteSigner::from_seed(KeyName::new("issuer.example").unwrap(), [0x22; 32]);
    let mut now = T0;
    let mut ledger = Ledger::open(MemStore::new(), log, now).unwrap();
    now += 1000;
    ledger
        .reconcile_submitters(
            &[Submitter {
                key: issuer.verifier(),
                kinds: KindSet::ALL,
            }],
            now,
        )
        .unwrap();

    let event = |i: u32, action: Action, at: u64| Event {
        action,
        credential: cred(i),
        holder: holder(i),
        issuer_key_id: issuer.verifier().id(),
        issued_at_ms: at,
    };
    let issue = |i: u32, at: u64| {
        event(
            i,
            Action::Issue {
                not_before_ms: at,
                not_after_ms: at + 365 * DAY,
                replaces: None,
            },
            at,
        )
    };
    let mut old = None;
    // (issues, then other events) per batch.
    let batches: [Batch; 5] = [
        (0..150, vec![]),
        (150..270, vec![]),
        (
            270..400,
            (0..20)
                .map(|i| {
                    (
                        i,
                        Action::Revoke {
                            reason: Reason::KeyCompromise,
                        },
                    )
                })
                .chain((150..160).map(|i| {
                    (
                        i,
                        Action::Suspend {
                            reason: Reason::Lost,
                        },
                    )
                }))
                .collect(),
        ),
        (400..540, (150..155).map(|i| (i, Action::Resume)).collect()),
        (540..620, vec![]),
    ];
    for (b, (issues, others)) in batches.into_iter().enumerate() {
        now += 60_000;
        let mut events: Vec<Event> = issues.map(|i| issue(i, now)).collect();
        events.extend(others.into_iter().map(|(i, a)| event(i, a, now)));
        let raw: Vec<Vec<u8>> = events
            .into_iter()
            .map(|e| e.sign(issuer.signing_key()).encode())
            .collect();
        let res = ledger.append_events(&raw, now).unwrap();
        for (k, o) in res.outcomes.iter().enumerate() {
            assert!(
                matches!(o, Outcome::Accepted { .. }),
                "batch {b} event {k}: {o:?}"
            );
        }
        if b == 1 {
            old = Some((res.checkpoint.size(), res.checkpoint.root().to_base64()));
        }
    }
    (ledger, old.unwrap())
}

/// Writes the checkpoint, every hash tile and every entry bundle of the
/// ledger's latest checkpoint under `dir`, at their tlog-tiles paths.
fn dump(ledger: &Ledger<MemStore>, dir: &Path) -> Vec<TilePath> {
    let size = ledger.checkpoint().size();
    std::fs::write(dir.join("checkpoint"), ledger.checkpoint().note_text()).unwrap();
    let mut tiles = tiles_for_size(size);
    let bundles: Vec<TilePath> = tiles
        .iter()
        .filter(|t| t.kind() == TileKind::Hash { level: 0 })
        .map(|t| TilePath::entries(t.index(), t.width()).unwrap())
        .collect();
    tiles.extend(bundles);
    for t in &tiles {
        let body = ledger
            .read_tile(t)
            .unwrap()
            .unwrap_or_else(|| panic!("{t} missing at size {size}"));
        let path = dir.join(t.to_path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }
    tiles
}

/// Flips one byte of `path` (at `offset`), runs `f`, restores the file.
fn with_flipped<T>(path: &Path, offset: usize, f: impl FnOnce() -> T) -> T {
    let orig = std::fs::read(path).unwrap();
    let mut bad = orig.clone();
    bad[offset] ^= 0x01;
    std::fs::write(path, &bad).unwrap();
    let r = f();
    std::fs::write(path, &orig).unwrap();
    r
}

#[test]
fn go_tlog_accepts_our_tiles_and_checkpoints() {
    if go_available().is_none() {
        return;
    }
    let bin = build_gocheck();
    let (ledger, (old_size, old_root)) = build_ledger();
    let size = ledger.checkpoint().size();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let tiles = dump(&ledger, dir);
    let vkey = ledger.verifier().to_vkey_string();

    // The shape the test is meant to cover.
    let has = |level: u8, partial: bool| {
        tiles
            .iter()
            .any(|t| t.kind() == TileKind::Hash { level } && t.is_partial() == partial)
    };
    assert!(size > 600, "size {size}");
    assert!(has(0, false) && has(0, true) && has(1, true), "{tiles:?}");
    assert!(old_size < size && old_size > 256, "old size {old_size}");

    // Go accepts everything, with and without the consistency check.
    let want = format!("ok size={size} entries={size}");
    for old in [None, Some((old_size, old_root.as_str()))] {
        let o = run(&bin, dir, &vkey, old);
        assert!(o.status.success(), "Go checker failed:\n{}", show(&o));
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            want,
            "{}",
            show(&o)
        );
        eprintln!("old {old:?}: {want}");
    }

    // A wrong old root fails the consistency check.
    let wrong_root = ledger.checkpoint().root().to_base64();
    let o = run(&bin, dir, &vkey, Some((old_size, &wrong_root)));
    assert_fails(&o, "a wrong old root");

    // One flipped byte in any hash tile or entry bundle is caught.
    let full0 = TilePath::hash(0, 0, 256).unwrap();
    let partial0 = *tiles
        .iter()
        .find(|t| t.kind() == TileKind::Hash { level: 0 } && t.is_partial())
        .unwrap();
    let level1 = *tiles
        .iter()
        .find(|t| t.kind() == TileKind::Hash { level: 1 })
        .unwrap();
    let bundle0 = TilePath::entries(0, 256).unwrap();
    let bundle_last = *tiles
        .iter()
        .rfind(|t| t.kind() == TileKind::Entries)
        .unwrap();
    for (tile, offset) in [
        (full0, 32 * 17 + 5),
        (partial0, 32 * usize::from(partial0.width() - 1)),
        (level1, 3),
        (level1, 32 * usize::from(level1.width()) - 1),
        // Inside the first entry (past its 2-byte length prefix).
        (bundle0, 10),
        (bundle_last, 2),
    ] {
        let path = dir.join(tile.to_path());
        let o = with_flipped(&path, offset, || run(&bin, dir, &vkey, None));
        assert_fails(&o, &format!("{tile} with byte {offset} flipped"));
    }
    // A consistent tamper: entry 17 changed and its level-0 hash in the full
    // tile replaced to match. Only authenticating tile/0/000 against the
    // level-1 tile catches it (Go's TileHashReader alone does not here).
    {
        let bpath = dir.join(bundle0.to_path());
        let tpath = dir.join(full0.to_path());
        let (borig, torig) = (
            std::fs::read(&bpath).unwrap(),
            std::fs::read(&tpath).unwrap(),
        );
        let mut entries = decode_entry_bundle(&borig).unwrap();
        let mut e17 = entries[17].to_vec();
        e17[5] ^= 0x01;
        entries[17] = &e17;
        let mut tnew = torig.clone();
        tnew[32 * 17..32 * 18].copy_from_slice(leaf_hash(&e17).as_bytes());
        std::fs::write(&bpath, encode_entry_bundle(&entries).unwrap()).unwrap();
        std::fs::write(&tpath, tnew).unwrap();
        let o = run(&bin, dir, &vkey, None);
        std::fs::write(&bpath, borig).unwrap();
        std::fs::write(&tpath, torig).unwrap();
        assert_fails(&o, "entry 17 and its tile hash changed consistently");
    }

    // The directory is intact again.
    let o = run(&bin, dir, &vkey, None);
    assert!(o.status.success(), "{}", show(&o));

    // A checkpoint signed by another key (same name, same body) fails with
    // the log's key, and passes with the other key's: the note itself is
    // fine, only the signer is wrong.
    let body = ledger.checkpoint().checkpoint().to_body();
    let other = NoteSigner::from_seed(KeyName::new(ORIGIN).unwrap(), [0x33; 32]);
    let forged = other.sign_note(&body).unwrap();
    let genuine = std::fs::read(dir.join("checkpoint")).unwrap();
    std::fs::write(dir.join("checkpoint"), &forged).unwrap();
    let o = run(&bin, dir, &vkey, None);
    assert_fails(&o, "a checkpoint signed by another key");
    let o = run(&bin, dir, &other.verifier().to_vkey_string(), None);
    assert!(o.status.success(), "{}", show(&o));
    std::fs::write(dir.join("checkpoint"), &genuine).unwrap();

    // A validly signed checkpoint with a different root fails.
    let mut root = ledger.checkpoint().root().0;
    root[0] ^= 0x80;
    let lie = body.replace(
        &ledger.checkpoint().root().to_base64(),
        &revledger::hash::Hash(root).to_base64(),
    );
    let log = NoteSigner::from_seed(KeyName::new(ORIGIN).unwrap(), [0x11; 32]);
    std::fs::write(dir.join("checkpoint"), log.sign_note(&lie).unwrap()).unwrap();
    let o = run(&bin, dir, &vkey, None);
    assert_fails(&o, "a signed checkpoint with a wrong root");
    std::fs::write(dir.join("checkpoint"), &genuine).unwrap();
}
