// SPDX-License-Identifier: MPL-2.0
//! gst-check Harness tests of `parallelfilter`'s GStreamer semantics
//! (docs/semantics.md): output order, serialized
//! events and queries, EOS drain, flushing, downstream flow returns, latency,
//! on-error modes, stats, leaky modes, live worker changes and bad segments.
//!
//! Everything the element pushes is recorded, in push order, by a probe on
//! its src pad; tests wait on that record (or on the bus), never on time.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst_check::Harness;

const MS: u64 = 1_000_000;
const SECOND: u64 = 1_000_000_000;
/// Longer than any test can run (the watchdog aborts after a minute): a
/// frame delayed this long is, for the test, stuck in processing.
const HOUR: u64 = 3600 * SECOND;
const CAPS: &str = "video/x-raw,format=GRAY8,width=4,height=4,framerate=30/1";
const FRAME: gst::ClockTime = gst::ClockTime::from_nseconds(33_333_333);
/// Bound on one wait for output, so a missing item fails with a message
/// before the watchdog aborts the binary.
const WAIT: Duration = Duration::from_secs(40);

/// One thing the element pushed downstream.
#[derive(Debug, Clone, PartialEq)]
enum Item {
    Buffer {
        pts: Option<gst::ClockTime>,
        value: u64,
    },
    StreamStart,
    Caps(gst::Caps),
    Segment(gst::Segment),
    Gap {
        pts: gst::ClockTime,
        duration: Option<gst::ClockTime>,
    },
    Tag(gst::TagList),
    /// A `test-item` custom downstream event and its index.
    Custom(u64),
    Eos,
    FlushStart,
    FlushStop,
    /// A serialized query (drain, allocation) sent downstream.
    Query(gst::QueryType),
    Other(gst::EventType),
}

impl Item {
    fn is_buffer(&self) -> bool {
        matches!(self, Item::Buffer { .. })
    }

    fn value(&self) -> Option<u64> {
        match self {
            Item::Buffer { value, .. } => Some(*value),
            _ => None,
        }
    }
}

fn item_of_buffer(buffer: &gst::BufferRef) -> Item {
    let map = buffer.map_readable().unwrap();
    let value = u64::from_le_bytes(map[..8].try_into().unwrap());
    Item::Buffer {
        pts: buffer.pts(),
        value,
    }
}

fn item_of_event(event: &gst::EventRef) -> Item {
    use gst::EventView;
    match event.view() {
        EventView::StreamStart(_) => Item::StreamStart,
        EventView::Caps(c) => Item::Caps(c.caps_owned()),
        EventView::Segment(s) => Item::Segment(s.segment().clone()),
        EventView::Gap(g) => {
            let (pts, duration) = g.get();
            Item::Gap { pts, duration }
        }
        EventView::Tag(t) => Item::Tag(t.tag_owned()),
        EventView::CustomDownstream(c) => {
            Item::Custom(c.structure().unwrap().get::<u64>("index").unwrap())
        }
        EventView::Eos(_) => Item::Eos,
        EventView::FlushStart(_) => Item::FlushStart,
        EventView::FlushStop(_) => Item::FlushStop,
        _ => Item::Other(event.type_()),
    }
}

/// Records everything a pad pushes (buffers, downstream events including
/// flushes, serialized downstream queries) into one ordered stream.
struct Recorder {
    rx: mpsc::Receiver<Item>,
}

impl Recorder {
    fn attach(pad: &gst::Pad) -> Self {
        let (tx, rx) = mpsc::channel();
        pad.add_probe(
            gst::PadProbeType::BUFFER
                | gst::PadProbeType::BUFFER_LIST
                | gst::PadProbeType::EVENT_DOWNSTREAM
                | gst::PadProbeType::EVENT_FLUSH
                | gst::PadProbeType::QUERY_DOWNSTREAM,
            move |_, info| {
                match &info.data {
                    Some(gst::PadProbeData::Buffer(b)) => {
                        let _ = tx.send(item_of_buffer(b));
                    }
                    Some(gst::PadProbeData::BufferList(list)) => {
                        for b in list.iter() {
                            let _ = tx.send(item_of_buffer(b));
                        }
                    }
                    Some(gst::PadProbeData::Event(e)) => {
                        let _ = tx.send(item_of_event(e));
                    }
                    // Queries pass probes twice: record them on the way out.
                    Some(gst::PadProbeData::Query(q))
                        if info.mask.contains(gst::PadProbeType::PUSH)
                            && matches!(
                                q.type_(),
                                gst::QueryType::Drain | gst::QueryType::Allocation
                            ) =>
                    {
                        let _ = tx.send(Item::Query(q.type_()));
                    }
                    _ => {}
                }
                gst::PadProbeReturn::Ok
            },
        )
        .unwrap();
        Recorder { rx }
    }

    fn next(&self) -> Item {
        self.rx
            .recv_timeout(WAIT)
            .expect("nothing more came out of the element")
    }

    /// Items up to and including the first one matching `last`.
    fn until(&self, last: impl Fn(&Item) -> bool) -> Vec<Item> {
        let mut items = Vec::new();
        loop {
            let item = self.next();
            let done = last(&item);
            items.push(item);
            if done {
                return items;
            }
        }
    }

    fn until_eos(&self) -> Vec<Item> {
        self.until(|i| *i == Item::Eos)
    }

    /// What has been recorded so far, without waiting.
    fn received(&self) -> Vec<Item> {
        self.rx.try_iter().collect()
    }
}

struct Fixture {
    h: Harness,
    e: gst::Element,
    rec: Recorder,
    bus: gst::Bus,
}

fn element(props: &[(&str, &str)]) -> gst::Element {
    let mut builder = gst::ElementFactory::make("parallelfilter");
    for (name, value) in props {
        builder = builder.property_from_str(name, value);
    }
    builder.build().unwrap()
}

/// A harness around a configured element with a bus and a recorder; the
/// element is PLAYING but nothing was pushed yet.
fn fixture(props: &[(&str, &str)]) -> Fixture {
    let e = element(props);
    let bus = gst::Bus::new();
    e.set_bus(Some(&bus));
    let rec = Recorder::attach(&e.static_pad("src").unwrap());
    let h = Harness::with_element(&e, Some("sink"), Some("src"));
    Fixture { h, e, rec, bus }
}

