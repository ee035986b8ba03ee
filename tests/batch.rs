// SPDX-License-Identifier: MPL-2.0
//! Batching in the engine alone (`batch_size`, `batch_timeout`): what a
//! batch may hold, how long it waits, and how its result, failure or
//! timeout reaches each of its frames. No GStreamer.

mod common;

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use common::engine::{Out, RT, TestEngine, pop};
use futures::FutureExt;
use gstparallel::engine::{Config, Engine, ProcessError, Processor, Work, WorkCtx};
use tokio::sync::Semaphore;

/// What a batch does; each frame's output is the frame + 1000.
#[derive(Clone)]
enum Kind {
    Ready,
    /// Async, each batch waiting for one permit.
    Gated(Arc<Semaphore>),
    /// Blocking, each batch waiting for one permit.
    BlockingGated(Arc<Semaphore>),
    Fails,
    /// One output fewer than frames.
    Short,
    Panics,
}

/// A batch processor that records every batch it gets.
struct Batcher {
    kind: Kind,
    batches: Mutex<Vec<Vec<u64>>>,
    got: Condvar,
}

impl Batcher {
    fn new(kind: Kind) -> Arc<Self> {
        Arc::new(Batcher {
            kind,
            batches: Mutex::default(),
            got: Condvar::new(),
        })
    }

    /// Blocks until `n` batches have started.
    fn wait_for(&self, n: usize) {
        let mut b = self.batches.lock().unwrap();
        while b.len() < n {
            b = self.got.wait(b).unwrap();
        }
    }

    fn batches(&self) -> Vec<Vec<u64>> {
        self.batches.lock().unwrap().clone()
    }
}

impl Processor<u64> for Batcher {
    fn process(&self, frame: u64, _ctx: WorkCtx) -> Work<u64> {
        Work::Ready(Ok(frame + 1000))
    }

    fn batches(&self) -> bool {
        true
    }

    fn process_batch(&self, frames: Vec<u64>, ctx: &[WorkCtx]) -> Work<Vec<u64>> {
        assert_eq!(frames.len(), ctx.len());
        self.batches.lock().unwrap().push(frames.clone());
        self.got.notify_all();
        let outputs: Vec<u64> = frames.iter().map(|f| f + 1000).collect();
        match &self.kind {
            Kind::Ready => Work::Ready(Ok(outputs)),
            Kind::Gated(gate) => {
                let gate = gate.clone();
                Work::Async(
                    async move {
                        gate.acquire().await.unwrap().forget();
                        Ok(outputs)
                    }
                    .boxed(),
                )
            }
            Kind::BlockingGated(gate) => {
                let gate = gate.clone();
                Work::Blocking(Box::new(move || {
                    RT.block_on(gate.acquire()).unwrap().forget();
                    Ok(outputs)
                }))
            }
            Kind::Fails => Work::Ready(Err("the server said no".into())),
            Kind::Short => Work::Ready(Ok(outputs[1..].to_vec())),
            Kind::Panics => Work::Blocking(Box::new(|| panic!("batch exploded"))),
        }
    }
}

fn engine(config: Config, processor: Arc<Batcher>) -> TestEngine {
    Engine::new(config, processor, RT.handle().clone())
}

fn batching(size: usize, wait: Duration) -> Config {
    Config {
        workers: 1,
        batch_size: size,
        batch_timeout: wait,
        ..Config::default()
    }
}

fn frames(range: std::ops::Range<u64>) -> Vec<Out> {
    range.map(|f| Out::Frame(f + 1000)).collect()
}

/// Longer than the watchdog: a batch that waits it out hangs the test.
const FOREVER: Duration = Duration::from_secs(600);

