// SPDX-License-Identifier: MPL-2.0
//! A request's way to a server slot, and, in a `context`, batches of
//! several members in one request: a batch (`batch-size` > 1) not full
//! waits for its slot in the cluster's queue; the first waiting batch to
//! get one takes the others that fit (same datatype and shape but the
//! first dimension, at most the smallest `batch-size` of them, oldest
//! first) into its request, and each gets back its own frames' outputs.
//! Batches only go together while they would wait anyway, so none waits
//! longer for it. The request runs in a task of its own, so a member
//! flushing or timing out does not cut the others' answers.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use super::budget::Deadline;
use super::infer::Answer;
use super::protocol::{Output, Tensor};
use super::servers::Lease;
use super::{Inner, batch};
use crate::engine::lock;

/// One member's request, as the processor hands it over.
pub(super) struct Request {
    /// The first frame's sequence number: the request's id.
    pub id: u64,
    pub frames: usize,
    pub deadline: Deadline,
    /// Attempts the member allows (`retries` + 1).
    pub attempts: u32,
    /// `batch-size` > 1: the outputs carry the batch dimension.
    pub batched: bool,
    /// The member's `batch-size`.
    pub batch_size: usize,
    /// The member's frames waiting for a server slot.
    pub waiting: Arc<AtomicUsize>,
}

/// A request's answer, cut into its frames' outputs.
pub(super) struct Reply {
    pub server: usize,
    pub attempts: u32,
    pub request_time: Duration,
    /// Per frame, in frame order.
    pub frames: Vec<Vec<Output>>,
}

/// Counts frames waiting for a slot while it lives.
struct Waiting {
    count: Arc<AtomicUsize>,
    frames: usize,
}

impl Waiting {
    fn new(count: &Arc<AtomicUsize>, frames: usize) -> Self {
        count.fetch_add(frames, Ordering::Relaxed);
        Waiting {
            count: count.clone(),
            frames,
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.count.fetch_sub(self.frames, Ordering::Relaxed);
    }
}

/// A batch waiting for a slot.
struct Entry {
    key: u64,
    tensor: Arc<Tensor>,
    frames: usize,
    batch_size: usize,
    deadline: Deadline,
    attempts: u32,
    /// Until a request takes it.
    waiting: Option<Waiting>,
    reply: oneshot::Sender<Result<Reply, String>>,
}

/// The batches of a context's members waiting for a slot: as many as
/// the members' workers run at once.
#[derive(Default)]
pub(super) struct Gather {
    queue: Mutex<VecDeque<Entry>>,
    next: AtomicU64,
}

/// Takes a batch out of the queue when its frame goes away first (a
/// flush, a timeout).
struct Queued<'a> {
    gather: &'a Gather,
    key: u64,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        lock(&self.gather.queue).retain(|e| e.key != self.key);
    }
}

fn fits(a: &Tensor, b: &Tensor) -> bool {
    a.datatype == b.datatype && a.shape.get(1..) == b.shape.get(1..)
}

impl Gather {
    fn push(&self, entry: impl FnOnce(u64) -> Entry) -> Queued<'_> {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        lock(&self.queue).push_back(entry(key));
        Queued { gather: self, key }
    }

    /// Batch `key`, if no other request took it, first, then the waiting
    /// ones that fit with it; `alone`: only `key`.
    fn take(&self, key: u64, alone: bool) -> Option<Vec<Entry>> {
        let mut queue = lock(&self.queue);
        let at = queue.iter().position(|e| e.key == key)?;
        let mut own = queue.remove(at)?;
        own.waiting = None;
        let (mut cap, mut total) = (own.batch_size, own.frames);
        let mut group = vec![own];
        let mut i = 0;
        while !alone && i < queue.len() && total < cap {
            let e = &queue[i];
            if fits(&group[0].tensor, &e.tensor) && total + e.frames <= cap.min(e.batch_size) {
                cap = cap.min(e.batch_size);
                total += e.frames;
                if let Some(mut e) = queue.remove(i) {
                    e.waiting = None;
                    group.push(e);
                }
            } else {
                i += 1;
            }
        }
        Some(group)
    }
}

