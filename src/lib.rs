//! revledger: a revocation ledger on an RFC 9162 Merkle log.
//!
//! See `README.md` for the code map and architecture invariants, and
//! `docs/FORMAT.md` for every byte on the wire.
pub mod audit;
pub mod checkpoint;
pub mod entry;
pub mod hash;
pub mod keyfilter;
pub mod ledger;
#[cfg(feature = "node")]
pub mod loadgen;
pub mod mappage;
pub mod merkle;
pub mod note;
pub mod priority;
pub mod rules;
#[cfg(feature = "node")]
pub mod server;
pub mod smt;
pub mod status;
pub mod store;
pub mod strict;
pub mod tile;
