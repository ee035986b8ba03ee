// SPDX-License-Identifier: MPL-2.0
//! Engines sharing one worker pool (`SharedPool`, the element's `context`),
//! without GStreamer: size, fairness, isolation, leaving.

mod common;

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use common::engine::{Out, RT, TestEngine, pop};
use futures::FutureExt;
use gstparallel::engine::{Admission, Config, Engine, Processor, SharedPool, Work, WorkCtx};

type Pool = SharedPool<u64, (), u64>;

fn pool() -> Pool {
    SharedPool::new(RT.handle().clone())
}

fn config(workers: usize, max_frames: usize) -> Config {
    Config {
        workers,
        max_frames,
        ..Config::default()
    }
}

fn join(pool: &Pool, config: Config, processor: impl Processor<u64>) -> TestEngine {
    Engine::join(pool, config, Arc::new(processor)).expect("the pool is open")
}

/// A gate blocking work waits at until the test opens it.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    fn wait(&self) {
        let (open, cv) = &*self.0;
        let mut open = open.lock().unwrap();
        while !*open {
            open = cv.wait(open).unwrap();
        }
    }

    fn open(&self) {
        let (open, cv) = &*self.0;
        *open.lock().unwrap() = true;
        cv.notify_all();
    }
}

/// Blocking work that waits at `gate`, then notes `name` and the frame in
/// `log`, in the order the workers ran them.
fn logged(name: char, gate: Gate, log: Arc<Mutex<Vec<(char, u64)>>>) -> impl Processor<u64> {
    move |frame: u64, _ctx: WorkCtx| {
        let (gate, log) = (gate.clone(), log.clone());
        Work::Blocking(Box::new(move || {
            gate.wait();
            log.lock().unwrap().push((name, frame));
            Ok(frame)
        }))
    }
}

/// Async work of `ms` milliseconds.
fn delayed(ms: u64) -> impl Processor<u64> {
    move |frame: u64, _ctx: WorkCtx| {
        Work::Async(
            tokio::time::sleep(Duration::from_millis(ms))
                .map(move |_| Ok(frame))
                .boxed(),
        )
    }
}

fn submit_all(e: &TestEngine, frames: std::ops::Range<u64>) {
    for f in frames {
        assert!(matches!(
            e.submit_frame(f, (), 1),
            Ok(Admission::Queued { .. })
        ));
    }
}

fn pop_frames(e: &TestEngine, n: u64) -> Vec<Out> {
    (0..n).map(|_| pop(e)).collect()
}

fn frames(range: std::ops::Range<u64>) -> Vec<Out> {
    range.map(Out::Frame).collect()
}

#[test]
fn members_keep_their_own_order_and_stats() {
    let _wd = common::watchdog("own_order", 60);
    let pool = pool();
    let a = join(&pool, config(4, 0), delayed(3));
    let b = join(&pool, config(2, 0), delayed(1));
    assert_eq!(pool.members(), 2);
    // The largest `workers` of the members.
    assert_eq!(pool.workers(), 4);
    std::thread::scope(|s| {
        s.spawn(|| submit_all(&a, 0..40));
        s.spawn(|| submit_all(&b, 0..25));
        assert_eq!(pop_frames(&a, 40), frames(0..40));
        assert_eq!(pop_frames(&b, 25), frames(0..25));
    });
    assert_eq!(a.stats().frames_out, 40);
    assert_eq!(b.stats().frames_out, 25);
    // Each sees the pool's count.
    assert_eq!(a.stats().workers, 4u32);
    assert_eq!(b.stats().workers, 4u32);
}