impl Inner {
    /// Sends `tensor`, the request's frames, and cuts the answer per frame.
    pub(super) async fn request(
        this: Arc<Inner>,
        tensor: Arc<Tensor>,
        req: Request,
    ) -> Result<Reply, String> {
        if req.batched && req.frames < req.batch_size {
            return Inner::gathered(this, tensor, req).await;
        }
        Inner::alone(&this, tensor, &req).await
    }

    /// Sends the request's frames in a request of their own.
    async fn alone(this: &Arc<Inner>, tensor: Arc<Tensor>, req: &Request) -> Result<Reply, String> {
        let lease = {
            let _waiting = Waiting::new(&req.waiting, req.frames);
            this.servers.acquire(req.deadline.at, &[]).await
        };
        Inner::alone_on(this, tensor, req, lease).await
    }

    /// [`Inner::alone`] with the first attempt's lease (or why there is
    /// none) in hand.
    async fn alone_on(
        this: &Arc<Inner>,
        tensor: Arc<Tensor>,
        req: &Request,
        lease: Result<Lease, String>,
    ) -> Result<Reply, String> {
        let (id, n) = (req.id, req.frames);
        let answer = Inner::run(this, tensor, (id, n), req.deadline, req.attempts, lease).await?;
        this.reply(answer, n, req.batched)
    }

    fn reply(&self, answer: Answer, n: usize, batched: bool) -> Result<Reply, String> {
        let frames = if batched {
            batch::split(answer.outputs, n).map_err(|e| format!("model '{}': {e}", self.model))?
        } else {
            vec![answer.outputs]
        };
        Ok(Reply {
            server: answer.server,
            attempts: answer.attempts,
            request_time: answer.request_time,
            frames,
        })
    }

    /// A batch that is not full: in a context, waits in the queue for a
    /// slot, unless another member's batch takes it along first.
    async fn gathered(
        this: Arc<Inner>,
        tensor: Arc<Tensor>,
        req: Request,
    ) -> Result<Reply, String> {
        let Some(gather) = this.gather.as_ref() else {
            return Inner::alone(&this, tensor, &req).await;
        };
        let (tx, mut rx) = oneshot::channel();
        let queued = gather.push(|key| Entry {
            key,
            tensor: tensor.clone(),
            frames: req.frames,
            batch_size: req.batch_size,
            deadline: req.deadline,
            attempts: req.attempts,
            waiting: Some(Waiting::new(&req.waiting, req.frames)),
            reply: tx,
        });
        let lease = tokio::select! {
            reply = &mut rx => {
                drop(queued);
                return Inner::taken(&this, tensor, &req, reply.ok()).await;
            }
            lease = this.servers.acquire(req.deadline.at, &[]) => lease,
        };
        // Without a slot it fails alone, with the reasons.
        let group = gather.take(queued.key, lease.is_err());
        drop(queued);
        match (group, lease) {
            (Some(group), Ok(lease)) => {
                // A task of its own: every batch in the request gets its
                // answer whatever becomes of this one's frames.
                this.rt
                    .spawn(Inner::send(this.clone(), group, lease, req.id));
            }
            (Some(_), Err(e)) => return Inner::alone_on(&this, tensor, &req, Err(e)).await,
            // Another request took it meanwhile (a slot won is freed).
            (None, _) => {}
        }
        Inner::taken(&this, tensor, &req, rx.await.ok()).await
    }

