//! End-to-end tests of the real `revledger` binary: a node started as a child
//! process on an ephemeral port, driven over HTTP (ureq) and through the CLI,
//! and read back by an independent tlog-tiles client written here.

use base64::Engine as _;
use revledger::checkpoint::verify_checkpoint;
use revledger::entry::{Action, CredentialId, Entry, Event, HolderTag, KindSet, RegistryOp};
use revledger::hash::{leaf_hash, Hash};
use revledger::merkle::{verify_consistency, verify_inclusion};
use revledger::note::{NoteSigner, NoteVerifier};
use revledger::status::{verify_status, Policy, StatusProof, Verdict};
use revledger::tile::{decode_entry_bundle, tiles_for_size, TileKind, TilePath};
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const BIN: &str = env!("CARGO_BIN_EXE_revledger");
const DAY_MS: u64 = 86_400_000;

// ---------------------------------------------------------------- the node

/// A running node. Dropping it stops the process (SIGTERM, then SIGKILL), so
/// a failing test never leaks a child.
struct Node {
    child: Child,
    url: String,
    port: u16,
    data: PathBuf,
    stdout: Arc<Mutex<Vec<String>>>,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

impl Node {
    /// Starts `revledger serve` on `data` and waits for `listening on`.
    fn start(data: &Path) -> Node {
        Node::start_with(data, &[])
    }

    /// [`Node::start`] with more flags.
    fn start_with(data: &Path, flags: &[&str]) -> Node {
        let port = free_port();
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data.with_extension("stderr.log"))
            .expect("stderr log file");
        let mut child = Command::new(BIN)
            .arg("serve")
            .arg("--data")
            .arg(data)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--heartbeat-secs")
            .arg("3600")
            .args(flags)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn revledger serve");
        let out = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().unwrap().push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }
        let mut node = Node {
            child,
            url: format!("http://127.0.0.1:{port}"),
            port,
            data: data.to_path_buf(),
            stdout: lines,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.starts_with("listening on ") => break,
                Ok(_) => {}
                Err(_) => {
                    let status = node.child.try_wait().ok().flatten();
                    panic!(
                        "node did not print `listening on` (exit: {status:?}); stdout: {:?}; stderr: {}",
                        node.stdout_lines(),
                        std::fs::read_to_string(data.with_extension("stderr.log"))
                            .unwrap_or_default()
                    );
                }
            }
        }
        let health = get(&format!("{}/healthz", node.url));
        assert_eq!(health.status, 200);
        assert_eq!(health.text(), "ok\n");
        node
    }

    fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    fn vkey_path(&self) -> PathBuf {
        self.data.join("log.vkey")
    }

    fn vkey(&self) -> NoteVerifier {
        let text = std::fs::read_to_string(self.vkey_path()).unwrap();
        NoteVerifier::parse_vkey(text.trim()).unwrap()
    }

    fn submitter(&self) -> NoteSigner {
        let text = std::fs::read_to_string(self.data.join("submitter.key")).unwrap();
        NoteSigner::parse_private_key(text.trim()).unwrap()
    }

    /// The latest checkpoint text and its verified (size, root).
    fn checkpoint(&self) -> (String, u64, Hash) {
        let r = get(&format!("{}/checkpoint", self.url));
        assert_eq!(r.status, 200);
        let text = r.text();
        let c = verify_checkpoint(&text, &self.vkey()).expect("checkpoint verifies");
        (text, c.size(), *c.root())
    }

    fn sigterm(&self) {
        let ok = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -TERM failed");
    }

    /// Sends SIGTERM and waits up to `limit` for the exit status.
    fn terminate(mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        self.sigterm();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(self.child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------- HTTP

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("utf-8 body")
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build()
}

fn finish(r: Result<ureq::Response, ureq::Error>) -> Resp {
    let resp = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    };
    let status = resp.status();
    let headers = resp
        .headers_names()
        .into_iter()
        .map(|n| {
            let v = resp.header(&n).unwrap_or_default().to_string();
            (n, v)
        })
        .collect();
    let mut body = Vec::new();
    resp.into_reader().read_to_end(&mut body).unwrap();
    Resp {
        status,
        headers,
        body,
    }
}

fn get(url: &str) -> Resp {
    finish(agent().get(url).call())
}

fn get_with(url: &str, header: (&str, &str)) -> Resp {
    finish(agent().get(url).set(header.0, header.1).call())
}

