// SPDX-License-Identifier: MPL-2.0
//! GObject and element dispatch of `parallelfilter`: the pads, properties,
//! signal and state changes, each handed to the module that does the job.
//! The data path lives in [`crate::engine`]; `docs/ARCHITECTURE.md` maps
//! the modules.
//!
//! Lock order: a pad's stream lock, then `task_lock`, then `state`, then
//! `settings`, then the engine's own lock. Nothing is pushed, posted or
//! waited on with `state` or `settings` held.

mod context;
mod disposition;
mod negotiation;
mod qos;
mod queries;
mod report;
mod settings;
mod setup;
mod sink;
mod src_task;
mod state;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::processors::custom::PROCESS_FRAME_SIGNAL;
use super::processors::remote;
use crate::engine::lock;
use qos::Qos;
use settings::Settings;
use state::State;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "parallelfilter",
        gst::DebugColorFlags::empty(),
        Some("Parallel in-order frame processing"),
    )
});

pub struct ParallelFilter {
    sinkpad: gst::Pad,
    srcpad: gst::Pad,
    settings: Mutex<Settings>,
    state: Mutex<State>,
    /// Serializes the task pausing itself with restarts (RECONFIGURE,
    /// FLUSH_STOP) and with the src pad's deactivation.
    task_lock: Mutex<()>,
    /// Downstream asked to reconfigure a processor that changes caps: the
    /// next frame renegotiates first. An atomic, so the chain function does
    /// not lock the state twice per buffer to read it.
    renegotiate: AtomicBool,
    /// Downstream's QoS events, shared with the engine's late check.
    qos: Arc<Qos>,
}

#[glib::object_subclass]
impl ObjectSubclass for ParallelFilter {
    const NAME: &'static str = "GstParallelFilter";
    type Type = super::ParallelFilter;
    type ParentType = gst::Element;

    fn with_class(klass: &Self::Class) -> Self {
        let templ = klass.pad_template("sink").expect("sink template");
        let sinkpad = gst::Pad::builder_from_template(&templ)
            .chain_function(|pad, parent, buffer| {
                ParallelFilter::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |imp| imp.sink_chain(pad, buffer),
                )
            })
            .event_function(|pad, parent, event| {
                ParallelFilter::catch_panic_pad_function(
                    parent,
                    || false,
                    |imp| imp.sink_event(pad, event),
                )
            })
            .query_function(|pad, parent, query| {
                ParallelFilter::catch_panic_pad_function(
                    parent,
                    || false,
                    |imp| imp.sink_query(pad, query),
                )
            })
            .activatemode_function(|pad, parent, mode, active| {
                ParallelFilter::catch_panic_pad_function(
                    parent,
                    || Err(gst::loggable_error!(CAT, "Panic activating sink pad")),
                    |imp| imp.sink_activatemode(pad, mode, active),
                )
            })
            .flags(gst::PadFlags::PROXY_CAPS | gst::PadFlags::PROXY_ALLOCATION)
            .build();

        let templ = klass.pad_template("src").expect("src template");
        let srcpad = gst::Pad::builder_from_template(&templ)
            .event_function(|pad, parent, event| {
                ParallelFilter::catch_panic_pad_function(
                    parent,
                    || false,
                    |imp| imp.src_event(pad, event),
                )
            })
            .query_function(|pad, parent, query| {
                ParallelFilter::catch_panic_pad_function(
                    parent,
                    || false,
                    |imp| imp.src_query(pad, query),
                )
            })
            .activatemode_function(|pad, parent, mode, active| {
                ParallelFilter::catch_panic_pad_function(
                    parent,
                    || Err(gst::loggable_error!(CAT, "Panic activating src pad")),
                    |imp| imp.src_activatemode(pad, mode, active),
                )
            })
            .flags(gst::PadFlags::PROXY_CAPS | gst::PadFlags::PROXY_ALLOCATION)
            .build();

        ParallelFilter {
            sinkpad,
            srcpad,
            settings: Mutex::new(Settings::default()),
            state: Mutex::new(State::default()),
            task_lock: Mutex::new(()),
            renegotiate: AtomicBool::new(false),
            qos: Arc::new(Qos::default()),
        }
    }
}

