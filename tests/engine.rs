// SPDX-License-Identifier: MPL-2.0
//! The engine alone: admission bound, worker pool and resequencer, with
//! test processors whose timing the test controls. No GStreamer: the
//! engine needs none, so nothing here initializes it.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use common::engine::{Out, RT, TestEngine, pop};
use futures::FutureExt;
use gstparallel::engine::{
    Admission, Config, Engine, Halt, Leaky, Output, ProcessError, Processor, Skip, Work, WorkCtx,
};
use proptest::prelude::*;
use tokio::sync::Semaphore;

fn engine(config: Config, processor: impl Processor<u64>) -> TestEngine {
    Engine::new(config, Arc::new(processor), RT.handle().clone())
}

fn config(workers: usize, max_frames: usize) -> Config {
    Config {
        workers,
        max_frames,
        ..Config::default()
    }
}

/// Async processor that holds each frame until the test adds a permit.
fn gated(gate: Arc<Semaphore>) -> impl Processor<u64> {
    move |frame: u64, _ctx: WorkCtx| {
        let gate = gate.clone();
        Work::Async(
            async move {
                gate.acquire().await.unwrap().forget();
                Ok(frame)
            }
            .boxed(),
        )
    }
}

/// Async processor holding frame `f` until the watched value exceeds `f`:
/// unlike a shared semaphore, which frames go on does not depend on the
/// order the runtime polls them in.
fn released_below(limit: tokio::sync::watch::Receiver<u64>) -> impl Processor<u64> {
    move |frame: u64, _ctx: WorkCtx| {
        let mut limit = limit.clone();
        Work::Async(
            async move {
                let _ = limit.wait_for(|&n| frame < n).await;
                Ok(frame)
            }
            .boxed(),
        )
    }
}

/// Async processor waiting `delay(frame)` ms.
fn delayed(delay: impl Fn(u64) -> u64 + Send + Sync + 'static) -> impl Processor<u64> {
    move |frame: u64, _ctx: WorkCtx| {
        let d = Duration::from_millis(delay(frame));
        Work::Async(tokio::time::sleep(d).map(move |_| Ok(frame)).boxed())
    }
}

#[test]
fn frames_leave_in_input_order_despite_inverse_delays() {
    let _wd = common::watchdog("inverse_delays", 60);
    // Later frames finish first.
    let e = engine(config(8, 0), delayed(|f| 16 - f));
    for f in 0..16 {
        assert_eq!(e.submit_frame(f, (), 1), Ok(Admission::Queued { seq: f }));
    }
    let out: Vec<Out> = (0..16).map(|_| pop(&e)).collect();
    assert_eq!(out, (0..16).map(Out::Frame).collect::<Vec<_>>());
    let stats = e.stats();
    assert_eq!(stats.frames_in, 16);
    assert!(stats.max_reorder_depth > 0, "later frames had to wait");
    assert_eq!(stats.per_worker.iter().sum::<u64>(), 16);
}

#[test]
fn items_wait_for_every_frame_before_them() {
    let _wd = common::watchdog("items_wait", 60);
    let gate = Arc::new(Semaphore::new(0));
    let e = engine(config(4, 0), gated(gate.clone()));
    e.submit_frame(0, (), 1).unwrap();
    e.submit_item(100).unwrap();
    e.submit_frame(1, (), 1).unwrap();
    assert!(
        e.try_pop().unwrap().is_none(),
        "item must not overtake frame 0"
    );
    gate.add_permits(2);
    assert_eq!(pop(&e), Out::Frame(0));
    assert_eq!(pop(&e), Out::Item(100));
    assert_eq!(pop(&e), Out::Frame(1));
}

