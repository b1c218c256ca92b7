//! Runs planned writes against the store, every transaction fenced by the
//! coordinator's leadership, packed within etcd's limits.
//!
//! A [`WritePlan`] has `prepare` operations (any number of transactions, not
//! visible until the final one lands) and `final_ops` (one transaction, with
//! the plan's guards). Every transaction carries the fence; when it fails the
//! failure branch reads the fence key, which tells "deposed" apart from "a
//! guard did not hold".

use crate::state::WritePlan;
use crate::store::{
    Compare, MAX_REQUEST_BYTES, MAX_TXN_OPS, MetadataStore, StoreError, Txn, TxnOp, TxnOpResult,
};

/// Bytes we allow per transaction: etcd's limit less room for framing.
const TXN_BUDGET_BYTES: usize = MAX_REQUEST_BYTES - 64 * 1024;

/// Why a planned write did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The fence failed: this coordinator is no longer the leader.
    #[error("this coordinator was deposed (its leadership key is gone)")]
    Fenced,
    /// A guard of the final transaction failed (e.g. the topic appeared).
    #[error("a precondition of the write no longer holds")]
    GuardFailed,
    /// A single operation is larger than a transaction may be.
    #[error("a single metadata record of {0} bytes exceeds the request limit")]
    RecordTooLarge(usize),
    /// The store refused or could not be reached.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn op_bytes(op: &TxnOp) -> usize {
    match op {
        TxnOp::Put { key, value, .. } => key.len() + value.len() + 16,
        TxnOp::Delete { key } | TxnOp::Get { key } => key.len() + 8,
        TxnOp::DeletePrefix { prefix } | TxnOp::GetPrefix { prefix } => prefix.len() * 2 + 8,
    }
}

/// Split `ops` into transactions of at most `MAX_TXN_OPS - 1` operations
/// (one slot stays free) and [`TXN_BUDGET_BYTES`] bytes.
pub fn pack(ops: Vec<TxnOp>) -> Result<Vec<Vec<TxnOp>>, WriteError> {
    let mut batches = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for op in ops {
        let b = op_bytes(&op);
        if b > TXN_BUDGET_BYTES {
            return Err(WriteError::RecordTooLarge(b));
        }
        if !current.is_empty() && (current.len() + 1 >= MAX_TXN_OPS || bytes + b > TXN_BUDGET_BYTES)
        {
            batches.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += b;
        current.push(op);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    Ok(batches)
}

/// Run one fenced transaction; returns its revision.
async fn fenced_txn(
    store: &dyn MetadataStore,
    fence: &Compare,
    guards: &[Compare],
    ops: Vec<TxnOp>,
) -> Result<i64, WriteError> {
    let mut compares = vec![fence.clone()];
    compares.extend(guards.iter().cloned());
    let response = store
        .txn(
            Txn::new()
                .when(compares)
                .and_then(ops)
                .or_else([TxnOp::get(fence.key.clone())]),
        )
        .await?;
    if response.succeeded {
        return Ok(response.revision);
    }
    let fence_holds = match response.results.first() {
        Some(TxnOpResult::Get(kvs)) => fence.evaluate(kvs.first()),
        _ => false,
    };
    Err(if fence_holds {
        WriteError::GuardFailed
    } else {
        WriteError::Fenced
    })
}

/// Execute a plan: the prepare batches, then the final transaction. Returns
/// the revision of the last transaction (the final one when there is one).
pub async fn execute(
    store: &dyn MetadataStore,
    fence: &Compare,
    plan: WritePlan,
) -> Result<i64, WriteError> {
    let mut revision = 0;
    for batch in pack(plan.prepare)? {
        revision = fenced_txn(store, fence, &[], batch).await?;
    }
    if !plan.final_ops.is_empty() {
        let batches = pack(plan.final_ops)?;
        if batches.len() > 1 {
            // Final operations must land atomically; a plan that cannot is a
            // planning bug, refused before anything visible is written.
            let bytes: usize = batches.iter().flatten().map(op_bytes).sum();
            return Err(WriteError::RecordTooLarge(bytes));
        }
        for batch in batches {
            revision = fenced_txn(store, fence, &plan.final_guard, batch).await?;
        }
    }
    Ok(revision)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_respects_limits() {
        let small: Vec<TxnOp> = (0..300)
            .map(|i| TxnOp::put(format!("k{i}"), vec![0u8; 10]))
            .collect();
        let b = pack(small).unwrap();
        assert_eq!(
            b.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![127, 127, 46]
        );
        let big: Vec<TxnOp> = (0..10)
            .map(|i| TxnOp::put(format!("k{i}"), vec![0u8; 400 * 1024]))
            .collect();
        let b = pack(big).unwrap();
        assert!(
            b.iter()
                .all(|t| t.iter().map(op_bytes).sum::<usize>() <= TXN_BUDGET_BYTES)
        );
        assert_eq!(b.iter().map(Vec::len).sum::<usize>(), 10);
        assert!(matches!(
            pack(vec![TxnOp::put("x", vec![0u8; 2 * 1024 * 1024])]),
            Err(WriteError::RecordTooLarge(_))
        ));
    }
}
