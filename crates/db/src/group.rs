//! Group commit on SQLite's single writer.
//!
//! With `synchronous = FULL` every SQLite commit waits for an fsync of the write-ahead log,
//! and the fsync, not the statements, is what a commit mostly costs. Transactions that
//! queue for the writer at the same moment can share one: each runs inside a savepoint of
//! one physical transaction (`BEGIN IMMEDIATE`), its "commit" leaves its writes in place, and
//! the physical `COMMIT`, with its one fsync, is issued by whichever member finds no one
//! else waiting for the writer (or the group full, or old enough). Every member's
//! `commit()` returns only once that physical commit is durable: nothing is acknowledged
//! before it is on disk, exactly as before, and a reader that follows an acknowledged
//! write sees it.
//!
//! A member that fails or is dropped rolls back to its savepoint and leaves the others'
//! work in place. If the physical transaction fails as a whole (SQLite rolls everything
//! back on an I/O error or a full disk, and then the savepoint is gone), every member of
//! the group gets the error, so none of them is acknowledged.
//!
//! Members of one group see each other's writes before they are durable; since they
//! become durable, or fail, together, no one outside the group can act on a write that
//! is then lost. A member that rolls back explicitly waits for its group too, so that
//! what it saw of the others (a key taken, a stream moved on) is durable, and visible to
//! every reader, before it acts on it; one merely dropped does not wait (rare cases: an
//! answer such as "that e-mail is taken" may then precede the durability of the write
//! that took it by a commit).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool};
use tokio::sync::{OwnedMutexGuard, watch};
use tokio::time::Instant;

/// At most this many members share a commit, so that a writer under constant load still
/// commits regularly.
const MAX_MEMBERS: usize = 256;
/// And a group is committed once it is this old, however busy the writer.
const MAX_AGE: Duration = Duration::from_millis(10);

/// Opens a member. A member that commits leaves its savepoint in place (releasing it
/// would cost the writer one more statement, a round trip to SQLite's thread); the
/// physical `COMMIT` ends them all. One that rolls back goes back to the most recent
/// savepoint of the name, its own, and releases that alone.
const SAVEPOINT: &str = "SAVEPOINT oxcart_member";
const ROLLBACK_MEMBER: &str =
    "ROLLBACK TO SAVEPOINT oxcart_member; RELEASE SAVEPOINT oxcart_member";

/// The writer's side of group commit; one per SQLite database.
#[derive(Clone)]
pub(super) struct GroupWriter {
    shared: Arc<Shared>,
}

struct Shared {
    pool: AnyPool,
    /// The statements that open a physical transaction and its first member, sent as one.
    begin: String,
    state: Arc<tokio::sync::Mutex<State>>,
    /// Transactions waiting for the writer: while there are any, a member leaves the
    /// physical commit to one of them.
    waiting: AtomicUsize,
    /// The last group whose physical commit is over, one way or the other.
    settled: watch::Sender<u64>,
    /// Recent groups whose physical commit failed, with why.
    failed: Mutex<VecDeque<(u64, Arc<str>)>>,
    /// Physical commits made, and members committed by them: exported as they are
    /// (`db_group_commits_total`, `db_group_commit_transactions_total`).
    commits: prometheus::IntCounter,
    members: prometheus::IntCounter,
}

#[derive(Default)]
struct State {
    /// The writer connection, taken from the pool at the first `begin` and kept (see
    /// [`GroupWriter::hand_back`]).
    conn: Option<PoolConnection<Any>>,
    group: Option<Group>,
    /// Numbers the groups; the first is 1.
    last_epoch: u64,
    /// A member is between its savepoint and its commit or rollback.
    member_open: bool,
}

struct Group {
    epoch: u64,
    members: usize,
    opened: Instant,
}

/// Counts a transaction as waiting for the writer until it has it (or gives up).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One transaction in a group: the writer connection, inside a savepoint.
pub(super) struct Member {
    writer: GroupWriter,
    state: Option<OwnedMutexGuard<State>>,
}

impl std::fmt::Debug for GroupWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (commits, members) = self.counts();
        f.debug_struct("GroupWriter")
            .field("commits", &commits)
            .field("members", &members)
            .finish_non_exhaustive()
    }
}

