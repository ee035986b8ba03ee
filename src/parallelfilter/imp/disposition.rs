// SPDX-License-Identifier: MPL-2.0
//! What becomes of a processed frame, per `on-error`: pure decisions, so
//! every case is unit-tested without a pipeline.

use gst::prelude::*;

use super::super::OnError;
use crate::engine::ProcessError;

/// Which frame failed, for the text users see.
#[derive(Debug, Clone, Copy)]
pub(super) struct FrameId {
    pub(super) seq: u64,
    pub(super) pts: Option<gst::ClockTime>,
    pub(super) worker: usize,
}

/// What the src task does with a processed frame; `B` is the buffer.
#[derive(Debug, PartialEq)]
pub(super) enum Disposition<B> {
    /// Processed: push it.
    Push(B),
    /// Failed with on-error=pass: push the input frame, warn.
    PassOriginal { original: B, warning: String },
    /// Failed with on-error=drop, or pass without an input frame kept: a
    /// GAP event in its place, warn.
    Drop { warning: String },
    /// Failed with on-error=fail: post the error and stop.
    Fail { text: String, debug: String },
}

/// Decides for one frame. `original` is the input frame when on-error=pass
/// kept it (not when the processor changes the caps).
pub(super) fn dispose<B>(
    result: Result<B, ProcessError>,
    on_error: OnError,
    original: Option<B>,
    frame: FrameId,
) -> Disposition<B> {
    let err = match result {
        Ok(buffer) => return Disposition::Push(buffer),
        Err(err) => err,
    };
    let text = failure_text(&err, frame);
    match (on_error, original) {
        (OnError::Fail, _) => Disposition::Fail {
            text,
            debug: format!("worker {}: {err}", frame.worker),
        },
        (OnError::Pass, Some(original)) => Disposition::PassOriginal {
            original,
            warning: format!("{text}; passing it unprocessed"),
        },
        (OnError::Drop | OnError::Pass, _) => Disposition::Drop {
            warning: format!("{text}; dropping it"),
        },
    }
}

/// The message text of a failure: the frame, the cause and the worker
/// (many applications show only this text, not the debug text).
pub(super) fn failure_text(err: &ProcessError, frame: FrameId) -> String {
    format!(
        "Processing frame #{} (pts {}) failed: {} (worker {})",
        frame.seq,
        frame.pts.display(),
        cause(err),
        frame.worker
    )
}

/// Why a frame failed, in the words a user sees.
fn cause(err: &ProcessError) -> String {
    match err {
        ProcessError::Failed(msg) => msg.clone(),
        ProcessError::Panicked(msg) => format!("the processor panicked: {msg}"),
        ProcessError::TimedOut(d) => format!("timed out after {d:?} (the timeout property)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const FRAME: FrameId = FrameId {
        seq: 12,
        pts: Some(gst::ClockTime::from_mseconds(400)),
        worker: 3,
    };

    fn failed() -> Result<u32, ProcessError> {
        Err(ProcessError::Failed("server refused the connection".into()))
    }

    #[test]
    fn a_processed_frame_is_pushed_whatever_on_error_says() {
        for on_error in [OnError::Fail, OnError::Drop, OnError::Pass] {
            assert_eq!(
                dispose(Ok(1), on_error, Some(0), FRAME),
                Disposition::Push(1)
            );
        }
    }

    #[test]
    fn fail_names_frame_cause_and_worker() {
        assert_eq!(
            dispose(failed(), OnError::Fail, None, FRAME),
            Disposition::Fail {
                text: "Processing frame #12 (pts 0:00:00.400000000) failed: server refused \
                       the connection (worker 3)"
                    .into(),
                debug: "worker 3: processing failed: server refused the connection".into(),
            }
        );
    }

    #[test]
    fn pass_pushes_the_original_or_drops_without_one() {
        let Disposition::PassOriginal { original, warning } =
            dispose(failed(), OnError::Pass, Some(7), FRAME)
        else {
            panic!("not passed");
        };
        assert_eq!(original, 7);
        assert!(
            warning.ends_with("(worker 3); passing it unprocessed"),
            "{warning}"
        );
        assert!(matches!(
            dispose(failed(), OnError::Pass, None, FRAME),
            Disposition::Drop { .. }
        ));
    }

    #[test]
    fn drop_ignores_the_original() {
        let Disposition::Drop { warning } = dispose(failed(), OnError::Drop, Some(7), FRAME) else {
            panic!("not dropped");
        };
        assert!(warning.starts_with("Processing frame #12 "), "{warning}");
        assert!(warning.ends_with("; dropping it"), "{warning}");
    }

    #[test]
    fn panics_and_timeouts_say_so() {
        let text = failure_text(&ProcessError::Panicked("index out of bounds".into()), FRAME);
        assert!(
            text.contains("failed: the processor panicked: index out of bounds"),
            "{text}"
        );
        let text = failure_text(&ProcessError::TimedOut(Duration::from_millis(40)), FRAME);
        assert!(text.contains("failed: timed out after 40ms"), "{text}");
        let unknown = FrameId { pts: None, ..FRAME };
        let text = failure_text(&ProcessError::Failed("x".into()), unknown);
        assert!(
            text.starts_with("Processing frame #12 (pts --:--:--.---------) failed"),
            "{text}"
        );
    }
}
