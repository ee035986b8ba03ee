// SPDX-License-Identifier: MPL-2.0
//! Timeouts and `on-error` (docs/semantics.md, Rules: Errors and timeouts;
//! Timeouts and GAP events): `drop` pushes a GAP, `pass` the original,
//! `fail` posts an error naming the frame and stops; stats stay balanced;
//! passed frames leave writable.

mod common;

use std::sync::mpsc;

use common::{
    FRAME, Fixture, Item, MS, Pipeline, buffer, error_message, frame, frames, push_ok, start, stat,
    stats,
};
use gst::prelude::*;

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

/// Five frames at 10 fps, each taking 10 s with a 20 ms timeout.
fn timeout_pipeline(on_error: &str) -> Pipeline {
    Pipeline::launch(&format!(
        "videotestsrc num-buffers=5 ! video/x-raw,width=64,height=48,framerate=10/1 ! \
         parallelfilter name=pf processor=delay delay-min=10000000000 delay-max=10000000000 \
         timeout=20000000 on-error={on_error} workers=2 ! fakesink name=sink"
    ))
}

#[test]
fn timeout_drop_pushes_gaps() {
    let _wd = common::begin("timeout_drop_pushes_gaps", 60);
    let Fixture { mut h, e, rec, .. } = timing_out("drop");
    for i in 0..8 {
        push_ok(&mut h, frame(i));
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let mut expected: Vec<Item<_>> = (0..8)
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
fn timeout_with_on_error_drop_pushes_gaps() {
    let _wd = common::begin("timeout_drop", 60);
    let p = timeout_pipeline("drop");
    p.run_to_eos();
    p.stop();
    let recs = p.records();
    assert!(p.buffer_pts().is_empty());
    let gaps: Vec<_> = recs
        .iter()
        .filter_map(|r| match r {
            Item::Gap { pts, .. } => Some(pts.mseconds()),
            _ => None,
        })
        .collect();
    assert_eq!(gaps, vec![0, 100, 200, 300, 400]);
    let s = p.stats();
    assert_eq!(stat(&s, "timeouts"), 5);
    assert_eq!(stat(&s, "errors"), 5);
    assert_eq!(stat(&s, "dropped"), 5);
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
fn timeout_with_on_error_pass_pushes_originals() {
    let _wd = common::begin("timeout_pass", 60);
    let p = timeout_pipeline("pass");
    p.run_to_eos();
    p.stop();
    let pts: Vec<_> = p.buffer_pts().iter().map(|t| t.mseconds()).collect();
    assert_eq!(pts, vec![0, 100, 200, 300, 400]);
    let s = p.stats();
    assert_eq!(stat(&s, "timeouts"), 5);
    assert_eq!(stat(&s, "frames-out"), 5);
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

#[test]
fn timeout_with_on_error_fail_posts_an_error_naming_the_frame() {
    let _wd = common::begin("timeout_fail", 60);
    let p = timeout_pipeline("fail");
    p.play();
    let err = p.wait_end().expect("an error");
    p.stop();
    assert_eq!(err.src.as_deref(), Some("pf"));
    assert!(err.text().contains("#0"), "{}", err.text());
    assert!(err.text().contains("timed out"), "{}", err.text());
    assert!(p.buffer_pts().is_empty());
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
