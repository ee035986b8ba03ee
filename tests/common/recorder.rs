// SPDX-License-Identifier: MPL-2.0
//! The recorder: everything a pad pushes (buffers, downstream events
//! including flushes, serialized downstream queries), in push order, for
//! tests to wait on and compare. A buffer is kept as a snapshot (`Mark` or
//! `Frame`), never by reference, so the pushed buffer stays writable and
//! its pool's buffers come back as without the recorder.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use gst::prelude::*;

use super::WAIT;

/// One thing a pad pushed; `B` is what is kept of a buffer.
#[derive(Debug, Clone, PartialEq)]
pub enum Item<B> {
    Buffer(B),
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

impl<B> Item<B> {
    pub fn of_event(event: &gst::EventRef) -> Self {
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
            EventView::CustomDownstream(c)
                if c.structure().is_some_and(|s| s.name() == "test-item") =>
            {
                Item::Custom(c.structure().unwrap().get::<u64>("index").unwrap())
            }
            EventView::Eos(_) => Item::Eos,
            EventView::FlushStart(_) => Item::FlushStart,
            EventView::FlushStop(_) => Item::FlushStop,
            _ => Item::Other(event.type_()),
        }
    }

    pub fn is_buffer(&self) -> bool {
        matches!(self, Item::Buffer(_))
    }

    pub fn buffer(&self) -> Option<&B> {
        match self {
            Item::Buffer(b) => Some(b),
            _ => None,
        }
    }
}

impl Item<Mark> {
    /// The value a buffer carries.
    pub fn value(&self) -> Option<u64> {
        self.buffer().map(|m| m.value)
    }
}

/// What a recorder keeps of a buffer, given the caps it came with.
pub trait Snapshot: Clone + Send + 'static {
    fn of(buffer: &gst::BufferRef, caps: Option<&gst::Caps>) -> Self;
}

/// A buffer as the Harness tests push it: a PTS and the value in its
/// first 8 bytes (little endian; shorter buffers are zero-padded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    pub pts: Option<gst::ClockTime>,
    pub value: u64,
}

impl Snapshot for Mark {
    fn of(buffer: &gst::BufferRef, _caps: Option<&gst::Caps>) -> Self {
        let map = buffer.map_readable().unwrap();
        let mut bytes = [0u8; 8];
        let n = map.len().min(8);
        bytes[..n].copy_from_slice(&map[..n]);
        Mark {
            pts: buffer.pts(),
            value: u64::from_le_bytes(bytes),
        }
    }
}

/// A buffer as a pipeline's sink got it. Equal frames have the same
/// timestamps, flags, caps and bytes.
#[derive(Clone)]
pub struct Frame {
    pub pts: Option<gst::ClockTime>,
    pub duration: Option<gst::ClockTime>,
    pub flags: gst::BufferFlags,
    /// The caps it came with.
    pub caps: Option<gst::Caps>,
    pub data: Vec<u8>,
    /// A deep copy, metas included (e.g. for `AnalysisResult::from_buffer`).
    pub buffer: gst::Buffer,
}

impl Frame {
    pub fn size(&self) -> usize {
        self.data.len()
    }
}

impl PartialEq for Frame {
    fn eq(&self, other: &Self) -> bool {
        self.pts == other.pts
            && self.duration == other.duration
            && self.flags == other.flags
            && self.caps == other.caps
            && self.data == other.data
    }
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("pts", &self.pts)
            .field("duration", &self.duration)
            .field("flags", &self.flags)
            .field("caps", &self.caps)
            .field("size", &self.data.len())
            .finish()
    }
}

impl Snapshot for Frame {
    fn of(buffer: &gst::BufferRef, caps: Option<&gst::Caps>) -> Self {
        Frame {
            pts: buffer.pts(),
            duration: buffer.duration(),
            flags: buffer.flags(),
            caps: caps.cloned(),
            data: buffer.map_readable().unwrap().to_vec(),
            buffer: buffer.copy_deep().unwrap(),
        }
    }
}

struct State<B> {
    items: Vec<Item<B>>,
    /// Items before this one were handed out by `next` and friends.
    read: usize,
    /// The caps of the last CAPS event, for the buffers after it.
    caps: Option<gst::Caps>,
}

struct Shared<B> {
    state: Mutex<State<B>>,
    cond: Condvar,
}

impl<B> Shared<B> {
    fn push(&self, item: Item<B>) {
        self.state.lock().unwrap().items.push(item);
        self.cond.notify_all();
    }
}

