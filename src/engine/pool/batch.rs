// SPDX-License-Identifier: MPL-2.0
//! Batches (`batch-size` > 1, a processor with a batch form): how the
//! leader fills one from the channel, and how its work and result run.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::super::table::{Batch, Take};
use super::super::work::{ProcessError, Work, WorkCtx, panic_message};
use super::super::{Inner, lock};
use super::Ticket;

impl<T, M, E> Inner<T, M, E>
where
    T: Send + 'static,
    M: Send + 'static,
    E: Send + 'static,
{
    /// With `batch-size` > 1 (and a processor with a batch form): waits,
    /// holding the channel, until a batch can take `batch-size` frames,
    /// an item closes it, another member's ticket comes, or
    /// `batch-timeout` passes, then takes it. The tickets received and the
    /// frames taken are matched up again, so each queued frame keeps one
    /// ticket in the channel or the inbox. `None` without batching.
    pub(super) fn fill_batch(&self, generation: u64) -> Option<Take<T>> {
        let (max, wait) = {
            let s = lock(&self.table);
            (s.config.batch_size, s.config.batch_timeout)
        };
        if max <= 1 {
            return None;
        }
        let mut inbox = lock(&self.pool.inbox);
        let deadline = Instant::now() + wait;
        let foreign = |t: &Ticket<T, M, E>| {
            t.member
                .as_ref()
                .is_some_and(|m| !Weak::ptr_eq(m, &self.me))
        };
        // Tickets of the newest generation received, this one included.
        let (mut generation, mut tickets) = (generation, 1usize);
        // Another member's frame waits: it goes next, and this batch
        // closes with the frames that came before it.
        let mut interrupted = false;
        loop {
            let (n, closed) = lock(&self.table).batchable(max);
            if closed || n == 0 || Instant::now() >= deadline {
                break;
            }
            let next = match inbox.held.pop_front() {
                Some(t) => Ok(Some(t)),
                None => self
                    .pool
                    .handle
                    .block_on(tokio::time::timeout_at(deadline.into(), inbox.rx.recv())),
            };
            match next {
                Ok(Some(t)) if foreign(&t) => {
                    inbox.held.push_front(t);
                    interrupted = true;
                    break;
                }
                Ok(Some(t)) if t.member.is_none() => {}
                Ok(Some(t)) if t.generation > generation => {
                    (generation, tickets) = (t.generation, 1)
                }
                Ok(Some(t)) if t.generation == generation => tickets += 1,
                Ok(Some(_)) => {}
                // Closed: the next receive sees it. Or the deadline.
                Ok(None) | Err(_) => break,
            }
        }
        let mut s = lock(&self.table);
        let before = s.queued_frames();
        let taken = s.take_batch(generation, if interrupted { max.min(tickets) } else { max });
        let popped = if generation == s.generation {
            before - s.queued_frames()
        } else {
            0
        };
        if matches!(taken, Take::Batch(_)) {
            self.running.fetch_add(1, Ordering::AcqRel);
        }
        // One ticket per frame still queued. The taken frames' own
        // tickets are taken as far as they come next (the others go stale
        // where they are); tickets received beyond the frames taken go
        // first, as they came before everything else.
        for _ in tickets..popped {
            match inbox.held.pop_front().or_else(|| inbox.rx.try_recv().ok()) {
                Some(t) if foreign(&t) => {
                    inbox.held.push_front(t);
                    break;
                }
                Some(_) => {}
                None => break,
            }
        }
        // Only as many as frames still queued: a ticket given back with
        // none would come back to its leader forever, ahead of every
        // other ticket (a batch can take frames whose tickets stayed
        // behind another member's, so tickets can outnumber frames).
        if generation == s.generation {
            for _ in popped..tickets.min(popped + s.queued_frames()) {
                inbox.held.push_front(Ticket {
                    member: Some(self.me.clone()),
                    generation,
                });
            }
        }
        Some(taken)
    }

    /// Runs a batch's work, as `run_job` runs one frame's.
    pub(super) fn run_batch(self: &Arc<Self>, batch: Batch<T>, id: usize) {
        let Batch {
            generation,
            timeout,
            pos,
            seq,
            frames,
            ..
        } = batch;
        let ctx: Vec<WorkCtx> = seq.iter().map(|&seq| WorkCtx { seq, worker: id }).collect();
        let started = Instant::now();
        let processor = self.processor.clone();
        let work = catch_unwind(AssertUnwindSafe(move || {
            processor.process_batch(frames, &ctx)
        }));
        match work {
            Err(payload) => {
                let err = ProcessError::Panicked(panic_message(payload));
                self.complete_batch(&pos, generation, id, Err(err), started, Duration::ZERO);
                self.release_worker(id);
            }
            Ok(Work::Ready(r)) => {
                self.complete_batch(
                    &pos,
                    generation,
                    id,
                    r.map_err(ProcessError::Failed),
                    started,
                    Duration::ZERO,
                );
                self.release_worker(id);
            }
            Ok(Work::Blocking(f)) => {
                self.pool.hand_over_channel();
                let pos: Arc<[u64]> = pos.into();
                let timer = timeout.map(|d| {
                    let pos = pos.clone();
                    self.time_out(started, d, move |inner, err| {
                        inner.complete_batch(
                            &pos,
                            generation,
                            id,
                            Err(err),
                            started,
                            Duration::ZERO,
                        );
                    })
                });
                let (r, cpu) = self.pool.counting_cpu(|| catch_unwind(AssertUnwindSafe(f)));
                let r = match r {
                    Ok(r) => r.map_err(ProcessError::Failed),
                    Err(payload) => Err(ProcessError::Panicked(panic_message(payload))),
                };
                if Self::first(timer) {
                    self.complete_batch(&pos, generation, id, r, started, cpu);
                }
                self.release_worker(id);
            }
            Ok(Work::Async(fut)) => {
                let inner = self.clone();
                self.pool.handle.spawn(async move {
                    if let Some(r) = inner.run_async(fut, timeout, generation).await {
                        inner.complete_batch(&pos, generation, id, r, started, Duration::ZERO);
                    }
                    inner.release_async(id);
                });
            }
        }
    }

    /// Stores a batch's result: each frame its own output, or the error;
    /// `cpu`: blocking work's CPU time on its thread.
    fn complete_batch(
        &self,
        pos: &[u64],
        generation: u64,
        worker: usize,
        result: Result<Vec<T>, ProcessError>,
        started: Instant,
        cpu: Duration,
    ) {
        let elapsed = started.elapsed();
        let results: Vec<Result<T, ProcessError>> = match result {
            Ok(outputs) if outputs.len() == pos.len() => outputs.into_iter().map(Ok).collect(),
            Ok(outputs) => {
                let err = ProcessError::Failed(format!(
                    "the processor gave {} results for a batch of {} frames",
                    outputs.len(),
                    pos.len()
                ));
                pos.iter().map(|_| Err(err.clone())).collect()
            }
            Err(err) => pos.iter().map(|_| Err(err.clone())).collect(),
        };
        self.store(generation, |s| {
            s.complete_batch(pos, worker, results, elapsed, cpu)
        });
    }
}
