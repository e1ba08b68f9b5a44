//! Tightening or loosening: how a new policy document or rules section compares with the one
//! in force.
//!
//! A tightening (lower limits, fewer destinations, more approvals) may take effect at once; a
//! loosening (higher limits, new allowlist entries, fewer approvals, warn-only rules, a new
//! policy) waits for a delay and the officers' quorum. A change that is both lists both, and
//! counts as a loosening.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use bitcoin::Amount;
use serde::Serialize;

use super::config::{DEFAULT_CHANGE_DISTANCE, Quorum, Rules};
use crate::document::PolicyDocument;

/// Which way a change goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Allows less than before: effective at once.
    Tightening,
    /// Allows more than before: needs the delay and the quorum.
    Loosening,
}

/// One difference, in plain words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Which way it goes.
    pub kind: ChangeKind,
    /// What changed, with the old and new values.
    pub description: String,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ChangeKind::Tightening => "tightening",
            ChangeKind::Loosening => "loosening",
        };
        write!(f, "{kind}: {}", self.description)
    }
}

/// Every difference between two documents or rules sections.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Comparison {
    /// The differences, tightenings and loosenings in the order found.
    pub changes: Vec<Change>,
}

impl Comparison {
    /// True when anything allows more than before (it then needs the delay and the quorum).
    pub fn is_loosening(&self) -> bool {
        self.changes.iter().any(|c| c.kind == ChangeKind::Loosening)
    }

    /// The loosenings, each listed.
    pub fn loosenings(&self) -> impl Iterator<Item = &Change> {
        self.changes
            .iter()
            .filter(|c| c.kind == ChangeKind::Loosening)
    }

    /// True when nothing the signer enforces changed.
    pub fn is_unchanged(&self) -> bool {
        self.changes.is_empty()
    }

    fn push(&mut self, kind: ChangeKind, description: String) {
        self.changes.push(Change { kind, description });
    }

    /// Compares two optional limits where `None` means no limit.
    fn limit<T: Ord + Copy>(
        &mut self,
        what: &str,
        old: Option<T>,
        new: Option<T>,
        show: impl Fn(T) -> String,
    ) {
        match (old, new) {
            (None, None) => {}
            (None, Some(n)) => {
                self.push(ChangeKind::Tightening, format!("{what} set to {}", show(n)))
            }
            (Some(o), None) => self.push(
                ChangeKind::Loosening,
                format!("{what} removed (was {})", show(o)),
            ),
            (Some(o), Some(n)) if n > o => self.push(
                ChangeKind::Loosening,
                format!("{what} raised from {} to {}", show(o), show(n)),
            ),
            (Some(o), Some(n)) if n < o => self.push(
                ChangeKind::Tightening,
                format!("{what} lowered from {} to {}", show(o), show(n)),
            ),
            _ => {}
        }
    }
}

fn sat(a: Amount) -> String {
    format!("{} sat", a.to_sat())
}

/// Compares a new document with the one in force (`None`: there is none).
///
/// A new policy (no old one, or other descriptors, keys, recovery key or network) is always a
/// loosening: it opens a new place funds can be spent from under new keys. Otherwise the
/// rules sections are compared as [`compare_rules`] does.
pub fn compare_documents(old: Option<&PolicyDocument>, new: &PolicyDocument) -> Comparison {
    let mut c = Comparison::default();
    let Some(old) = old else {
        c.push(
            ChangeKind::Loosening,
            format!("new policy {:?} ({})", new.name, new.id),
        );
        return c;
    };
    if old.descriptors != new.descriptors
        || old.network != new.network
        || old.hsm_keys != new.hsm_keys
        || old.recovery != new.recovery
        || old.template != new.template
    {
        c.push(
            ChangeKind::Loosening,
            format!(
                "new policy: descriptors, keys or network differ from policy {} (now {})",
                old.id, new.id
            ),
        );
    }
    c.changes
        .extend(compare_rules(&new.template, &old.rules, &new.rules).changes);
    c
}