/// Records what a pad pushes, from `attach` until dropped. Reading is of
/// two kinds: a cursor (`next`, `until`, `received`, `next_buffer`) that
/// hands out each item once, and `all` and its views, which see
/// everything recorded.
pub struct Recorder<B: Snapshot> {
    shared: Arc<Shared<B>>,
    pad: gst::Pad,
    probe: Option<gst::PadProbeId>,
}

impl<B: Snapshot> Recorder<B> {
    pub fn attach(pad: &gst::Pad) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                items: Vec::new(),
                read: 0,
                caps: None,
            }),
            cond: Condvar::new(),
        });
        let s = shared.clone();
        let buffer = move |b: &gst::BufferRef| {
            let caps = s.state.lock().unwrap().caps.clone();
            s.push(Item::Buffer(B::of(b, caps.as_ref())));
        };
        let s = shared.clone();
        let probe = pad.add_probe(
            gst::PadProbeType::BUFFER
                | gst::PadProbeType::BUFFER_LIST
                | gst::PadProbeType::EVENT_DOWNSTREAM
                | gst::PadProbeType::EVENT_FLUSH
                | gst::PadProbeType::QUERY_DOWNSTREAM,
            move |_, info| {
                match &info.data {
                    Some(gst::PadProbeData::Buffer(b)) => buffer(b),
                    Some(gst::PadProbeData::BufferList(list)) => list.iter().for_each(&buffer),
                    Some(gst::PadProbeData::Event(e)) => {
                        if let gst::EventView::Caps(c) = e.view() {
                            s.state.lock().unwrap().caps = Some(c.caps_owned());
                        }
                        s.push(Item::of_event(e));
                    }
                    // Queries pass probes twice: record them on the way out.
                    Some(gst::PadProbeData::Query(q))
                        if info.mask.contains(gst::PadProbeType::PUSH)
                            && matches!(
                                q.type_(),
                                gst::QueryType::Drain | gst::QueryType::Allocation
                            ) =>
                    {
                        s.push(Item::Query(q.type_()));
                    }
                    _ => {}
                }
                gst::PadProbeReturn::Ok
            },
        );
        Recorder {
            shared,
            pad: pad.clone(),
            probe,
        }
    }

    /// The next item not handed out yet, waiting for it (bounded).
    pub fn next(&self) -> Item<B> {
        let deadline = Instant::now() + WAIT;
        let mut state = self.shared.state.lock().unwrap();
        while state.read == state.items.len() {
            let left = deadline
                .checked_duration_since(Instant::now())
                .expect("nothing more came out of the element");
            state = self.shared.cond.wait_timeout(state, left).unwrap().0;
        }
        state.read += 1;
        state.items[state.read - 1].clone()
    }

    /// Items up to and including the first one matching `last`.
    pub fn until(&self, last: impl Fn(&Item<B>) -> bool) -> Vec<Item<B>> {
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

    pub fn until_eos(&self) -> Vec<Item<B>> {
        self.until(|i| matches!(i, Item::Eos))
    }

    /// The next buffer, skipping events.
    pub fn next_buffer(&self) -> B {
        loop {
            if let Item::Buffer(b) = self.next() {
                return b;
            }
        }
    }

    /// What has been recorded and not handed out yet, without waiting.
    pub fn received(&self) -> Vec<Item<B>> {
        let mut state = self.shared.state.lock().unwrap();
        let len = state.items.len();
        let from = std::mem::replace(&mut state.read, len);
        state.items[from..].to_vec()
    }

    /// Everything recorded (or since `clear`).
    pub fn all(&self) -> Vec<Item<B>> {
        self.shared.state.lock().unwrap().items.clone()
    }

    /// Every buffer recorded.
    pub fn buffers(&self) -> Vec<B> {
        self.all()
            .into_iter()
            .filter_map(|i| match i {
                Item::Buffer(b) => Some(b),
                _ => None,
            })
            .collect()
    }

    /// The caps of every CAPS event recorded.
    pub fn caps(&self) -> Vec<gst::Caps> {
        self.all()
            .into_iter()
            .filter_map(|i| match i {
                Item::Caps(c) => Some(c),
                _ => None,
            })
            .collect()
    }

    /// Forgets everything recorded (the current caps stay known).
    pub fn clear(&self) {
        let mut state = self.shared.state.lock().unwrap();
        state.items.clear();
        state.read = 0;
    }
}

impl<B: Snapshot> Drop for Recorder<B> {
    fn drop(&mut self) {
        if let Some(id) = self.probe.take() {
            self.pad.remove_probe(id);
        }
    }
}
