//! The status state machine of DESIGN §3 and the status record each
//! credential has in the status map.
//!
//! Every implementation (node, auditor, third-party verifier) must derive the
//! same statuses from the same log; this module is that derivation, shared by
//! the ledger (before anything is logged) and the auditor (on replay).
//!
//! Architecture Invariant: pure. The caller supplies the current state
//! through [`StateView`] and applies the returned [`Effects`] itself.

use crate::entry::{Action, CredentialId, Event, HolderTag, Reason};
use crate::hash::Hash;

/// A credential's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    Active = 1,
    Suspended = 2,
    Revoked = 3,
}

impl State {
    /// Stable lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            State::Active => "active",
            State::Suspended => "suspended",
            State::Revoked => "revoked",
        }
    }

    /// Active or suspended: the credential still belongs to its holder.
    pub fn is_live(self) -> bool {
        self != State::Revoked
    }
}

/// Errors decoding a status record.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("status record is {0} bytes, expected {len}", len = StatusRecord::LEN)]
    BadLength(usize),
    #[error("unsupported status record version {0}")]
    UnsupportedVersion(u8),
    #[error("unknown state {0}")]
    UnknownState(u8),
    #[error("unknown reason code {0}")]
    UnknownReason(u8),
    #[error("reason {reason:?} is not allowed with state {state:?}")]
    ReasonStateMismatch {
        state: State,
        reason: Option<Reason>,
    },
}

/// The value of a credential's leaf in the status map (DESIGN §4): current
/// state, reason, `not_after`, and the event that last changed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StatusRecord {
    pub state: State,
    /// Present exactly when the state is suspended or revoked.
    pub reason: Option<Reason>,
    /// End of validity, unix milliseconds (from the issue event).
    pub not_after_ms: u64,
    /// Log index of the event that last changed this credential.
    pub last_index: u64,
    /// RFC 9162 leaf hash of that event.
    pub last_leaf_hash: Hash,
}

impl StatusRecord {
    /// Encoded length.
    pub const LEN: usize = 1 + 1 + 1 + 8 + 8 + 32;
    const VERSION: u8 = 1;

    /// `version(1) ‖ state(1) ‖ reason(1, 0 = none) ‖ not_after u64 ‖
    /// last_index u64 ‖ last_leaf_hash(32)`, integers big-endian.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0] = Self::VERSION;
        b[1] = self.state as u8;
        b[2] = self.reason.map_or(0, |r| r as u8);
        b[3..11].copy_from_slice(&self.not_after_ms.to_be_bytes());
        b[11..19].copy_from_slice(&self.last_index.to_be_bytes());
        b[19..51].copy_from_slice(&self.last_leaf_hash.0);
        b
    }

    /// Decodes strictly.
    ///
    /// # Errors
    /// A [`RecordError`] for a wrong length, version, state or reason, or a
    /// reason that does not fit the state.
    pub fn decode(b: &[u8]) -> Result<StatusRecord, RecordError> {
        let b: &[u8; Self::LEN] = b.try_into().map_err(|_| RecordError::BadLength(b.len()))?;
        if b[0] != Self::VERSION {
            return Err(RecordError::UnsupportedVersion(b[0]));
        }
        let state = match b[1] {
            1 => State::Active,
            2 => State::Suspended,
            3 => State::Revoked,
            s => return Err(RecordError::UnknownState(s)),
        };
        let reason = match b[2] {
            0 => None,
            c => Some(Reason::from_code(c).ok_or(RecordError::UnknownReason(c))?),
        };
        if (state == State::Active) != reason.is_none() {
            return Err(RecordError::ReasonStateMismatch { state, reason });
        }
        let u64_at = |i: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[i..i + 8]);
            u64::from_be_bytes(x)
        };
        let mut h = [0u8; 32];
        h.copy_from_slice(&b[19..51]);
        Ok(StatusRecord {
            state,
            reason,
            not_after_ms: u64_at(3),
            last_index: u64_at(11),
            last_leaf_hash: Hash(h),
        })
    }
}

/// What the ledger keeps per credential to apply the rules: the status
/// record plus the holder it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credential {
    pub status: StatusRecord,
    pub holder: HolderTag,
}

impl Credential {
    /// Encoded length: status record then holder tag.
    pub const LEN: usize = StatusRecord::LEN + 32;

    /// `status record ‖ holder tag`.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = self.status.encode().to_vec();
        b.extend_from_slice(&self.holder.0);
        b
    }

    /// Decodes strictly.
    ///
    /// # Errors
    /// A [`RecordError`].
    pub fn decode(b: &[u8]) -> Result<Credential, RecordError> {
        if b.len() != Self::LEN {
            return Err(RecordError::BadLength(b.len()));
        }
        let status = StatusRecord::decode(&b[..StatusRecord::LEN])?;
        let mut h = [0u8; 32];
        h.copy_from_slice(&b[StatusRecord::LEN..]);
        Ok(Credential {
            status,
            holder: HolderTag(h),
        })
    }
}

