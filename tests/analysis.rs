// SPDX-License-Identifier: MPL-2.0
//! `processor=analyze` and `overlay` in pipelines: results on every buffer,
//! agreement with videoanalyse, the same statistics in every format, scene
//! changes, overlay drawing and refused formats.

mod common;

use std::collections::BTreeMap;

use common::{Fixture, Pipeline, caps_formats, element, error_message, fixture};
use gst::prelude::*;
use gstparallel::AnalysisResult;

const FORMATS: &[&str] = &[
    "I420", "YV12", "NV12", "NV21", "Y41B", "Y42B", "Y444", "YUY2", "UYVY", "YVYU", "GRAY8", "RGB",
    "BGR", "RGBA", "BGRA", "ARGB", "ABGR", "RGBx", "BGRx", "xRGB", "xBGR",
];

/// Runs `desc` (whose last element is a sink named `sink`) to EOS;
/// returns the buffers that reached it (copies, metas included) and the
/// element messages, or the first error's text.
fn run(desc: &str) -> Result<(Vec<gst::Buffer>, Vec<gst::Structure>), String> {
    let p = Pipeline::launch(desc);
    if let Some(err) = p.run() {
        return Err(err.to_string());
    }
    p.stop();
    let buffers = p.frames().into_iter().map(|f| f.buffer).collect();
    Ok((buffers, p.messages()))
}

fn results(buffers: &[gst::Buffer]) -> Vec<AnalysisResult> {
    buffers
        .iter()
        .map(|b| AnalysisResult::from_buffer(b).expect("no meta").unwrap())
        .collect()
}

#[test]
fn meta_on_every_buffer() {
    let _wd = common::begin("meta_on_every_buffer", 120);
    let (buffers, messages) = run(
        "videotestsrc num-buffers=30 pattern=ball ! video/x-raw,format=I420,width=160,height=120 ! \
         parallelfilter workers=4 post-messages=true ! fakesink name=sink",
    )
    .unwrap();
    assert_eq!(buffers.len(), 30);
    let results = results(&buffers);
    for (i, (r, b)) in results.iter().zip(&buffers).enumerate() {
        assert_eq!(r.seq, i as u64);
        assert_eq!(r.timestamp, b.pts());
        assert_eq!(r.duration, b.duration());
        assert!(r.worker < 4);
        assert_eq!(
            r.histogram.iter().map(|&n| n as u64).sum::<u64>(),
            160 * 120
        );
        assert!(r.luma_min <= r.luma_max);
        assert!((0.0..=1.0).contains(&r.luma_average));
        assert!((0.0..=1.0).contains(&r.motion));
    }
    assert_eq!(results[0].motion, 0.0, "no previous frame");
    assert!(
        results[1..].iter().any(|r| r.motion > 0.0),
        "the ball moves"
    );
    // The meta's structure has exactly the contract's fields.
    let meta =
        gst::meta::CustomMeta::from_buffer(&buffers[0], "GstParallelFilterAnalysisMeta").unwrap();
    assert_eq!(meta.structure().name(), "parallelfilter-analysis");
    assert_eq!(meta.structure().fields().count(), 13);
    // Messages: the same results with the timing fields first, in order.
    let messages: Vec<_> = messages
        .iter()
        .filter(|s| s.name() == "parallelfilter-analysis")
        .collect();
    assert_eq!(messages.len(), 30);
    for (m, r) in messages.iter().zip(&results) {
        let names: Vec<_> = m.fields().take(4).map(|f| f.as_str()).collect();
        assert_eq!(
            names,
            ["timestamp", "stream-time", "running-time", "duration"]
        );
        let mut s = (*m).clone();
        s.remove_fields(["stream-time", "running-time"]);
        assert_eq!(&AnalysisResult::try_from(s.as_ref()).unwrap(), r);
    }
}

