//! The `revledger` command line (DESIGN §7).

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use revledger::note::{KeyName, NoteSigner};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "revledger",
    version,
    about = "Revocation-ledger node and tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write PREFIX.key (mode 0600) and PREFIX.vkey (signed-note verifier key).
    Keygen {
        /// The key name (for a log: its origin).
        #[arg(long)]
        name: String,
        /// Output path prefix.
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Keygen { name, out } => {
            let name = KeyName::new(name).context("invalid key name")?;
            let signer = NoteSigner::generate(name, &mut rand_core::OsRng);
            let (key, vkey) = write_key_pair(&signer, &out)?;
            println!("private key: {}", key.display());
            println!("verifier key: {}", vkey.display());
            println!("{}", signer.verifier().to_vkey_string());
            Ok(())
        }
    }
}

/// Writes `PREFIX.key` (created 0600, never overwritten) and `PREFIX.vkey`.
fn write_key_pair(signer: &NoteSigner, prefix: &Path) -> Result<(PathBuf, PathBuf)> {
    let with = |ext: &str| {
        let mut p = prefix.as_os_str().to_owned();
        p.push(ext);
        PathBuf::from(p)
    };
    let (key_path, vkey_path) = (with(".key"), with(".vkey"));
    for p in [&key_path, &vkey_path] {
        if p.exists() {
            bail!(
                "{} already exists; refusing to overwrite a key",
                p.display()
            );
        }
    }
    write_new(
        &key_path,
        0o600,
        &format!("{}\n", signer.to_private_key_string()),
    )?;
    write_new(
        &vkey_path,
        0o644,
        &format!("{}\n", signer.verifier().to_vkey_string()),
    )?;
    Ok((key_path, vkey_path))
}

/// Creates `path` with `mode`, writes `text` and fsyncs it.
fn write_new(path: &Path, mode: u32, text: &str) -> Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}
