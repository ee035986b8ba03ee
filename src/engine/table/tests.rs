// SPDX-License-Identifier: MPL-2.0
//! The table's rules, one at a time, without threads or a runtime.

use std::sync::{Arc, Mutex};

use super::*;
use crate::engine::config::MAX_PASSED;
use crate::engine::{Leaky, lock};

type TestTable = Table<u64, (), u64>;

impl Report for Mutex<TestTable> {
    fn frame_left(&self, pushed: bool, latency: Duration, bytes: u64, passed: bool) {
        if passed {
            lock(self).passed_frame_left(pushed, latency, bytes);
        } else {
            lock(self).frame_left(pushed, latency, bytes);
        }
    }
}

/// Released frames report to nobody: tests call `frame_left` themselves.
fn table(config: Config) -> TestTable {
    Table::new(config, Weak::<Mutex<TestTable>>::new())
}

fn limits(max_frames: usize, max_bytes: u64) -> Config {
    Config {
        max_frames,
        max_bytes,
        ..Config::default()
    }
}

/// Admits like `submit_frame` when there is room; the frame's seq.
fn admit(t: &mut TestTable, frame: u64, bytes: u64) -> Option<u64> {
    t.has_room(bytes).then(|| t.insert_frame(frame, (), bytes))
}

/// Starts the oldest queued frame, as a worker with a ticket does.
fn start(t: &mut TestTable) -> Job<u64> {
    match t.take(t.generation) {
        Take::Job(job) => job,
        _ => panic!("no queued frame to start"),
    }
}

fn finish(t: &mut TestTable, job: Job<u64>) {
    t.complete(job.pos, 0, Ok(job.frame), Duration::from_millis(1), false);
}

#[derive(Debug, PartialEq)]
enum Out {
    Frame(u64),
    Item(u64),
}

/// Pops everything releasable; the frames stay inside as leaving.
fn drain(t: &mut TestTable) -> Vec<Out> {
    std::iter::from_fn(|| t.pop())
        .map(|out| match out {
            Output::Frame(p) => Out::Frame(p.result.unwrap()),
            Output::Item { item, .. } => Out::Item(item),
        })
        .collect()
}

#[test]
fn admission_is_bound_by_frames_until_they_are_reported() {
    let mut t = table(limits(3, 0));
    for f in 0..3 {
        assert_eq!(admit(&mut t, f, 1), Some(f));
    }
    assert!(!t.has_room(1));
    let job = start(&mut t);
    finish(&mut t, job);
    assert!(matches!(t.pop(), Some(Output::Frame(_))));
    // Popped but being pushed: still inside.
    assert!(!t.has_room(1));
    t.frame_left(true, Duration::ZERO, 1);
    assert!(t.has_room(1));
    // 0 means twice the workers.
    let t = table(Config {
        workers: 2,
        ..Config::default()
    });
    assert_eq!(t.frame_limit(), 4);
}

#[test]
fn admission_is_bound_by_bytes_and_one_frame_always_fits() {
    let mut t = table(limits(100, 10));
    // Alone, an oversized frame enters, or it would wait forever.
    assert_eq!(admit(&mut t, 0, 50), Some(0));
    assert_eq!(admit(&mut t, 1, 1), None);
    let job = start(&mut t);
    finish(&mut t, job);
    let Some(Output::Frame(p)) = t.pop() else {
        panic!("frame 0 is done");
    };
    // Leaving, it still takes its bytes and its place.
    assert_eq!(admit(&mut t, 1, 1), None);
    drop(p);
    t.frame_left(true, Duration::ZERO, 50);
    assert_eq!(admit(&mut t, 1, 6), Some(1));
    assert_eq!(admit(&mut t, 2, 4), Some(2));
    assert_eq!(admit(&mut t, 3, 1), None);
}

#[test]
fn release_is_strictly_in_input_order() {
    let mut t = table(limits(8, 0));
    for f in 0..3 {
        admit(&mut t, f, 1);
    }
    let item = t.insert_item(100).0;
    admit(&mut t, 3, 1);
    let mut jobs: Vec<_> = (0..4).map(|_| start(&mut t)).collect();
    // Later frames finish first and wait for frame 0.
    for job in jobs.drain(1..).rev() {
        finish(&mut t, job);
    }
    assert_eq!(t.next_release(), None);
    assert_eq!(t.reorder_depth(), 3);
    finish(&mut t, jobs.pop().unwrap());
    let (f, i) = (Out::Frame, Out::Item);
    assert_eq!(drain(&mut t), [f(0), f(1), f(2), i(100), f(3)]);
    assert_eq!(t.item_released(item), Some(Ok(())));
    assert_eq!(t.counters.max_reorder_depth, 3);
}