fn post_raw(url: &str, body: &[u8]) -> Resp {
    finish(
        agent()
            .post(url)
            .set("Content-Type", "application/json")
            .send_bytes(body),
    )
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// `POST /events` with the given encoded events.
fn post_events(node: &Node, events: &[Vec<u8>]) -> Resp {
    let list: Vec<String> = events.iter().map(|e| b64(e)).collect();
    let body = serde_json::json!({ "events": list }).to_string();
    post_raw(&format!("{}/events", node.url), body.as_bytes())
}

// ---------------------------------------------------------------- events

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn cred(label: &str) -> CredentialId {
    CredentialId(Hash::of(format!("credential/{label}").as_bytes()).0)
}

fn holder(label: &str) -> HolderTag {
    HolderTag(Hash::of(format!("holder/{label}").as_bytes()).0)
}

fn issue_action(replaces: Option<CredentialId>) -> Action {
    let now = now_ms();
    Action::Issue {
        not_before_ms: now - 1000,
        not_after_ms: now + 365 * DAY_MS,
        replaces,
    }
}

fn signed(signer: &NoteSigner, action: Action, c: CredentialId, h: HolderTag) -> Vec<u8> {
    Event {
        action,
        credential: c,
        holder: h,
        issuer_key_id: signer.id(),
        issued_at_ms: now_ms(),
    }
    .sign(signer.signing_key())
    .encode()
}

// ---------------------------------------------------------------- CLI

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn cli(args: &[&str]) -> Out {
    let o = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run revledger");
    Out {
        code: o.status.code().expect("exit code"),
        stdout: String::from_utf8(o.stdout).unwrap(),
        stderr: String::from_utf8(o.stderr).unwrap(),
    }
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn cli_submit(node: &Node, kind: &str, c: &CredentialId, extra: &[&str]) -> Out {
    let key = node.data.join("submitter.key");
    let vkey = node.vkey_path();
    let hex = c.to_hex();
    let mut args = vec![
        "submit",
        "--node",
        &node.url,
        "--key",
        p(&key),
        "--vkey",
        p(&vkey),
        kind,
        "--credential",
        &hex,
    ];
    args.extend_from_slice(extra);
    cli(&args)
}

/// `revledger submit` that must succeed; returns the printed index.
fn submit_ok(node: &Node, kind: &str, c: &CredentialId, extra: &[&str]) -> u64 {
    let o = cli_submit(node, kind, c, extra);
    assert_eq!(o.code, 0, "submit {kind} failed: {}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).expect("submit prints JSON");
    assert_eq!(v["duplicate"], false);
    assert_eq!(v["inclusion"]["index"], v["index"]);
    v["index"].as_u64().expect("index")
}

fn cli_status(node: &Node, c: &CredentialId, extra: &[&str]) -> Out {
    let vkey = node.vkey_path();
    let hex = c.to_hex();
    let mut args = vec!["status", "--node", &node.url, "--vkey", p(&vkey)];
    args.extend_from_slice(extra);
    args.push(&hex);
    cli(&args)
}

fn verify_file(vkey: &Path, file: &Path, extra: &[&str]) -> Out {
    let mut args = vec!["verify", "status", "--vkey", p(vkey)];
    args.extend_from_slice(extra);
    args.push(p(file));
    cli(&args)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

// ---------------------------------------------------------------- RFC 9162 by hand

fn sha256(parts: &[&[u8]]) -> Hash {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    Hash(h.finalize().into())
}

/// MTH(D[n]) of RFC 9162 §2.1.1 over leaf hashes.
fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => sha256(&[]),
        1 => leaves[0],
        n => {
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            let (l, r) = (mth(&leaves[..k]), mth(&leaves[k..]));
            sha256(&[&[0x01], &l.0, &r.0])
        }
    }
}

// ================================================================ tests

/// 1. A first start creates the log key (0600), its verifier key and a local
///    submitter key (0600), prints where they are, and logs the submitter.
#[test]
fn first_start_creates_keys_and_prints_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let node = Node::start(&data);

    for f in ["log.key", "log.vkey", "submitter.key", "submitter.vkey"] {
        assert!(data.join(f).is_file(), "{f} missing");
    }
    assert_eq!(mode(&data.join("log.key")), 0o600);
    assert_eq!(mode(&data.join("submitter.key")), 0o600);

    let vkey_text = std::fs::read_to_string(data.join("log.vkey")).unwrap();
    let vkey = NoteVerifier::parse_vkey(vkey_text.trim()).unwrap();
    assert_eq!(vkey.name().as_str(), "localhost/revledger");
    let log_signer = NoteSigner::parse_private_key(
        std::fs::read_to_string(data.join("log.key"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    assert_eq!(log_signer.verifier().to_vkey_string(), vkey_text.trim());

    let d = data.display();
    assert_eq!(
        node.stdout_lines(),
        vec![
            format!("created log key {d}/log.key and verifier key {d}/log.vkey"),
            format!("created local submitter key {d}/submitter.key (allowed every event kind)"),
            format!("log verifier key: {}", vkey_text.trim()),
            format!("log verifier key file: {d}/log.vkey"),
            format!("listening on http://127.0.0.1:{}", node.port),
        ]
    );

    // The log: the genesis head record, one registry change adding the
    // submitter, then its head record.
    let (text, size, root) = node.checkpoint();
    assert!(text.starts_with("localhost/revledger\n3\n"), "{text}");
    assert_eq!(size, 3);
    let bundle = get(&format!("{}/tile/entries/000.p/3", node.url));
    assert_eq!(bundle.status, 200);
    let entries = decode_entry_bundle(&bundle.body).unwrap();
    assert_eq!(entries.len(), 3);
    let submitter = node.submitter();
    assert!(matches!(Entry::decode(entries[0]).unwrap(), Entry::Head(_)));
    match Entry::decode(entries[1]).unwrap() {
        Entry::Registry(r) => {
            assert_eq!(r.change.op, RegistryOp::Add);
            assert_eq!(r.change.kinds, KindSet::ALL);
            assert_eq!(r.change.name, "local-submitter");
            assert_eq!(
                r.change.public_key,
                submitter.verifier().key().to_bytes(),
                "the registered key is submitter.key's"
            );
            r.verify(vkey.strict())
                .expect("registry change signed by the log key");
        }
        other => panic!("entry 1 is not a registry change: {other:?}"),
    }
    assert!(matches!(Entry::decode(entries[2]).unwrap(), Entry::Head(_)));
    let leaves: Vec<Hash> = entries.iter().map(|e| leaf_hash(e)).collect();
    assert_eq!(root, mth(&leaves), "root of the three entries");
}

/// 2. The credential lifecycle through the CLI, saved proofs, staleness and
///    tampering.
#[test]
fn lifecycle_through_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&tmp.path().join("data"));
    let (c, h) = (cred("C"), holder("H"));
    let (c3, c4, c5, h2) = (cred("C3"), cred("C4"), cred("C5"), holder("H2"));
    let hx = |c: &CredentialId| c.to_hex();
    let status = |c: &CredentialId| cli_status(&node, c, &[]);

    // Entries 0..=2 are the genesis head, the registry change and its head
    // record; each submission is one event plus one head record.
    assert_eq!(submit_ok(&node, "issue", &c, &["--holder", &h.to_hex()]), 3);
    let s = status(&c);
    assert_eq!(s.code, 0, "{}{}", s.stdout, s.stderr);
    assert!(
        s.stdout
            .starts_with(&format!("{} valid: active until ", hx(&c))),
        "{}",
        s.stdout
    );

    assert_eq!(submit_ok(&node, "suspend", &c, &["--reason", "lost"]), 5);
    let s = status(&c);
    assert_eq!(s.code, 2);
    assert_eq!(
        s.stdout,
        format!("{} suspended: suspended (lost)\n", hx(&c))
    );

    assert_eq!(submit_ok(&node, "resume", &c, &[]), 7);
    assert_eq!(status(&c).code, 0);

    assert_eq!(
        submit_ok(&node, "revoke", &c, &["--reason", "holder_request"]),
        9
    );
    let s = status(&c);
    assert_eq!(s.code, 3);
    assert_eq!(
        s.stdout,
        format!("{} revoked: revoked (holder_request)\n", hx(&c))
    );

    // A move to a new phone: C4 replaces H2's live C3.
    assert_eq!(
        submit_ok(&node, "issue", &c3, &["--holder", &h2.to_hex()]),
        11
    );
    assert_eq!(status(&c3).code, 0);
    // Without --replaces the holder's live credential blocks a new issue.
    let refused = cli_submit(&node, "issue", &c5, &["--holder", &h2.to_hex()]);
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains("HTTP 409")
            && refused.stderr.contains("holder_has_live_credential"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        submit_ok(
            &node,
            "issue",
            &c4,
            &["--holder", &h2.to_hex(), "--replaces", &c3.to_hex()]
        ),
        13
    );
    let s = status(&c3);
    assert_eq!(s.code, 3);
    assert_eq!(
        s.stdout,
        format!("{} revoked: revoked (superseded)\n", hx(&c3))
    );
    assert_eq!(status(&c4).code, 0);
    assert_eq!(status(&c5).code, 5, "the refused C5 never reached the log");
    let (_, size, _) = node.checkpoint();
    assert_eq!(size, 15);

    let never = cred("never-seen");
    let s = status(&never);
    assert_eq!(s.code, 5);
    assert_eq!(
        s.stdout,
        format!(
            "{} unknown: the log has never seen this credential\n",
            hx(&never)
        )
    );

    // Saved proofs verify offline to the same verdict.
    let vkey = node.vkey_path();
    for (id, code) in [(c, 3), (c3, 3), (c4, 0), (never, 5)] {
        let file = tmp.path().join(format!("{}.json", hx(&id)));
        let online = cli_status(&node, &id, &["--save", p(&file)]);
        assert_eq!(online.code, code);
        let offline = verify_file(&vkey, &file, &[]);
        assert_eq!(offline.code, code, "{}{}", offline.stdout, offline.stderr);
        assert_eq!(offline.stdout, online.stdout);
    }

    // Stale: the proof of active C4 is older than 1 ms. A revoked
    // credential stays revoked even from a stale proof.
    std::thread::sleep(Duration::from_millis(50));
    let c4_file = tmp.path().join(format!("{}.json", hx(&c4)));
    let s = verify_file(&vkey, &c4_file, &["--max-age", "1ms"]);
    assert_eq!(s.code, 6, "{}{}", s.stdout, s.stderr);
    assert!(
        s.stdout
            .starts_with(&format!("{} stale: proof from ", hx(&c4))),
        "{}",
        s.stdout
    );
    let c_file = tmp.path().join(format!("{}.json", hx(&c)));
    assert_eq!(verify_file(&vkey, &c_file, &["--max-age", "1ms"]).code, 3);
    // Absence is not final: an old proof of "unknown" is only stale.
    assert_eq!(cli_status(&node, &never, &["--max-age", "1ms"]).code, 6);

    // Tampering: a different character in the checkpoint signature, or in
    // the map proof, makes the proof invalid (exit 7).
    let proof_text = std::fs::read_to_string(&c4_file).unwrap();
    let mut doc: serde_json::Value = serde_json::from_str(&proof_text).unwrap();
    let ckpt = doc["checkpoint"].as_str().unwrap().to_string();
    let sig_line = ckpt.lines().last().unwrap().to_string();
    assert!(sig_line.starts_with("— localhost/revledger "), "{sig_line}");
    let sig_pos = ckpt.rfind(&sig_line).unwrap() + sig_line.len() - 20;
    let tampered_ckpt = flip_b64_char(&ckpt, sig_pos);
    doc["checkpoint"] = tampered_ckpt.into();
    let bad = tmp.path().join("tampered-checkpoint.json");
    std::fs::write(&bad, doc.to_string()).unwrap();
    let s = verify_file(&vkey, &bad, &[]);
    assert_eq!(s.code, 7, "{}{}", s.stdout, s.stderr);
    assert!(
        s.stdout
            .starts_with(&format!("{} invalid: INVALID PROOF: checkpoint", hx(&c4))),
        "{}",
        s.stdout
    );

    let mut doc: serde_json::Value = serde_json::from_str(&proof_text).unwrap();
    let map_proof = doc["map_proof"].as_str().unwrap().to_string();
    assert!(map_proof.len() > 8);
    doc["map_proof"] = flip_b64_char(&map_proof, map_proof.len() / 2).into();
    let bad = tmp.path().join("tampered-map.json");
    std::fs::write(&bad, doc.to_string()).unwrap();
    let s = verify_file(&vkey, &bad, &[]);
    assert_eq!(s.code, 7, "{}{}", s.stdout, s.stderr);

    // The untouched file still verifies, and not with another log's key.
    assert_eq!(verify_file(&vkey, &c4_file, &[]).code, 0);
    let other = tmp.path().join("other-log");
    let k = cli(&[
        "keygen",
        "--name",
        "localhost/revledger",
        "--out",
        p(&other),
    ]);
    assert_eq!(k.code, 0, "{}", k.stderr);
    let s = verify_file(&other.with_extension("vkey"), &c4_file, &[]);
    assert_eq!(s.code, 7, "{}{}", s.stdout, s.stderr);
}

/// Replaces the base64 character at byte `pos` by a different base64
/// letter (A↔B), keeping the text decodable.
fn flip_b64_char(s: &str, pos: usize) -> String {
    let mut b = s.as_bytes().to_vec();
    assert!(b[pos].is_ascii_alphanumeric() || b[pos] == b'+' || b[pos] == b'/');
    b[pos] = if b[pos] == b'A' { b'B' } else { b'A' };
    String::from_utf8(b).unwrap()
}

/// Asserts a refused single-event submission: exact status and error code,
/// and the log unchanged.
fn assert_refused(node: &Node, resp: &Resp, status: u16, code: &str, before: &str) {
    assert_eq!(
        resp.status,
        status,
        "body: {}",
        String::from_utf8_lossy(&resp.body)
    );
    let v = resp.json();
    assert_eq!(v["error"], code, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert_eq!(node.checkpoint().0, before, "a refusal changed the log");
}

/// 3. Refused submissions over HTTP: exact status, JSON error code, and no
///    change to the log; duplicates are logged once.
#[test]
fn refused_submissions_over_http() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&tmp.path().join("data"));
    let signer = node.submitter();
    let events_url = format!("{}/events", node.url);
    let (c, h) = (cred("R"), holder("R"));

    let issue = signed(&signer, issue_action(None), c, h);
    let r = post_events(&node, std::slice::from_ref(&issue));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["results"][0]["index"], 3);
    assert_eq!(v["results"][0]["duplicate"], false);
    assert_eq!(
        v["results"][0]["leaf_hash"],
        leaf_hash(&issue).to_base64().as_str()
    );
    let ckpt_text = v["results"][0]["checkpoint"].as_str().unwrap().to_string();
    let ckpt = verify_checkpoint(&ckpt_text, &node.vkey()).unwrap();
    assert_eq!(ckpt.size(), 5);
    let proof: Vec<Hash> =
        serde_json::from_value(v["results"][0]["inclusion"]["hashes"].clone()).unwrap();
    verify_inclusion(&leaf_hash(&issue), 3, 5, &proof, ckpt.root()).unwrap();
    assert_eq!(node.checkpoint().0, ckpt_text);

    // The identical event again: same index, marked duplicate, log unchanged.
    let r = post_events(&node, std::slice::from_ref(&issue));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["results"][0]["index"], 3);
    assert_eq!(v["results"][0]["duplicate"], true);
    assert_eq!(v["results"][0]["checkpoint"], ckpt_text.as_str());
    assert_eq!(node.checkpoint().0, ckpt_text);

    let revoke = signed(
        &signer,
        Action::Revoke {
            reason: revledger::entry::Reason::HolderRequest,
        },
        c,
        h,
    );
    let r = post_events(&node, &[revoke]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["results"][0]["index"], 5);
    let before = node.checkpoint().0;

    // Resume of a revoked credential: 409.
    let resume = signed(&signer, Action::Resume, c, h);
    let r = post_events(&node, &[resume]);
    assert_refused(&node, &r, 409, "invalid_transition", &before);

    // Signed by a key the registry does not know: 403.
    let prefix = tmp.path().join("stranger");
    let k = cli(&["keygen", "--name", "stranger", "--out", p(&prefix)]);
    assert_eq!(k.code, 0, "{}", k.stderr);
    let key_path = tmp.path().join("stranger.key");
    assert_eq!(mode(&key_path), 0o600);
    assert_eq!(
        k.stdout.lines().take(2).collect::<Vec<_>>(),
        vec![
            format!("private key: {}", key_path.display()),
            format!(
                "verifier key: {}",
                tmp.path().join("stranger.vkey").display()
            ),
        ]
    );
    let stranger =
        NoteSigner::parse_private_key(std::fs::read_to_string(&key_path).unwrap().trim()).unwrap();
    let ev = signed(&stranger, issue_action(None), cred("S"), holder("S"));
    let r = post_events(&node, &[ev]);
    assert_refused(&node, &r, 403, "unknown_issuer", &before);

    // A registered issuer's event with one signature byte flipped: 403.
    let mut ev = signed(&signer, issue_action(None), cred("B"), holder("B"));
    let n = ev.len();
    ev[n - 10] ^= 0x01;
    let r = post_events(&node, &[ev.clone()]);
    assert_refused(&node, &r, 403, "bad_signature", &before);
    // ... and a byte of the signed body flipped instead.
    let mut ev2 = signed(&signer, issue_action(None), cred("B2"), holder("B2"));
    ev2[5] ^= 0x80;
    let r = post_events(&node, &[ev2]);
    assert_refused(&node, &r, 403, "bad_signature", &before);

    // Not base64; not JSON; no events; a truncated entry: 400.
    let r = post_raw(&events_url, br#"{"events": ["!!not base64!!"]}"#);
    assert_refused(&node, &r, 400, "malformed", &before);
    let r = post_raw(&events_url, b"{not json");
    assert_refused(&node, &r, 400, "malformed", &before);
    let r = post_raw(&events_url, br#"{"events": []}"#);
    assert_refused(&node, &r, 400, "malformed", &before);
    let r = post_events(&node, &[issue[..40].to_vec()]);
    assert_refused(&node, &r, 400, "malformed", &before);

    // More than 1000 events in one request: 413 with a JSON error.
    let many: Vec<Vec<u8>> = vec![vec![0u8; 4]; 1001];
    let r = post_events(&node, &many);
    assert_refused(&node, &r, 413, "too_large", &before);

    // A body over 2 MiB: 413 with the JSON error too.
    let big = format!(
        "{{\"events\": [\"{}\"]}}",
        "A".repeat(2 * 1024 * 1024 + 1024)
    );
    let r = post_raw(&events_url, big.as_bytes());
    assert_refused(&node, &r, 413, "too_large", &before);

    // In a multi-event request each event gets its own answer; the
    // refused one is not logged, the good one is.
    let good = signed(&signer, issue_action(None), cred("G"), holder("G"));
    let r = post_events(&node, &[good.clone(), ev]);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["results"][0]["index"], 7);
    assert_eq!(v["results"][0]["duplicate"], false);
    assert_eq!(v["results"][1]["error"], "bad_signature");
    assert_eq!(v["results"].as_array().unwrap().len(), 2);
    let (_, size, _) = node.checkpoint();
    assert_eq!(size, 9, "one event and one head record");

    // The node is still healthy after all that.
    assert_eq!(get(&format!("{}/healthz", node.url)).status, 200);
}

