// SPDX-License-Identifier: MPL-2.0
//! Runs a gst-launch-1.0 line to EOS and prints the `stats` of every
//! `parallelfilter` in it, which gst-launch-1.0 cannot show (it prints no
//! read-only property at the end).
//!
//! ```text
//! cargo run --release --example stats -- "videotestsrc num-buffers=100 ! \
//!     parallelfilter processor=delay delay-max=20000000 ! fakesink"
//! ```
//!
//! Exits non-zero on an error message or when the line has no
//! `parallelfilter`.

use std::process::ExitCode;

use gst::prelude::*;

fn main() -> ExitCode {
    let Some(launch) = std::env::args().nth(1) else {
        eprintln!("usage: stats \"GST-LAUNCH LINE\"");
        return ExitCode::from(2);
    };
    if let Err(e) = gst::init()
        .map_err(|e| e.to_string())
        .and_then(|()| gstparallel::plugin_register_static().map_err(|e| e.to_string()))
    {
        eprintln!("cannot initialize GStreamer and the plugin: {e}");
        return ExitCode::FAILURE;
    }
    match run(&launch) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(launch: &str) -> Result<(), String> {
    let pipeline = gst::parse::launch(launch)
        .map_err(|e| e.to_string())?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline")?;
    // By factory, so elements inside bins count too.
    let filters: Vec<gst::Element> = pipeline
        .iterate_recurse()
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.factory().is_some_and(|f| f.name() == "parallelfilter"))
        .collect();
    if filters.is_empty() {
        return Err("the launch line has no parallelfilter".into());
    }
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|_| "cannot start the pipeline")?;
    let bus = pipeline.bus().ok_or("no bus")?;
    let result = loop {
        let Some(msg) = bus.timed_pop(gst::ClockTime::NONE) else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Eos(..) => break Ok(()),
            gst::MessageView::Error(err) => {
                break Err(format!(
                    "{} ({})",
                    err.error(),
                    err.debug().unwrap_or_default()
                ));
            }
            _ => {}
        }
    };
    for filter in &filters {
        println!(
            "{}: {}",
            filter.name(),
            filter.property::<gst::Structure>("stats")
        );
    }
    let _ = pipeline.set_state(gst::State::Null);
    result
}
