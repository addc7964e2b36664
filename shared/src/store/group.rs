//! Group commit for a redb file: concurrent writes are coalesced into one write transaction, so many
//! callers share one commit (one fsync with `Durability::Immediate`).
//!
//! A caller queues its write and waits. Whoever finds no writer running starts one on the blocking
//! pool; it takes every write waiting (up to [`MAX_BATCH`]), runs them in arrival order inside one
//! transaction (each sees the writes before it, so two captures of one delivery in a batch still
//! dedupe), commits once, and only then answers each caller: nothing is answered before the commit
//! that holds it is durable. Writes that arrive meanwhile form the next batch, so the batch grows
//! with the load and a lone write waits for nobody.
//!
//! One write failing must not fail the others. redb's ephemeral savepoints cannot be taken once a
//! table is open (and not at all in `MultiWriter` mode), so a failed write is isolated by rerunning:
//! the transaction is aborted, the failed caller gets its error, and the others run again in a fresh
//! transaction. That is why writes are `Fn` (rerunnable) and must keep their side effects inside the
//! transaction.

use redb::{Database, WriteTransaction};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

/// Most writes in one transaction (bounds its size and the wait of the last caller).
pub const MAX_BATCH: usize = 512;

/// One queued write, type-erased.
trait Job: Send {
    /// Runs inside the batch's transaction: `Some(changed)`, or `None` when it failed (the error is
    /// kept for its answer, and its writes must be rolled back).
    fn run(&mut self, txn: &WriteTransaction) -> Option<bool>;
    /// Answers the caller: `commit` is the batch's commit result.
    fn answer(self: Box<Self>, commit: Result<(), String>);
}

struct Pending<T, E, F> {
    f: F,
    result: Option<Result<T, E>>,
    tx: tokio::sync::oneshot::Sender<Result<T, E>>,
    err: fn(String) -> E,
}

impl<T, E, F> Job for Pending<T, E, F>
where
    T: Send,
    E: Send,
    F: Fn(&WriteTransaction) -> Result<(T, bool), E> + Send,
{
    fn run(&mut self, txn: &WriteTransaction) -> Option<bool> {
        // A panicking write must not stop the writer (every later caller would wait forever).
        let outcome = catch_unwind(AssertUnwindSafe(|| (self.f)(txn)));
        match outcome {
            Ok(Ok((value, changed))) => {
                self.result = Some(Ok(value));
                Some(changed)
            }
            Ok(Err(e)) => {
                self.result = Some(Err(e));
                None
            }
            Err(_) => {
                self.result = Some(Err((self.err)("write panicked".into())));
                None
            }
        }
    }

    fn answer(self: Box<Self>, commit: Result<(), String>) {
        let answer = match (self.result, commit) {
            // A failed write answers its own error: nothing of it was committed.
            (Some(Err(e)), _) => Err(e),
            (_, Err(e)) => Err((self.err)(e)),
            (Some(Ok(v)), Ok(())) => Ok(v),
            (None, Ok(())) => Err((self.err)("write not run".into())),
        };
        // The caller may have gone (request cancelled): its write stands, nobody to tell.
        let _ = self.tx.send(answer);
    }
}

#[derive(Default)]
struct State {
    queue: Vec<Box<dyn Job>>,
    running: bool,
}

struct Inner {
    state: Mutex<State>,
    commits: AtomicU64,
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The group-commit writer of one redb [`Database`]; clones share it.
#[derive(Clone)]
pub struct GroupCommit {
    db: Arc<Database>,
    inner: Arc<Inner>,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("commits", &self.commits())
            .finish_non_exhaustive()
    }
}

impl GroupCommit {
    /// The writer of `db`. Open one per file and share it: two writers on one file stay correct (redb
    /// serialises their transactions) but do not coalesce with each other.
    pub fn new(db: Arc<Database>) -> Self {
        Self {
            db,
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                commits: AtomicU64::new(0),
            }),
        }
    }

    /// Commits made by this writer so far (each one durable: one fsync per batch, not per write).
    pub fn commits(&self) -> u64 {
        self.inner.commits.load(Ordering::Relaxed)
    }

    /// Writes waiting for the next batch (tests use it to know a batch is formed).
    pub fn queued(&self) -> usize {
        self.inner.lock().queue.len()
    }

    /// Runs `f` in the next batch's transaction and answers once that transaction is committed.
    /// `f` returns its value and whether it changed anything (a batch where nothing changed is aborted:
    /// no fsync). It may run more than once (when another write of its batch fails), so it must be
    /// free of side effects outside the transaction. `err` turns a commit failure into `E`.
    pub async fn write<T, E, F>(&self, f: F, err: fn(String) -> E) -> Result<T, E>
    where
        T: Send + 'static,
        E: Send + 'static,
        F: Fn(&WriteTransaction) -> Result<(T, bool), E> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job = Box::new(Pending {
            f,
            result: None,
            tx,
            err,
        });
        let start = {
            let mut state = self.inner.lock();
            state.queue.push(job);
            !std::mem::replace(&mut state.running, true)
        };
        if start {
            // Detached, and holding the database only while a batch runs: once the last caller has its
            // answer and drops the store, the file is closed (a reopen right after must succeed).
            let (db, inner) = (Arc::downgrade(&self.db), self.inner.clone());
            drop(tokio::task::spawn_blocking(move || drain(&db, &inner)));
        }
        rx.await
            .unwrap_or_else(|_| Err(err("group commit writer stopped".into())))
    }
}

/// The writer: batches until the queue is empty.
fn drain(db: &Weak<Database>, inner: &Inner) {
    loop {
        let batch: Vec<Box<dyn Job>> = {
            let mut state = inner.lock();
            if state.queue.is_empty() {
                state.running = false;
                return;
            }
            let n = state.queue.len().min(MAX_BATCH);
            state.queue.drain(..n).collect()
        };
        let answers = match db.upgrade() {
            Some(db) => run_batch(&db, inner, batch),
            // Every handle dropped: only cancelled callers wait, nothing was answered.
            None => batch
                .into_iter()
                .map(|job| (job, Err("store closed".to_owned())))
                .collect(),
        };
        for (job, commit) in answers {
            job.answer(commit);
        }
    }
}

/// Runs a batch; returns each write with the result of the commit that holds it.
fn run_batch(
    db: &Database,
    inner: &Inner,
    mut jobs: Vec<Box<dyn Job>>,
) -> Vec<(Box<dyn Job>, Result<(), String>)> {
    let mut answers = Vec::with_capacity(jobs.len());
    while !jobs.is_empty() {
        let txn = match db.begin_write() {
            Ok(txn) => txn,
            Err(e) => {
                let e = e.to_string();
                answers.extend(jobs.drain(..).map(|job| (job, Err(e.clone()))));
                break;
            }
        };
        let mut changed = false;
        let mut failed = None;
        for (i, job) in jobs.iter_mut().enumerate() {
            match job.run(&txn) {
                Some(c) => changed |= c,
                None => {
                    failed = Some(i);
                    break;
                }
            }
        }
        if let Some(i) = failed {
            // Its partial writes and the others' go; the others run again without it, which answers
            // its own error.
            let _ = txn.abort();
            answers.push((jobs.remove(i), Ok(())));
            continue;
        }
        let commit = if changed {
            txn.commit()
                .map(|()| {
                    inner.commits.fetch_add(1, Ordering::Relaxed);
                })
                .map_err(|e| e.to_string())
        } else {
            txn.abort().map_err(|e| e.to_string())
        };
        answers.extend(jobs.drain(..).map(|job| (job, commit.clone())));
    }
    answers
}