fn tile_url(node: &Node, t: &TilePath) -> String {
    format!("{}/{}", node.url, t.to_path())
}

/// 4. An independent client reading only through tlog-tiles (plus the
///    dynamic proof endpoints) recomputes and checks everything.
#[test]
fn tlog_tiles_client_recomputes_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&tmp.path().join("data"));
    let signer = node.submitter();
    let vkey = node.vkey();

    // 3 × 90 issues in three requests after the three start-up entries:
    // events 3..=92 + head 93, then 94..=183 + head 184, then 185..=274 +
    // head 275.
    let mut old: Option<(String, u64, Hash)> = None;
    for batch in 0..3u64 {
        let events: Vec<Vec<u8>> = (0..90)
            .map(|i| {
                let label = format!("bulk-{batch}-{i}");
                signed(&signer, issue_action(None), cred(&label), holder(&label))
            })
            .collect();
        let r = post_events(&node, &events);
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        let results = v["results"].as_array().unwrap();
        assert_eq!(results.len(), 90);
        for (i, item) in results.iter().enumerate() {
            assert_eq!(item["index"], 3 + batch * 91 + i as u64, "{item}");
            assert_eq!(
                item["leaf_hash"],
                leaf_hash(&events[i]).to_base64().as_str()
            );
        }
        if batch == 0 {
            let c = node.checkpoint();
            assert_eq!(c.1, 94);
            old = Some(c);
        }
    }
    let (old_text, old_size, old_root) = old.unwrap();

    // The checkpoint, its headers and signature.
    let r = get(&format!("{}/checkpoint", node.url));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    let checkpoint = verify_checkpoint(&r.text(), &vkey).expect("signed by the log key");
    let (size, root) = (checkpoint.size(), *checkpoint.root());
    assert_eq!(size, 276);
    assert_eq!(checkpoint.origin(), "localhost/revledger");
    assert_ne!(r.text(), old_text);

    // Every hash tile the size needs.
    let tiles = tiles_for_size(size);
    let paths: Vec<String> = tiles.iter().map(TilePath::to_path).collect();
    assert_eq!(
        paths,
        vec!["tile/0/000", "tile/0/001.p/20", "tile/1/000.p/1"]
    );
    let mut level0 = Vec::new();
    let mut level1 = Vec::new();
    for t in &tiles {
        let r = get(&tile_url(&node, t));
        assert_eq!(r.status, 200, "{}", t.to_path());
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
        let cache = r.header("cache-control").unwrap_or_default().to_string();
        if t.is_partial() {
            assert!(!cache.contains("immutable"), "{}: {cache}", t.to_path());
        } else {
            assert!(cache.contains("immutable"), "{}: {cache}", t.to_path());
        }
        assert_eq!(r.body.len(), 32 * usize::from(t.width()), "{}", t.to_path());
        let hashes = r.body.chunks(32).map(|c| Hash::from_slice(c).unwrap());
        match t.kind() {
            TileKind::Hash { level: 0 } => level0.extend(hashes),
            TileKind::Hash { level: 1 } => level1.extend(hashes),
            k => panic!("unexpected tile {k:?}"),
        }
    }
    assert_eq!(level0.len() as u64, size);

    // The entry bundles: their leaf hashes are the level-0 hashes.
    let mut entries: Vec<Vec<u8>> = Vec::new();
    for t in tiles
        .iter()
        .filter(|t| t.kind() == (TileKind::Hash { level: 0 }))
    {
        let e = TilePath::entries(t.index(), t.width()).unwrap();
        let r = get(&tile_url(&node, &e));
        assert_eq!(r.status, 200, "{}", e.to_path());
        assert_eq!(r.header("content-encoding"), None);
        let bundle = decode_entry_bundle(&r.body).unwrap();
        assert_eq!(bundle.len(), usize::from(t.width()));
        entries.extend(bundle.into_iter().map(<[u8]>::to_vec));
    }
    let leaves: Vec<Hash> = entries.iter().map(|e| leaf_hash(e)).collect();
    // leaf_hash is RFC 9162's SHA-256(0x00 ‖ entry).
    assert_eq!(leaves[0], sha256(&[&[0x00], &entries[0]]));
    assert_eq!(
        leaves, level0,
        "tile hashes differ from the entries' leaf hashes"
    );
    assert_eq!(
        mth(&leaves),
        root,
        "recomputed root differs from the checkpoint's"
    );
    assert_eq!(level1, vec![mth(&leaves[..256])]);
    assert_eq!(mth(&leaves[..old_size as usize]), old_root);

    // Every entry decodes; the last of each batch is a head record.
    for (i, e) in entries.iter().enumerate() {
        let decoded = Entry::decode(e).unwrap();
        let is_head = matches!(decoded, Entry::Head(_));
        assert_eq!(is_head, [0, 2, 93, 184, 275].contains(&i), "entry {i}");
    }

    // Compression for entry bundles on request.
    let full = TilePath::entries(0, 256).unwrap();
    let r = get_with(&tile_url(&node, &full), ("Accept-Encoding", "gzip"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(&r.body[..2], &[0x1f, 0x8b], "gzip magic");
    let r = get(&tile_url(&node, &full));
    assert_eq!(
        r.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );

    // Tiles beyond the tree do not exist yet; bad paths are 400.
    let r = get(&format!("{}/tile/0/001", node.url));
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "not_found");
    let r = get(&format!("{}/tile/entries/001.p/21", node.url));
    assert_eq!(r.status, 404);
    let r = get(&format!("{}/tile/0/1", node.url));
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "bad_tile_path");

    // Inclusion proofs.
    for index in [0, 1, 2, 93, 255, 256, 274, 275] {
        let r = get(&format!(
            "{}/proof/inclusion?index={index}&size={size}",
            node.url
        ));
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        assert_eq!(v["index"], index);
        assert_eq!(v["size"], size);
        assert_eq!(v["leaf_hash"], leaves[index as usize].to_base64().as_str());
        let hashes: Vec<Hash> = serde_json::from_value(v["hashes"].clone()).unwrap();
        verify_inclusion(&leaves[index as usize], index, size, &hashes, &root)
            .unwrap_or_else(|e| panic!("inclusion of {index}: {e}"));
        assert!(
            verify_inclusion(&leaves[index as usize], index ^ 1, size, &hashes, &root).is_err()
        );
    }
    // ... in an older tree too.
    let r = get(&format!(
        "{}/proof/inclusion?index=50&size={old_size}",
        node.url
    ));
    let hashes: Vec<Hash> = serde_json::from_value(r.json()["hashes"].clone()).unwrap();
    verify_inclusion(&leaves[50], 50, old_size, &hashes, &old_root).unwrap();
    let r = get(&format!(
        "{}/proof/inclusion?index={size}&size={size}",
        node.url
    ));
    assert_eq!(r.status, 400);
    let r = get(&format!(
        "{}/proof/inclusion?index=1&size={}",
        node.url,
        size + 1
    ));
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "out_of_range");
    let r = get(&format!("{}/proof/inclusion?index=01&size=5", node.url));
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "bad_query");

    // Consistency between the two checkpoints (and from the first one).
    let r = get(&format!(
        "{}/proof/consistency?old={old_size}&new={size}",
        node.url
    ));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["old"], old_size);
    assert_eq!(v["new"], size);
    let hashes: Vec<Hash> = serde_json::from_value(v["hashes"].clone()).unwrap();
    verify_consistency(old_size, size, &old_root, &root, &hashes).unwrap();
    assert!(verify_consistency(old_size, size, &root, &old_root, &hashes).is_err());
    let r = get(&format!("{}/proof/consistency?old=2&new={size}", node.url));
    let hashes: Vec<Hash> = serde_json::from_value(r.json()["hashes"].clone()).unwrap();
    verify_consistency(2, size, &mth(&leaves[..2]), &root, &hashes).unwrap();
    let r = get(&format!("{}/proof/consistency?old={size}&new=2", node.url));
    assert_eq!(r.status, 400);

    // A status proof for one of the bulk credentials verifies offline.
    let id = cred("bulk-1-7");
    let r = get(&format!("{}/status/{}", node.url, id.to_hex()));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let proof = StatusProof::from_json(&r.text()).unwrap();
    assert_eq!(proof.head.index, size - 1);
    assert_eq!(proof.event.as_ref().map(|e| e.index), Some(3 + 91 + 7));
    let verdict = verify_status(
        &proof,
        &id,
        &vkey,
        now_ms(),
        Policy::with_max_age_ms(60_000),
    );
    assert!(matches!(verdict, Verdict::Valid { .. }), "{verdict:?}");
    let r = get(&format!("{}/status/not-hex", node.url));
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "bad_credential");
}

