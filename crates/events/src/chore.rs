//! Housekeeping: work a process does every so often in the background, such as pruning
//! rows nothing can need again, or settling what waited too long. Services hand their
//! chores to the composition root in their `Parts`; `oxcart_platform::housekeeping` runs
//! them.

use async_trait::async_trait;

use crate::store::BoxError;

/// One housekeeping task. A round may run in several replicas at once, so it must be safe
/// to: each does only what still needs doing when it looks.
#[async_trait]
pub trait Chore: Send + Sync {
    /// Its `task` label in `housekeeping_done_total`.
    fn name(&self) -> &'static str;
    /// One round: how many rows it removed, or orders it settled.
    async fn run(&self) -> Result<u64, BoxError>;
}
