// SPDX-License-Identifier: MPL-2.0
//! A run's set-up and tear-down: the processor built from the settings at
//! start (READY to PAUSED), and what a stop keeps.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use gst::prelude::*;
use gst::subclass::prelude::*;

use super::super::frame::SharedProcessor;
use super::super::processors::analyze::Analyze;
use super::super::processors::custom::{
    self, CustomProcessor, PROCESS_FRAME_SIGNAL, SignalProcessor,
};
use super::super::processors::filter::{self, Filter};
use super::super::processors::remote;
use super::super::processors::{Delay, Passthrough};
use super::super::{ProcessorKind, STATS_NAME};
use super::settings::Settings;
use super::state::Tag;
use super::{CAT, ParallelFilter, context};
use crate::engine::lock;

impl ParallelFilter {
    pub(super) fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings_for_start();
        self.renegotiate.store(false, Ordering::Release);
        let handle = crate::runtime::handle()
            .map_err(|e| gst::error_msg!(gst::LibraryError::Init, ["{e}"]))?;
        let processor = match settings.processor() {
            Ok(Some(processor)) => processor,
            // processor=custom without a Rust processor: the signal.
            Ok(None) => self.signal_processor()?,
            Err(err) => return Err(self.missing_plugins(&settings).unwrap_or(err)),
        };
        self.warn_unused(&settings, processor.batches());
        processor.attach(self.obj().upcast_ref());
        let config = settings.engine_config();
        let context = settings.context.as_deref();
        let engine = context::engine(context, config.clone(), processor.clone(), handle);
        self.qos.reset();
        let qos = self.qos.clone();
        // A frame the processor gives other caps cannot leave unprocessed.
        engine.set_late_check(move |tag: &Tag| tag.passable && qos.is_late(tag.running_time));
        let element = self.obj().downgrade();
        engine.on_workers_changed(move |change| {
            if let Some(element) = element.upgrade() {
                gst::info!(
                    CAT,
                    obj = element,
                    "Workers {} -> {} ({:?}: {:.1} frames/s, {:?} a frame)",
                    change.from,
                    change.to,
                    change.reason,
                    change.throughput,
                    change.rtt
                );
            }
        });
        // The pool's count: a context's may differ from this element's.
        let workers = engine.stats().workers as usize;
        gst::info!(
            CAT,
            imp = self,
            "Starting with processor {}, {workers} workers{}, at most {} frames{}",
            settings.processor.nick(),
            if config.automatic() {
                " (automatic)"
            } else {
                ""
            },
            config.frame_limit(workers),
            context.map_or(String::new(), |name| format!(
                ", in context {name:?} with {} members",
                context::members(name)
            ))
        );
        let mut state = lock(&self.state);
        state.reset();
        state.engine = Some(Arc::new(engine));
        state.hooks = Some(processor);
        state.processor = settings.processor;
        state.delay_bound = settings.delay_bound();
        Ok(())
    }

    /// The settings for this run: a `process-frame` handler connected while
    /// `processor` was never chosen selects `custom`.
    pub(super) fn settings_for_start(&self) -> Settings {
        let mut settings = lock(&self.settings);
        if !settings.processor_chosen
            && settings.processor != ProcessorKind::Custom
            && custom::has_signal_handler(&self.obj())
        {
            gst::info!(
                CAT,
                imp = self,
                "A {PROCESS_FRAME_SIGNAL} handler is connected: processor=custom"
            );
            settings.processor = ProcessorKind::Custom;
        }
        settings.clone()
    }

    /// Settings the chosen processor leaves unused, where a user would
    /// expect them to act: a warning on the bus, not silence.
    /// `batches`: the processor has a batch form.
    pub(super) fn warn_unused(&self, settings: &Settings, batches: bool) {
        let nick = settings.processor.nick();
        if settings.batch_size > 1 && !batches {
            gst::element_imp_warning!(
                self,
                gst::LibraryError::Settings,
                (
                    "batch-size={} has no effect: processor={nick} takes one frame at a time",
                    settings.batch_size
                ),
                ["only processors with a batch form (Rust batch processors) take batches"]
            );
        }
        if let Some(description) = settings
            .filter
            .as_deref()
            .filter(|_| settings.processor != ProcessorKind::Filter)
        {
            gst::element_imp_warning!(
                self,
                gst::LibraryError::Settings,
                ("filter '{description}' is not used: processor={nick} was set after it"),
                ["the property set last wins; set filter last (or processor=filter) to run it"]
            );
        }
        if let Some(file) = settings.tls_ca_file.as_deref().filter(|_| {
            settings.processor != ProcessorKind::Remote
                || !remote::wants_tls(settings.servers.as_deref())
        }) {
            gst::element_imp_warning!(
                self,
                gst::LibraryError::Settings,
                ("tls-ca-file '{file}' is not used: no server is https"),
                ["only https:// and grpcs:// servers of processor=remote use it"]
            );
        }
        if settings.processor != ProcessorKind::Custom && custom::has_signal_handler(&self.obj()) {
            gst::element_imp_warning!(
                self,
                gst::LibraryError::Settings,
                ("{PROCESS_FRAME_SIGNAL} handlers are connected but not called: processor={nick}"),
                ["set processor=custom, or leave processor unset, to call them"]
            );
        }
    }

    /// For a `filter` naming elements that are not installed: a
    /// missing-plugin message for each (so applications can offer to
    /// install them) and the error to post.
    pub(super) fn missing_plugins(&self, settings: &Settings) -> Option<gst::ErrorMessage> {
        if settings.processor != ProcessorKind::Filter {
            return None;
        }
        let description = settings.filter.as_deref()?;
        let missing = filter::missing_elements(description);
        if missing.is_empty() {
            return None;
        }
        let obj = self.obj();
        for name in &missing {
            let msg = gst_pbutils::MissingPluginMessage::builder_for_element(name)
                .src(&*obj)
                .build();
            let _ = obj.post_message(msg);
        }
        let names = missing.join(", ");
        let quoted = missing
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(", ");
        Some(gst::error_msg!(
            gst::CoreError::MissingPlugin,
            ("filter '{description}' needs {names}, which is not installed"),
            ["no element {quoted}: install the plugin that provides it"]
        ))
    }

    /// `processor=custom` without a Rust processor: the `process-frame`
    /// handlers, if any is connected.
    pub(super) fn signal_processor(&self) -> Result<SharedProcessor, gst::ErrorMessage> {
        let obj = self.obj();
        if !custom::has_signal_handler(&obj) {
            return Err(gst::error_msg!(
                gst::LibraryError::Settings,
                ("processor=custom but no processor was set"),
                ["set one with the Rust API (ParallelFilter::set_processor, \
                     set_async_processor, set_custom_processor) or connect a \
                     {PROCESS_FRAME_SIGNAL} signal handler before starting"]
            ));
        }
        gst::debug!(
            CAT,
            imp = self,
            "The {PROCESS_FRAME_SIGNAL} handlers are the processor"
        );
        Ok(Arc::new(SignalProcessor::new(&obj)))
    }

    /// Stores the application's processor for the next start.
    pub(crate) fn set_custom(&self, processor: Option<CustomProcessor>) {
        gst::info!(CAT, imp = self, "Setting custom processor {processor:?}");
        lock(&self.settings).custom = processor;
        if self.engine().is_some() {
            gst::warning!(
                CAT,
                imp = self,
                "The custom processor takes effect at the next start (READY to PAUSED)"
            );
        }
    }

    pub(super) fn stop(&self) {
        let mut state = lock(&self.state);
        if let Some(engine) = state.engine.take() {
            state.last_stats = Some(engine.stats());
            if let Some(hooks) = &state.hooks {
                let mut s = gst::Structure::new_empty(STATS_NAME);
                hooks.stats(&mut s);
                state.last_processor_stats = Some(s);
            }
            engine.flush_start();
        }
        state.reset();
        gst::info!(CAT, imp = self, "Stopped");
    }
}

