//! Crash test: the real binary under concurrent submissions, killed with
//! SIGKILL at random moments and restarted. After every restart, every
//! acknowledged event is at its acknowledged index with its acknowledged
//! leaf hash, every checkpoint the node ever served is consistent with the
//! new one, and `revledger audit` passes.
//!
//! `REVLEDGER_CRASH_KILLS` sets the number of kills (default 4; the long
//! run in RELIABILITY.md uses 200).

use base64::Engine as _;
use rand::{Rng, SeedableRng};
use revledger::checkpoint::{verify_checkpoint, VerifiedCheckpoint};
use revledger::entry::{Action, CredentialId, Event, HolderTag};
use revledger::hash::Hash;
use revledger::merkle;
use revledger::note::{NoteSigner, NoteVerifier};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_revledger");

struct Node {
    child: Child,
    url: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(data: &Path) -> Node {
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--heartbeat-secs",
            "1",
            "--data",
        ])
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start revledger serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = loop {
        assert!(Instant::now() < deadline, "node did not start");
        match lines.next() {
            Some(Ok(l)) => {
                if let Some(addr) = l.strip_prefix("listening on ") {
                    break addr.trim().to_string();
                }
            }
            _ => panic!("node exited before listening"),
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Node { child, url }
}

#[derive(Clone)]
struct Ack {
    index: u64,
    leaf_hash: Hash,
    checkpoint: String,
}

fn get_json(url: &str) -> serde_json::Value {
    ureq::get(url)
        .timeout(Duration::from_secs(10))
        .call()
        .unwrap_or_else(|e| panic!("{url}: {e}"))
        .into_json()
        .unwrap()
}

fn hashes(v: &serde_json::Value) -> Vec<Hash> {
    serde_json::from_value(v["hashes"].clone()).unwrap()
}

fn check(node: &Node, vkey: &NoteVerifier, acks: &[Ack], seen: &[String]) -> VerifiedCheckpoint {
    let text = ureq::get(&format!("{}/checkpoint", node.url))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let now = verify_checkpoint(&text, vkey).unwrap();
    for a in acks {
        let p = get_json(&format!(
            "{}/proof/inclusion?index={}&size={}",
            node.url,
            a.index,
            now.size()
        ));
        let leaf: Hash = serde_json::from_value(p["leaf_hash"].clone()).unwrap();
        assert_eq!(leaf, a.leaf_hash, "acknowledged event {} changed", a.index);
        merkle::verify_inclusion(&leaf, a.index, now.size(), &hashes(&p), now.root())
            .unwrap_or_else(|e| panic!("acknowledged event {} not included: {e}", a.index));
    }
    for old in seen {
        let old = verify_checkpoint(old, vkey).unwrap();
        assert!(
            old.size() <= now.size(),
            "rollback from {} to {}",
            old.size(),
            now.size()
        );
        let p = get_json(&format!(
            "{}/proof/consistency?old={}&new={}",
            node.url,
            old.size(),
            now.size()
        ));
        merkle::verify_consistency(old.size(), now.size(), old.root(), now.root(), &hashes(&p))
            .unwrap_or_else(|e| {
                panic!(
                    "checkpoint {} inconsistent with {}: {e}",
                    old.size(),
                    now.size()
                )
            });
    }
    now
}

#[test]
fn acknowledged_events_survive_sigkill() {
    let kills: u32 = std::env::var("REVLEDGER_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let audit_state = dir.path().join("audit");
    let mut node = start(&data);
    let submitter = NoteSigner::parse_private_key(
        std::fs::read_to_string(data.join("submitter.key"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    let vkey = NoteVerifier::parse_vkey(
        std::fs::read_to_string(data.join("log.vkey"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    let acks: Arc<Mutex<Vec<Ack>>> = Arc::default();
    let mut seen: Vec<String> = Vec::new();
    let next = Arc::new(AtomicU32::new(0));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut total_acked = 0;
    for round in 0..=kills {
        // Load from 4 concurrent clients until the kill.
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..4)
            .map(|_| {
                let (url, acks, next, stop, key) = (
                    node.url.clone(),
                    acks.clone(),
                    next.clone(),
                    stop.clone(),
                    submitter.clone(),
                );
                std::thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        let n = next.fetch_add(1, Ordering::SeqCst);
                        let mut id = [0u8; 32];
                        id[..4].copy_from_slice(&n.to_be_bytes());
                        let entry = Event {
                            action: Action::Issue {
                                not_before_ms: 0,
                                not_after_ms: u64::MAX / 2,
                                replaces: None,
                            },
                            credential: CredentialId(id),
                            holder: HolderTag(id),
                            issuer_key_id: key.id(),
                            issued_at_ms: 1,
                        }
                        .sign(key.signing_key())
                        .encode();
                        let body = serde_json::json!({
                            "events": [base64::engine::general_purpose::STANDARD.encode(&entry)]
                        });
                        let Ok(resp) = ureq::post(&format!("{url}/events"))
                            .timeout(Duration::from_secs(5))
                            .send_json(body)
                        else {
                            continue; // killed mid-request: not acknowledged
                        };
                        let Ok(v) = resp.into_json::<serde_json::Value>() else {
                            continue;
                        };
                        let item = &v["results"][0];
                        acks.lock().unwrap().push(Ack {
                            index: item["index"].as_u64().unwrap(),
                            leaf_hash: serde_json::from_value(item["leaf_hash"].clone()).unwrap(),
                            checkpoint: item["checkpoint"].as_str().unwrap().to_string(),
                        });
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.gen_range(100..600)));
        if round < kills {
            node.child.kill().unwrap(); // SIGKILL
            node.child.wait().unwrap();
        }
        stop.store(true, Ordering::SeqCst);
        for c in clients {
            c.join().unwrap();
        }
        if round < kills {
            drop(node);
            node = start(&data);
        }
        let acked: Vec<Ack> = acks.lock().unwrap().clone();
        let mut by_index = BTreeMap::new();
        for a in &acked {
            assert!(
                by_index.insert(a.index, a.leaf_hash).is_none(),
                "index {} acknowledged twice",
                a.index
            );
        }
        // Every acknowledgement and checkpoint of this round, and a sample
        // of the earlier ones (all were checked in their own round).
        let fresh = &acked[total_acked..];
        let mut sample: Vec<Ack> = fresh.to_vec();
        if total_acked > 0 {
            sample.extend((0..100).map(|_| acked[rng.gen_range(0..total_acked)].clone()));
        }
        let mut checkpoints: Vec<String> = fresh.iter().map(|a| a.checkpoint.clone()).collect();
        checkpoints.sort();
        checkpoints.dedup();
        if !seen.is_empty() {
            checkpoints.extend((0..50).map(|_| seen[rng.gen_range(0..seen.len())].clone()));
        }
        let now = check(&node, &vkey, &sample, &checkpoints);
        seen.extend(fresh.iter().map(|a| a.checkpoint.clone()));
        seen.push(now.note_text().to_string());
        seen.sort();
        seen.dedup();
        total_acked = acked.len();
        let out = Command::new(BIN)
            .args(["audit", "--node", &node.url, "--vkey"])
            .arg(data.join("log.vkey"))
            .arg("--state")
            .arg(&audit_state)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "audit failed after restart {round}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(total_acked > 0, "no event was ever acknowledged");
    eprintln!("{kills} kills survived, {total_acked} acknowledged events all present");
}
