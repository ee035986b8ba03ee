// SPDX-License-Identifier: MPL-2.0
//! Measures how long FLUSH_START takes to unblock an upstream thread that
//! is blocked in `parallelfilter`'s chain function on a full element.
//!
//! ```text
//! cargo run --release --example flush_unblock -- [rounds]
//! ```
//!
//! A measurement, not a test: it sleeps to let the pusher block first.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use gst::prelude::*;

fn main() {
    gst::init().expect("GStreamer init");
    gstparallel::plugin_register_static().expect("plugin registration");
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50);

    // Frames never finish on their own (1 h delay): the element stays full.
    let mut h = gst_check::Harness::new_parse(
        "parallelfilter processor=delay delay-min=3600000000000 delay-max=3600000000000 \
         workers=2 max-size-buffers=2",
    );
    h.set_src_caps_str("video/x-raw,format=GRAY8,width=16,height=16,framerate=30/1");
    let sinkpad = h.element().unwrap().static_pad("sink").unwrap();

    let mut unblock = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        for _ in 0..2 {
            assert_eq!(
                h.push(gst::Buffer::with_size(256).unwrap()),
                Ok(gst::FlowSuccess::Ok)
            );
        }
        let (tx, rx) = mpsc::channel();
        let pad = sinkpad.clone();
        let pusher = thread::spawn(move || {
            let ret = pad.chain(gst::Buffer::with_size(256).unwrap());
            tx.send(Instant::now()).unwrap();
            ret
        });
        // Let the third push block on the full element.
        thread::sleep(Duration::from_millis(20));
        let start = Instant::now();
        assert!(sinkpad.send_event(gst::event::FlushStart::new()));
        let returned = rx.recv().unwrap();
        assert_eq!(pusher.join().unwrap(), Err(gst::FlowError::Flushing));
        unblock.push(returned.saturating_duration_since(start));
        assert!(sinkpad.send_event(gst::event::FlushStop::new(true)));
        assert!(
            sinkpad.send_event(gst::event::Segment::new(&gst::FormattedSegment::<
                gst::ClockTime,
            >::new()))
        );
    }
    unblock.sort();
    let pct = |p: usize| unblock[(unblock.len() - 1) * p / 100];
    println!(
        "FLUSH_START -> blocked chain returns FLUSHING, {rounds} rounds: \
         median {:?}, p90 {:?}, max {:?}",
        pct(50),
        pct(90),
        unblock[unblock.len() - 1]
    );
}