impl Settings {
    /// The processor for a run; `None` for processor=custom without a Rust
    /// processor, where the `process-frame` signal is the processor.
    pub(super) fn processor(&self) -> Result<Option<SharedProcessor>, gst::ErrorMessage> {
        Ok(match self.processor {
            ProcessorKind::Passthrough => Some(Arc::new(Passthrough)),
            ProcessorKind::Delay => Some(Arc::new(Delay {
                min: Duration::from_nanos(self.delay_min),
                max: Duration::from_nanos(self.delay_max),
                seed: self.seed,
            })),
            ProcessorKind::Analyze | ProcessorKind::Overlay => Some(Arc::new(Analyze::new(
                self.processor,
                self.scene_threshold.clone(),
            ))),
            ProcessorKind::Filter => {
                let Some(description) = self.filter.as_deref() else {
                    return Err(gst::error_msg!(
                        gst::CoreError::Failed,
                        ("processor=filter needs the filter property (a gst-launch description)")
                    ));
                };
                // One instance per worker up front; more when workers grows.
                let initial = self.engine_config().initial_workers();
                Some(Arc::new(Filter::new(description, initial)?))
            }
            // Without a Rust processor the element makes the signal one.
            ProcessorKind::Custom => self.custom.as_ref().map(CustomProcessor::shared),
            ProcessorKind::Remote => {
                let rt = crate::runtime::handle()
                    .map_err(|e| gst::error_msg!(gst::LibraryError::Init, ["{e}"]))?;
                let config = remote::Config {
                    servers: self.servers.clone().unwrap_or_default(),
                    model: self.model.clone().unwrap_or_default(),
                    payload: self.payload,
                    retries: self.retries,
                    // The element's upper bound on requests at once.
                    per_server: match self.max_requests_per_server {
                        0 => remote::PerServer::Adaptive {
                            max: self.worker_bound(),
                        },
                        n => remote::PerServer::Fixed(n as usize),
                    },
                    timeout: self.live_timeout.clone(),
                    scene_threshold: self.scene_threshold.clone(),
                    extra_headers: remote::ExtraHeaders::new(self.extra_headers.0.as_deref())
                        .map_err(|e| {
                            gst::error_msg!(gst::ResourceError::Settings, ("remote: {e}"))
                        })?,
                    tls_ca_file: self.tls_ca_file.as_ref().map(Into::into),
                    batch_size: self.batch_size.max(1) as usize,
                };
                let context = self.context.as_deref();
                Some(Arc::new(remote::Remote::new(config, context, rt)?))
            }
        })
    }
}
