//! Planning a batch: each posting applied in memory on top of the cached balances and the
//! postings before it, accepted or refused by the ledger's rules. Nothing here touches the
//! database.

use std::collections::{HashMap, HashSet};

use super::{Request, Writer};
use crate::ids::{LedgerAccountId, TransactionId};
use crate::ledger::error::LedgerError;
use crate::ledger::posting::Posting;
use crate::ledger::types::{Currency, Direction, Layer};

#[derive(Clone, Copy, Debug)]
pub(super) struct CachedAccount {
    pub(super) normal: Direction,
    pub(super) currency: Currency,
    pub(super) allow_negative: bool,
    pub(super) settled: i64,
    pub(super) pending: i64,
    /// The version stored in the database.
    pub(super) version: i64,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Touched {
    pub(super) account: CachedAccount,
    pub(super) last_tx: TransactionId,
}

pub(super) struct Accepted {
    pub(super) order: usize,
    pub(super) request: Request,
    pub(super) id: TransactionId,
}

pub(super) struct Plan {
    pub(super) accepted: Vec<Accepted>,
    pub(super) rejected: Vec<(usize, Request, LedgerError)>,
    pub(super) overlay: HashMap<LedgerAccountId, Touched>,
}

impl Writer {
    /// Applies one posting on top of the cache and the batch so far.
    pub(super) fn apply(
        &self,
        posting: &Posting,
        overlay: &HashMap<LedgerAccountId, Touched>,
    ) -> Result<Vec<(LedgerAccountId, CachedAccount)>, LedgerError> {
        if !self.journals.contains(&posting.journal_id()) {
            return Err(LedgerError::UnknownJournal {
                journal_id: posting.journal_id(),
            });
        }
        // (account, state before, settled change, pending change)
        let mut local: Vec<(LedgerAccountId, CachedAccount, i64, i64)> = Vec::with_capacity(4);
        for e in posting.entries() {
            let idx = match local.iter().position(|l| l.0 == e.account_id) {
                Some(i) => i,
                None => {
                    let acc = overlay
                        .get(&e.account_id)
                        .map(|t| t.account)
                        .or_else(|| self.accounts.get(&e.account_id).copied())
                        .ok_or(LedgerError::UnknownAccount {
                            account_id: e.account_id,
                        })?;
                    local.push((e.account_id, acc, 0, 0));
                    local.len() - 1
                }
            };
            let (account_id, acc, settled_change, pending_change) = &mut local[idx];
            if acc.currency != e.currency {
                return Err(LedgerError::CurrencyMismatch {
                    account_id: *account_id,
                    account_currency: acc.currency,
                    entry_currency: e.currency,
                });
            }
            let amount = e.amount.to_i64();
            let signed = if e.direction == acc.normal {
                amount
            } else {
                -amount
            };
            let target = match e.layer {
                Layer::Settled => settled_change,
                Layer::Pending => pending_change,
            };
            *target = target.checked_add(signed).ok_or(LedgerError::Overflow {
                account_id: *account_id,
            })?;
        }
        let mut out = Vec::with_capacity(local.len());
        for (account_id, acc, settled_change, pending_change) in local {
            let overflow = LedgerError::Overflow { account_id };
            let settled = acc.settled.checked_add(settled_change).ok_or(overflow)?;
            let pending = acc
                .pending
                .checked_add(pending_change)
                .ok_or(LedgerError::Overflow { account_id })?;
            if !acc.allow_negative
                && (settled < 0 || settled.checked_add(pending).is_none_or(|v| v < 0))
            {
                return Err(LedgerError::InsufficientBalance {
                    account_id,
                    settled: acc.settled,
                    pending: acc.pending,
                    settled_change,
                    pending_change,
                });
            }
            out.push((
                account_id,
                CachedAccount {
                    settled,
                    pending,
                    ..acc
                },
            ));
        }
        Ok(out)
    }

    pub(super) fn plan(&self, todo: Vec<(usize, Request)>, deferred: &mut Vec<Request>) -> Plan {
        let mut seen: HashSet<String> = HashSet::new();
        let mut plan = Plan {
            accepted: Vec::new(),
            rejected: Vec::new(),
            overlay: HashMap::new(),
        };
        for (order, request) in todo {
            if !seen.insert(request.posting.external_id().to_owned()) {
                deferred.push(request);
                continue;
            }
            match self.apply(&request.posting, &plan.overlay) {
                Ok(changes) => {
                    let id = TransactionId::new();
                    for (account_id, account) in changes {
                        plan.overlay.insert(
                            account_id,
                            Touched {
                                account,
                                last_tx: id,
                            },
                        );
                    }
                    plan.accepted.push(Accepted { order, request, id });
                }
                Err(e) => plan.rejected.push((order, request, e)),
            }
        }
        plan
    }
}

pub(super) fn all_requests(plan: Plan) -> Vec<Request> {
    all_requests_ordered(plan)
        .into_iter()
        .map(|(_, r)| r)
        .collect()
}

/// Every request of a plan with its place in the batch, in batch order.
pub(super) fn all_requests_ordered(plan: Plan) -> Vec<(usize, Request)> {
    let mut all: Vec<(usize, Request)> = plan
        .accepted
        .into_iter()
        .map(|a| (a.order, a.request))
        .chain(plan.rejected.into_iter().map(|(o, r, _)| (o, r)))
        .collect();
    all.sort_by_key(|(o, _)| *o);
    all
}