impl ObjectImpl for ParallelFilter {
    fn signals() -> &'static [glib::subclass::Signal] {
        static SIGNALS: LazyLock<Vec<glib::subclass::Signal>> = LazyLock::new(|| {
            // process-frame(buffer, seq) -> gboolean: with processor=custom
            // and no Rust processor, processes each frame. Emitted on a
            // worker thread, for up to `workers` frames at once, so handlers
            // run concurrently on several threads and must be thread-safe.
            // The buffer is writable (pixels and metas); returning FALSE is
            // a processing error, handled by on-error. With several
            // handlers, the first FALSE stops the emission. Its caps are the
            // sink pad's when it entered (the signal passes the buffer and seq only, see docs/embedding.md).
            vec![
                glib::subclass::Signal::builder(PROCESS_FRAME_SIGNAL)
                    .param_types([gst::Buffer::static_type(), u64::static_type()])
                    .return_type::<bool>()
                    .accumulator(|_hint, _acc, value| {
                        if value.get::<bool>().unwrap_or(false) {
                            std::ops::ControlFlow::Continue(value.clone())
                        } else {
                            std::ops::ControlFlow::Break(value.clone())
                        }
                    })
                    .build(),
            ]
        });
        SIGNALS.as_ref()
    }

    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(settings::properties);
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let name = pspec.name();
        let latency_before = self.latency();
        let (old, config) = {
            let mut settings = lock(&self.settings);
            let old = settings.get(name);
            if let Err(hint) = settings.set(name, value) {
                // A hint in the log (not a g_warning, which test harnesses
                // make fatal); start fails for good.
                gst::warning!(CAT, imp = self, "{hint}");
            }
            self.qos.set_enabled(settings.qos);
            (old, settings.engine_config())
        };
        match name {
            // Credentials: the field names only.
            settings::PROP_EXTRA_HEADERS => gst::info!(
                CAT,
                imp = self,
                "Changing {name} from {} to {}",
                remote::describe_headers(&old),
                remote::describe_headers(value)
            ),
            // User info in a URL is refused at start, and not logged.
            settings::PROP_SERVERS => {
                let show = |v: &glib::Value| {
                    v.get::<Option<String>>()
                        .ok()
                        .flatten()
                        .map(|s| remote::redact_servers(&s))
                };
                gst::info!(
                    CAT,
                    imp = self,
                    "Changing {name} from {:?} to {:?}",
                    show(&old),
                    show(value)
                )
            }
            _ => gst::info!(CAT, imp = self, "Changing {name} from {old:?} to {value:?}"),
        }
        if let Some(engine) = self.engine() {
            engine.configure(config);
            if settings::takes_effect_at_start(pspec) {
                gst::warning!(
                    CAT,
                    imp = self,
                    "{name} takes effect at the next start (READY to PAUSED)"
                );
            }
        }
        if self.latency() != latency_before {
            let _ = self
                .obj()
                .post_message(gst::message::Latency::builder().src(&*self.obj()).build());
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        match pspec.name() {
            settings::PROP_STATS => self.stats_structure().to_value(),
            name => lock(&self.settings).get(name),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.add_pad(&self.sinkpad).expect("adding sink pad");
        obj.add_pad(&self.srcpad).expect("adding src pad");
    }
}

impl GstObjectImpl for ParallelFilter {}

impl ElementImpl for ParallelFilter {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static ELEMENT_METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Parallel Filter",
                "Filter/Video",
                "Processes video frames concurrently in a bounded worker pool and pushes \
                 them out in input order",
                "gst-plugin-parallel developers",
            )
        });
        Some(&*ELEMENT_METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            // System-memory raw video in any format: passthrough and delay
            // never look at the pixels.
            let caps = gst::Caps::builder("video/x-raw").build();
            vec![
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &caps,
                )
                .expect("sink template"),
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &caps,
                )
                .expect("src template"),
            ]
        });
        PAD_TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        gst::debug!(CAT, imp = self, "Changing state {transition:?}");
        match transition {
            gst::StateChange::ReadyToPaused => {
                if let Err(err) = self.start() {
                    self.post_error_message(err);
                    return Err(gst::StateChangeError);
                }
            }
            gst::StateChange::PausedToReady => {
                // Unblock chain and the task before the pads deactivate.
                if let Some(engine) = self.engine() {
                    engine.flush_start();
                }
            }
            _ => {}
        }
        let ret = self.parent_change_state(transition);
        match (transition, &ret) {
            (gst::StateChange::PausedToReady, _) | (gst::StateChange::ReadyToPaused, Err(_)) => {
                self.stop()
            }
            _ => {}
        }
        ret
    }
}