#[test]
fn admission_bound_counts_frames_waiting_for_reorder() {
    let _wd = common::watchdog("admission_bound", 60);
    let (release, limit) = tokio::sync::watch::channel(0);
    let e = Arc::new(engine(config(2, 3), released_below(limit)));
    for f in 0..3 {
        e.submit_frame(f, (), 1).unwrap();
    }
    // A fourth frame blocks until one leaves.
    let (tx, rx) = std::sync::mpsc::channel();
    let producer = {
        let e = e.clone();
        thread::spawn(move || {
            let r = e.submit_frame(3, (), 1);
            tx.send(()).unwrap();
            r
        })
    };
    // Let frames 0 and 1 finish; they are released only when popped, so the
    // producer must still be blocked: everything popped-not-yet counts.
    release.send_replace(2);
    assert!(rx.try_recv().is_err());
    assert_eq!(e.frames_inside(), 3);
    assert_eq!(pop(&e), Out::Frame(0));
    rx.recv().unwrap();
    assert_eq!(producer.join().unwrap(), Ok(Admission::Queued { seq: 3 }));
    release.send_replace(4);
    assert_eq!(pop(&e), Out::Frame(1));
    assert_eq!(pop(&e), Out::Frame(2));
    assert_eq!(pop(&e), Out::Frame(3));
    assert_eq!(e.stats().max_in_flight, 3);
}

#[test]
fn bytes_bound_blocks_but_always_admits_one_frame() {
    let _wd = common::watchdog("bytes_bound", 60);
    let gate = Arc::new(Semaphore::new(0));
    let e = engine(
        Config {
            workers: 4,
            max_frames: 100,
            max_bytes: 10,
            leaky: Leaky::Upstream,
            ..Config::default()
        },
        gated(gate.clone()),
    );
    // Oversized frame still enters an empty engine.
    assert_eq!(e.submit_frame(0, (), 50), Ok(Admission::Queued { seq: 0 }));
    assert_eq!(e.submit_frame(1, (), 1), Ok(Admission::Dropped));
    gate.add_permits(1);
    assert_eq!(pop(&e), Out::Frame(0));
    assert_eq!(e.submit_frame(2, (), 6), Ok(Admission::Queued { seq: 1 }));
    assert_eq!(e.submit_frame(3, (), 4), Ok(Admission::Queued { seq: 2 }));
    assert_eq!(e.submit_frame(4, (), 1), Ok(Admission::Dropped));
    assert_eq!(e.stats().dropped, 2);
}

#[test]
fn flush_unblocks_producer_and_discards_late_results() {
    let _wd = common::watchdog("flush", 60);
    let gate = Arc::new(Semaphore::new(0));
    let e = Arc::new(engine(config(1, 2), gated(gate.clone())));
    e.submit_frame(0, (), 1).unwrap();
    e.submit_frame(1, (), 1).unwrap();
    let producer = {
        let e = e.clone();
        thread::spawn(move || e.submit_frame(2, (), 1))
    };
    let consumer = {
        let e = e.clone();
        thread::spawn(move || e.pop().map(|_| ()))
    };
    // The producer is blocked for sure before the flush.
    while e.stats().blocked_upstream == 0 {
        thread::yield_now();
    }
    e.flush_start();
    assert_eq!(producer.join().unwrap(), Err(Halt::Flushing));
    assert_eq!(consumer.join().unwrap(), Err(Halt::Flushing));
    e.flush_stop();
    // Frame 0's processing (aborted async work) must not come back.
    gate.add_permits(10);
    assert_eq!(e.submit_frame(10, (), 1), Ok(Admission::Queued { seq: 0 }));
    e.submit_item(7).unwrap();
    assert_eq!(pop(&e), Out::Frame(10));
    assert_eq!(pop(&e), Out::Item(7));
    assert_eq!(e.frames_inside(), 0);
}

#[test]
fn flush_discards_blocking_work_that_finishes_later() {
    let _wd = common::watchdog("flush_blocking", 60);
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = Arc::new(std::sync::Mutex::new(release_rx));
    let started = Arc::new(AtomicUsize::new(0));
    let e = {
        let started = started.clone();
        engine(config(1, 4), move |frame: u64, _ctx: WorkCtx| {
            let release_rx = release_rx.clone();
            let started = started.clone();
            Work::Blocking(Box::new(move || {
                started.fetch_add(1, Ordering::SeqCst);
                if frame < 100 {
                    release_rx.lock().unwrap().recv().unwrap();
                }
                Ok(frame)
            }))
        })
    };
    e.submit_frame(1, (), 1).unwrap();
    e.flush_start();
    e.flush_stop();
    e.submit_frame(100, (), 1).unwrap();
    release_tx.send(()).unwrap();
    assert_eq!(pop(&e), Out::Frame(100));
}

