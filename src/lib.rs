//! revledger: a revocation ledger on an RFC 9162 Merkle log.
pub mod hash;