#[test]
fn a_batch_takes_the_queued_frames_up_to_its_size_and_each_gets_its_output() {
    let _wd = common::watchdog("batch_size", 60);
    let gate = Arc::new(Semaphore::new(0));
    let b = Batcher::new(Kind::Gated(gate.clone()));
    let e = engine(batching(4, Duration::ZERO), b.clone());
    // Frame 0 goes alone (nothing else queued, no waiting); the others
    // queue behind its batch.
    e.submit_frame(0, (), 1).unwrap();
    b.wait_for(1);
    for f in 1..8 {
        e.submit_frame(f, (), 1).unwrap();
    }
    gate.add_permits(3);
    let out: Vec<Out> = (0..8).map(|_| pop(&e)).collect();
    assert_eq!(out, frames(0..8));
    assert_eq!(b.batches(), vec![vec![0], vec![1, 2, 3, 4], vec![5, 6, 7]]);
    let stats = e.stats();
    assert_eq!((stats.batches, stats.batched_frames), (3, 8));
    assert!((stats.avg_batch_size() - 8.0 / 3.0).abs() < 1e-9);
}

#[test]
fn a_batch_never_holds_frames_from_both_sides_of_an_item() {
    let _wd = common::watchdog("batch_item", 60);
    let gate = Arc::new(Semaphore::new(0));
    let b = Batcher::new(Kind::Gated(gate.clone()));
    let e = engine(batching(8, Duration::ZERO), b.clone());
    e.submit_frame(0, (), 1).unwrap();
    b.wait_for(1);
    e.submit_frame(1, (), 1).unwrap();
    e.submit_frame(2, (), 1).unwrap();
    e.submit_item(100).unwrap();
    for f in 3..6 {
        e.submit_frame(f, (), 1).unwrap();
    }
    gate.add_permits(3);
    let mut out: Vec<Out> = (0..7).map(|_| pop(&e)).collect();
    assert_eq!(out.remove(3), Out::Item(100));
    assert_eq!(out, frames(0..6));
    assert_eq!(b.batches(), vec![vec![0], vec![1, 2], vec![3, 4, 5]]);
}

#[test]
fn a_filling_batch_waits_for_more_frames_until_an_item_closes_it() {
    let _wd = common::watchdog("batch_wait", 60);
    let b = Batcher::new(Kind::Ready);
    let e = engine(batching(4, FOREVER), b.clone());
    e.submit_frame(0, (), 1).unwrap();
    e.submit_frame(1, (), 1).unwrap();
    // The batch waits for two more frames; the item (EOS, say) ends that.
    e.submit_item(100).unwrap();
    assert_eq!(pop(&e), Out::Frame(1000));
    assert_eq!(pop(&e), Out::Frame(1001));
    assert_eq!(pop(&e), Out::Item(100));
    // Full at once: no waiting either.
    for f in 2..6 {
        e.submit_frame(f, (), 1).unwrap();
    }
    let out: Vec<Out> = (0..4).map(|_| pop(&e)).collect();
    assert_eq!(out, frames(2..6));
    assert_eq!(b.batches(), vec![vec![0, 1], vec![2, 3, 4, 5]]);
}

#[test]
fn a_batch_timeout_sends_a_partial_batch() {
    let _wd = common::watchdog("batch_timeout", 60);
    let b = Batcher::new(Kind::Ready);
    let e = engine(batching(4, Duration::from_millis(20)), b.clone());
    e.submit_frame(0, (), 1).unwrap();
    assert_eq!(pop(&e), Out::Frame(1000));
    assert_eq!(b.batches(), vec![vec![0]]);
}

#[test]
fn a_flush_while_a_batch_fills_discards_it_and_new_frames_batch_at_once() {
    let _wd = common::watchdog("batch_flush", 60);
    let b = Batcher::new(Kind::Ready);
    let e = engine(batching(4, FOREVER), b.clone());
    e.submit_frame(0, (), 1).unwrap();
    e.flush_start();
    e.flush_stop();
    for f in 10..14 {
        e.submit_frame(f, (), 1).unwrap();
    }
    let out: Vec<Out> = (0..4).map(|_| pop(&e)).collect();
    assert_eq!(out, frames(10..14));
    assert_eq!(b.batches(), vec![vec![10, 11, 12, 13]]);
}