#[test]
fn panics_and_errors_become_results_and_the_pool_survives() {
    let _wd = common::watchdog("panics", 60);
    let e = engine(config(3, 8), |frame: u64, _ctx: WorkCtx| match frame % 4 {
        0 => panic!("sync panic {frame}"),
        1 => Work::Blocking(Box::new(move || panic!("blocking panic {frame}"))),
        2 => Work::Async(async move { panic!("async panic {frame}") }.boxed()),
        _ => Work::Ready(Err(format!("bad frame {frame}"))),
    });
    for f in 0..8 {
        e.submit_frame(f, (), 1).unwrap();
    }
    for f in 0..8 {
        match pop(&e) {
            Out::Failed(ProcessError::Panicked(msg)) => {
                assert!(f % 4 != 3 && msg.contains(&f.to_string()), "{f}: {msg}")
            }
            Out::Failed(ProcessError::Failed(msg)) => assert_eq!(msg, format!("bad frame {f}")),
            other => panic!("frame {f}: unexpected {other:?}"),
        }
    }
    assert_eq!(e.stats().errors, 8);
}

#[test]
fn timeout_abandons_slow_frames() {
    let _wd = common::watchdog("timeout", 60);
    let e = engine(
        Config {
            workers: 2,
            timeout: Some(Duration::from_millis(5)),
            ..Config::default()
        },
        delayed(|f| if f == 1 { 60_000 } else { 0 }),
    );
    for f in 0..3 {
        e.submit_frame(f, (), 1).unwrap();
    }
    assert_eq!(pop(&e), Out::Frame(0));
    assert_eq!(
        pop(&e),
        Out::Failed(ProcessError::TimedOut(Duration::from_millis(5)))
    );
    assert_eq!(pop(&e), Out::Frame(2));
    let s = e.stats();
    assert_eq!((s.errors, s.timeouts), (1, 1));
}

#[test]
fn leaky_downstream_drops_the_oldest_not_started() {
    let _wd = common::watchdog("leaky_downstream", 60);
    let gate = Arc::new(Semaphore::new(0));
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let e = engine(
        Config {
            workers: 1,
            max_frames: 3,
            leaky: Leaky::Downstream,
            ..Config::default()
        },
        move |frame: u64, _ctx: WorkCtx| {
            started_tx.send(frame).unwrap();
            let gate = gate.clone();
            Work::Async(
                async move {
                    gate.acquire().await.unwrap().forget();
                    Ok(frame)
                }
                .boxed(),
            )
        },
    );
    for f in 0..3 {
        e.submit_frame(f, (), 1).unwrap();
    }
    // The single worker holds frame 0; 1 and 2 are queued.
    assert_eq!(started_rx.recv().unwrap(), 0);
    for f in 3..10 {
        assert!(matches!(
            e.submit_frame(f, (), 1),
            Ok(Admission::Queued { .. }) | Ok(Admission::Dropped)
        ));
    }
    // Queued frames 1..=7 were dropped one by one, oldest first.
    assert_eq!(e.frames_inside(), 3);
    assert_eq!(e.stats().dropped, 7);
    drop(e);
}

#[test]
fn leaky_upstream_drops_the_new_frame() {
    let _wd = common::watchdog("leaky_upstream", 60);
    let gate = Arc::new(Semaphore::new(0));
    let e = engine(
        Config {
            workers: 1,
            max_frames: 2,
            leaky: Leaky::Upstream,
            ..Config::default()
        },
        gated(gate.clone()),
    );
    assert!(matches!(
        e.submit_frame(0, (), 1),
        Ok(Admission::Queued { .. })
    ));
    assert!(matches!(
        e.submit_frame(1, (), 1),
        Ok(Admission::Queued { .. })
    ));
    assert_eq!(e.submit_frame(2, (), 1), Ok(Admission::Dropped));
    gate.add_permits(2);
    assert_eq!(pop(&e), Out::Frame(0));
    assert_eq!(pop(&e), Out::Frame(1));
}