/// A rule of DESIGN §3 that an event breaks. Becomes HTTP 409.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum RuleError {
    #[error("credential {0} was already issued")]
    AlreadyIssued(CredentialId),
    #[error("credential {0} is unknown to the log")]
    UnknownCredential(CredentialId),
    #[error("holder already has live credential {live}; an issue must name it in `replaces`")]
    HolderHasLiveCredential { live: CredentialId },
    #[error("`replaces` names {named}, but the holder's live credential is {live:?}")]
    ReplacesMismatch {
        named: CredentialId,
        live: Option<CredentialId>,
    },
    #[error("event names holder {event} but credential belongs to another holder")]
    HolderMismatch { event: HolderTag },
    #[error("cannot {action} a credential that is {state}")]
    BadTransition {
        action: &'static str,
        state: &'static str,
    },
    #[error("reason `superseded` is set only by an issue with `replaces`")]
    ReasonNotAllowed,
}

impl RuleError {
    /// A stable machine-readable code for the JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            RuleError::AlreadyIssued(_) => "already_issued",
            RuleError::UnknownCredential(_) => "unknown_credential",
            RuleError::HolderHasLiveCredential { .. } => "holder_has_live_credential",
            RuleError::ReplacesMismatch { .. } => "replaces_mismatch",
            RuleError::HolderMismatch { .. } => "holder_mismatch",
            RuleError::BadTransition { .. } => "invalid_transition",
            RuleError::ReasonNotAllowed => "reason_not_allowed",
        }
    }
}

/// Read access to the state the rules need.
pub trait StateView {
    /// The error reading state.
    type Error;
    /// The credential's record, if the log has seen it.
    ///
    /// # Errors
    /// Reading the state failed.
    fn credential(&self, id: &CredentialId) -> Result<Option<Credential>, Self::Error>;
    /// The holder's live (active or suspended) credential, if any.
    ///
    /// # Errors
    /// Reading the state failed.
    fn live_credential(&self, holder: &HolderTag) -> Result<Option<CredentialId>, Self::Error>;
}

/// What accepting one event changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Effects {
    /// New records, at most two (an issue with `replaces`).
    pub credentials: Vec<(CredentialId, Credential)>,
    /// New live credential per holder (`None`: the holder has none).
    pub holders: Vec<(HolderTag, Option<CredentialId>)>,
}

/// Either the rules refused the event, or reading state failed.
#[derive(Debug, PartialEq, Eq)]
pub enum ApplyError<E> {
    Rule(RuleError),
    Read(E),
}

impl<E> From<RuleError> for ApplyError<E> {
    fn from(e: RuleError) -> Self {
        ApplyError::Rule(e)
    }
}

/// Applies DESIGN §3 to `event`, to be logged at `index` with `leaf_hash`.
///
/// | event   | accepted when | effect |
/// | issue   | id never seen; holder has no live credential, or `replaces` names exactly it | → active; replaced → revoked (superseded) |
/// | suspend | active | → suspended |
/// | resume  | suspended | → active |
/// | revoke  | active or suspended | → revoked, final |
///
/// Events other than issue must name the credential's holder. Suspension
/// and revocation may not use the reason `superseded`.
///
/// # Errors
/// [`ApplyError::Rule`] with the broken rule, or [`ApplyError::Read`].
pub fn apply<V: StateView>(
    view: &V,
    event: &Event,
    index: u64,
    leaf_hash: Hash,
) -> Result<Effects, ApplyError<V::Error>> {
    let id = event.credential;
    let current = view.credential(&id).map_err(ApplyError::Read)?;

    let (kind_name, next, reason) = match event.action {
        Action::Issue {
            not_after_ms,
            replaces,
            ..
        } => {
            if current.is_some() {
                return Err(RuleError::AlreadyIssued(id).into());
            }
            return apply_issue(view, event, not_after_ms, replaces, index, leaf_hash);
        }
        Action::Suspend { reason } => ("suspend", State::Suspended, Some(reason)),
        Action::Resume => ("resume", State::Active, None),
        Action::Revoke { reason } => ("revoke", State::Revoked, Some(reason)),
    };
    let prev = current.ok_or(RuleError::UnknownCredential(id))?;
    if prev.holder != event.holder {
        return Err(RuleError::HolderMismatch {
            event: event.holder,
        }
        .into());
    }
    let state = prev.status.state;
    let allowed = match next {
        State::Suspended => state == State::Active,
        State::Active => state == State::Suspended,
        State::Revoked => state.is_live(),
    };
    if !allowed {
        return Err(RuleError::BadTransition {
            action: kind_name,
            state: state.name(),
        }
        .into());
    }
    if reason == Some(Reason::Superseded) {
        return Err(RuleError::ReasonNotAllowed.into());
    }
    let mut effects = Effects {
        credentials: vec![(id, transition(&prev, next, reason, index, leaf_hash))],
        holders: vec![],
    };
    if next == State::Revoked {
        effects.holders.push((event.holder, None));
    }
    Ok(effects)
}