/// [`fixture`] plus caps and a TIME segment, checked to come out first.
fn start(props: &[(&str, &str)]) -> Fixture {
    let mut f = fixture(props);
    f.h.set_src_caps_str(CAPS);
    let preamble = f.rec.until(|i| matches!(i, Item::Segment(_)));
    assert_eq!(
        preamble,
        vec![
            Item::StreamStart,
            Item::Caps(CAPS.parse().unwrap()),
            Item::Segment(time_segment().upcast()),
        ]
    );
    f
}

fn time_segment() -> gst::FormattedSegment<gst::ClockTime> {
    gst::FormattedSegment::<gst::ClockTime>::new()
}

/// A buffer carrying `value` in its bytes.
fn buffer(value: u64, pts: gst::ClockTime) -> gst::Buffer {
    let mut buffer = gst::Buffer::from_mut_slice(value.to_le_bytes());
    {
        let b = buffer.get_mut().unwrap();
        b.set_pts(pts);
        b.set_duration(FRAME);
    }
    buffer
}

/// Frame `i` of a 30 fps stream, carrying `i`.
fn frame(i: u64) -> gst::Buffer {
    buffer(i, FRAME * i)
}

fn frame_item(i: u64) -> Item {
    Item::Buffer {
        pts: Some(FRAME * i),
        value: i,
    }
}

fn frames(range: std::ops::Range<u64>) -> Vec<Item> {
    range.map(frame_item).collect()
}

fn custom(index: u64) -> gst::Event {
    gst::event::CustomDownstream::new(
        gst::Structure::builder("test-item")
            .field("index", index)
            .build(),
    )
}

/// Spins until an upstream thread is blocked inside the element (stats
/// `blocked-upstream`), so a test exercises the blocked case for sure.
fn wait_blocked_upstream(e: &gst::Element) {
    while stat(&stats(e), "blocked-upstream") == 0 {
        std::thread::yield_now();
    }
}

fn push_ok(h: &mut Harness, buffer: gst::Buffer) {
    assert_eq!(h.push(buffer), Ok(gst::FlowSuccess::Ok));
}

fn stats(e: &gst::Element) -> gst::Structure {
    let s = e.property::<gst::Structure>("stats");
    assert_eq!(s.name(), "parallelfilter-stats");
    s
}

fn stat(s: &gst::Structure, name: &str) -> u64 {
    if let Ok(v) = s.get::<u64>(name) {
        return v;
    }
    u64::from(
        s.get::<u32>(name)
            .unwrap_or_else(|e| panic!("stats field {name}: {e} in {s}")),
    )
}

fn per_worker(s: &gst::Structure) -> Vec<u64> {
    s.get::<gst::Array>("per-worker")
        .unwrap()
        .iter()
        .map(|v| v.get::<u64>().unwrap())
        .collect()
}

/// Small deterministic generator for test schedules.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn error_message(bus: &gst::Bus) -> (glib::Error, String) {
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(WAIT.as_secs()),
            &[gst::MessageType::Error],
        )
        .expect("no error message on the bus");
    let gst::MessageView::Error(err) = msg.view() else {
        unreachable!()
    };
    let debug = err.debug().map(|d| d.to_string()).unwrap_or_default();
    (err.error(), debug)
}

/// The element messages posted so far.
fn frame_messages(bus: &gst::Bus) -> Vec<gst::Structure> {
    bus.iter()
        .filter_map(|msg| match msg.view() {
            gst::MessageView::Element(m) => m
                .structure()
                .filter(|s| s.name() == "parallelfilter-analysis")
                .map(|s| s.to_owned()),
            _ => None,
        })
        .collect()
}

// 1. Order ------------------------------------------------------------------