/// 5. SIGTERM with nothing in flight stops the node cleanly; a restart on
///    the same data serves the same log and statuses.
#[test]
fn graceful_shutdown_and_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let node = Node::start(&data);
    let (a, b, c) = (cred("A"), cred("B"), cred("C"));
    submit_ok(&node, "issue", &a, &["--holder", &holder("A").to_hex()]);
    submit_ok(&node, "issue", &b, &["--holder", &holder("B").to_hex()]);
    submit_ok(&node, "suspend", &b, &[]);
    submit_ok(&node, "issue", &c, &["--holder", &holder("C").to_hex()]);
    submit_ok(&node, "revoke", &c, &["--reason", "key_compromise"]);
    let expected = [(a, 0), (b, 2), (c, 3), (cred("D"), 5)];
    let before_status: Vec<String> = expected
        .iter()
        .map(|(id, code)| {
            let s = cli_status(&node, id, &[]);
            assert_eq!(s.code, *code, "{}{}", s.stdout, s.stderr);
            s.stdout
        })
        .collect();
    let (before_text, before_size, before_root) = node.checkpoint();
    assert_eq!(before_size, 13);
    let log_key = std::fs::read(data.join("log.key")).unwrap();
    let sub_key = std::fs::read(data.join("submitter.key")).unwrap();

    let started = Instant::now();
    let status = node.terminate(Duration::from_secs(5));
    let status = status.expect("the node did not exit within 5 s of SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    assert!(started.elapsed() < Duration::from_secs(5));

    let node = Node::start(&data);
    let d = data.display();
    assert_eq!(
        node.stdout_lines(),
        vec![
            format!(
                "log verifier key: {}",
                std::fs::read_to_string(data.join("log.vkey"))
                    .unwrap()
                    .trim()
            ),
            format!("log verifier key file: {d}/log.vkey"),
            format!("listening on http://127.0.0.1:{}", node.port),
        ],
        "a restart creates no keys"
    );
    assert_eq!(std::fs::read(data.join("log.key")).unwrap(), log_key);
    assert_eq!(std::fs::read(data.join("submitter.key")).unwrap(), sub_key);

    let (text, size, root) = node.checkpoint();
    if size == before_size {
        assert_eq!(root, before_root);
        assert_eq!(text, before_text);
    } else {
        let r = get(&format!(
            "{}/proof/consistency?old={before_size}&new={size}",
            node.url
        ));
        let hashes: Vec<Hash> = serde_json::from_value(r.json()["hashes"].clone()).unwrap();
        verify_consistency(before_size, size, &before_root, &root, &hashes).unwrap();
    }
    for ((id, code), out) in expected.iter().zip(&before_status) {
        let s = cli_status(&node, id, &[]);
        assert_eq!(s.code, *code, "{}{}", s.stdout, s.stderr);
        if *code != 0 {
            assert_eq!(&s.stdout, out);
        }
    }
    // And it still takes submissions.
    assert_eq!(submit_ok(&node, "resume", &b, &[]), size);
    assert_eq!(cli_status(&node, &b, &[]).code, 0);

    // Neither run printed or logged a private key.
    let stdout = node.stdout_lines().join("\n");
    let stderr = std::fs::read_to_string(data.with_extension("stderr.log")).unwrap();
    assert!(
        stderr.contains("stopped cleanly"),
        "the log is captured: {stderr}"
    );
    for key in [&log_key, &sub_key] {
        let text = String::from_utf8(key.clone()).unwrap();
        // PRIVATE+KEY+<name>+<key id>+<base64>; base64 may hold '+'.
        let secret = text.trim().splitn(5, '+').nth(4).unwrap();
        assert!(secret.len() >= 40, "{text}");
        for out in [&stdout, &stderr] {
            assert!(!out.contains(secret), "a private key was written out");
            assert!(
                !out.contains("PRIVATE+KEY"),
                "a private key was written out"
            );
        }
    }
}