impl GroupWriter {
    pub(super) fn new(pool: AnyPool, begin: &'static str) -> Self {
        Self {
            shared: Arc::new(Shared {
                pool,
                begin: format!("{begin}; {SAVEPOINT}"),
                state: Arc::default(),
                waiting: AtomicUsize::new(0),
                settled: watch::Sender::new(0),
                failed: Mutex::default(),
                commits: prometheus::IntCounter::new(
                    "db_group_commits_total",
                    "Physical commits on SQLite's writer, each one fsync",
                )
                .expect("valid metric definition"),
                members: prometheus::IntCounter::new(
                    "db_group_commit_transactions_total",
                    "Transactions made durable by SQLite's physical commits",
                )
                .expect("valid metric definition"),
            }),
        }
    }

    /// Physical commits made, and the transactions they committed.
    pub(super) fn counts(&self) -> (u64, u64) {
        (self.shared.commits.get(), self.shared.members.get())
    }

    /// The two counters, for the process's metrics.
    pub(super) fn counters(&self) -> [&prometheus::IntCounter; 2] {
        [&self.shared.commits, &self.shared.members]
    }

    /// Waits for the writer and opens a member transaction on it.
    pub(super) async fn begin(&self) -> sqlx::Result<Member> {
        let mut state = {
            self.shared.waiting.fetch_add(1, Ordering::SeqCst);
            let _waiting = Waiting(&self.shared.waiting);
            self.shared.state.clone().lock_owned().await
        };
        match self.open(&mut state).await {
            Ok(()) => Ok(Member {
                writer: self.clone(),
                state: Some(state),
            }),
            Err(error) => {
                self.finish(state, false).await;
                Err(error)
            }
        }
    }

    async fn open(&self, state: &mut State) -> sqlx::Result<()> {
        abandon_member(state).await;
        if state.group.is_none() {
            let mut conn = match state.conn.take() {
                Some(conn) => conn,
                None => self.shared.pool.acquire().await?,
            };
            if let Err(error) = super::query(&self.shared.begin).execute(&mut *conn).await {
                // Closed, so whichever of the two statements failed leaves nothing open.
                conn.close_on_drop();
                return Err(error);
            }
            state.conn = Some(conn);
            state.last_epoch += 1;
            state.group = Some(Group {
                epoch: state.last_epoch,
                members: 0,
                opened: Instant::now(),
            });
        } else {
            let conn = state.conn.as_mut().ok_or(sqlx::Error::PoolClosed)?;
            super::query(SAVEPOINT).execute(&mut **conn).await?;
        }
        state.member_open = true;
        Ok(())
    }

    /// Hands the writer on, first committing the group if no one else is waiting to
    /// join it (or it is full or old): the last member in commits for everyone.
    async fn finish(&self, mut state: OwnedMutexGuard<State>, force: bool) {
        let due = state.group.as_ref().is_some_and(|group| {
            force
                || self.shared.waiting.load(Ordering::SeqCst) == 0
                || group.members >= MAX_MEMBERS
                || group.opened.elapsed() >= MAX_AGE
        });
        if due {
            self.commit_group(&mut state).await;
        }
    }

    /// Issues the physical commit and publishes its outcome to the group's members.
    async fn commit_group(&self, state: &mut State) {
        let Some(group) = state.group.take() else {
            return;
        };
        let outcome = match state.conn.as_mut() {
            Some(conn) => super::query("COMMIT").execute(&mut **conn).await.map(drop),
            None => Err(sqlx::Error::PoolClosed),
        };
        if let Err(error) = outcome {
            tracing::error!(%error, members = group.members, "a group commit failed");
            if let Some(mut conn) = state.conn.take()
                && super::query("ROLLBACK").execute(&mut *conn).await.is_err()
            {
                conn.close_on_drop();
            }
            state.member_open = false;
            if let Ok(mut failed) = self.shared.failed.lock() {
                failed.push_back((group.epoch, error.to_string().into()));
                while failed.len() > 64 {
                    failed.pop_front();
                }
            }
        } else {
            self.shared.commits.inc();
            self.shared.members.inc_by(group.members as u64);
        }
        self.shared.settled.send_replace(group.epoch);
    }

    /// Commits any open group and returns the writer connection to the pool, for whoever
    /// needs it outside a transaction (migrations, the checkpoint at close). The next
    /// `begin` takes it again.
    pub(super) async fn hand_back(&self) {
        let mut state = self.shared.state.clone().lock_owned().await;
        abandon_member(&mut state).await;
        self.commit_group(&mut state).await;
        state.conn = None;
    }