    /// Sends the batches of `group` in one request on `lease`'s slot, as
    /// often and as long as the most patient of them allows, and hands
    /// each its frames' rows; ends early when none waits any more.
    async fn send(this: Arc<Inner>, mut group: Vec<Entry>, lease: Lease, id: u64) {
        let total = group.iter().map(|e| e.frames).sum::<usize>();
        let Some(deadline) = group.iter().map(|e| e.deadline).max_by_key(|d| d.at) else {
            return;
        };
        let attempts = group.iter().map(|e| e.attempts).max().unwrap_or(1);
        let joined = match &group[..] {
            [one] => one.tensor.clone(),
            _ => {
                let parts: Vec<&Tensor> = group.iter().map(|e| e.tensor.as_ref()).collect();
                Arc::new(batch::join(&parts))
            }
        };
        if group.len() > 1 {
            this.log(
                gst::DebugLevel::Log,
                format_args!("request {id}: {total} frames of {} batches", group.len()),
            );
        }
        let answer = {
            let gone = futures::future::join_all(group.iter_mut().map(|e| e.reply.closed()));
            tokio::select! {
                answer = Inner::run(&this, joined, (id, total), deadline, attempts, Ok(lease)) => answer,
                _ = gone => return,
            }
        };
        match answer.and_then(|a| this.reply(a, total, true)) {
            Ok(reply) => {
                let mut rows = reply.frames.into_iter();
                for e in group {
                    let frames = rows.by_ref().take(e.frames).collect();
                    let _ = e.reply.send(Ok(Reply {
                        server: reply.server,
                        attempts: reply.attempts,
                        request_time: reply.request_time,
                        frames,
                    }));
                }
            }
            Err(msg) => {
                for e in group {
                    let _ = e.reply.send(Err(msg.clone()));
                }
            }
        }
    }

    /// A batch another request took: its reply, or, when that request
    /// went away, sent again alone.
    async fn taken(
        this: &Arc<Inner>,
        tensor: Arc<Tensor>,
        req: &Request,
        reply: Option<Result<Reply, String>>,
    ) -> Result<Reply, String> {
        match reply {
            Some(reply) => reply,
            None => Inner::alone(this, tensor, req).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn entry(key: u64, shape: &[i64], batch_size: usize) -> Entry {
        Entry {
            key,
            tensor: Arc::new(Tensor {
                datatype: "UINT8",
                shape: shape.to_vec(),
                bytes: Default::default(),
            }),
            frames: shape[0] as usize,
            batch_size,
            deadline: Deadline {
                at: Instant::now(),
                timed: false,
            },
            attempts: 1,
            waiting: None,
            reply: oneshot::channel().0,
        }
    }

    fn gather(entries: Vec<Entry>) -> Gather {
        let g = Gather::default();
        lock(&g.queue).extend(entries);
        g
    }

    fn keys(group: Option<Vec<Entry>>) -> Vec<u64> {
        group.unwrap().iter().map(|e| e.key).collect()
    }

    #[test]
    fn the_taker_goes_first_then_the_oldest_that_fit() {
        let g = gather(vec![
            entry(0, &[2, 4, 3], 8),
            entry(1, &[1, 5, 3], 8),
            entry(2, &[3, 4, 3], 8),
            entry(3, &[2, 4, 3], 8),
            entry(4, &[2, 4, 3], 8),
        ]);
        // 3 + 2 + 2 = 7; the next 2 would pass 8; 1's shape differs.
        assert_eq!(keys(g.take(2, false)), [2, 0, 3]);
        assert_eq!(keys(g.take(4, false)), [4]);
        assert_eq!(keys(g.take(1, false)), [1]);
        assert!(g.take(0, false).is_none());
    }

    #[test]
    fn the_smallest_batch_size_bounds_the_request() {
        let g = gather(vec![
            entry(0, &[1, 4], 2),
            entry(1, &[1, 4], 8),
            entry(2, &[1, 4], 8),
        ]);
        assert_eq!(keys(g.take(1, false)), [1, 0]);
        assert_eq!(keys(g.take(2, false)), [2]);
    }

    #[test]
    fn a_request_without_a_slot_takes_none_along() {
        let g = gather(vec![entry(0, &[1, 4], 8), entry(1, &[1, 4], 8)]);
        assert_eq!(keys(g.take(1, true)), [1]);
        assert_eq!(keys(g.take(0, false)), [0]);
    }
}