// ---------------------------------------------------------------- hostile clients

/// The node's resident set size in KiB (Linux `/proc`).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

/// Sends `request` raw on a new connection and returns the status code of
/// the answer (0 when the node closed without answering).
fn raw_status(port: u16, request: &[u8]) -> u16 {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The node may answer (and close) before it has read everything.
    let _ = s.write_all(request);
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let head = String::from_utf8_lossy(&answer);
    head.strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn hostile_clients_get_4xx_and_memory_stays_bounded() {
    use rand::{Rng, SeedableRng};
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&tmp.path().join("data"));
    let c = cred("hostile");
    submit_ok(
        &node,
        "issue",
        &c,
        &["--holder", &holder("hostile").to_hex()],
    );
    let (before_text, _, _) = node.checkpoint();
    let pid = node.child.id();
    let rss_before = rss_kib(pid);

    // Malformed HTTP: each gets its 4xx (or a closed connection), never 5xx.
    let long_path = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000));
    let big_header = format!(
        "GET /checkpoint HTTP/1.1\r\nHost: x\r\nX-Junk: {}\r\n\r\n",
        "b".repeat(500_000)
    );
    let cases: Vec<(&str, Vec<u8>, &[u16])> = vec![
        ("garbage request line", b"\x16\x03\x01\x02\x00hello\r\n\r\n".to_vec(), &[400, 0]),
        ("no version", b"GET /checkpoint\r\n\r\n".to_vec(), &[400, 0]),
        ("bad method token", b"G(T /checkpoint HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), &[400, 0]),
        ("70 KB path", long_path.into_bytes(), &[404, 414, 431, 400, 0]),
        ("500 KB header", big_header.into_bytes(), &[431, 400, 0]),
        (
            "body far over the limit",
            b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 104857600\r\n\r\n{".to_vec(),
            &[413],
        ),
        (
            "chunked body over the limit",
            format!(
                "POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{}",
                "100000\r\n".to_string() + &"x".repeat(0x100000) + "\r\n100000\r\n" + &"x".repeat(0x100000) + "\r\n100000\r\n" + &"x".repeat(0x100000) + "\r\n0\r\n\r\n"
            )
            .into_bytes(),
            &[413, 0],
        ),
        (
            "conflicting lengths",
            b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n{}{}{}{".to_vec(),
            &[400, 0],
        ),
        ("bad percent-encoding", b"GET /status/%zz HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), &[400, 404]),
        ("NUL in query", b"GET /proof/inclusion?index=1%00&size=2 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), &[400]),
    ];
    for (what, request, allowed) in &cases {
        let status = raw_status(node.port, request);
        assert!(
            allowed.contains(&status),
            "{what}: status {status}, expected one of {allowed:?}"
        );
    }

    // Random paths and queries on every route: never a 5xx, never a panic.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let alphabet = b"0123456789abcdefABCDEF./-_%?&=+~xp:@!$'()*,;";
    let prefixes = [
        "/tile/",
        "/tile/0/",
        "/tile/entries/",
        "/tile/1/000.p/",
        "/proof/inclusion?",
        "/proof/consistency?",
        "/status/",
        "/checkpoint",
        "/events",
        "/",
    ];
    let agent = agent();
    for i in 0..1500 {
        let len = rng.gen_range(0..40);
        let tail: String = (0..len)
            .map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char)
            .collect();
        let url = format!("{}{}{tail}", node.url, prefixes[i % prefixes.len()]);
        let status = match agent.get(&url).call() {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(code, _)) => code,
            // ureq refuses to send some of these URLs at all.
            Err(ureq::Error::Transport(_)) => continue,
        };
        assert!(status < 500, "GET {url}: {status}");
    }

    // A flood of connections that never finish their headers: the node keeps
    // serving others, and its memory stays bounded.
    let mut flood = Vec::new();
    for _ in 0..2000 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", node.port)).unwrap();
        let _ = s.write_all(b"GET /checkpoint HTTP/1.1\r\nHost: x\r\nX-Slow: ");
        flood.push(s);
    }
    let during = get(&format!("{}/checkpoint", node.url));
    assert_eq!(during.status, 200);
    assert_eq!(during.text(), before_text);
    let rss_flood = rss_kib(pid);
    drop(flood);

    // Nothing changed, and the node still works.
    assert_eq!(node.checkpoint().0, before_text);
    let c2 = cred("after-hostile");
    submit_ok(
        &node,
        "issue",
        &c2,
        &["--holder", &holder("after-hostile").to_hex()],
    );
    assert_eq!(cli_status(&node, &c2, &[]).code, 0);
    let rss_after = rss_kib(pid);
    println!("node RSS: {rss_before} KiB before, {rss_flood} KiB with 2000 stalled connections, {rss_after} KiB after");
    // Memory is bounded by the limits (2 MiB bodies, 4096 connections with
    // small buffers), not by what clients send: well under 64 MiB here.
    assert!(
        rss_flood.max(rss_after) < rss_before + 64 * 1024,
        "RSS grew from {rss_before} KiB to {rss_flood} / {rss_after} KiB"
    );
}

// ---------------------------------------------------------------- disk full

/// A small tmpfs mounted for one test, unmounted on drop. `None` where this
/// machine does not let the test mount (not root, no CAP_SYS_ADMIN).
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    fn mount(dir: &Path, mib: u32) -> Option<SmallDisk> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ok.then(|| SmallDisk {
            dir: dir.to_path_buf(),
        })
    }

    fn resize(&self, mib: u32) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={mib}m")])
            .arg(&self.dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "remount {}", self.dir.display());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// The disk fills up under load: the node acknowledges nothing it could not