/// videoanalyse's messages are `GstVideoAnalyse` with luma-average and
/// luma-variance; ours carry the same fields. Both elements see the same
/// frames; pairs are matched by timestamp.
fn compare_with_videoanalyse(caps: &str, pattern: &str) {
    let (_, messages) = run(&format!(
        "videotestsrc num-buffers=6 pattern={pattern} ! {caps} ! videoanalyse ! \
         parallelfilter workers=2 post-messages=true ! fakesink name=sink"
    ))
    .unwrap();
    let mut theirs = BTreeMap::new();
    let mut ours = BTreeMap::new();
    for s in &messages {
        let ts: u64 = s.get("timestamp").unwrap();
        let pair = (
            s.get::<f64>("luma-average").unwrap(),
            s.get::<f64>("luma-variance").unwrap(),
        );
        match s.name().as_str() {
            "GstVideoAnalyse" => theirs.insert(ts, pair),
            "parallelfilter-analysis" => ours.insert(ts, pair),
            _ => None,
        };
    }
    assert_eq!(theirs.len(), 6, "{pattern}");
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>()
    );
    for (ts, (avg, var)) in &ours {
        let (va, vv) = theirs[ts];
        assert!(
            (avg - va).abs() <= 1e-6,
            "{pattern} {caps} average {avg} vs {va}"
        );
        assert!(
            (var - vv).abs() <= 1e-6,
            "{pattern} {caps} variance {var} vs {vv}"
        );
    }
}

#[test]
fn agrees_with_videoanalyse() {
    let _wd = common::begin("agrees_with_videoanalyse", 180);
    // Odd sizes: strides are padded, chroma rounded up.
    for caps in [
        "video/x-raw,format=I420,width=321,height=241",
        "video/x-raw,format=Y444,width=160,height=90",
        "video/x-raw,format=Y41B,width=200,height=100",
    ] {
        for pattern in [
            "smpte",
            "snow",
            "ball",
            "zone-plate",
            "gradient",
            "checkers-8",
        ] {
            compare_with_videoanalyse(caps, pattern);
        }
    }
}

const RGB_FORMATS: &[&str] = &[
    "RGB", "BGR", "RGBA", "BGRA", "ARGB", "ABGR", "RGBx", "BGRx", "xRGB", "xBGR",
];

/// Luma statistics of one frame of `pattern` converted to `format`. The
/// picture is painted in RGB, so every format is a conversion of the same
/// in-gamut pixels (the YUV test patterns hold colours no RGB can show).
/// GRAY8 goes through I420: from RGB, videoconvert makes full-range GRAY8
/// (0..255, other samples than I420's Y), from I420 it copies the Y plane.
fn stats_in(format: &str, pattern: &str) -> AnalysisResult {
    let via = if format == "GRAY8" {
        "video/x-raw,format=I420 ! videoconvert ! "
    } else {
        ""
    };
    let (buffers, _) = run(&format!(
        "videotestsrc num-buffers=1 pattern={pattern} ! \
         video/x-raw,format=RGB,width=320,height=240 ! videoconvert ! {via}\
         video/x-raw,format={format} ! parallelfilter ! fakesink name=sink"
    ))
    .unwrap_or_else(|e| panic!("{format}: {e}"));
    assert_eq!(buffers.len(), 1);
    results(&buffers).remove(0)
}

