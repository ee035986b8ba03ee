// SPDX-License-Identifier: MPL-2.0
//! The pipeline runner: a pipeline whose sink's input is recorded and
//! whose bus messages are kept as they are posted, run to EOS or error
//! with a bounded wait, and stopped when dropped.

use std::sync::{Arc, Mutex};

use gst::prelude::*;

use super::RUN_WAIT;
use super::recorder::{Frame, Item, Recorder};

/// An error message from the bus.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Name of the element that posted it.
    pub src: Option<String>,
    pub error: gst::glib::Error,
    pub debug: Option<String>,
}

impl Failure {
    pub fn of(e: &gst::message::Error) -> Self {
        Failure {
            src: e.src().map(|s| s.name().to_string()),
            error: e.error(),
            debug: e.debug().map(|d| d.to_string()),
        }
    }

    /// The error and its debug text: `error (Some("debug"))`.
    pub fn text(&self) -> String {
        format!("{} ({:?})", self.error, self.debug)
    }
}

/// `src: error (debug)`.
impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} ({})",
            self.src.as_deref().unwrap_or_default(),
            self.error,
            self.debug.as_deref().unwrap_or_default()
        )
    }
}

/// Waits (bounded) for EOS or an error on `bus`; returns the error if any.
pub fn end_of(bus: &gst::Bus) -> Option<Failure> {
    let msg = bus
        .timed_pop_filtered(RUN_WAIT, &[gst::MessageType::Eos, gst::MessageType::Error])
        .expect("neither EOS nor an error");
    match msg.view() {
        gst::MessageView::Error(e) => Some(Failure::of(e)),
        _ => None,
    }
}

#[derive(Default)]
struct Log {
    /// Structures of element messages.
    messages: Vec<gst::Structure>,
    warnings: Vec<String>,
    /// Sources of error messages.
    error_sources: Vec<String>,
    /// QoS messages: source, and processed and dropped buffers.
    qos: Vec<(String, u64, u64)>,
}

pub struct Pipeline {
    pub pipeline: gst::Pipeline,
    /// The element named `pf`, if any.
    pub pf: Option<gst::Element>,
    /// The element named `sink`, if any.
    pub sink: Option<gst::Element>,
    /// What reaches the recorded pad: `sink`'s sink pad by default.
    pub rec: Option<Recorder<Frame>>,
    log: Arc<Mutex<Log>>,
}

impl Pipeline {
    /// `desc` may name the filter `pf` and the last element `sink`.
    pub fn launch(desc: &str) -> Self {
        super::init();
        let pipeline = gst::parse::launch(desc)
            .unwrap()
            .downcast::<gst::Pipeline>()
            .unwrap();
        let pad = pipeline.by_name("sink").and_then(|s| s.static_pad("sink"));
        Self::wrap(pipeline, pad.as_ref())
    }

    /// A pipeline built otherwise (playbin), recording `pad` if given.
    pub fn wrap(pipeline: gst::Pipeline, pad: Option<&gst::Pad>) -> Self {
        let log = Arc::new(Mutex::new(Log::default()));
        let l = log.clone();
        // A sync handler sees every message as posted, whoever pops them.
        pipeline.bus().unwrap().set_sync_handler(move |_, msg| {
            let mut log = l.lock().unwrap();
            match msg.view() {
                gst::MessageView::Element(m) => {
                    if let Some(s) = m.structure() {
                        log.messages.push(s.to_owned());
                    }
                }
                gst::MessageView::Warning(w) => log.warnings.push(w.error().to_string()),
                gst::MessageView::Qos(q) => {
                    let (processed, dropped) = q.stats();
                    let count = |v: gst::GenericFormattedValue| match v {
                        gst::GenericFormattedValue::Buffers(n) => n.map_or(0, |n| *n),
                        _ => 0,
                    };
                    log.qos.push((
                        q.src().map(|s| s.name().to_string()).unwrap_or_default(),
                        count(processed),
                        count(dropped),
                    ));
                }
                gst::MessageView::Error(e) => log
                    .error_sources
                    .push(e.src().map(|s| s.name().to_string()).unwrap_or_default()),
                _ => {}
            }
            gst::BusSyncReply::Pass
        });
        Pipeline {
            pf: pipeline.by_name("pf"),
            sink: pipeline.by_name("sink"),
            rec: pad.map(Recorder::attach),
            pipeline,
            log,
        }
    }

    pub fn pf(&self) -> &gst::Element {
        self.pf.as_ref().expect("no element named pf")
    }

    pub fn sink(&self) -> &gst::Element {
        self.sink.as_ref().expect("no element named sink")
    }

    pub fn rec(&self) -> &Recorder<Frame> {
        self.rec.as_ref().expect("nothing recorded")
    }

    pub fn play(&self) {
        self.pipeline.set_state(gst::State::Playing).unwrap();
    }

    /// Waits (bounded) for EOS or an error; returns the error if any.
    pub fn wait_end(&self) -> Option<Failure> {
        end_of(&self.pipeline.bus().unwrap())
    }

    /// Plays to EOS or an error and returns the error, also when the
    /// state change itself failed.
    pub fn run(&self) -> Option<Failure> {
        if self.pipeline.set_state(gst::State::Playing).is_err() {
            let msg = self
                .pipeline
                .bus()
                .unwrap()
                .timed_pop_filtered(RUN_WAIT, &[gst::MessageType::Error])
                .expect("a failed state change posts an error");
            let gst::MessageView::Error(e) = msg.view() else {
                unreachable!()
            };
            return Some(Failure::of(e));
        }
        self.wait_end()
    }

    /// [`Pipeline::run`], failing on an error.
    pub fn run_to_eos(&self) {
        if let Some(err) = self.run() {
            panic!("error from {:?}: {}", err.src, err.text());
        }
    }

    pub fn stop(&self) {
        self.pipeline.set_state(gst::State::Null).unwrap();
    }

    /// Everything recorded.
    pub fn records(&self) -> Vec<Item<Frame>> {
        self.rec().all()
    }

    pub fn frames(&self) -> Vec<Frame> {
        self.rec().buffers()
    }

    pub fn buffer_pts(&self) -> Vec<gst::ClockTime> {
        self.frames().iter().map(|f| f.pts.unwrap()).collect()
    }

    /// The next buffer recorded, waiting for it (bounded).
    pub fn next_buffer(&self) -> Frame {
        self.rec().next_buffer()
    }

    /// Stats of `pf`.
    pub fn stats(&self) -> gst::Structure {
        self.pf().property::<gst::Structure>("stats")
    }

    /// Structures of every element message, in posting order.
    pub fn messages(&self) -> Vec<gst::Structure> {
        self.log.lock().unwrap().messages.clone()
    }

    /// The filter's per-frame messages, in posting order.
    pub fn frame_messages(&self) -> Vec<gst::Structure> {
        self.messages()
            .into_iter()
            .filter(|s| s.name() == "parallelfilter-analysis")
            .collect()
    }

    /// Warnings posted since the last call.
    pub fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut self.log.lock().unwrap().warnings)
    }

    /// QoS messages as posted: source, processed and dropped buffers.
    pub fn qos_messages(&self) -> Vec<(String, u64, u64)> {
        self.log.lock().unwrap().qos.clone()
    }

    /// Sources of every error message, as posted.
    pub fn error_sources(&self) -> Vec<String> {
        self.log.lock().unwrap().error_sources.clone()
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

pub fn assert_increasing(pts: &[gst::ClockTime]) {
    for w in pts.windows(2) {
        assert!(w[0] < w[1], "out of order: {} then {}", w[0], w[1]);
    }
}