#[test]
fn a_failed_batch_fails_each_of_its_frames() {
    let _wd = common::watchdog("batch_fails", 60);
    let b = Batcher::new(Kind::Fails);
    let e = engine(batching(2, FOREVER), b.clone());
    for f in 0..4 {
        e.submit_frame(f, (), 1).unwrap();
    }
    let failed = Out::Failed(ProcessError::Failed("the server said no".into()));
    let out: Vec<Out> = (0..4).map(|_| pop(&e)).collect();
    assert!(out.iter().all(|o| *o == failed), "{out:?}");
    assert_eq!(b.batches(), vec![vec![0, 1], vec![2, 3]]);
    assert_eq!(e.stats().errors, 4);
}

#[test]
fn a_batch_with_too_few_results_fails_each_of_its_frames() {
    let _wd = common::watchdog("batch_short", 60);
    let b = Batcher::new(Kind::Short);
    let e = engine(batching(4, FOREVER), b);
    for f in 0..4 {
        e.submit_frame(f, (), 1).unwrap();
    }
    let failed = Out::Failed(ProcessError::Failed(
        "the processor gave 3 results for a batch of 4 frames".into(),
    ));
    let out: Vec<Out> = (0..4).map(|_| pop(&e)).collect();
    assert!(out.iter().all(|o| *o == failed), "{out:?}");
}

#[test]
fn a_panicking_batch_fails_each_of_its_frames_and_the_worker_goes_on() {
    let _wd = common::watchdog("batch_panics", 60);
    let b = Batcher::new(Kind::Panics);
    let e = engine(batching(4, FOREVER), b.clone());
    for f in 0..8 {
        e.submit_frame(f, (), 1).unwrap();
    }
    let panicked = Out::Failed(ProcessError::Panicked("batch exploded".into()));
    let out: Vec<Out> = (0..8).map(|_| pop(&e)).collect();
    assert!(out.iter().all(|o| *o == panicked), "{out:?}");
    assert_eq!(b.batches().len(), 2);
}

#[test]
fn a_blocking_batch_times_out_as_a_whole_and_keeps_its_worker() {
    let _wd = common::watchdog("batch_times_out", 60);
    let gate = Arc::new(Semaphore::new(0));
    let b = Batcher::new(Kind::BlockingGated(gate.clone()));
    let d = Duration::from_millis(30);
    let e = engine(
        Config {
            timeout: Some(d),
            ..batching(2, FOREVER)
        },
        b.clone(),
    );
    for f in 0..4 {
        e.submit_frame(f, (), 1).unwrap();
    }
    // The first batch times out while its closure still runs; the second
    // waits for that worker (workers=1), then times out too.
    let timed_out = Out::Failed(ProcessError::TimedOut(d));
    assert_eq!(pop(&e), timed_out);
    assert_eq!(pop(&e), timed_out);
    assert_eq!(b.batches(), vec![vec![0, 1]], "the worker is still busy");
    gate.add_permits(1);
    assert_eq!(pop(&e), timed_out);
    assert_eq!(pop(&e), timed_out);
    gate.add_permits(1);
    assert_eq!(e.stats().timeouts, 4);
}

#[test]
fn a_processor_without_a_batch_form_ignores_the_batch_size() {
    let _wd = common::watchdog("batch_none", 60);
    let e: TestEngine = Engine::new(
        batching(4, FOREVER),
        Arc::new(|f: u64, _ctx: WorkCtx| Work::Ready(Ok(f + 1000))),
        RT.handle().clone(),
    );
    e.submit_frame(0, (), 1).unwrap();
    assert_eq!(pop(&e), Out::Frame(1000));
    assert_eq!(e.stats().batches, 0);
}