#[test]
fn unordered_frames_overtake_frames_but_never_items() {
    let mut t = table(Config {
        ordered: false,
        ..limits(8, 0)
    });
    admit(&mut t, 0, 1);
    admit(&mut t, 1, 1);
    t.insert_item(50);
    admit(&mut t, 2, 1);
    let stuck = start(&mut t);
    for _ in 0..2 {
        let job = start(&mut t);
        finish(&mut t, job);
    }
    // Frame 1 passes the stuck frame 0; frame 2 stays behind the item.
    assert_eq!(drain(&mut t), [Out::Frame(1)]);
    finish(&mut t, stuck);
    assert_eq!(drain(&mut t), [Out::Frame(0), Out::Item(50), Out::Frame(2)]);
}

#[test]
fn leaky_drops_the_oldest_frame_not_started() {
    let mut t = table(Config {
        leaky: Leaky::Downstream,
        ..limits(3, 0)
    });
    for f in 0..3 {
        admit(&mut t, f, 1);
    }
    let started = start(&mut t);
    assert!(t.drop_oldest_queued());
    assert_eq!(t.frames(), 2);
    assert_eq!(admit(&mut t, 3, 1), Some(3));
    // Frame 1 went; frame 2 is next for a worker.
    assert_eq!(start(&mut t).frame, 2);
    assert!(t.drop_oldest_queued());
    // What a worker started is never dropped.
    assert!(!t.drop_oldest_queued());
    assert_eq!(t.frames(), 2);
    assert_eq!(t.counters.dropped, 2);
    finish(&mut t, started);
    assert_eq!(drain(&mut t), [Out::Frame(0)]);
}

#[test]
fn flush_discards_everything_and_restarts_numbering() {
    let mut t = table(limits(8, 0));
    for f in 0..4 {
        admit(&mut t, f, 1);
    }
    let item = t.insert_item(7).0;
    let done = start(&mut t);
    finish(&mut t, done);
    let late = start(&mut t);
    assert!(matches!(t.pop(), Some(Output::Frame(_))));
    let old = t.flush_start();
    // Frames 1..=3 and the item; frame 0 is out already.
    assert_eq!(old.len(), 4);
    assert_eq!((t.frames(), t.next_release()), (0, None));
    assert_eq!(t.halted, Some(Halt::Flushing));
    assert_eq!(t.item_released(item), Some(Err(Halt::Flushing)));
    // Stale tickets take nothing; a flush is not undone by a halt.
    assert!(matches!(t.take(late.generation), Take::Nothing));
    t.halt(Halt::Error);
    assert!(!t.resume_from(Halt::Flushing));
    assert_eq!(t.halted, Some(Halt::Flushing));
    assert_eq!(t.counters.dropped, 3);
    // The frame being pushed reports after the flush.
    t.frame_left(false, Duration::ZERO, 1);
    t.flush_stop();
    assert_eq!(t.halted, None);
    assert_eq!(admit(&mut t, 10, 1), Some(0));
    assert_eq!(t.insert_item(8).0.pos, 1);
    let s = t.stats();
    assert_eq!((s.frames_in, s.dropped, s.in_flight), (5, 4, 1));
}

#[test]
fn frame_producers_wake_when_a_quarter_is_free_others_at_once() {
    let mut t = table(limits(8, 0));
    assert!(!t.wake_room(), "nobody waits");
    for f in 0..8 {
        admit(&mut t, f, 1);
    }
    (t.blocked, t.blocked_frames) = (1, 1);
    for f in 0..8 {
        let job = start(&mut t);
        finish(&mut t, job);
        let out = t.pop();
        drop(out);
        t.frame_left(true, Duration::ZERO, 1);
        // 8 - max(8 / 4, 1) = 6 inside or fewer.
        assert_eq!(t.wake_room(), f >= 1, "after {} left", f + 1);
    }
    // An item or barrier waiter wakes on any change.
    let mut t = table(limits(8, 0));
    admit(&mut t, 0, 1);
    t.blocked = 1;
    assert!(t.wake_room());
    // At a bound of one, a frame producer wakes once it is empty.
    let mut t = table(limits(1, 0));
    (t.blocked, t.blocked_frames) = (1, 1);
    assert!(t.wake_room());
    admit(&mut t, 0, 1);
    assert!(!t.wake_room());
}