#[test]
fn every_format_gives_the_same_luma_statistics() {
    let _wd = common::begin("every_format", 300);
    for pattern in ["smpte", "gradient", "zone-plate", "ball"] {
        let reference = stats_in("I420", pattern);
        for format in FORMATS {
            let r = stats_in(format, pattern);
            let ctx = format!("{format} {pattern}: {r:?}\nvs I420 {reference:?}");
            if !RGB_FORMATS.contains(format) {
                // videoconvert writes the same Y samples into every YUV
                // layout (and GRAY8 from I420): identical statistics.
                assert_eq!(r.luma_average, reference.luma_average, "{ctx}");
                assert_eq!(r.luma_variance, reference.luma_variance, "{ctx}");
                assert_eq!(r.histogram, reference.histogram, "{ctx}");
                assert_eq!(r.sharpness, reference.sharpness, "{ctx}");
                continue;
            }
            // Y' of a pixel differs by at most one code value between
            // videoconvert's fixed-point BT.601 matrix and ours. That moves
            // the mean by at most 1/255, min and max by 1, and the variance
            // by at most (2 x 127.5 + 1) / 255^2 < 0.004. (Measured: 0.42
            // code values on the mean, 2e-4 on the variance, min and max
            // equal.)
            assert!(
                (r.luma_average - reference.luma_average).abs() <= 1.0 / 255.0,
                "{ctx}"
            );
            assert!(
                (r.luma_variance - reference.luma_variance).abs() <= 0.004,
                "{ctx}"
            );
            assert!(r.luma_min.abs_diff(reference.luma_min) <= 1, "{ctx}");
            assert!(r.luma_max.abs_diff(reference.luma_max) <= 1, "{ctx}");
            let total: u64 = r.histogram.iter().map(|&n| u64::from(n)).sum();
            assert_eq!(total, 320 * 240, "{ctx}");
        }
    }
}

/// An I420 frame of one luma value, neutral chroma.
fn flat_i420(w: usize, h: usize, y: u8, pts: u64) -> gst::Buffer {
    let mut data = vec![y; w * h];
    data.resize(w * h * 3 / 2, 128);
    let mut b = gst::Buffer::from_mut_slice(data);
    let b_mut = b.get_mut().unwrap();
    b_mut.set_pts(gst::ClockTime::from_mseconds(pts * 40));
    b_mut.set_duration(gst::ClockTime::from_mseconds(40));
    b
}

#[test]
fn scene_change_on_a_pattern_switch_with_a_live_threshold() {
    let _wd = common::begin("scene_change", 120);
    let p = Pipeline::launch(
        "appsrc name=src format=time caps=video/x-raw,format=I420,width=64,height=48,framerate=25/1 ! \
         parallelfilter name=pf workers=3 ! fakesink name=sink",
    );
    let src = p.pipeline.by_name("src").unwrap();
    p.play();
    // black, black, white (switch), white | threshold raised | black
    // (switch), black. The threshold is read when a frame starts
    // processing, so it changes once the first four are out.
    let lumas = [16u8, 16, 235, 235, 16, 16];
    let mut results = Vec::new();
    let next_result = || {
        let f = p.next_buffer();
        AnalysisResult::from_buffer(&f.buffer).unwrap().unwrap()
    };
    for (i, &y) in lumas.iter().enumerate() {
        if i == 4 {
            while results.len() < 4 {
                results.push(next_result());
            }
            p.pf().set_property("scene-threshold", 0.9f64);
        }
        let ret =
            src.emit_by_name::<gst::FlowReturn>("push-buffer", &[&flat_i420(64, 48, y, i as u64)]);
        assert_eq!(ret, gst::FlowReturn::Ok);
    }
    let _ = src.emit_by_name::<gst::FlowReturn>("end-of-stream", &[]);
    while results.len() < lumas.len() {
        results.push(next_result());
    }
    p.stop();
    let jump = (235.0 - 16.0) / 255.0;
    let motion: Vec<f64> = results.iter().map(|r| r.motion).collect();
    assert_eq!(motion, [0.0, 0.0, jump, 0.0, jump, 0.0]);
    let scene: Vec<bool> = results.iter().map(|r| r.scene_change).collect();
    assert_eq!(scene, [false, false, true, false, false, false]);
}

fn frame_bytes(buffer: &gst::Buffer) -> Vec<u8> {
    buffer.map_readable().unwrap().to_vec()
}