    /// Waits until group `epoch` is durable, or says why it is not.
    async fn durable(&self, epoch: u64) -> sqlx::Result<()> {
        let mut settled = self.shared.settled.subscribe();
        loop {
            if *settled.borrow_and_update() >= epoch {
                break;
            }
            tokio::select! {
                changed = settled.changed() => {
                    if changed.is_err() {
                        return Err(sqlx::Error::PoolClosed);
                    }
                }
                // Whoever should have committed the group went away without doing so
                // (its future was dropped while it waited for the writer): commit it.
                () = tokio::time::sleep(MAX_AGE * 2) => {
                    let mut state = self.shared.state.clone().lock_owned().await;
                    if state.group.as_ref().is_some_and(|g| g.epoch == epoch) {
                        abandon_member(&mut state).await;
                        self.commit_group(&mut state).await;
                    }
                }
            }
        }
        let failed = self.shared.failed.lock().ok().and_then(|failed| {
            failed
                .iter()
                .find(|(e, _)| *e == epoch)
                .map(|(_, why)| why.clone())
        });
        match failed {
            Some(why) => Err(sqlx::Error::Protocol(format!(
                "the group commit of this transaction failed: {why}"
            ))),
            None => Ok(()),
        }
    }
}

impl Member {
    fn state(&mut self) -> sqlx::Result<&mut OwnedMutexGuard<State>> {
        self.state.as_mut().ok_or(sqlx::Error::PoolClosed)
    }

    /// Joins the member's writes to its group (its savepoint stays: see [`SAVEPOINT`])
    /// and returns once the group is durable. Had SQLite rolled the whole transaction
    /// back under the member (an I/O error, a full disk), the group's physical commit
    /// fails and reports it to every member, this one included.
    pub(super) async fn commit(mut self) -> sqlx::Result<()> {
        let state = self.state()?;
        state.member_open = false;
        let epoch = match state.group.as_mut() {
            Some(group) => {
                group.members += 1;
                group.epoch
            }
            None => return Err(sqlx::Error::PoolClosed),
        };
        if let Some(state) = self.state.take() {
            self.writer.finish(state, false).await;
        }
        self.writer.durable(epoch).await
    }

    /// Undoes this member's writes; the group's others stand. Returns once the group is
    /// settled: what this member saw of the others' writes (a key taken, a stream moved
    /// on) is durable by then, and any reader sees it too.
    pub(super) async fn rollback(mut self) -> sqlx::Result<()> {
        let Some(mut state) = self.state.take() else {
            return Ok(());
        };
        let result = roll_back_member(&mut state).await;
        let epoch = state.group.as_ref().map(|group| group.epoch);
        self.writer.finish(state, false).await;
        if let Some(epoch) = epoch {
            // Its outcome is the others' to report.
            let _ = self.writer.durable(epoch).await;
        }
        result
    }
}

/// Rolls back the open member's writes; the group's others stand.
async fn roll_back_member(state: &mut State) -> sqlx::Result<()> {
    let conn = state.conn.as_mut().ok_or(sqlx::Error::PoolClosed)?;
    let result = super::query(ROLLBACK_MEMBER)
        .execute(&mut **conn)
        .await
        .map(drop);
    state.member_open = false;
    result
}

/// Undoes what a member left behind when it went away mid-step (its future dropped
/// between its savepoint and its commit or rollback).
async fn abandon_member(state: &mut State) {
    if state.member_open {
        let _ = roll_back_member(state).await;
    }
}

impl Drop for Member {
    /// A member dropped without a commit (an error returned early, a redelivery skipped)
    /// rolls back to its savepoint; that takes the connection, so it happens on a task.
    fn drop(&mut self) {
        let Some(mut state) = self.state.take() else {
            return;
        };
        let writer = self.writer.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(error) = roll_back_member(&mut state).await {
                        tracing::warn!(%error, "could not roll back a dropped transaction");
                    }
                    writer.finish(state, false).await;
                });
            }
            // No runtime left (the process is ending): the next `begin` cleans up.
            Err(_) => drop(state),
        }
    }
}

impl std::ops::Deref for Member {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        self.state
            .as_ref()
            .and_then(|state| state.conn.as_ref())
            .expect("a member holds the writer until it commits or rolls back")
    }
}

impl std::ops::DerefMut for Member {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        self.state
            .as_mut()
            .and_then(|state| state.conn.as_mut())
            .expect("a member holds the writer until it commits or rolls back")
    }
}