#[test]
fn a_halt_stops_waiters_until_resumed() {
    let mut t = table(limits(8, 0));
    admit(&mut t, 0, 1);
    let item = t.insert_item(1).0;
    assert_eq!(t.item_released(item), None);
    t.halt(Halt::NotLinked);
    assert_eq!(t.item_released(item), Some(Err(Halt::NotLinked)));
    assert!(!t.resume_from(Halt::Eos));
    assert!(t.resume_from(Halt::NotLinked));
    assert_eq!(t.item_released(item), None);
}

#[test]
fn failures_count_when_released_and_frames_when_they_leave() {
    let mut t = table(limits(8, 0));
    for f in 0..3 {
        admit(&mut t, f, 1);
    }
    let results = [
        Err(ProcessError::TimedOut(Duration::from_millis(5))),
        Err(ProcessError::Failed("bad".into())),
        Ok(2),
    ];
    for result in results {
        let job = start(&mut t);
        t.complete(job.pos, 1, result, Duration::from_millis(3), false);
    }
    while t.pop().is_some() {}
    t.frame_left(false, Duration::ZERO, 1);
    t.frame_left(false, Duration::ZERO, 1);
    t.frame_left(true, Duration::from_millis(9), 1);
    let s = t.stats();
    assert_eq!((s.errors, s.timeouts), (2, 1));
    assert_eq!((s.frames_out, s.dropped, s.in_flight), (1, 2, 0));
    assert_eq!(s.max_latency, Duration::from_millis(9));
    assert_eq!(s.avg_processing_time, Duration::from_millis(3));
}

/// With a real report handle, as the engine gives: a released frame
/// dropped unreported frees its place and counts as dropped.
#[test]
fn a_released_frame_reports_itself_when_dropped() {
    let t = Arc::new_cyclic(|me: &Weak<Mutex<TestTable>>| {
        Mutex::new(Table::new(limits(1, 0), me.clone()))
    });
    let pop_one = |frame: u64| {
        let mut s = lock(&t);
        admit(&mut s, frame, 4).expect("room");
        let job = start(&mut s);
        finish(&mut s, job);
        match s.pop() {
            Some(Output::Frame(p)) => p,
            _ => panic!("frame {frame} is done"),
        }
    };
    let p = pop_one(0);
    assert!(!lock(&t).has_room(1));
    // Unlocked: the report takes the lock.
    drop(p);
    let p = pop_one(1);
    p.leaving.left(true, Duration::from_millis(2));
    let s = lock(&t).stats();
    assert_eq!((s.in_flight, s.frames_out, s.dropped), (0, 1, 1));
    assert_eq!(s.max_latency, Duration::from_millis(2));
}

#[test]
fn ready_frames_wake_the_consumer_in_bursts_others_at_once() {
    // Limit 8: bursts of a quarter, 2 frames.
    let mut t = table(limits(8, 0));
    t.waiting_consumers = 1;
    for i in 0..4 {
        admit(&mut t, i, 1);
    }
    let job = start(&mut t);
    // More ready work follows at once: no wake for one frame.
    assert!(!t.complete(job.pos, 0, Ok(0), Duration::ZERO, true));
    let job = start(&mut t);
    assert!(
        t.complete(job.pos, 0, Ok(1), Duration::ZERO, true),
        "a burst"
    );
    drain(&mut t);
    let job = start(&mut t);
    assert!(!t.complete(job.pos, 0, Ok(2), Duration::ZERO, true));
    // The last queued frame: nothing follows, so at once.
    let job = start(&mut t);
    assert!(t.complete(job.pos, 0, Ok(3), Duration::ZERO, true));
    // Blocking or async work wakes at once, whatever is queued.
    let mut t = table(limits(8, 0));
    t.waiting_consumers = 1;
    admit(&mut t, 0, 1);
    admit(&mut t, 1, 1);
    let job = start(&mut t);
    assert!(t.complete(job.pos, 0, Ok(0), Duration::ZERO, false));
}