#[test]
fn overlay_draws_and_passthrough_does_not() {
    let _wd = common::begin("overlay_draws", 300);
    for format in FORMATS {
        let source = format!(
            "videotestsrc num-buffers=2 pattern=smpte ! \
             video/x-raw,format={format},width=320,height=240 ! tee name=t ! \
             queue ! parallelfilter processor=PROC ! fakesink name=sink \
             t. ! queue ! fakesink"
        );
        let original = |proc: &str| {
            let desc = source.replace("PROC", proc);
            run(&desc).unwrap_or_else(|e| panic!("{format} {proc}: {e}"))
        };
        let (passed, _) = original("passthrough");
        let (drawn, _) = original("overlay");
        let (reference, _) = run(&format!(
            "videotestsrc num-buffers=2 pattern=smpte ! \
             video/x-raw,format={format},width=320,height=240 ! fakesink name=sink"
        ))
        .unwrap();
        assert_eq!(passed.len(), 2);
        assert_eq!(drawn.len(), 2);
        for i in 0..2 {
            let want = frame_bytes(&reference[i]);
            assert_eq!(
                frame_bytes(&passed[i]),
                want,
                "{format}: passthrough changed pixels"
            );
            let got = frame_bytes(&drawn[i]);
            assert_eq!(got.len(), want.len());
            let changed = got.iter().zip(&want).filter(|(a, b)| a != b).count();
            assert!(
                changed > 100,
                "{format}: overlay changed only {changed} bytes"
            );
            assert!(AnalysisResult::from_buffer(&drawn[i]).is_some());
        }
    }
}

#[test]
fn overlay_leaves_a_shared_input_untouched() {
    let _wd = common::begin("overlay_shared", 120);
    // The tee's other branch holds the same buffers: the overlay must draw
    // on a copy.
    let desc = "videotestsrc num-buffers=3 pattern=smpte ! \
                video/x-raw,format=NV12,width=320,height=240 ! tee name=t ! \
                queue ! parallelfilter processor=overlay ! fakesink \
                t. ! queue ! fakesink name=sink";
    let (seen, _) = run(desc).unwrap();
    let (reference, _) = run("videotestsrc num-buffers=3 pattern=smpte ! \
         video/x-raw,format=NV12,width=320,height=240 ! fakesink name=sink")
    .unwrap();
    assert_eq!(seen.len(), 3);
    for (a, b) in seen.iter().zip(&reference) {
        assert_eq!(frame_bytes(a), frame_bytes(b));
    }
}

#[test]
fn unsupported_format_is_refused() {
    let _wd = common::begin("unsupported_format", 60);
    let Fixture { mut h, e, bus, .. } = fixture(&[]);
    h.play();
    assert!(h.push_event(gst::event::StreamStart::new("s")));
    let caps: gst::Caps = "video/x-raw,format=I420_10LE,width=64,height=48,framerate=25/1"
        .parse()
        .unwrap();
    // ACCEPT_CAPS refuses them before the CAPS event reaches the element,
    // and upstream's next push fails (upstream posts the error; the
    // element's own error naming the format is for caps that get that
    // far: `Analyze::set_caps`, unit-tested).
    h.push_event(gst::event::Caps::new(&caps));
    let sink = e.static_pad("sink").unwrap();
    assert_eq!(sink.current_caps(), None);
    assert_eq!(
        h.push(gst::Buffer::from_slice(vec![0u8; 64 * 48 * 3])),
        Err(gst::FlowError::NotNegotiated)
    );
    // The caps query answers exactly the supported formats.
    assert_eq!(caps_formats(&sink.query_caps(None)), FORMATS);
    // The bus says which format was refused, once.
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(common::WAIT.as_secs()),
            &[gst::MessageType::Warning],
        )
        .expect("a warning naming the format");
    let gst::MessageView::Warning(w) = msg.view() else {
        unreachable!()
    };
    assert!(
        w.error().to_string().contains("I420_10LE") && w.error().to_string().contains("analyze"),
        "{}",
        w.error()
    );
    assert!(bus.pop_filtered(&[gst::MessageType::Warning]).is_none());
    drop(h);
}

