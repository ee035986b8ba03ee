// SPDX-License-Identifier: MPL-2.0
//! `context`: elements of one process sharing a worker pool
//! (docs/semantics.md, Sharing a pool), each in its own pipeline or
//! branch, keeping its own order, events, state and stats.

mod common;

use common::pipeline::{Pipeline, assert_increasing};
use common::stat;
use gst::prelude::*;

/// `n` frames of 64x48 through `delay` (1-3 ms) in `context`.
fn member(context: &str, n: u32, extra: &str) -> Pipeline {
    Pipeline::launch(&format!(
        "videotestsrc num-buffers={n} ! video/x-raw,width=64,height=48 ! \
         parallelfilter name=pf context={context} processor=delay delay-min=1000000 \
         delay-max=3000000 {extra} ! fakesink name=sink"
    ))
}

fn assert_all_in_order(p: &Pipeline, n: usize) {
    let pts = p.buffer_pts();
    assert_eq!(pts.len(), n);
    assert_increasing(&pts);
}

#[test]
fn members_share_the_largest_pool_and_keep_their_own_order_and_stats() {
    let _wd = common::begin("context_share", 120);
    let a = member("ctx-share", 200, "workers=4");
    let b = member("ctx-share", 120, "workers=2");
    a.play();
    b.play();
    assert!(a.wait_end().is_none());
    assert!(b.wait_end().is_none());
    assert_all_in_order(&a, 200);
    assert_all_in_order(&b, 120);
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!(stat(&sa, "frames-out"), 200, "{sa}");
    assert_eq!(stat(&sb, "frames-out"), 120, "{sb}");
    // One pool, of the larger member's size.
    assert_eq!(stat(&sa, "workers"), 4, "{sa}");
    assert_eq!(stat(&sb, "workers"), 4, "{sb}");
    a.stop();
    b.stop();
}

#[test]
fn members_with_different_caps() {
    let _wd = common::begin("context_caps", 120);
    let a = member("ctx-caps", 60, "workers=2");
    let b = Pipeline::launch(
        "videotestsrc num-buffers=80 ! video/x-raw,format=GRAY8,width=32,height=16 ! \
         parallelfilter name=pf context=ctx-caps processor=analyze workers=3 ! fakesink name=sink",
    );
    a.play();
    b.play();
    assert!(a.wait_end().is_none());
    assert!(b.wait_end().is_none());
    assert_all_in_order(&a, 60);
    assert_all_in_order(&b, 80);
    let caps = b.rec().caps();
    let s = caps.last().unwrap().structure(0).unwrap();
    assert_eq!(s.get::<&str>("format").unwrap(), "GRAY8");
    a.stop();
    b.stop();
}

#[test]
fn a_member_seeking_leaves_the_others_alone() {
    let _wd = common::begin("context_seek", 120);
    let a = member("ctx-seek", 300, "workers=4");
    let b = member("ctx-seek", 100_000, "workers=4");
    b.play();
    b.next_buffer();
    a.play();
    for _ in 0..5 {
        b.pipeline
            .seek_simple(
                gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE,
                gst::ClockTime::ZERO,
            )
            .unwrap();
        b.next_buffer();
    }
    assert!(a.wait_end().is_none());
    assert_all_in_order(&a, 300);
    a.stop();
    b.stop();
}

#[test]
fn a_member_leaving_and_joining_leaves_the_others_alone() {
    let _wd = common::begin("context_leave_join", 120);
    let a = member("ctx-leave", 2000, "workers=2");
    let b = member("ctx-leave", 100_000, "workers=8");
    a.play();
    for _ in 0..4 {
        b.play();
        b.next_buffer();
        // B's stop takes its frames in flight with it; A goes on.
        b.stop();
        b.rec().clear();
    }
    assert!(a.wait_end().is_none());
    assert_all_in_order(&a, 2000);
    // With B gone, the pool is A's own size.
    assert_eq!(stat(&a.stats(), "workers"), 2);
    a.stop();
}

#[test]
fn a_quiet_live_member_is_not_starved_by_a_busy_one() {
    let _wd = common::begin("context_quiet", 120);
    // The busy member offers frames as fast as the pool takes them, for
    // ever: a starved quiet member would never reach EOS.
    let busy = Pipeline::launch(
        "videotestsrc ! video/x-raw,width=64,height=48 ! \
         parallelfilter name=pf context=ctx-quiet processor=delay delay-min=1000000 \
         delay-max=3000000 workers=2 ! fakesink name=sink",
    );
    let quiet = Pipeline::launch(
        "videotestsrc is-live=true num-buffers=30 ! video/x-raw,width=64,height=48,framerate=30/1 ! \
         parallelfilter name=pf context=ctx-quiet processor=delay delay-min=1000000 \
         delay-max=3000000 workers=2 ! fakesink name=sink",
    );
    busy.play();
    busy.next_buffer();
    quiet.play();
    assert!(quiet.wait_end().is_none());
    assert_all_in_order(&quiet, 30);
    let s = quiet.stats();
    // Every frame processed, none let through or dropped.
    assert_eq!(stat(&s, "frames-out"), 30, "{s}");
    assert_eq!(stat(&s, "skipped"), 0, "{s}");
    assert_eq!(stat(&s, "dropped"), 0, "{s}");
    busy.stop();
    quiet.stop();
}

#[test]
fn filter_members_each_get_their_own_chain_output() {
    let _wd = common::begin("context_filter", 120);
    let launch = |n: u32, chain: &str| {
        Pipeline::launch(&format!(
            "videotestsrc num-buffers={n} ! video/x-raw,format=AYUV,width=64,height=48 ! \
             parallelfilter name=pf context=ctx-filter workers=2 filter=\"{chain}\" ! \
             fakesink name=sink"
        ))
    };
    // One rotates, the other does not: each frame goes through its own
    // element's chain whichever pool worker runs it.
    let a = launch(60, "videoflip video-direction=90r");
    let b = launch(60, "identity");
    a.play();
    b.play();
    assert!(a.wait_end().is_none());
    assert!(b.wait_end().is_none());
    assert_all_in_order(&a, 60);
    assert_all_in_order(&b, 60);
    let size = |p: &Pipeline| {
        let caps = p.rec().caps();
        let s = caps.last().unwrap().structure(0).unwrap().to_owned();
        (
            s.get::<i32>("width").unwrap(),
            s.get::<i32>("height").unwrap(),
        )
    };
    assert_eq!(size(&a), (48, 64));
    assert_eq!(size(&b), (64, 48));
    assert!(a.frames().iter().all(|f| f.size() == 64 * 48 * 4));
    a.stop();
    b.stop();
}