/// `prev` moved to `state` by the event at `index`.
fn transition(
    prev: &Credential,
    state: State,
    reason: Option<Reason>,
    index: u64,
    leaf_hash: Hash,
) -> Credential {
    Credential {
        status: StatusRecord {
            state,
            reason,
            not_after_ms: prev.status.not_after_ms,
            last_index: index,
            last_leaf_hash: leaf_hash,
        },
        holder: prev.holder,
    }
}

/// The issue row of the table: the id is new (checked by the caller).
fn apply_issue<V: StateView>(
    view: &V,
    event: &Event,
    not_after_ms: u64,
    replaces: Option<CredentialId>,
    index: u64,
    leaf_hash: Hash,
) -> Result<Effects, ApplyError<V::Error>> {
    let id = event.credential;
    let live = view
        .live_credential(&event.holder)
        .map_err(ApplyError::Read)?;
    let issued = Credential {
        status: StatusRecord {
            state: State::Active,
            reason: None,
            not_after_ms,
            last_index: index,
            last_leaf_hash: leaf_hash,
        },
        holder: event.holder,
    };
    let mut effects = Effects {
        credentials: vec![(id, issued)],
        holders: vec![(event.holder, Some(id))],
    };
    match (live, replaces) {
        (None, None) => {}
        (Some(live), None) => return Err(RuleError::HolderHasLiveCredential { live }.into()),
        (live, Some(named)) if live != Some(named) => {
            return Err(RuleError::ReplacesMismatch { named, live }.into())
        }
        (_, Some(named)) => {
            let old = view
                .credential(&named)
                .map_err(ApplyError::Read)?
                // The holder index named it live, so it exists; a missing
                // record means the state is inconsistent: refuse.
                .ok_or(RuleError::UnknownCredential(named))?;
            let revoked = transition(
                &old,
                State::Revoked,
                Some(Reason::Superseded),
                index,
                leaf_hash,
            );
            effects.credentials.push((named, revoked));
        }
    }
    Ok(effects)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::convert::Infallible;

    #[derive(Default)]
    struct Model {
        creds: BTreeMap<CredentialId, Credential>,
        holders: BTreeMap<HolderTag, CredentialId>,
        next: u64,
    }

    impl StateView for Model {
        type Error = Infallible;
        fn credential(&self, id: &CredentialId) -> Result<Option<Credential>, Infallible> {
            Ok(self.creds.get(id).copied())
        }
        fn live_credential(&self, h: &HolderTag) -> Result<Option<CredentialId>, Infallible> {
            Ok(self.holders.get(h).copied())
        }
    }

    impl Model {
        fn submit(&mut self, action: Action, c: u8, h: u8) -> Result<(), RuleError> {
            let ev = Event {
                action,
                credential: CredentialId([c; 32]),
                holder: HolderTag([h; 32]),
                issuer_key_id: 1,
                issued_at_ms: 0,
            };
            let idx = self.next;
            let fx = match apply(self, &ev, idx, Hash([idx as u8; 32])) {
                Ok(fx) => fx,
                Err(ApplyError::Rule(r)) => return Err(r),
                Err(ApplyError::Read(never)) => match never {},
            };
            self.next += 1;
            self.creds.extend(fx.credentials);
            for (h, live) in fx.holders {
                match live {
                    Some(c) => self.holders.insert(h, c),
                    None => self.holders.remove(&h),
                };
            }
            Ok(())
        }
        fn state(&self, c: u8) -> Option<(State, Option<Reason>)> {
            self.creds
                .get(&CredentialId([c; 32]))
                .map(|r| (r.status.state, r.status.reason))
        }
    }

    fn issue(replaces: Option<u8>) -> Action {
        Action::Issue {
            not_before_ms: 0,
            not_after_ms: 100,
            replaces: replaces.map(|r| CredentialId([r; 32])),
        }
    }
    const SUSPEND_LOST: Action = Action::Suspend {
        reason: Reason::Lost,
    };
    const REVOKE_HOLDER: Action = Action::Revoke {
        reason: Reason::HolderRequest,
    };

    #[test]
    fn the_state_machine_table() {
        let mut m = Model::default();
        m.submit(issue(None), 1, 9).unwrap();
        assert_eq!(m.state(1), Some((State::Active, None)));
        assert_eq!(
            m.submit(issue(None), 1, 8),
            Err(RuleError::AlreadyIssued(CredentialId([1; 32])))
        );
        assert_eq!(
            m.submit(issue(None), 2, 9),
            Err(RuleError::HolderHasLiveCredential {
                live: CredentialId([1; 32])
            })
        );
        assert_eq!(
            m.submit(Action::Resume, 1, 9),
            Err(RuleError::BadTransition {
                action: "resume",
                state: "active"
            })
        );
        m.submit(SUSPEND_LOST, 1, 9).unwrap();
        assert_eq!(m.state(1), Some((State::Suspended, Some(Reason::Lost))));
        assert_eq!(
            m.submit(SUSPEND_LOST, 1, 9),
            Err(RuleError::BadTransition {
                action: "suspend",
                state: "suspended"
            })
        );
        // A suspended credential is still live for its holder.
        assert!(matches!(
            m.submit(issue(None), 2, 9),
            Err(RuleError::HolderHasLiveCredential { .. })
        ));
        m.submit(Action::Resume, 1, 9).unwrap();
        assert_eq!(m.state(1), Some((State::Active, None)));
        assert_eq!(
            m.submit(SUSPEND_LOST, 1, 7),
            Err(RuleError::HolderMismatch {
                event: HolderTag([7; 32])
            })
        );
        m.submit(REVOKE_HOLDER, 1, 9).unwrap();
        assert_eq!(
            m.state(1),
            Some((State::Revoked, Some(Reason::HolderRequest)))
        );
        for a in [SUSPEND_LOST, Action::Resume, REVOKE_HOLDER] {
            assert!(matches!(
                m.submit(a, 1, 9),
                Err(RuleError::BadTransition {
                    state: "revoked",
                    ..
                })
            ));
        }
        // Revoked frees the holder for a new credential.
        m.submit(issue(None), 2, 9).unwrap();
        assert_eq!(
            m.submit(SUSPEND_LOST, 3, 9),
            Err(RuleError::UnknownCredential(CredentialId([3; 32])))
        );
    }

    #[test]
    fn replacement_moves_the_id_to_a_new_phone() {
        let mut m = Model::default();
        m.submit(issue(None), 1, 9).unwrap();
        m.submit(issue(None), 5, 6).unwrap();
        // replaces must name exactly the holder's live credential
        assert_eq!(
            m.submit(issue(Some(5)), 2, 9),
            Err(RuleError::ReplacesMismatch {
                named: CredentialId([5; 32]),
                live: Some(CredentialId([1; 32]))
            })
        );
        assert_eq!(
            m.submit(issue(Some(1)), 3, 4),
            Err(RuleError::ReplacesMismatch {
                named: CredentialId([1; 32]),
                live: None
            })
        );
        m.submit(SUSPEND_LOST, 1, 9).unwrap();
        m.submit(issue(Some(1)), 2, 9).unwrap();
        assert_eq!(m.state(1), Some((State::Revoked, Some(Reason::Superseded))));
        assert_eq!(m.state(2), Some((State::Active, None)));
        assert_eq!(m.holders[&HolderTag([9; 32])], CredentialId([2; 32]));
        // The replaced credential's last change is the new issue event.
        assert_eq!(m.creds[&CredentialId([1; 32])].status.last_index, 3);
        assert_eq!(m.creds[&CredentialId([1; 32])].status.not_after_ms, 100);
        assert_eq!(
            m.submit(
                Action::Revoke {
                    reason: Reason::Superseded
                },
                2,
                9
            ),
            Err(RuleError::ReasonNotAllowed)
        );
    }

    #[test]
    fn status_record_round_trip_and_strictness() {
        let r = StatusRecord {
            state: State::Suspended,
            reason: Some(Reason::Lost),
            not_after_ms: 7,
            last_index: 9,
            last_leaf_hash: Hash([3; 32]),
        };
        assert_eq!(StatusRecord::decode(&r.encode()), Ok(r));
        let mut b = r.encode();
        b[2] = 0;
        assert_eq!(
            StatusRecord::decode(&b),
            Err(RecordError::ReasonStateMismatch {
                state: State::Suspended,
                reason: None
            })
        );
        b[1] = 4;
        assert_eq!(StatusRecord::decode(&b), Err(RecordError::UnknownState(4)));
        assert_eq!(
            StatusRecord::decode(&b[..50]),
            Err(RecordError::BadLength(50))
        );
        let c = Credential {
            status: r,
            holder: HolderTag([8; 32]),
        };
        assert_eq!(Credential::decode(&c.encode()), Ok(c));
    }
}