#[test]
fn short_buffer_is_a_processing_error() {
    let _wd = common::begin("short_buffer", 60);
    let Fixture { mut h, bus, .. } = fixture(&[]);
    h.set_src_caps_str("video/x-raw,format=I420,width=64,height=48,framerate=25/1");
    // 10 bytes for a 64x48 I420 frame (4608 bytes).
    let _ = h.push(gst::Buffer::from_slice(vec![0u8; 10]));
    let (err, _) = error_message(&bus);
    // The message text names the frame, both sizes and the caps.
    let text = err.to_string();
    assert!(text.contains("#0"), "{text}");
    assert!(
        text.contains("the buffer has 10 bytes, but its caps video/x-raw") && text.contains("4608"),
        "{text}"
    );
}

/// A harness around a `processor=analyze` element, playing, with I420
/// caps of `w`x`h` at 25 fps.
fn analyze_harness(w: u32, h: u32) -> gst_check::Harness {
    let Fixture { h: mut harness, .. } = fixture(&[("workers", "3")]);
    harness.set_src_caps(i420_caps(w, h, 25));
    harness
}

fn i420_caps(w: u32, h: u32, fps: i32) -> gst::Caps {
    gst_video::VideoCapsBuilder::new()
        .format(gst_video::VideoFormat::I420)
        .width(w as i32)
        .height(h as i32)
        .framerate(gst::Fraction::new(fps, 1))
        .build()
}

/// Pushes a flat frame of luma `y` and returns its motion.
fn motion_of(h: &mut gst_check::Harness, y: u8, pts: u64) -> f64 {
    assert_eq!(h.push(flat_i420(64, 48, y, pts)), Ok(gst::FlowSuccess::Ok));
    let out = h.pull().expect("a frame");
    AnalysisResult::from_buffer(&out).unwrap().unwrap().motion
}

#[test]
fn same_caps_again_keep_motion_and_other_caps_reset_it() {
    let _wd = common::begin("same_caps_again", 60);
    let mut h = analyze_harness(64, 48);
    let jump = (235.0 - 16.0) / 255.0;
    assert_eq!(motion_of(&mut h, 16, 0), 0.0, "first frame");
    assert_eq!(motion_of(&mut h, 235, 1), jump);
    // Identical caps re-sent mid-stream (a new event, equal caps).
    assert!(h.push_event(gst::event::Caps::new(&i420_caps(64, 48, 25))));
    assert_eq!(motion_of(&mut h, 16, 2), jump, "same caps reset motion");
    // Other caps (same frame size): a new stream, nothing to compare with.
    assert!(h.push_event(gst::event::Caps::new(&i420_caps(64, 48, 30))));
    assert_eq!(motion_of(&mut h, 235, 3), 0.0, "new caps keep motion");
    assert_eq!(motion_of(&mut h, 16, 4), jump);
}

#[test]
fn motion_is_zero_after_a_flush() {
    let _wd = common::begin("motion_after_flush", 60);
    let mut h = analyze_harness(64, 48);
    let jump = (235.0 - 16.0) / 255.0;
    assert_eq!(motion_of(&mut h, 16, 0), 0.0);
    assert_eq!(motion_of(&mut h, 235, 1), jump);
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    let segment = gst::FormattedSegment::<gst::ClockTime>::new();
    assert!(h.push_event(gst::event::Segment::new(&segment)));
    assert_eq!(
        motion_of(&mut h, 16, 2),
        0.0,
        "previous frame kept over a flush"
    );
    assert_eq!(motion_of(&mut h, 235, 3), jump);
}