fn check_order(props: &[(&str, &str)]) {
    let Fixture { mut h, e, rec, .. } = start(props);
    for i in 0..200 {
        push_ok(&mut h, frame(i));
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let mut expected = frames(0..200);
    expected.push(Item::Eos);
    assert_eq!(rec.until_eos(), expected);
    let s = stats(&e);
    assert_eq!(stat(&s, "frames-out"), 200, "{s}");
}

#[test]
fn order_random_delays_8_workers() {
    let _wd = common::begin("order_random_delays_8_workers", 60);
    check_order(&[
        ("processor", "delay"),
        ("delay-min", "0"),
        ("delay-max", &(5 * MS).to_string()),
        ("seed", "7"),
        ("workers", "8"),
    ]);
}

#[test]
fn order_random_delays_1_worker() {
    let _wd = common::begin("order_random_delays_1_worker", 60);
    check_order(&[
        ("processor", "delay"),
        ("delay-min", "0"),
        ("delay-max", &(5 * MS).to_string()),
        ("seed", "8"),
        ("workers", "1"),
    ]);
}

#[test]
fn order_passthrough() {
    let _wd = common::begin("order_passthrough", 60);
    check_order(&[("processor", "passthrough"), ("workers", "8")]);
}

// 2. Serialized events ------------------------------------------------------

/// Pushes 150 frames with custom events at random places and a GAP, a TAG,
/// a SEGMENT update and a CAPS change at fixed ones, then EOS; returns what
/// was pushed after the preamble, in order.
fn push_mixed_stream(h: &mut Harness, seed: u64) -> Vec<Item> {
    let mut rng = Rng(seed);
    let mut pushed = Vec::new();
    let mut index = 0;
    let push_event = |h: &mut Harness, event: gst::Event, pushed: &mut Vec<Item>| {
        pushed.push(item_of_event(&event));
        assert!(h.push_event(event));
    };
    for i in 0..150 {
        let events = match rng.below(4) {
            0 => 1,
            1 => 2,
            _ => 0,
        };
        for _ in 0..events {
            push_event(h, custom(index), &mut pushed);
            index += 1;
        }
        match i {
            30 => push_event(
                h,
                gst::event::Gap::builder(FRAME * i).duration(FRAME).build(),
                &mut pushed,
            ),
            60 => {
                let mut tags = gst::TagList::new();
                tags.make_mut()
                    .add::<gst::tags::Title>(&"harness", gst::TagMergeMode::Append);
                push_event(h, gst::event::Tag::new(tags), &mut pushed);
            }
            90 => {
                let mut segment = time_segment();
                segment.set_base(gst::ClockTime::from_seconds(10));
                push_event(h, gst::event::Segment::new(&segment), &mut pushed);
            }
            120 => push_event(
                h,
                gst::event::Caps::new(
                    &"video/x-raw,format=GRAY8,width=8,height=8,framerate=30/1"
                        .parse::<gst::Caps>()
                        .unwrap(),
                ),
                &mut pushed,
            ),
            _ => {}
        }
        pushed.push(frame_item(i));
        push_ok(h, frame(i));
    }
    push_event(h, gst::event::Eos::new(), &mut pushed);
    pushed
}

#[test]
fn serialized_events_keep_their_place() {
    let _wd = common::begin("serialized_events_keep_their_place", 60);
    let Fixture { mut h, rec, .. } = start(&[
        ("processor", "delay"),
        ("delay-min", "0"),
        ("delay-max", &(5 * MS).to_string()),
        ("workers", "8"),
    ]);
    let pushed = push_mixed_stream(&mut h, 1);
    assert!(
        pushed
            .iter()
            .filter(|i| matches!(i, Item::Custom(_)))
            .count()
            > 20
    );
    assert_eq!(rec.until_eos(), pushed);
}

#[test]
fn unordered_mode_keeps_events_as_barriers() {
    let _wd = common::begin("unordered_mode_keeps_events_as_barriers", 60);
    let Fixture { mut h, rec, .. } = start(&[
        ("processor", "delay"),
        ("delay-min", "0"),
        ("delay-max", &(5 * MS).to_string()),
        ("workers", "8"),
        ("ordered", "false"),
    ]);
    let pushed = push_mixed_stream(&mut h, 2);
    let got = rec.until_eos();
    // Split both streams at every event: the events match one to one and
    // each run of buffers between two events holds the same frames.
    let runs = |items: &[Item]| {
        let mut runs: Vec<(Vec<u64>, Option<Item>)> = Vec::new();
        let mut run = Vec::new();
        for item in items {
            match item.value() {
                Some(v) => run.push(v),
                None => {
                    run.sort_unstable();
                    runs.push((std::mem::take(&mut run), Some(item.clone())));
                }
            }
        }
        run.sort_unstable();
        runs.push((run, None));
        runs
    };
    assert_eq!(runs(&got), runs(&pushed));
    // Every buffer still carries its own PTS.
    for item in &got {
        if let Item::Buffer { pts, value } = item {
            assert_eq!(*pts, Some(FRAME * *value));
        }
    }
}

// 3. EOS drain --------------------------------------------------------------

#[test]
fn eos_waits_for_frames_in_processing() {
    let _wd = common::begin("eos_waits_for_frames_in_processing", 60);
    // Room for every frame, so EOS enters while frames are still being
    // processed (20-60 ms each); the order must not depend on that.
    let Fixture { mut h, e, rec, .. } = start(&[
        ("processor", "delay"),
        ("delay-min", &(20 * MS).to_string()),
        ("delay-max", &(60 * MS).to_string()),
        ("workers", "64"),
        ("max-size-buffers", "64"),
    ]);
    for i in 0..50 {
        push_ok(&mut h, frame(i));
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let mut expected = frames(0..50);
    expected.push(Item::Eos);
    assert_eq!(rec.until_eos(), expected);
    let s = stats(&e);
    assert_eq!(stat(&s, "frames-out"), 50, "{s}");
    assert_eq!(stat(&s, "in-flight"), 0, "{s}");
}

// 4. Serialized queries -----------------------------------------------------

#[test]
fn serialized_queries_wait_for_earlier_frames() {
    let _wd = common::begin("serialized_queries_wait_for_earlier_frames", 60);
    let Fixture { mut h, rec, .. } = start(&[
        ("processor", "delay"),
        ("delay-min", &MS.to_string()),
        ("delay-max", &(10 * MS).to_string()),
        ("workers", "8"),
    ]);
    let upstream = h.srcpad().unwrap();
    for i in 0..20 {
        push_ok(&mut h, frame(i));
    }
    let mut drain = gst::query::Drain::new();
    // The harness's sink has no answer for DRAIN; only the order matters.
    upstream.peer_query(&mut drain);
    // Answered: everything before it, then the query itself, went out.
    let mut expected = frames(0..20);
    expected.push(Item::Query(gst::QueryType::Drain));
    assert_eq!(rec.received(), expected);

    for i in 20..40 {
        push_ok(&mut h, frame(i));
    }
    let caps = CAPS.parse::<gst::Caps>().unwrap();
    let mut allocation = gst::query::Allocation::new(Some(&caps), true);
    assert!(
        upstream.peer_query(&mut allocation),
        "allocation query not answered by downstream"
    );
    let mut expected = frames(20..40);
    expected.push(Item::Query(gst::QueryType::Allocation));
    assert_eq!(rec.received(), expected);

    for i in 40..50 {
        push_ok(&mut h, frame(i));
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let mut expected = frames(40..50);
    expected.push(Item::Eos);
    assert_eq!(rec.until_eos(), expected);
}

#[test]
fn drain_query_released_by_flush() {
    let _wd = common::begin("drain_query_released_by_flush", 60);
    let hour = HOUR.to_string();
    let Fixture { mut h, e, rec, .. } = start(&[
        ("processor", "delay"),
        ("delay-min", &hour),
        ("delay-max", &hour),
        ("workers", "2"),
    ]);
    push_ok(&mut h, frame(0));
    let upstream = h.srcpad().unwrap();
    let (tx, rx) = mpsc::channel();
    let querier = std::thread::spawn(move || {
        tx.send(()).unwrap();
        let mut drain = gst::query::Drain::new();
        upstream.peer_query(&mut drain)
    });
    rx.recv().unwrap();
    drop(rx);
    // The drain waits behind a frame stuck for an hour; the flush makes it
    // fail instead of hanging.
    wait_blocked_upstream(&e);
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(!querier.join().unwrap(), "drain answered during a flush");
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    assert_eq!(rec.received(), vec![Item::FlushStart, Item::FlushStop]);
}

// 5. Flush ------------------------------------------------------------------

#[test]
fn flush_unblocks_chain_and_discards_everything() {
    let _wd = common::begin("flush_unblocks_chain_and_discards_everything", 60);
    let hour = HOUR.to_string();
    let Fixture {
        mut h, e, rec, bus, ..
    } = start(&[
        ("processor", "delay"),
        ("delay-min", &hour),
        ("delay-max", &hour),
        ("workers", "2"),
        ("max-size-buffers", "4"),
        ("post-messages", "true"),
    ]);
    // Pre-flush frames carry values 1000.. and PTS from 100 s.
    let old = |i: u64| buffer(1000 + i, gst::ClockTime::from_seconds(100) + FRAME * i);
    for i in 0..4 {
        push_ok(&mut h, old(i));
    }
    let s = stats(&e);
    assert_eq!(stat(&s, "frames-in"), 4, "{s}");
    assert_eq!(stat(&s, "in-flight"), 4, "{s}");

    // The fifth frame finds the element full and blocks upstream.
    let upstream = h.srcpad().unwrap();
    let fifth = old(4);
    let (tx, rx) = mpsc::channel();
    let pusher = std::thread::spawn(move || {
        tx.send(()).unwrap();
        upstream.push(fifth)
    });
    rx.recv().unwrap();
    wait_blocked_upstream(&e);
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert_eq!(pusher.join().unwrap(), Err(gst::FlowError::Flushing));
    let s = stats(&e);
    assert_eq!(stat(&s, "in-flight"), 0, "flush left frames inside: {s}");
    assert!(h.push_event(gst::event::FlushStop::new(true)));

    // Frames entering from now on time out at once and leave unprocessed,
    // so the post-flush stream flows while nothing old can finish.
    e.set_property("timeout", MS);
    e.set_property_from_str("on-error", "pass");
    assert!(h.push_event(gst::event::Segment::new(&time_segment())));
    for i in 0..6 {
        push_ok(&mut h, frame(i));
    }
    assert!(h.push_event(gst::event::Eos::new()));

    let mut expected = vec![
        Item::FlushStart,
        Item::FlushStop,
        Item::Segment(time_segment().upcast()),
    ];
    expected.extend(frames(0..6));
    expected.push(Item::Eos);
    assert_eq!(rec.until_eos(), expected);
    // Messages only for what was pushed.
    let timestamps: Vec<u64> = frame_messages(&bus)
        .iter()
        .map(|s| s.get::<u64>("timestamp").unwrap())
        .collect();
    let pushed: Vec<u64> = (0..6).map(|i| (FRAME * i).nseconds()).collect();
    assert_eq!(timestamps, pushed);
}

#[test]
fn flush_mid_stream_never_leaks_old_frames() {
    let _wd = common::begin("flush_mid_stream_never_leaks_old_frames", 60);
    let Fixture { mut h, rec, .. } = start(&[
        ("processor", "delay"),
        ("delay-min", "0"),
        ("delay-max", &(5 * MS).to_string()),
        ("workers", "8"),
        ("max-size-buffers", "16"),
    ]);
    // Round r pushes frames carrying r * 1000 + i; a flush ends each round
    // with frames in processing, waiting for reorder, and being pushed.
    const ROUNDS: u64 = 20;
    let mut rng = Rng(3);
    let mut counts = Vec::new();
    for round in 0..ROUNDS {
        let n = 5 + rng.below(40);
        counts.push(n);
        for i in 0..n {
            push_ok(&mut h, buffer(round * 1000 + i, FRAME * i));
        }
        if round + 1 < ROUNDS {
            assert!(h.push_event(gst::event::FlushStart::new()));
            assert!(h.push_event(gst::event::FlushStop::new(true)));
            assert!(h.push_event(gst::event::Segment::new(&time_segment())));
        }
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let got = rec.until_eos();

    // Between two flushes only the current round's frames, in order and
    // with no gap (a prefix of what was pushed); the last round complete.
    let mut round = 0;
    let mut next = 0;
    let mut seen_flush_start = false;
    for item in &got {
        match item {
            // A push that passed the src pad's flushing check just before
            // FLUSH_START went out can reach the recording probe after it
            // (two threads); the flushing peer refuses it. It must still be
            // the current round's next frame.
            Item::Buffer { pts, value } => {
                assert_eq!(*value, round * 1000 + next, "in round {round}: {got:?}");
                assert_eq!(*pts, Some(FRAME * next));
                next += 1;
            }
            Item::FlushStart => seen_flush_start = true,
            Item::FlushStop => {
                assert!(seen_flush_start);
                seen_flush_start = false;
                round += 1;
                next = 0;
            }
            Item::Segment(_) | Item::Eos => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(round, ROUNDS - 1);
    assert_eq!(next, counts[round as usize], "last round incomplete");
}

#[test]
fn frame_message_seq_restarts_at_zero() {
    let _wd = common::begin("frame_message_seq_restarts_at_zero", 60);
    let Fixture {
        mut h, rec, bus, ..
    } = start(&[
        ("processor", "delay"),
        ("delay-min", "0"),
        ("delay-max", &(2 * MS).to_string()),
        ("workers", "4"),
        ("post-messages", "true"),
    ]);
    for i in 0..5 {
        push_ok(&mut h, frame(i));
    }
    assert!(h.push_event(custom(0)));
    push_ok(&mut h, frame(5));
    rec.until(|i| *i == frame_item(5));
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    assert!(h.push_event(gst::event::Segment::new(&time_segment())));
    for i in 0..3 {
        push_ok(&mut h, frame(100 + i));
    }
    assert!(h.push_event(gst::event::Eos::new()));
    rec.until_eos();

    let messages = frame_messages(&bus);
    let seqs: Vec<u64> = messages
        .iter()
        .map(|s| s.get::<u64>("seq").unwrap())
        .collect();
    let timestamps: Vec<u64> = messages
        .iter()
        .map(|s| s.get::<u64>("timestamp").unwrap())
        .collect();
    let expected: Vec<u64> = (0..6)
        .chain(100..103)
        .map(|i| (FRAME * i).nseconds())
        .collect();
    assert_eq!(timestamps, expected);
    // seq counts frames: 0 for the first frame after start and after flush.
    assert_eq!(seqs, vec![0, 1, 2, 3, 4, 5, 0, 1, 2]);
}

#[test]
fn frame_messages_in_output_order() {
    let _wd = common::begin("frame_messages_in_output_order", 60);
    let Fixture {
        mut h, rec, bus, ..
    } = start(&[
        ("processor", "delay"),
        ("delay-min", "0"),
        ("delay-max", &(5 * MS).to_string()),
        ("workers", "4"),
        ("post-messages", "true"),
    ]);
    let mut segment = time_segment();
    segment.set_start(gst::ClockTime::from_seconds(1));
    segment.set_time(gst::ClockTime::from_seconds(5));
    segment.set_base(gst::ClockTime::from_seconds(2));
    assert!(h.push_event(gst::event::Segment::new(&segment)));
    let pts = |i: u64| gst::ClockTime::from_seconds(1) + FRAME * i;
    for i in 0..40 {
        push_ok(&mut h, buffer(i, pts(i)));
    }
    assert!(h.push_event(gst::event::Eos::new()));
    rec.until_eos();
    let messages = frame_messages(&bus);
    assert_eq!(messages.len(), 40);
    for (i, s) in (0..).zip(&messages) {
        assert_eq!(s.get::<u64>("timestamp").unwrap(), pts(i).nseconds(), "{s}");
        assert_eq!(s.get::<u64>("duration").unwrap(), FRAME.nseconds(), "{s}");
        assert_eq!(
            s.get::<u64>("running-time").unwrap(),
            (gst::ClockTime::from_seconds(2) + FRAME * i).nseconds(),
            "{s}"
        );
        assert_eq!(
            s.get::<u64>("stream-time").unwrap(),
            (gst::ClockTime::from_seconds(5) + FRAME * i).nseconds(),
            "{s}"
        );
        assert!(s.get::<u32>("worker").unwrap() < 4, "{s}");
        assert!(s.has_field("processing-time"), "{s}");
    }
}

// 6. Downstream flow returns ------------------------------------------------

/// Pushes frames until a chain call fails; the element must report
/// `flow` from one of the next chain calls and keep reporting it.
fn check_flow_returned(flow: gst::FlowError) {
    let Fixture { mut h, e, .. } = start(&[("processor", "passthrough"), ("workers", "4")]);
    let src = e.static_pad("src").unwrap();
    src.unlink(&h.sinkpad().unwrap()).unwrap();
    // Keep the replacement sink alive until the end of the test.
    let _sink = (flow != gst::FlowError::NotLinked).then(|| {
        let sink = gst::Pad::builder(gst::PadDirection::Sink)
            .chain_function(move |_, _, _| Err(flow))
            .event_function(|_, _, _| true)
            .build();
        sink.set_active(true).unwrap();
        src.link(&sink).unwrap();
        sink
    });
    let mut result = Ok(gst::FlowSuccess::Ok);
    for i in 0..1000 {
        result = h.push(frame(i));
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result, Err(flow));
    assert_eq!(h.push(frame(1000)), Err(flow), "error not kept");
}

#[test]
fn downstream_not_linked_returned_upstream() {
    let _wd = common::begin("downstream_not_linked_returned_upstream", 60);
    check_flow_returned(gst::FlowError::NotLinked);
}

#[test]
fn downstream_error_returned_upstream() {
    let _wd = common::begin("downstream_error_returned_upstream", 60);
    check_flow_returned(gst::FlowError::Error);
}

#[test]
fn downstream_eos_returned_upstream() {
    let _wd = common::begin("downstream_eos_returned_upstream", 60);
    check_flow_returned(gst::FlowError::Eos);
}

#[test]
fn downstream_flushing_returned_upstream() {
    let _wd = common::begin("downstream_flushing_returned_upstream", 60);
    check_flow_returned(gst::FlowError::Flushing);
}

#[test]
fn not_linked_after_eos_posts_error() {
    let _wd = common::begin("not_linked_after_eos_posts_error", 60);
    let Fixture { mut h, e, bus, .. } = start(&[
        ("processor", "delay"),
        ("delay-min", &(5 * MS).to_string()),
        ("delay-max", &(5 * MS).to_string()),
        ("workers", "4"),
    ]);
    e.static_pad("src")
        .unwrap()
        .unlink(&h.sinkpad().unwrap())
        .unwrap();
    // Whether the push fails before or after EOS enters, upstream never
    // sees the flow return, so the element must post the error itself.
    let _ = h.push(frame(0));
    h.push_event(gst::event::Eos::new());
    let (err, debug) = error_message(&bus);
    assert!(err.matches(gst::StreamError::Failed), "{err:?} {debug}");
}

#[test]
fn not_linked_recovers_after_relink() {
    let _wd = common::begin("not_linked_recovers_after_relink", 60);
    let Fixture { mut h, e, rec, .. } = start(&[("processor", "passthrough"), ("workers", "2")]);
    let src = e.static_pad("src").unwrap();
    let sink = h.sinkpad().unwrap();
    let mut i = 0;
    // Each round opens the race window once; a lost restart leaves the
    // task paused and the next chain call blocked (watchdog).
    for round in 1..=200 {
        src.unlink(&sink).unwrap();
        loop {
            match h.push(frame(i)) {
                Ok(_) => i += 1,
                Err(err) => {
                    assert_eq!(err, gst::FlowError::NotLinked);
                    break;
                }
            }
            assert!(i < 1000 * round, "not-linked never returned");
        }
        // Linking sends RECONFIGURE to the element inside link(): it
        // must start pushing again.
        src.link(&sink).unwrap();
        let base = 1_000_000 * round;
        push_ok(&mut h, frame(base));
        push_ok(&mut h, frame(base + 1));
        let got: Vec<u64> = rec
            .until(|item| item.value() == Some(base + 1))
            .iter()
            .filter_map(Item::value)
            .filter(|v| *v >= base)
            .collect();
        assert_eq!(got, vec![base, base + 1], "round {round}");
    }
}

#[test]
fn new_stream_after_eos() {
    let _wd = common::begin("new_stream_after_eos", 60);
    let Fixture { mut h, rec, .. } = start(&[
        ("processor", "delay"),
        ("delay-min", "0"),
        ("delay-max", &MS.to_string()),
        ("workers", "4"),
    ]);
    // Upstream starts the next stream right after EOS, without waiting
    // for EOS to come out: STREAM_START clears the EOS state.
    let mut expected = Vec::new();
    for round in 0..10 {
        if round > 0 {
            assert!(h.push_event(gst::event::StreamStart::new(&format!("s{round}"))));
            assert!(h.push_event(gst::event::Caps::new(&CAPS.parse::<gst::Caps>().unwrap())));
            assert!(h.push_event(gst::event::Segment::new(&time_segment())));
        }
        for i in 0..5 {
            push_ok(&mut h, frame(round * 100 + i));
            expected.push(frame_item(round * 100 + i));
        }
        assert!(h.push_event(gst::event::Eos::new()));
        expected.push(Item::Eos);
    }
    let mut got = Vec::new();
    while got.len() < expected.len() {
        let item = rec.next();
        if item.is_buffer() || item == Item::Eos {
            got.push(item);
        }
    }
    assert_eq!(got, expected);
}

// 7. Latency ----------------------------------------------------------------

fn latency(props: &[(&str, &str)]) -> (bool, gst::ClockTime, Option<gst::ClockTime>) {
    let Fixture { mut h, .. } = fixture(props);
    h.set_upstream_latency(gst::ClockTime::from_mseconds(10));
    let mut q = gst::query::Latency::new();
    assert!(h.sinkpad().unwrap().peer_query(&mut q));
    let (live, min, max) = q.result();
    assert_eq!(h.query_latency(), Some(min));
    (live, min, max)
}

#[test]
fn latency_adds_processing_bound() {
    let _wd = common::begin("latency_adds_processing_bound", 60);
    let ms = gst::ClockTime::from_mseconds;
    let delay = [
        ("processor", "delay"),
        ("delay-min", "0"),
        ("delay-max", &(30 * MS).to_string()),
    ];
    let (live, min, max) = latency(&delay);
    assert!(live);
    assert_eq!(min, ms(40));
    if let Some(max) = max {
        assert!(max >= min);
    }

    let (live, min, _) = latency(&[("processor", "passthrough")]);
    assert!(live);
    assert_eq!(min, ms(10));

    let timeout = (5 * MS).to_string();
    let mut capped = delay.to_vec();
    capped.push(("timeout", &timeout));
    let (_, min, _) = latency(&capped);
    assert_eq!(min, ms(15));
}

#[test]
fn latency_follows_timeout_changes() {
    let _wd = common::begin("latency_follows_timeout_changes", 60);
    let Fixture { mut h, e, bus, .. } = fixture(&[
        ("processor", "delay"),
        ("delay-max", &(30 * MS).to_string()),
    ]);
    h.set_upstream_latency(gst::ClockTime::from_mseconds(10));
    assert_eq!(h.query_latency(), Some(gst::ClockTime::from_mseconds(40)));
    e.set_property("timeout", 5 * MS);
    bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(WAIT.as_secs()),
        &[gst::MessageType::Latency],
    )
    .expect("no LATENCY message after changing timeout");
    assert_eq!(h.query_latency(), Some(gst::ClockTime::from_mseconds(15)));
}

// 8. on-error with timeouts -------------------------------------------------

fn timing_out(on_error: &str) -> Fixture {
    let delay = (200 * MS).to_string();
    let timeout = (5 * MS).to_string();
    start(&[
        ("processor", "delay"),
        ("delay-min", &delay),
        ("delay-max", &delay),
        ("timeout", &timeout),
        ("on-error", on_error),
        ("workers", "4"),
    ])
}

#[test]
fn timeout_drop_pushes_gaps() {
    let _wd = common::begin("timeout_drop_pushes_gaps", 60);
    let Fixture { mut h, e, rec, .. } = timing_out("drop");
    for i in 0..8 {
        push_ok(&mut h, frame(i));
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let mut expected: Vec<Item> = (0..8)
        .map(|i| Item::Gap {
            pts: FRAME * i,
            duration: Some(FRAME),
        })
        .collect();
    expected.push(Item::Eos);
    assert_eq!(rec.until_eos(), expected);
    let s = stats(&e);
    assert_eq!(stat(&s, "frames-in"), 8, "{s}");
    assert_eq!(stat(&s, "frames-out"), 0, "{s}");
    assert_eq!(stat(&s, "dropped"), 8, "{s}");
    assert_eq!(stat(&s, "errors"), 8, "{s}");
    assert_eq!(stat(&s, "timeouts"), 8, "{s}");
}

#[test]
fn timeout_pass_pushes_originals() {
    let _wd = common::begin("timeout_pass_pushes_originals", 60);
    let Fixture { mut h, e, rec, .. } = timing_out("pass");
    for i in 0..8 {
        push_ok(&mut h, frame(i));
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let mut expected = frames(0..8);
    expected.push(Item::Eos);
    assert_eq!(rec.until_eos(), expected);
    let s = stats(&e);
    assert_eq!(stat(&s, "frames-in"), 8, "{s}");
    assert_eq!(stat(&s, "frames-out"), 8, "{s}");
    assert_eq!(stat(&s, "dropped"), 0, "{s}");
    assert_eq!(stat(&s, "errors"), 8, "{s}");
    assert_eq!(stat(&s, "timeouts"), 8, "{s}");
}

#[test]
fn timeout_fail_posts_error_and_stops() {
    let _wd = common::begin("timeout_fail_posts_error_and_stops", 60);
    let Fixture {
        mut h, e, rec, bus, ..
    } = timing_out("fail");
    let pts = gst::ClockTime::from_seconds(7);
    push_ok(&mut h, buffer(0, pts));
    let (err, debug) = error_message(&bus);
    assert!(err.matches(gst::StreamError::Failed), "{err:?} {debug}");
    let text = format!("{} {debug}", err.message());
    assert!(
        text.contains(&pts.to_string()) || text.contains(&pts.nseconds().to_string()),
        "error does not name the frame's PTS: {text}"
    );
    assert!(
        text.to_lowercase().contains("time"),
        "no timeout in: {text}"
    );
    let mut result = Ok(gst::FlowSuccess::Ok);
    for i in 1..1000 {
        result = h.push(frame(i));
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result, Err(gst::FlowError::Error));
    assert!(
        rec.received().iter().all(|i| !i.is_buffer()),
        "a failed frame was pushed"
    );
    let s = stats(&e);
    assert!(stat(&s, "errors") >= 1, "{s}");
    assert!(stat(&s, "timeouts") >= 1, "{s}");
}

// 9. Stats ------------------------------------------------------------------

#[test]
fn stats_after_eos() {
    let _wd = common::begin("stats_after_eos", 60);
    let Fixture { mut h, e, rec, .. } = start(&[
        ("processor", "delay"),
        ("delay-min", "0"),
        ("delay-max", &(3 * MS).to_string()),
        ("workers", "4"),
        ("max-size-buffers", "6"),
    ]);
    for i in 0..100 {
        push_ok(&mut h, frame(i));
    }
    assert!(h.push_event(gst::event::Eos::new()));
    rec.until_eos();
    let s = stats(&e);
    assert_eq!(stat(&s, "frames-in"), 100, "{s}");
    assert_eq!(stat(&s, "frames-out"), 100, "{s}");
    assert_eq!(stat(&s, "dropped"), 0, "{s}");
    assert_eq!(
        stat(&s, "frames-in"),
        stat(&s, "frames-out") + stat(&s, "dropped")
    );
    assert_eq!(stat(&s, "errors"), 0, "{s}");
    assert_eq!(stat(&s, "timeouts"), 0, "{s}");
    assert_eq!(stat(&s, "in-flight"), 0, "{s}");
    assert_eq!(stat(&s, "reorder-depth"), 0, "{s}");
    assert_eq!(stat(&s, "workers"), 4, "{s}");
    let max_in_flight = stat(&s, "max-in-flight");
    assert!((1..=6).contains(&max_in_flight), "{s}");
    assert!(stat(&s, "max-reorder-depth") < 6, "{s}");
    let per_worker = per_worker(&s);
    assert!(per_worker.len() >= 4, "{s}");
    assert_eq!(per_worker.iter().sum::<u64>(), 100, "{s}");
    assert!(stat(&s, "avg-latency") <= stat(&s, "max-latency"), "{s}");
    assert!(
        stat(&s, "avg-processing-time") <= stat(&s, "max-processing-time"),
        "{s}"
    );
    // Still readable after stopping.
    drop(h);
    let s = stats(&e);
    assert_eq!(stat(&s, "frames-out"), 100, "{s}");
}

// 10. Leaky -----------------------------------------------------------------

/// 20 frames into 4 places with 2 workers and hour-long processing: no push
/// may block. Then the frames not started yet are released (a 1 ms timeout
/// with on-error=pass for frames starting from now, and more workers to
/// start them), the stuck ones stay. Returns the values that came out.
fn leaky_run(leaky: &str) -> Vec<u64> {
    let hour = HOUR.to_string();
    let Fixture { mut h, e, rec, .. } = start(&[
        ("processor", "delay"),
        ("delay-min", &hour),
        ("delay-max", &hour),
        ("workers", "2"),
        ("max-size-buffers", "4"),
        ("leaky", leaky),
        ("on-error", "pass"),
        ("ordered", "false"),
    ]);
    // All on the test thread: a blocking chain would hang the test.
    for i in 0..20 {
        push_ok(&mut h, frame(i));
    }
    // At most 2 frames have started, so each push past the fourth dropped
    // exactly one frame (the new one, or the oldest not started).
    let s = stats(&e);
    assert_eq!(stat(&s, "frames-in"), 20, "{s}");
    assert_eq!(stat(&s, "dropped"), 16, "{s}");
    assert_eq!(stat(&s, "in-flight"), 4, "{s}");

    e.set_property("timeout", MS);
    e.set_property("workers", 8u32);
    // Frames not started by the 2 first workers are among the last 2 of
    // the 4 kept ones; wait for those, then stop everything with a flush.
    let kept: Vec<u64> = match leaky {
        "upstream" => vec![2, 3],
        _ => vec![18, 19],
    };
    let mut out = Vec::new();
    while !kept.iter().all(|k| out.contains(k)) {
        if let Some(v) = rec.next().value() {
            out.push(v);
        }
    }
    assert!(h.push_event(gst::event::FlushStart::new()));
    out.extend(
        rec.until(|i| *i == Item::FlushStart)
            .iter()
            .filter_map(Item::value),
    );
    out
}

#[test]
fn leaky_upstream_drops_new_frames() {
    let _wd = common::begin("leaky_upstream_drops_new_frames", 60);
    let out = leaky_run("upstream");
    // The element kept the first 4 frames.
    let mut sorted = out.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), out.len(), "duplicates in {out:?}");
    assert!(out.iter().all(|v| *v < 4), "{out:?}");
}

#[test]
fn leaky_downstream_drops_oldest_queued() {
    let _wd = common::begin("leaky_downstream_drops_oldest_queued", 60);
    let out = leaky_run("downstream");
    // The element kept the newest frames not started (plus the started
    // ones, stuck for an hour).
    let mut sorted = out.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), out.len(), "duplicates in {out:?}");
    assert!(out.iter().all(|v| *v >= 16), "{out:?}");
}

// 11. Workers changing while data flows ------------------------------------

#[test]
fn workers_change_while_flowing() {
    let _wd = common::begin("workers_change_while_flowing", 60);
    let Fixture { mut h, e, rec, .. } = start(&[
        ("processor", "delay"),
        ("delay-min", "0"),
        ("delay-max", &(4 * MS).to_string()),
        ("workers", "8"),
    ]);
    let schedule = [(60, 2u32), (120, 16), (180, 1), (220, 5)];
    for i in 0..300 {
        if let Some((_, w)) = schedule.iter().find(|(at, _)| *at == i) {
            e.set_property("workers", *w);
        }
        push_ok(&mut h, frame(i));
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let mut expected = frames(0..300);
    expected.push(Item::Eos);
    assert_eq!(rec.until_eos(), expected);
    let s = stats(&e);
    assert_eq!(stat(&s, "workers"), 5, "{s}");
    assert_eq!(stat(&s, "frames-out"), 300, "{s}");
    assert_eq!(per_worker(&s).iter().sum::<u64>(), 300, "{s}");
}

// 12. Bad input -------------------------------------------------------------

#[test]
fn non_time_segment_refused() {
    let _wd = common::begin("non_time_segment_refused", 60);
    let Fixture { h, bus, .. } = start(&[("processor", "passthrough")]);
    let segment = gst::FormattedSegment::<gst::format::Bytes>::new();
    let sink = h.srcpad().unwrap().peer().unwrap();
    assert!(!sink.send_event(gst::event::Segment::new(&segment)));
    let (err, debug) = error_message(&bus);
    assert!(err.matches(gst::StreamError::Format), "{err:?} {debug}");
    let text = format!("{} {debug}", err.message());
    assert!(text.contains("TIME"), "{text}");
}

// State changes -------------------------------------------------------------

#[test]
fn stop_with_frames_stuck_and_chain_blocked() {
    let _wd = common::begin("stop_with_frames_stuck_and_chain_blocked", 60);
    let hour = HOUR.to_string();
    let Fixture { mut h, e, .. } = start(&[
        ("processor", "delay"),
        ("delay-min", &hour),
        ("delay-max", &hour),
        ("workers", "2"),
        ("max-size-buffers", "3"),
    ]);
    for i in 0..3 {
        push_ok(&mut h, frame(i));
    }
    let upstream = h.srcpad().unwrap();
    let (tx, rx) = mpsc::channel();
    let pusher = std::thread::spawn(move || {
        tx.send(()).unwrap();
        upstream.push(frame(3))
    });
    rx.recv().unwrap();
    wait_blocked_upstream(&e);
    assert_eq!(
        e.set_state(gst::State::Null),
        Ok(gst::StateChangeSuccess::Success)
    );
    assert_eq!(pusher.join().unwrap(), Err(gst::FlowError::Flushing));
    // And it starts again.
    assert_eq!(
        e.set_state(gst::State::Playing),
        Ok(gst::StateChangeSuccess::Success)
    );
}

// Found in review ------------------------------------------------------------

#[test]
fn serialized_query_returns_after_downstream_error() {
    let _wd = common::begin("query_after_downstream_error", 60);
    let Fixture { mut h, e, .. } = start(&[
        ("processor", "delay"),
        ("delay-min", &(20 * MS).to_string()),
        ("delay-max", &(20 * MS).to_string()),
    ]);
    e.static_pad("src")
        .unwrap()
        .unlink(&h.sinkpad().unwrap())
        .unwrap();
    push_ok(&mut h, frame(0));
    // The frame fails to go out (not linked) before or after the query
    // enters; either way upstream must get an answer, not hang.
    let mut q = gst::query::Allocation::new(Some(&CAPS.parse::<gst::Caps>().unwrap()), true);
    assert!(!e.static_pad("sink").unwrap().query(&mut q));
    assert_eq!(h.push(frame(1)), Err(gst::FlowError::NotLinked));
}

#[test]
fn flush_keeps_sticky_events_that_were_still_queued() {
    let _wd = common::begin("flush_sticky", 60);
    let Fixture { mut h, e, rec, .. } = start(&[
        ("processor", "delay"),
        ("delay-min", &HOUR.to_string()),
        ("delay-max", &HOUR.to_string()),
        ("timeout", &(10 * SECOND).to_string()),
        ("on-error", "pass"),
    ]);
    push_ok(&mut h, frame(0));
    // New caps wait behind the stuck frame, then a seek flushes them away.
    let caps8: gst::Caps = "video/x-raw,format=GRAY8,width=8,height=8,framerate=30/1"
        .parse()
        .unwrap();
    assert!(h.push_event(gst::event::Caps::new(&caps8)));
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    assert!(h.push_event(gst::event::Segment::new(&time_segment())));
    e.set_property("timeout", MS);
    push_ok(&mut h, frame(1));
    let items = rec.until(|i| i.is_buffer());
    assert!(items.contains(&Item::Caps(caps8.clone())), "{items:?}");
    assert_eq!(e.static_pad("src").unwrap().current_caps(), Some(caps8));
}

#[test]
fn huge_latencies_saturate() {
    let _wd = common::begin("huge_latencies", 60);
    let max = (i64::MAX as u64).to_string();
    let Fixture { mut h, .. } = fixture(&[
        ("processor", "delay"),
        ("delay-min", "0"),
        ("delay-max", &max),
    ]);
    h.set_upstream_latency(gst::ClockTime::MAX);
    let mut q = gst::query::Latency::new();
    assert!(h.sinkpad().unwrap().peer_query(&mut q));
    let (_, min, max_latency) = q.result();
    assert_eq!(min, gst::ClockTime::MAX);
    assert_eq!(max_latency, None);
}

#[test]
fn new_stream_after_downstream_eos() {
    let _wd = common::begin("new_stream_after_downstream_eos", 60);
    let Fixture { mut h, e, .. } = start(&[("processor", "passthrough")]);
    let src = e.static_pad("src").unwrap();
    let real_sink = h.sinkpad().unwrap().clone();
    src.unlink(&real_sink).unwrap();
    let eos_sink = gst::Pad::builder(gst::PadDirection::Sink)
        .chain_function(|_, _, _| Err(gst::FlowError::Eos))
        .event_function(|_, _, _| true)
        .build();
    eos_sink.set_active(true).unwrap();
    src.link(&eos_sink).unwrap();
    let mut result = Ok(gst::FlowSuccess::Ok);
    for i in 0..100 {
        result = h.push(frame(i));
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result, Err(gst::FlowError::Eos));
    // Downstream wants data again: a new stream must flow.
    src.unlink(&eos_sink).unwrap();
    src.link(&real_sink).unwrap();
    assert!(h.push_event(gst::event::StreamStart::new("second")));
    assert!(h.push_event(gst::event::Segment::new(&time_segment())));
    push_ok(&mut h, frame(1000));
    // Frames still queued when downstream said EOS go first (as in queue).
    let mut last = None;
    while last != Some(FRAME * 1000) {
        let pts = h.pull().unwrap().pts();
        assert!(pts > last, "out of order");
        last = pts;
    }
}

#[test]
fn on_error_fail_keeps_stats_balanced() {
    let _wd = common::begin("fail_stats", 60);
    let Fixture { mut h, e, bus, .. } = timing_out("fail");
    push_ok(&mut h, frame(0));
    let _ = error_message(&bus);
    let s = stats(&e);
    assert_eq!(stat(&s, "frames-in"), 1);
    assert_eq!(
        stat(&s, "frames-out") + stat(&s, "dropped") + stat(&s, "in-flight"),
        1
    );
}

#[test]
fn max_size_bytes_bounds_the_element() {
    let _wd = common::begin("max_size_bytes", 60);
    let hour = HOUR.to_string();
    // Each frame carries 8 bytes: 24 bytes hold three frames.
    let Fixture { mut h, e, .. } = start(&[
        ("processor", "delay"),
        ("delay-min", &hour),
        ("delay-max", &hour),
        ("workers", "8"),
        ("max-size-bytes", "24"),
        ("leaky", "upstream"),
    ]);
    for i in 0..10 {
        push_ok(&mut h, frame(i));
    }
    let s = stats(&e);
    assert_eq!(stat(&s, "in-flight"), 3, "{s}");
    assert_eq!(stat(&s, "dropped"), 7, "{s}");
}

/// With on-error=pass the element keeps the input for the error path, but
/// not while it pushes: downstream must get the only reference, or every
/// in-place element after it copies each frame.
#[test]
fn pass_mode_pushes_writable_buffers() {
    let _wd = common::begin("pass_mode_pushes_writable_buffers", 60);
    let Fixture { mut h, e, rec, .. } = start(&[
        ("processor", "passthrough"),
        ("on-error", "pass"),
        ("workers", "2"),
    ]);
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    e.static_pad("src")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(b) = info.buffer() {
                let _ = tx.lock().unwrap().send(b.is_writable());
            }
            gst::PadProbeReturn::Ok
        });
    for i in 0..8 {
        push_ok(&mut h, frame(i));
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let mut expected = frames(0..8);
    expected.push(Item::Eos);
    assert_eq!(rec.until_eos(), expected);
    let writable: Vec<bool> = rx.try_iter().collect();
    assert_eq!(writable, vec![true; 8]);
}