#[test]
fn unordered_releases_early_but_not_across_items() {
    let _wd = common::watchdog("unordered", 60);
    let gate = Arc::new(Semaphore::new(0));
    let e = engine(
        Config {
            workers: 4,
            ordered: false,
            ..Config::default()
        },
        move |frame: u64, _ctx: WorkCtx| {
            let gate = gate.clone();
            Work::Async(
                async move {
                    if frame == 0 {
                        gate.acquire().await.unwrap().forget();
                    }
                    Ok(frame)
                }
                .boxed(),
            )
        },
    );
    e.submit_frame(0, (), 1).unwrap();
    e.submit_frame(1, (), 1).unwrap();
    e.submit_item(50).unwrap();
    e.submit_frame(2, (), 1).unwrap();
    // Frame 1 overtakes the stuck frame 0, the item and frame 2 wait.
    assert_eq!(pop(&e), Out::Frame(1));
    assert!(e.try_pop().unwrap().is_none());
    drop(e);
}

#[test]
fn worker_count_changes_keep_everything_in_order() {
    let _wd = common::watchdog("resize", 60);
    let e = Arc::new(engine(config(8, 16), delayed(|f| f % 3)));
    let producer = {
        let e = e.clone();
        thread::spawn(move || {
            for f in 0..300 {
                if f % 50 == 0 {
                    let workers = [8, 1, 16, 2, 4, 32][(f / 50) as usize];
                    e.configure(config(workers, 16));
                }
                e.submit_frame(f, (), 1).unwrap();
            }
        })
    };
    for f in 0..300 {
        assert_eq!(pop(&e), Out::Frame(f));
    }
    producer.join().unwrap();
    let s = e.stats();
    assert_eq!(s.workers, 32);
    assert_eq!(s.per_worker.iter().sum::<u64>(), 300);
}

#[test]
fn halt_reaches_blocked_producer() {
    let _wd = common::watchdog("halt", 60);
    let gate = Arc::new(Semaphore::new(0));
    let e = Arc::new(engine(config(1, 1), gated(gate)));
    e.submit_frame(0, (), 1).unwrap();
    let producer = {
        let e = e.clone();
        thread::spawn(move || e.submit_frame(1, (), 1))
    };
    e.halt(Halt::NotLinked);
    assert_eq!(producer.join().unwrap(), Err(Halt::NotLinked));
    assert_eq!(e.submit_item(1), Err(Halt::NotLinked));
}

/// Notifications are skipped when nobody waits: with one frame of room
/// both sides block and wake thousands of times, so a lost wakeup hangs
/// (and the watchdog fails the test).
#[test]
fn producer_and_consumer_hand_off_at_a_bound_of_one() {
    let _wd = common::watchdog("hand_off", 120);
    const FRAMES: u64 = 20_000;
    for workers in [1, 2] {
        let e = Arc::new(engine(config(workers, 1), |f: u64, _ctx: WorkCtx| {
            Work::Ready(Ok(f))
        }));
        let producer = {
            let e = e.clone();
            thread::spawn(move || {
                for f in 0..FRAMES {
                    e.submit_frame(f, (), 1).unwrap();
                    if f % 64 == 0 {
                        e.submit_item(f).unwrap();
                    }
                }
            })
        };
        let mut next = 0;
        while next < FRAMES {
            match pop(&e) {
                Out::Frame(f) => {
                    assert_eq!(f, next);
                    next += 1;
                }
                Out::Item(i) => assert_eq!(i + 1, next, "item {i} out of place"),
                Out::Failed(err) => panic!("{err}"),
            }
        }
        producer.join().unwrap();
        let s = e.stats();
        assert_eq!(
            (s.frames_in, s.frames_out, s.in_flight),
            (FRAMES, FRAMES, 0)
        );
        assert_eq!(s.max_in_flight, 1);
    }
}

#[derive(Debug, Clone)]
enum Input {
    Frame { delay_us: u64 },
    Item,
}