#[test]
fn accept_caps_checks_the_processor_formats_and_downstream() {
    let _wd = common::begin("accept_caps", 60);
    let caps_of = |format: &str| -> gst::Caps {
        format!("video/x-raw,format={format},width=64,height=48,framerate=25/1")
            .parse()
            .unwrap()
    };
    for processor in ["analyze", "overlay"] {
        let e = element(&[("processor", processor)]);
        let sink = e.static_pad("sink").unwrap();
        // Before start (NULL, then READY): the kind's own formats.
        for state in [gst::State::Null, gst::State::Ready] {
            e.set_state(state).unwrap();
            assert_eq!(caps_formats(&sink.query_caps(None)), FORMATS, "{state:?}");
            assert!(!sink.query_accept_caps(&caps_of("I420_10LE")), "{state:?}");
            assert!(sink.query_accept_caps(&caps_of("NV12")), "{state:?}");
        }
        e.set_state(gst::State::Null).unwrap();
        // Running, downstream accepting only NV12.
        let Fixture { mut h, .. } = Fixture::around(e.clone());
        h.set_sink_caps_str("video/x-raw,format=NV12,width=64,height=48,framerate=25/1");
        h.play();
        assert!(
            !sink.query_accept_caps(&caps_of("I420_10LE")),
            "{processor}"
        );
        assert!(
            !sink.query_accept_caps(&caps_of("I420")),
            "{processor}: downstream refuses"
        );
        assert!(sink.query_accept_caps(&caps_of("NV12")), "{processor}");
        assert_eq!(
            caps_formats(&sink.query_caps(None)),
            ["NV12"],
            "{processor}"
        );
        drop(h);
    }
}

#[test]
fn meta_on_every_buffer_at_an_appsink() {
    let _wd = common::begin("meta_at_appsink", 120);
    let p = Pipeline::launch(
        "videotestsrc num-buffers=20 pattern=ball ! video/x-raw,format=NV12,width=96,height=64 ! \
         parallelfilter workers=3 ! appsink name=sink sync=false",
    );
    let appsink = p.sink();
    p.play();
    let mut results = Vec::new();
    // pull-sample returns NULL at EOS (or on an error, then the count
    // below fails).
    while let Some(sample) = appsink.emit_by_name::<Option<gst::Sample>>("pull-sample", &[]) {
        let buffer = sample.buffer().expect("a buffer");
        results.push(
            AnalysisResult::from_buffer(buffer)
                .expect("the analysis meta")
                .unwrap(),
        );
    }
    p.stop();
    assert_eq!(results.len(), 20);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.seq, i as u64);
        assert_eq!(
            r.histogram.iter().map(|&n| u64::from(n)).sum::<u64>(),
            96 * 64
        );
    }
}

#[test]
fn odd_sizes_in_every_format() {
    let _wd = common::begin("odd_sizes", 600);
    for (w, h) in [(1, 1), (2, 1), (1, 2), (3, 3), (5, 7), (17, 9)] {
        let mut reference: Option<Vec<AnalysisResult>> = None;
        for format in FORMATS {
            for processor in ["analyze", "overlay"] {
                // Two frames: the second compares with the first (the ball
                // moves). zone-plate divides by zero at 1x1 in videotestsrc.
                let (buffers, _) = run(&format!(
                    "videotestsrc num-buffers=2 pattern=ball ! \
                     video/x-raw,format=RGB,width={w},height={h} ! videoconvert ! \
                     video/x-raw,format={format} ! parallelfilter processor={processor} ! \
                     fakesink name=sink"
                ))
                .unwrap_or_else(|e| panic!("{format} {w}x{h} {processor}: {e}"));
                assert_eq!(buffers.len(), 2, "{format} {w}x{h} {processor}");
                let results = results(&buffers);
                for r in &results {
                    let total: u64 = r.histogram.iter().map(|&n| u64::from(n)).sum();
                    assert_eq!(total, (w * h) as u64, "{format} {w}x{h} {processor}");
                }
                if processor != "analyze" || RGB_FORMATS.contains(format) || *format == "GRAY8" {
                    continue;
                }
                // The same Y samples in every YUV layout.
                let stats = |r: &AnalysisResult| {
                    (
                        r.luma_average,
                        r.luma_variance,
                        r.luma_min,
                        r.luma_max,
                        r.histogram,
                        r.sharpness,
                        r.motion,
                    )
                };
                match &reference {
                    None => reference = Some(results),
                    Some(reference) => {
                        for (a, b) in results.iter().zip(reference) {
                            assert_eq!(stats(a), stats(b), "{format} {w}x{h} vs I420");
                        }
                    }
                }
            }
        }
    }
}
