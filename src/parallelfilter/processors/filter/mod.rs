// SPDX-License-Identifier: MPL-2.0
//! The `filter` processor: N instances of a gst-launch description, one per
//! busy worker, each a private pipeline driven synchronously.
//!
//! An instance is the parsed chain in its own clockless pipeline, with two
//! unparented pads of ours linked to its free pads: `feed` pushes one
//! buffer in, `collect` catches what comes out. The push returns once the
//! chain has handled the buffer, so "one in, one out" is checked without a
//! wait: no output is an error (the chain dropped it), more than one is an
//! error too (the extras are discarded). A chain that hands buffers to
//! another thread (`queue`) is therefore not supported.
//!
//! Each instance keeps its own caps and segment and catches up with the
//! frame's before processing it, so renegotiation reaches every instance
//! in stream order. Queries the chain asks while the element negotiates are
//! answered by the element's peers, so the chain's output fits downstream;
//! while a frame is processed, the chain's downstream accepts only the src
//! caps that frame leaves with, so a downstream change (RECONFIGURE) makes
//! each instance renegotiate exactly where the new caps start in the
//! stream. An error an element of the chain posts fails the frame, even if
//! the push returned OK.
//!
//! Here: the pool of instances and the processor hooks (negotiation
//! through an instance); `chain` parses the description, `instance` runs
//! one copy of it.

use crate::engine::lock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use crate::engine::{Processor, Work, WorkCtx};
use crate::parallelfilter::frame::{Frame, FrameProcessor};

mod chain;
mod instance;

pub(crate) use chain::{check, missing_elements};
use instance::{Instance, Shared};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "parallelfilter-filter",
        gst::DebugColorFlags::empty(),
        Some("parallelfilter: instances of a wrapped filter chain"),
    )
});

/// Idle instances, created at start and lazily when more workers are busy
/// than instances exist; one instance serves one frame at a time.
struct Pool {
    description: String,
    shared: Arc<Shared>,
    idle: Mutex<Vec<Instance>>,
    next_id: AtomicU64,
    /// Bumped by a flush: instances catch up before their next frame.
    generation: AtomicU64,
    latency: AtomicU64,
}

impl Pool {
    fn take(&self) -> Result<Instance, String> {
        if let Some(instance) = lock(&self.idle).pop() {
            return Ok(instance);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        Instance::new(id, &self.description, &self.shared)
    }

    fn give_back(&self, instance: Instance) {
        lock(&self.idle).push(instance);
    }
}

/// Instances created at start; more are created as workers need them.
const MAX_EAGER: usize = 64;

/// The `filter` processor.
pub struct Filter {
    pool: Arc<Pool>,
}

impl Filter {
    /// Creates `instances` instances of `description`; an error says what
    /// is wrong with it.
    pub fn new(description: &str, instances: usize) -> Result<Self, gst::ErrorMessage> {
        let pool = Arc::new(Pool {
            description: description.to_string(),
            shared: Arc::new(Shared::default()),
            idle: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            latency: AtomicU64::new(0),
        });
        // At most MAX_EAGER up front: beyond that they come when needed.
        let eager = instances.clamp(1, MAX_EAGER);
        let mut created = Vec::with_capacity(eager);
        for _ in 0..eager {
            let instance = pool
                .take()
                .map_err(|e| gst::error_msg!(gst::CoreError::Failed, ("Invalid filter: {e}")))?;
            created.push(instance);
        }
        let latency = created
            .first()
            .map_or(gst::ClockTime::ZERO, Instance::latency);
        pool.latency.store(latency.nseconds(), Ordering::Relaxed);
        *lock(&pool.idle) = created;
        Ok(Filter { pool })
    }

    /// Runs `f` on an idle instance, returned to the pool afterwards.
    fn with_instance<R>(&self, f: impl FnOnce(&mut Instance) -> R) -> Result<R, String> {
        let mut instance = self.pool.take()?;
        let r = f(&mut instance);
        self.pool.give_back(instance);
        Ok(r)
    }
}

impl Processor<Frame> for Filter {
    fn process(&self, frame: Frame, ctx: WorkCtx) -> Work<Frame> {
        let pool = self.pool.clone();
        Work::Blocking(Box::new(move || {
            let mut instance = pool.take()?;
            let generation = pool.generation.load(Ordering::SeqCst);
            let result = instance.process(frame, generation);
            instance.clear_target();
            match result {
                Ok(frame) => {
                    pool.give_back(instance);
                    Ok(frame)
                }
                Err(err) => {
                    // Its state is unknown after an error: a new one takes
                    // its place when needed. Dropping it shuts it down.
                    gst::debug!(CAT, "Frame #{}: {err}; dropping instance", ctx.seq);
                    drop(instance);
                    Err(err)
                }
            }
        }))
    }
}

impl FrameProcessor for Filter {
    fn caps(&self) -> Option<gst::Caps> {
        // Frames need caps before the chain can take them.
        Some(gst::Caps::builder("video/x-raw").build())
    }

    fn attach(&self, element: &gst::Element) {
        self.pool.shared.attach(element);
    }

    fn query_caps(
        &self,
        direction: gst::PadDirection,
        filter: Option<&gst::Caps>,
    ) -> Option<gst::Caps> {
        match self.with_instance(|i| i.query_caps(direction, filter)) {
            Ok(caps) => caps,
            Err(err) => {
                gst::warning!(CAT, "Cannot answer a caps query: {err}");
                Some(gst::Caps::new_empty())
            }
        }
    }

    fn set_caps(&self, caps: &gst::Caps) -> Result<gst::Caps, gst::ErrorMessage> {
        let negotiate = |i: &mut Instance| -> Result<(gst::Caps, gst::ClockTime), String> {
            let output = match i.set_caps(caps)? {
                Some(output) => output,
                // The chain holds its caps back until data flows, or did not
                // announce them again because its input caps are unchanged.
                None => i.choose_output(caps)?,
            };
            Ok((output, i.latency()))
        };
        let (output, latency) = self.with_instance(negotiate).and_then(|r| r).map_err(|e| {
            gst::error_msg!(
                gst::CoreError::Negotiation,
                ("Filter '{}' cannot negotiate: {e}", self.pool.description),
                ["input caps {caps}"]
            )
        })?;
        gst::debug!(CAT, "Input caps {caps} give output caps {output}");
        self.pool
            .latency
            .store(latency.nseconds(), Ordering::Relaxed);
        Ok(output)
    }

    fn extra_latency(&self) -> gst::ClockTime {
        gst::ClockTime::from_nseconds(self.pool.latency.load(Ordering::Relaxed))
    }

    fn flush(&self) {
        self.pool.generation.fetch_add(1, Ordering::SeqCst);
    }
}
