// SPDX-License-Identifier: MPL-2.0
//! What leaves the engine, in release order.

use std::time::{Duration, Instant};

use super::work::ProcessError;

/// A frame leaving the engine, in release order.
#[derive(Debug)]
pub struct Processed<T, M> {
    pub seq: u64,
    pub tag: M,
    pub result: Result<T, ProcessError>,
    pub worker: usize,
    pub processing_time: Duration,
    /// When the frame entered; the consumer reports the latency when the
    /// frame leaves (see [`Engine::frame_left`](super::Engine::frame_left)).
    pub admitted: Instant,
    /// Its size as submitted, for [`Engine::frame_left`](super::Engine::frame_left).
    pub bytes: u64,
}

/// The next thing for the consumer: a frame, or an item with its position.
#[derive(Debug)]
pub enum Output<T, M, E> {
    Frame(Processed<T, M>),
    Item { pos: u64, item: E },
}