#[test]
fn a_frame_completes_once() {
    let mut t = table(limits(4, 0));
    admit(&mut t, 7, 1);
    let job = start(&mut t);
    t.waiting_consumers = 1;
    assert!(t.complete(
        job.pos,
        0,
        Err(ProcessError::TimedOut(Duration::ZERO)),
        Duration::ZERO,
        false
    ));
    // The late result of a timed-out frame is not its result.
    assert!(!t.complete(job.pos, 0, Ok(7), Duration::ZERO, false));
    let Some(Output::Frame(p)) = t.pop() else {
        panic!("no frame")
    };
    assert!(matches!(p.result, Err(ProcessError::TimedOut(_))));
}

/// Admits like `submit_frame` (`running`: frames on workers); what became
/// of the frame: `Some(false)` queued, `Some(true)` passed, `None` full.
fn admit_pass(t: &mut TestTable, frame: u64, bytes: u64, running: usize) -> Option<bool> {
    match t.admit(bytes, true, running, true) {
        Admit::Process => {
            t.insert_frame(frame, (), bytes);
            Some(false)
        }
        Admit::Pass(skip) => {
            t.insert_passed(frame, (), bytes, skip);
            Some(true)
        }
        Admit::Full { .. } => None,
    }
}

/// Pops everything releasable: each frame and whether it was skipped.
fn drain_skipped(t: &mut TestTable) -> Vec<(u64, Option<Skip>)> {
    std::iter::from_fn(|| t.pop())
        .filter_map(|out| match out {
            Output::Frame(p) => Some((p.result.unwrap(), p.skipped)),
            Output::Item { .. } => None,
        })
        .collect()
}

#[test]
fn pass_processes_only_what_a_free_worker_starts_at_once() {
    let mut t = table(Config {
        workers: 2,
        leaky: Leaky::Pass,
        ..Config::default()
    });
    // Two free workers: two frames queued for them; then both are taken.
    assert_eq!(admit_pass(&mut t, 0, 1, 0), Some(false));
    assert_eq!(admit_pass(&mut t, 1, 1, 0), Some(false));
    assert_eq!(admit_pass(&mut t, 2, 1, 0), Some(true));
    let (a, b) = (start(&mut t), start(&mut t));
    assert_eq!(admit_pass(&mut t, 3, 1, 2), Some(true));
    // Passed frames wait only for the frames before them.
    assert_eq!(t.next_release(), None);
    finish(&mut t, a);
    assert_eq!(drain_skipped(&mut t), [(0, None)]);
    finish(&mut t, b);
    let busy = Some(Skip::Busy);
    assert_eq!(drain_skipped(&mut t), [(1, None), (2, busy), (3, busy)]);
    assert_eq!(t.counters.skipped, 2);
    // A worker is free (one still running): the next frame is processed.
    assert_eq!(admit_pass(&mut t, 4, 1, 1), Some(false));
}

#[test]
fn passed_frames_leave_the_frames_bound_alone_but_not_the_bytes() {
    let mut t = table(Config {
        workers: 1,
        max_frames: 1,
        max_bytes: 10,
        leaky: Leaky::Pass,
        ..Config::default()
    });
    assert_eq!(admit_pass(&mut t, 0, 4, 0), Some(false));
    let job = start(&mut t);
    // Beyond max-size-buffers, but within the bytes.
    assert_eq!(admit_pass(&mut t, 1, 3, 1), Some(true));
    assert_eq!(admit_pass(&mut t, 2, 3, 1), Some(true));
    assert_eq!(admit_pass(&mut t, 3, 1, 1), None);
    finish(&mut t, job);
    assert_eq!(drain_skipped(&mut t).len(), 3);
    // Being pushed, they still hold their bytes; each reports as passed.
    assert_eq!(admit_pass(&mut t, 3, 1, 0), None);
    t.frame_left(true, Duration::ZERO, 4);
    t.passed_frame_left(true, Duration::ZERO, 3);
    t.passed_frame_left(true, Duration::ZERO, 3);
    assert_eq!(admit_pass(&mut t, 3, 1, 0), Some(false));
}

#[test]
fn passed_frames_are_bounded() {
    let mut t = table(Config {
        workers: 1,
        leaky: Leaky::Pass,
        ..Config::default()
    });
    assert_eq!(admit_pass(&mut t, 0, 0, 0), Some(false));
    let _stuck = start(&mut t);
    for f in 1..=MAX_PASSED as u64 {
        assert_eq!(admit_pass(&mut t, f, 0, 1), Some(true));
    }
    assert_eq!(
        t.admit(0, true, 1, true),
        Admit::Full { passing: true },
        "the producer blocks"
    );
}