fn inputs() -> impl Strategy<Value = Vec<Input>> {
    prop::collection::vec(
        prop_oneof![
            4 => (0u64..3000).prop_map(|delay_us| Input::Frame { delay_us }),
            1 => Just(Input::Item),
        ],
        1..120,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Random processing delays, random event interleavings, random pool
    /// shapes and both work kinds: the output is exactly the input.
    #[test]
    fn output_is_input(
        inputs in inputs(),
        workers in 1usize..12,
        max_frames in 0usize..10,
        blocking in any::<bool>(),
    ) {
        let _wd = common::watchdog("proptest output_is_input", 120);
        let delays: Arc<Vec<u64>> = Arc::new(
            inputs.iter().map(|i| match i { Input::Frame { delay_us } => *delay_us, Input::Item => 0 }).collect(),
        );
        let e = Arc::new(engine(config(workers, max_frames), move |frame: u64, _ctx: WorkCtx| {
            let d = Duration::from_micros(delays[frame as usize]);
            if blocking {
                Work::Blocking(Box::new(move || { thread::sleep(d); Ok(frame) }))
            } else {
                Work::Async(tokio::time::sleep(d).map(move |_| Ok(frame)).boxed())
            }
        }));
        let expected: Vec<Out> = inputs.iter().enumerate().map(|(i, input)| match input {
            Input::Frame { .. } => Out::Frame(i as u64),
            Input::Item => Out::Item(i as u64),
        }).collect();
        let producer = {
            let e = e.clone();
            let inputs = inputs.clone();
            thread::spawn(move || {
                for (i, input) in inputs.iter().enumerate() {
                    match input {
                        Input::Frame { .. } => { e.submit_frame(i as u64, (), 1).unwrap(); }
                        Input::Item => { e.submit_item(i as u64).unwrap(); }
                    }
                }
            })
        };
        let got: Vec<Out> = (0..expected.len()).map(|_| pop(&e)).collect();
        producer.join().unwrap();
        prop_assert_eq!(got, expected);
        let s = e.stats();
        let limit = if max_frames == 0 { 2 * workers } else { max_frames };
        prop_assert!(s.max_in_flight as usize <= limit);
        prop_assert_eq!(s.in_flight, 0);
    }
}

#[test]
fn blocking_work_does_not_starve_async_work() {
    let _wd = common::watchdog("no_starvation", 60);
    // More stuck CPU-bound frames than the runtime has async threads (2).
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = Arc::new(std::sync::Mutex::new(release_rx));
    let (started_tx, started_rx) = std::sync::mpsc::channel::<u64>();
    let cpu = engine(config(4, 4), move |frame: u64, _ctx: WorkCtx| {
        let release_rx = release_rx.clone();
        let started_tx = started_tx.clone();
        Work::Blocking(Box::new(move || {
            started_tx.send(frame).unwrap();
            release_rx.lock().unwrap().recv().unwrap();
            Ok(frame)
        }))
    });
    for f in 0..4 {
        cpu.submit_frame(f, (), 1).unwrap();
    }
    let mut started: Vec<u64> = (0..4).map(|_| started_rx.recv().unwrap()).collect();
    started.sort();
    assert_eq!(started, vec![0, 1, 2, 3], "all four run at once");
    // Async frames flow while every CPU-bound frame is stuck.
    let io = engine(config(4, 0), delayed(|_| 1));
    for f in 0..20 {
        io.submit_frame(f, (), 1).unwrap();
        assert_eq!(pop(&io), Out::Frame(f));
    }
    for _ in 0..4 {
        release_tx.send(()).unwrap();
    }
    for f in 0..4 {
        assert_eq!(pop(&cpu), Out::Frame(f));
    }
}

#[test]
fn leaky_drop_of_the_head_wakes_the_consumer() {
    let _wd = common::watchdog("leaky_head_wake", 60);
    // Frame 0's closure outlives its timeout and keeps the single worker
    // busy, so the next frame stays queued at the head.
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = Arc::new(std::sync::Mutex::new(release_rx));
    let e = Arc::new(engine(
        Config {
            workers: 1,
            max_frames: 1,
            leaky: Leaky::Downstream,
            timeout: Some(Duration::from_millis(5)),
            ..Config::default()
        },
        move |frame: u64, _ctx: WorkCtx| {
            if frame != 0 {
                return Work::Ready(Ok(frame));
            }
            let release_rx = release_rx.clone();
            Work::Blocking(Box::new(move || {
                release_rx.lock().unwrap().recv().unwrap();
                Ok(frame)
            }))
        },
    ));
    e.submit_frame(0, (), 1).unwrap();
    assert!(matches!(pop(&e), Out::Failed(ProcessError::TimedOut(_))));
    e.submit_frame(1, (), 1).unwrap();
    e.submit_item(100).unwrap();
    let consumer = {
        let e = e.clone();
        thread::spawn(move || pop(&e))
    };
    // Full: frame 1, the queued head, is dropped; the item behind it is
    // now releasable and the waiting consumer must see it.
    assert_eq!(e.submit_frame(2, (), 1), Ok(Admission::Queued { seq: 2 }));
    assert_eq!(consumer.join().unwrap(), Out::Item(100));
    release_tx.send(()).unwrap();
    assert_eq!(pop(&e), Out::Frame(2));
}

#[test]
fn barrier_waiter_wakes_on_halt_and_flush() {
    let _wd = common::watchdog("barrier_waiter", 60);
    let gate = Arc::new(Semaphore::new(0));
    let e = Arc::new(engine(config(2, 0), gated(gate.clone())));
    e.submit_frame(0, (), 1).unwrap();
    let id = e.submit_item(1).unwrap();
    let waiter = {
        let e = e.clone();
        thread::spawn(move || e.wait_released(id))
    };
    // Downstream failed: nobody will pop the barrier until a flush.
    e.halt(Halt::NotLinked);
    assert_eq!(waiter.join().unwrap(), Err(Halt::NotLinked));

    e.flush_start();
    e.flush_stop();
    e.submit_frame(1, (), 1).unwrap();
    let id = e.submit_item(2).unwrap();
    let waiter = {
        let e = e.clone();
        thread::spawn(move || e.wait_released(id))
    };
    e.flush_start();
    assert_eq!(waiter.join().unwrap(), Err(Halt::Flushing));

    e.flush_stop();
    // Aborted work of frames 0 and 1 may still grab a permit before it
    // sees the flush: enough for everyone.
    gate.add_permits(3);
    e.submit_frame(2, (), 1).unwrap();
    let id = e.submit_item(3).unwrap();
    let waiter = {
        let e = e.clone();
        thread::spawn(move || e.wait_released(id))
    };
    assert_eq!(pop(&e), Out::Frame(2));
    assert_eq!(pop(&e), Out::Item(3));
    assert_eq!(waiter.join().unwrap(), Ok(()));
}

#[test]
fn timed_out_blocking_work_keeps_its_worker() {
    let _wd = common::watchdog("timed_out_blocking", 60);
    // Every closure outlives the timeout until the test releases it. With
    // one worker, closures must still run one at a time: a timeout frees
    // the frame's slot, not the worker.
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = Arc::new(std::sync::Mutex::new(release_rx));
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (ended_tx, ended_rx) = std::sync::mpsc::channel::<()>();
    let e = {
        let log = log.clone();
        engine(
            Config {
                workers: 1,
                max_frames: 4,
                timeout: Some(Duration::from_millis(2)),
                ..Config::default()
            },
            move |frame: u64, _ctx: WorkCtx| {
                let release_rx = release_rx.clone();
                let log = log.clone();
                let ended_tx = ended_tx.clone();
                Work::Blocking(Box::new(move || {
                    log.lock().unwrap().push(format!("start {frame}"));
                    release_rx.lock().unwrap().recv().unwrap();
                    log.lock().unwrap().push(format!("end {frame}"));
                    ended_tx.send(()).unwrap();
                    Ok(frame)
                }))
            },
        )
    };
    for f in 0..4 {
        e.submit_frame(f, (), 1).unwrap();
    }
    for _ in 0..4 {
        assert!(matches!(pop(&e), Out::Failed(ProcessError::TimedOut(_))));
        release_tx.send(()).unwrap();
    }
    for _ in 0..4 {
        ended_rx.recv().unwrap();
    }
    let expected: Vec<String> = (0..4)
        .flat_map(|f| [format!("start {f}"), format!("end {f}")])
        .collect();
    assert_eq!(*log.lock().unwrap(), expected);
}

#[test]
fn flush_stop_alone_discards_everything_before_it() {
    let _wd = common::watchdog("flush_stop_alone", 60);
    let gate = Arc::new(Semaphore::new(0));
    let e = engine(config(2, 0), gated(gate.clone()));
    e.submit_item(1).unwrap();
    e.submit_frame(10, (), 1).unwrap();
    e.submit_frame(11, (), 1).unwrap();
    e.flush_stop();
    e.submit_item(2).unwrap();
    assert_eq!(e.submit_frame(20, (), 1), Ok(Admission::Queued { seq: 0 }));
    gate.add_permits(10);
    assert_eq!(pop(&e), Out::Item(2));
    assert_eq!(pop(&e), Out::Frame(20));
    assert_eq!(e.frames_inside(), 0);
    assert!(e.try_pop().unwrap().is_none());
}

/// A consumer path that forgets to report a popped frame (an early return,
/// a panic) must not keep its place forever: dropping it is the report.
#[test]
fn an_unreported_frame_leaves_when_dropped() {
    let _wd = common::watchdog("unreported_frame", 60);
    let e = engine(
        Config {
            workers: 1,
            max_frames: 1,
            leaky: Leaky::Upstream,
            ..Config::default()
        },
        |f: u64, _ctx: WorkCtx| Work::Ready(Ok(f)),
    );
    e.submit_frame(0, (), 5).unwrap();
    let Output::Frame(popped) = e.pop().unwrap() else {
        panic!("expected a frame");
    };
    // Being pushed: still inside, so the bound refuses the next frame.
    assert_eq!(e.stats().in_flight, 1);
    assert_eq!(e.submit_frame(1, (), 5), Ok(Admission::Dropped));
    drop(popped);
    let s = e.stats();
    assert_eq!((s.in_flight, s.frames_out, s.dropped), (0, 0, 2));
    assert_eq!(e.submit_frame(2, (), 5), Ok(Admission::Queued { seq: 1 }));
    // Reported as pushed: counted out, with its latency.
    assert_eq!(pop(&e), Out::Frame(2));
    let s = e.stats();
    assert_eq!((s.in_flight, s.frames_out, s.dropped), (0, 1, 2));
    assert!(s.max_latency > Duration::ZERO);
}

#[test]
fn leaky_pass_lets_frames_through_while_every_worker_is_busy() {
    let _wd = common::watchdog("leaky_pass", 60);
    let gate = Arc::new(Semaphore::new(0));
    let e = engine(
        Config {
            workers: 2,
            leaky: Leaky::Pass,
            ..Config::default()
        },
        gated(gate.clone()),
    );
    // Far beyond max-size-buffers (4), and nothing blocks.
    let admitted: Vec<_> = (0..12).map(|f| e.submit_frame(f, (), 1).unwrap()).collect();
    assert_eq!(
        admitted[..2],
        [Admission::Queued { seq: 0 }, Admission::Queued { seq: 1 }]
    );
    for (seq, a) in admitted.iter().enumerate().skip(2) {
        let seq = seq as u64;
        assert_eq!(
            *a,
            Admission::Passed {
                seq,
                skip: Skip::Busy
            }
        );
    }
    // Passed frames wait for the frames in processing ahead of them.
    assert!(e.try_pop().unwrap().is_none());
    gate.add_permits(2);
    let out: Vec<Out> = (0..12).map(|_| pop(&e)).collect();
    assert_eq!(out, (0..12).map(Out::Frame).collect::<Vec<_>>());
    let stats = e.stats();
    assert_eq!(
        (stats.frames_out, stats.skipped, stats.dropped),
        (12, 10, 0)
    );
    // The workers are free again (once released): the next frame is processed.
    gate.add_permits(1);
    let mut seq = 12;
    loop {
        match e.submit_frame(seq, (), 1).unwrap() {
            Admission::Queued { .. } => break,
            _ => assert_eq!(pop(&e), Out::Frame(seq)),
        }
        seq += 1;
    }
    assert_eq!(pop(&e), Out::Frame(seq));
}

#[test]
fn interval_passes_the_frames_between_without_a_worker() {
    let _wd = common::watchdog("interval", 60);
    let gate = Arc::new(Semaphore::new(0));
    let e = engine(
        Config {
            workers: 1,
            max_frames: 2,
            interval: 4,
            ..Config::default()
        },
        gated(gate.clone()),
    );
    let kinds: Vec<bool> = (0..8)
        .map(|f| matches!(e.submit_frame(f, (), 1).unwrap(), Admission::Queued { .. }))
        .collect();
    // 0 and 4 are processed; the others never count towards the bound of
    // 2, so none of them blocks.
    let (q, p) = (true, false);
    assert_eq!(kinds, [q, p, p, p, q, p, p, p]);
    gate.add_permits(2);
    let out: Vec<Out> = (0..8).map(|_| pop(&e)).collect();
    assert_eq!(out, (0..8).map(Out::Frame).collect::<Vec<_>>());
    assert_eq!(e.stats().skipped, 6);
}