#[test]
fn workers_take_the_oldest_waiting_frame_of_all_members() {
    let _wd = common::watchdog("oldest_first", 60);
    let pool = pool();
    let gate = Gate::default();
    let log = Arc::new(Mutex::new(Vec::new()));
    // One worker: the order it takes frames in is the policy.
    let busy = join(&pool, config(1, 64), logged('b', gate.clone(), log.clone()));
    let quiet = join(&pool, config(1, 64), logged('q', gate.clone(), log.clone()));
    submit_all(&busy, 0..10);
    submit_all(&quiet, 0..1);
    submit_all(&busy, 10..20);
    gate.open();
    assert_eq!(pop_frames(&busy, 20), frames(0..20));
    assert_eq!(pop_frames(&quiet, 1), frames(0..1));
    let log = log.lock().unwrap().clone();
    // The quiet stream's frame goes after the ten busy frames that came
    // before it and before the ten that came after: not after all twenty.
    let at = log.iter().position(|&e| e == ('q', 0)).unwrap();
    assert_eq!(at, 10, "{log:?}");
    assert_eq!(log.len(), 21);
}

#[test]
fn a_member_flushing_leaves_the_others_alone() {
    let _wd = common::watchdog("flush_isolated", 60);
    let pool = pool();
    let a = join(&pool, config(4, 0), delayed(20));
    let b = join(&pool, config(4, 0), delayed(2));
    std::thread::scope(|s| {
        s.spawn(|| {
            submit_all(&b, 0..50);
        });
        submit_all(&a, 0..8);
        a.flush_start();
        a.flush_stop();
        // B goes on whole and in order.
        assert_eq!(pop_frames(&b, 50), frames(0..50));
    });
    // A starts again from 0.
    submit_all(&a, 0..3);
    assert_eq!(pop_frames(&a, 3), frames(0..3));
}

#[test]
fn a_member_leaving_leaves_the_others_alone_and_the_last_stops_the_pool() {
    let _wd = common::watchdog("leaving", 60);
    let pool = pool();
    let a = join(&pool, config(8, 0), delayed(20));
    let b = join(&pool, config(2, 0), delayed(1));
    assert_eq!(pool.workers(), 8);
    submit_all(&a, 0..8);
    submit_all(&b, 0..4);
    // A stops with frames in flight.
    drop(a);
    assert_eq!(pool.members(), 1);
    // The pool is B's size now.
    assert_eq!(pool.workers(), 2);
    std::thread::scope(|s| {
        s.spawn(|| submit_all(&b, 4..20));
        assert_eq!(pop_frames(&b, 20), frames(0..20));
    });
    let c = join(&pool, config(3, 0), delayed(1));
    assert_eq!(pool.workers(), 3);
    submit_all(&c, 0..5);
    assert_eq!(pop_frames(&c, 5), frames(0..5));
    assert_eq!(b.stats().dropped, 0);
    drop(b);
    drop(c);
    // The last member gone, the pool takes no more and its threads end.
    assert!(Engine::join(&pool, config(2, 0), Arc::new(delayed(1))).is_none());
    let gone = pool.downgrade();
    drop(pool);
    common::wait_until("the pool's end", || gone.upgrade().is_none());
}

#[test]
fn an_automatic_member_makes_the_pool_automatic() {
    let _wd = common::watchdog("automatic_pool", 60);
    let pool = pool();
    let fixed = join(&pool, config(3, 0), delayed(1));
    assert_eq!(pool.workers(), 3);
    let auto = join(
        &pool,
        Config {
            workers: 0,
            max_workers: 64,
            ..Config::default()
        },
        delayed(20),
    );
    // 20 ms waits: the shared count grows past the fixed member's.
    let mut most = 0;
    std::thread::scope(|s| {
        s.spawn(|| submit_all(&auto, 0..2000));
        for f in 0..2000 {
            assert_eq!(pop(&auto), Out::Frame(f));
            most = most.max(pool.workers());
        }
    });
    assert!(most > 3, "{most}");
    // Back to fixed: the largest `workers`, in every member.
    drop(auto);
    assert_eq!(pool.workers(), 3);
    assert_eq!(fixed.stats().workers, 3);
}

/// Frames plus 1000, in batches when the engine gives them.
struct Batches(Mutex<Vec<Vec<u64>>>);