#[test]
fn interval_processes_every_nth_frame_from_a_flush() {
    let mut t = table(Config {
        workers: 8,
        interval: 3,
        ..limits(64, 0)
    });
    let passed: Vec<_> = (0..7).map(|f| admit_pass(&mut t, f, 1, 0)).collect();
    let (q, p) = (Some(false), Some(true));
    assert_eq!(passed, [q, p, p, q, p, p, q]);
    // A frame that must be processed is, whatever the interval.
    assert_eq!(t.admit(1, true, 0, false), Admit::Process);
    drop(t.flush_start());
    drop(t.flush_stop());
    assert_eq!(admit_pass(&mut t, 0, 1, 0), q);
    assert_eq!(admit_pass(&mut t, 1, 1, 0), p);
}

#[test]
fn unordered_passed_frames_overtake_processing_but_never_items() {
    let mut t = table(Config {
        workers: 1,
        ordered: false,
        leaky: Leaky::Pass,
        ..Config::default()
    });
    admit_pass(&mut t, 0, 1, 0);
    let job = start(&mut t);
    admit_pass(&mut t, 1, 1, 1);
    t.insert_item(100);
    admit_pass(&mut t, 2, 1, 1);
    assert_eq!(drain_skipped(&mut t), [(1, Some(Skip::Busy))]);
    finish(&mut t, job);
    let (f, i) = (Out::Frame, Out::Item);
    assert_eq!(drain(&mut t), [f(0), i(100), f(2)]);
}

#[test]
fn a_late_frame_passes_when_a_worker_would_start_it() {
    let mut t = table(limits(8, 0));
    let late: LateCheck<()> = Box::new(|_| true);
    admit(&mut t, 0, 1);
    t.late = Some(late);
    admit(&mut t, 1, 1);
    // Frame 0 is late now too: checked at the start, not at admission.
    assert!(matches!(t.take(t.generation), Take::Passed(false)));
    assert!(matches!(t.take(t.generation), Take::Passed(false)));
    assert!(matches!(t.take(t.generation), Take::Nothing));
    let late = Some(Skip::Late);
    assert_eq!(drain_skipped(&mut t), [(0, late), (1, late)]);
    assert_eq!(t.stats().skipped, 2);
}

#[test]
fn a_worker_freed_just_after_a_frame_was_let_through_processes_it() {
    let mut t = table(Config {
        workers: 2,
        leaky: Leaky::Pass,
        ..Config::default()
    });
    // A mean processing time, so the grace is not zero.
    t.counters.processed(0, Duration::from_secs(10), 0);
    admit_pass(&mut t, 0, 1, 0);
    admit_pass(&mut t, 1, 1, 0);
    let (a, _b) = (start(&mut t), start(&mut t));
    assert_eq!(admit_pass(&mut t, 2, 1, 2), Some(true));
    // Still both running: nothing to take over.
    assert!(!t.process_newest_passed(2));
    finish(&mut t, a);
    // One worker free, frame 1 still in processing: frame 2 goes to it.
    assert!(t.process_newest_passed(1));
    assert!(matches!(
        t.take(t.generation),
        Take::Job(Job { seq: 2, .. })
    ));
    assert_eq!(admit_pass(&mut t, 3, 1, 2), Some(true));
    assert!(!t.process_newest_passed(2), "no worker is free");
}

#[test]
fn a_batch_takes_consecutive_queued_frames_up_to_an_item() {
    let mut t = table(limits(16, 0));
    admit(&mut t, 0, 1);
    admit(&mut t, 1, 1);
    t.insert_item(100);
    admit(&mut t, 2, 1);
    // The item closes the batch: no waiting for more.
    assert_eq!(t.batchable(4), (2, true));
    let generation = t.generation;
    let Take::Batch(b) = t.take_batch(generation, 4) else {
        panic!("no batch")
    };
    assert_eq!((b.seq, b.frames), (vec![0, 1], vec![0, 1]));
    // Frame 2 may still be joined by later frames.
    assert_eq!(t.batchable(4), (1, false));
    admit(&mut t, 3, 1);
    assert_eq!(t.batchable(2), (2, true));
    assert!(matches!(t.take_batch(generation + 1, 2), Take::Nothing));
}
