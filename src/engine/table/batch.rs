// SPDX-License-Identifier: MPL-2.0
//! What a batch takes from the table and how its results go back.

use std::time::Duration;

use super::super::work::ProcessError;
use super::{Batch, Table, Take};

impl<T, M, E> Table<T, M, E> {
    /// Hands up to `max` consecutive queued frames (see
    /// [`Table::batchable`]) to a worker holding a ticket of `generation`;
    /// late ones pass (QoS).
    pub(in crate::engine) fn take_batch(&mut self, generation: u64, max: usize) -> Take<T> {
        if generation != self.generation {
            return Take::Nothing;
        }
        let (n, _) = self.batchable(max);
        let mut batch = Batch {
            generation,
            timeout: self.config.timeout,
            pos: Vec::with_capacity(n),
            seq: Vec::with_capacity(n),
            frames: Vec::with_capacity(n),
            wake: false,
        };
        let mut passed = false;
        for _ in 0..n {
            match self.take_front() {
                None => break,
                Some(Err(wake)) => {
                    passed = true;
                    batch.wake |= wake;
                }
                Some(Ok((pos, seq, frame))) => {
                    batch.pos.push(pos);
                    batch.seq.push(seq);
                    batch.frames.push(frame);
                }
            }
        }
        if !batch.frames.is_empty() {
            Take::Batch(batch)
        } else if passed {
            Take::Passed(batch.wake)
        } else {
            Take::Nothing
        }
    }

    /// How many queued frames a batch of up to `max` takes now: the oldest
    /// and those after it with no item between; and whether no more can
    /// join them (`max` reached, or an item follows them), so waiting for
    /// more is pointless.
    pub(in crate::engine) fn batchable(&self, max: usize) -> (usize, bool) {
        let mut n = 0;
        let mut last: Option<u64> = None;
        for &pos in self.queued.iter().take(max.max(1)) {
            if last.is_some_and(|prev| self.slots.range(prev + 1..pos).any(|(_, s)| s.is_item())) {
                return (n, true);
            }
            n += 1;
            last = Some(pos);
        }
        let closed =
            n >= max || last.is_some_and(|l| self.slots.range(l + 1..).any(|(_, s)| s.is_item()));
        (n, closed)
    }

    /// Stores a batch's results, one per position; the controller sees
    /// it as one completion (a worker's unit of work). True if a waiting
    /// consumer can release something now.
    pub(in crate::engine) fn complete_batch(
        &mut self,
        pos: &[u64],
        worker: usize,
        results: impl IntoIterator<Item = Result<T, ProcessError>>,
        processing_time: Duration,
        cpu: Duration,
    ) -> bool {
        let mut stored = 0;
        for (&pos, result) in pos.iter().zip(results) {
            if self.store(pos, worker, result, processing_time) {
                stored += 1;
            }
        }
        if stored == 0 {
            return false;
        }
        self.window.completed += 1;
        self.window.processing += processing_time;
        self.window.cpu += cpu;
        self.window.queued += self.queued.len() as u64;
        self.counters.batch(stored);
        self.wake_consumer(false)
    }
}