/// make durable, reports itself unhealthy, keeps serving reads, and once
/// there is space again takes submissions without a restart; after a
/// restart the log is the same, and consistent with everything served.
#[test]
fn disk_full_stops_acknowledgements_and_the_node_resumes_when_space_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(disk) = SmallDisk::mount(&tmp.path().join("disk"), 6) else {
        println!("skipped: this machine does not allow mounting a tmpfs (needs root)");
        return;
    };
    let data = disk.dir.join("data");
    let node = Node::start(&data);
    let signer = node.submitter();
    // Fill the disk: batches of 20 fresh issues until the node refuses.
    let mut acked: Vec<(u64, String)> = Vec::new();
    let mut served = Vec::new();
    let mut refused_at = None;
    for round in 0..2000u32 {
        let events: Vec<Vec<u8>> = (0..20)
            .map(|i| {
                let label = format!("full-{round}-{i}");
                signed(&signer, issue_action(None), cred(&label), holder(&label))
            })
            .collect();
        let r = post_events(&node, &events);
        if r.status == 200 {
            for item in r.json()["results"].as_array().expect("results") {
                let index = item["index"].as_u64().expect("accepted index");
                acked.push((index, item["leaf_hash"].as_str().unwrap().to_string()));
            }
            served.push(node.checkpoint());
            continue;
        }
        assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
        assert!(r.header("retry-after").is_some());
        refused_at = Some(events);
        break;
    }
    let refused = refused_at.expect("a 6 MiB disk filled up");
    assert!(!acked.is_empty());
    assert_eq!(get(&format!("{}/healthz", node.url)).status, 503);
    // Reads go on from the last checkpoint.
    let (text, size, root) = node.checkpoint();
    assert_eq!(served.last().map(|c| &c.0), Some(&text));

    // Space returns: the next submission is taken, without a restart.
    disk.resize(64);
    let r = post_events(&node, &refused);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(get(&format!("{}/healthz", node.url)).status, 200);
    let after = node.checkpoint();
    assert!(after.1 > size);
    let p = get(&format!(
        "{}/proof/consistency?old={size}&new={}",
        node.url, after.1
    ));
    let hashes: Vec<Hash> = serde_json::from_value(p.json()["hashes"].clone()).unwrap();
    verify_consistency(size, after.1, &root, &after.2, &hashes).unwrap();
    drop(node);

    // A restart reads the same log; every acknowledged event is where it was
    // acknowledged, and every served checkpoint is consistent with it.
    let node = Node::start(&data);
    let (_, final_size, final_root) = node.checkpoint();
    assert_eq!((final_size, final_root), (after.1, after.2));
    for (index, leaf) in &acked {
        let r = get(&format!(
            "{}/proof/inclusion?index={index}&size={final_size}",
            node.url
        ));
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["leaf_hash"].as_str(), Some(leaf.as_str()));
    }
    for (_, old, old_root) in &served {
        let p = get(&format!(
            "{}/proof/consistency?old={old}&new={final_size}",
            node.url
        ));
        let hashes: Vec<Hash> = serde_json::from_value(p.json()["hashes"].clone()).unwrap();
        verify_consistency(*old, final_size, old_root, &final_root, &hashes).unwrap();
    }
}