/// Compares a new rules section with the one in force, for a policy of template kind
/// `template` (which says what an absent quorum means: automatic for `hot`, refusal for the
/// others).
pub fn compare_rules(template: &str, old: &Rules, new: &Rules) -> Comparison {
    let mut c = Comparison::default();
    match (&old.allowlist, &new.allowlist) {
        (None, None) => {}
        (None, Some(_)) => c.push(
            ChangeKind::Tightening,
            "allowlist introduced: only listed destinations".into(),
        ),
        (Some(_), None) => c.push(
            ChangeKind::Loosening,
            "allowlist removed: any destination".into(),
        ),
        (Some(o), Some(n)) => {
            for added in n.iter().filter(|e| !o.contains(e)) {
                c.push(
                    ChangeKind::Loosening,
                    format!("allowlist entry added: {added:?}"),
                );
            }
            for removed in o.iter().filter(|e| !n.contains(e)) {
                c.push(
                    ChangeKind::Tightening,
                    format!("allowlist entry removed: {removed:?}"),
                );
            }
        }
    }
    c.limit("max_per_tx", old.max_per_tx_sat, new.max_per_tx_sat, sat);
    let windows = |r: &Rules| -> BTreeMap<u32, Amount> {
        r.velocity
            .iter()
            .map(|w| (w.window_secs, w.max_sat))
            .collect()
    };
    let (ow, nw) = (windows(old), windows(new));
    let all: BTreeSet<u32> = ow.keys().chain(nw.keys()).copied().collect();
    for w in all {
        let id = super::RuleId::Velocity { window_secs: w };
        c.limit(&id.as_str(), ow.get(&w).copied(), nw.get(&w).copied(), sat);
    }
    c.limit(
        "fee_absolute",
        old.fee.max_absolute_sat,
        new.fee.max_absolute_sat,
        sat,
    );
    c.limit(
        "fee_rate",
        old.fee.max_rate_sat_vb,
        new.fee.max_rate_sat_vb,
        |r| format!("{r} sat/vB"),
    );
    c.limit(
        "fee_share",
        old.fee.max_share_bps,
        new.fee.max_share_bps,
        |b| format!("{b} bps"),
    );
    c.limit(
        "change_distance",
        Some(old.change_max_distance.unwrap_or(DEFAULT_CHANGE_DISTANCE)),
        Some(new.change_max_distance.unwrap_or(DEFAULT_CHANGE_DISTANCE)),
        |d| d.to_string(),
    );
    let (ol, nl) = (
        old.locktime.unwrap_or_default(),
        new.locktime.unwrap_or_default(),
    );
    c.limit(
        "locktime blocks ahead",
        Some(ol.blocks_ahead),
        Some(nl.blocks_ahead),
        |d| d.to_string(),
    );
    c.limit(
        "locktime seconds ahead",
        Some(ol.seconds_ahead),
        Some(nl.seconds_ahead),
        |d| d.to_string(),
    );
    compare_quorums(
        &mut c,
        template,
        old.approvals.as_ref(),
        new.approvals.as_ref(),
    );
    for added in new.warn_only.iter().filter(|w| !old.warn_only.contains(w)) {
        c.push(ChangeKind::Loosening, format!("{added} made warn-only"));
    }
    for removed in old.warn_only.iter().filter(|w| !new.warn_only.contains(w)) {
        c.push(ChangeKind::Tightening, format!("{removed} enforced again"));
    }
    c
}

/// Approvals needed for an amount; `None` means the request is refused whatever the approvals.
fn required(template: &str, quorum: Option<&Quorum>, amount: Amount) -> Option<u32> {
    match quorum {
        Some(q) => Some(q.required_for(amount)),
        None if template == "hot" => Some(0),
        None => None,
    }
}

fn compare_quorums(c: &mut Comparison, template: &str, old: Option<&Quorum>, new: Option<&Quorum>) {
    // The approvals needed are constant between tier bounds, so comparing at every bound and
    // just above it covers every amount.
    let mut points = BTreeSet::from([Amount::ZERO, Amount::MAX_MONEY]);
    for q in [old, new].into_iter().flatten() {
        for up in q.tiers.iter().filter_map(|t| t.up_to_sat) {
            points.insert(up);
            if let Some(next) = up.checked_add(Amount::ONE_SAT) {
                points.insert(next);
            }
        }
    }
    let show = |r: Option<u32>| r.map_or("refused".to_owned(), |n| format!("{n} approvals"));
    let mut loosened = Vec::new();
    let mut tightened = Vec::new();
    for amount in points {
        let (o, n) = (
            required(template, old, amount),
            required(template, new, amount),
        );
        // None (refused) is the strictest: above any number of approvals.
        let rank = |r: Option<u32>| r.map_or(u64::MAX, u64::from);
        if rank(n) < rank(o) {
            loosened.push(format!(
                "{} sat: {} -> {}",
                amount.to_sat(),
                show(o),
                show(n)
            ));
        } else if rank(n) > rank(o) {
            tightened.push(format!(
                "{} sat: {} -> {}",
                amount.to_sat(),
                show(o),
                show(n)
            ));
        }
    }
    if !loosened.is_empty() {
        c.push(
            ChangeKind::Loosening,
            format!("fewer approvals needed at {}", loosened.join(", ")),
        );
    }
    if !tightened.is_empty() {
        c.push(
            ChangeKind::Tightening,
            format!("more approvals needed at {}", tightened.join(", ")),
        );
    }
}