impl Processor<u64> for Batches {
    fn process(&self, frame: u64, _ctx: WorkCtx) -> Work<u64> {
        Work::Ready(Ok(frame + 1000))
    }

    fn batches(&self) -> bool {
        true
    }

    fn process_batch(&self, frames: Vec<u64>, _ctx: &[WorkCtx]) -> Work<Vec<u64>> {
        self.0.lock().unwrap().push(frames.clone());
        Work::Ready(Ok(frames.iter().map(|f| f + 1000).collect()))
    }
}

#[test]
fn another_members_frame_closes_a_filling_batch() {
    let _wd = common::watchdog("batch_interrupted", 60);
    let pool = pool();
    let batches = Arc::new(Batches(Mutex::default()));
    // Batches of 8 that would wait an hour to fill.
    let batching = Engine::join(
        &pool,
        Config {
            workers: 1,
            batch_size: 8,
            batch_timeout: Duration::from_secs(3600),
            ..Config::default()
        },
        batches.clone(),
    )
    .expect("open");
    let other = join(&pool, config(1, 0), delayed(1));
    submit_all(&batching, 0..3);
    // The leader waits for more of the batching member's frames; the
    // other member's frame ends the wait and goes next.
    submit_all(&other, 0..1);
    assert_eq!(pop_frames(&other, 1), frames(0..1));
    assert_eq!(
        pop_frames(&batching, 3),
        (1000..1003).map(Out::Frame).collect::<Vec<_>>()
    );
    assert_eq!(*batches.0.lock().unwrap(), vec![vec![0, 1, 2]]);
}

#[test]
fn tickets_left_behind_by_a_batch_never_hold_up_the_pool() {
    let _wd = common::watchdog("batch_extra_tickets", 60);
    let pool = pool();
    let (gate, log) = (Gate::default(), Arc::default());
    let blocker = join(&pool, config(1, 0), logged('g', gate.clone(), log));
    let batches = Arc::new(Batches(Mutex::default()));
    let batching = Engine::join(
        &pool,
        Config {
            workers: 1,
            batch_size: 4,
            ..Config::default()
        },
        batches.clone(),
    )
    .expect("open");
    let other = join(&pool, config(1, 0), delayed(1));
    // The only worker waits at the gate while the channel fills: a
    // batching frame's ticket, the other member's, then two more.
    submit_all(&blocker, 0..1);
    submit_all(&batching, 0..1);
    submit_all(&other, 0..1);
    submit_all(&batching, 1..3);
    gate.open();
    // The batch takes all three frames, and two of its tickets stay
    // behind the other member's, with no frame left for them.
    assert_eq!(
        pop_frames(&batching, 3),
        (1000..1003).map(Out::Frame).collect::<Vec<_>>()
    );
    assert_eq!(*batches.0.lock().unwrap(), vec![vec![0, 1, 2]]);
    assert_eq!(pop_frames(&other, 1), frames(0..1));
    // Those tickets end there: the pool goes on.
    submit_all(&other, 1..2);
    assert_eq!(pop_frames(&other, 1), frames(1..2));
    submit_all(&batching, 3..4);
    assert_eq!(pop_frames(&batching, 1), vec![Out::Frame(1003)]);
    assert_eq!(pop_frames(&blocker, 1), frames(0..1));
}

#[test]
fn a_member_joining_an_automatic_pool_brings_its_starting_count() {
    let _wd = common::watchdog("joining_count", 60);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let automatic = || Config {
        workers: 0,
        max_workers: 256,
        ..Config::default()
    };
    let pool = pool();
    let _a = join(&pool, automatic(), delayed(1));
    assert_eq!(pool.workers(), cpus);
    // As many as it would start with alone: no stream is worse off for
    // joining (the controller takes back what stays idle).
    let b = join(&pool, automatic(), delayed(1));
    assert_eq!(pool.workers(), 2 * cpus);
    assert_eq!(b.stats().workers as usize, 2 * cpus);
}