/// The nice value of each of a process's threads, by thread name
/// (`/proc/<pid>/task/<tid>/stat`, field 19; the name, field 2, is in
/// parentheses).
#[cfg(target_os = "linux")]
fn thread_nices(pid: u32) -> Vec<(String, i32)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let stat = std::fs::read_to_string(t.unwrap().path().join("stat")).unwrap();
        let (open, close) = (stat.find('(').unwrap(), stat.rfind(')').unwrap());
        let name = stat[open + 1..close].to_string();
        let nice = stat[close + 2..]
            .split(' ')
            .nth(16)
            .unwrap()
            .parse()
            .unwrap();
        out.push((name, nice));
    }
    out
}

/// `--sequencer-nice` and `--handler-nice` reach their threads (raising a
/// nice value needs no privilege, so this runs as any user); a value out
/// of range is refused before anything starts.
#[cfg(target_os = "linux")]
#[test]
fn thread_priorities_are_set_as_configured() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start_with(
        &dir.path().join("node"),
        &["--sequencer-nice", "3", "--handler-nice", "7"],
    );
    let nices = thread_nices(node.child.id());
    let of = |name: &str| -> Vec<i32> {
        nices
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| *v)
            .collect()
    };
    assert_eq!(of("sequencer"), vec![3], "{nices:?}");
    let workers = of("tokio-rt-worker");
    assert!(!workers.is_empty(), "{nices:?}");
    assert!(workers.iter().all(|n| *n == 7), "{nices:?}");
    drop(node);
    let out = Command::new(BIN)
        .args(["serve", "--data"])
        .arg(dir.path().join("other"))
        .args(["--listen", "127.0.0.1:0", "--handler-nice", "20"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--handler-nice: \"20\""), "{err}");
    assert!(!dir.path().join("other").exists(), "nothing is created");
}
