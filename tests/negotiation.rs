// SPDX-License-Identifier: MPL-2.0
//! Caps negotiation: a caps change from upstream mid-stream, and
//! downstream renegotiation never stopping the stream: playbin's
//! `video-filter`, a bare RECONFIGURE from the sink, and a capsfilter after
//! the element whose caps change mid-stream, for every kind of processor
//! and several worker counts. Processor-specific caps handling is in the
//! processor's file.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use common::{Item, Pipeline, assert_increasing};
use gst::prelude::*;

/// Frames in each test file and each live run.
const FRAMES: usize = 24;

/// What the processor does, as properties of the element.
const PROCESSORS: &[&str] = &[
    "filter=identity",
    "filter=videoconvert",
    "filter=\"videoconvert ! gaussianblur ! videoconvert\"",
    "processor=analyze",
    "processor=overlay",
    "processor=passthrough",
    "processor=delay delay-max=2000000",
];

const WORKERS: &[u32] = &[1, 2, 4];

#[derive(Debug, Default)]
struct Out {
    /// Each buffer's PTS and size, with the caps it came with.
    frames: Vec<(Option<gst::ClockTime>, usize, gst::Caps)>,
    caps: Vec<gst::Caps>,
    error: Option<String>,
    /// `frames-in` of the element named `pf`, if any.
    frames_in: Option<u64>,
}

/// Plays `p` to EOS or error and stops it.
fn play(p: &Pipeline) -> Out {
    let error = p.run().map(|e| e.text());
    let frames_in = p.pf.as_ref().map(|_| common::stat(&p.stats(), "frames-in"));
    p.stop();
    let (frames, caps) = match &p.rec {
        Some(rec) => (
            rec.buffers()
                .into_iter()
                .map(|f| (f.pts, f.size(), f.caps.expect("a buffer before caps")))
                .collect(),
            rec.caps(),
        ),
        None => Default::default(),
    };
    Out {
        frames,
        caps,
        error,
        frames_in,
    }
}

/// The frame size `caps` describe.
fn frame_size(caps: &gst::Caps) -> usize {
    gst_video::VideoInfo::from_caps(caps).unwrap().size()
}

/// Every frame arrived, in order, each the size its caps say.
fn assert_complete(out: &Out, what: &str) {
    assert_eq!(out.error, None, "{what}");
    assert_eq!(out.frames.len(), FRAMES, "{what}: frames lost");
    assert_ordered_and_sized(out, what);
}

/// Every frame that entered the element left it, in order, each the size
/// its caps say. (`videotestsrc` itself may lose a frame as it
/// renegotiates, behind `queue` too.)
fn assert_all_out(out: &Out, what: &str) {
    assert_eq!(out.error, None, "{what}");
    let frames_in = out.frames_in.expect("stats of the element");
    assert_eq!(out.frames.len() as u64, frames_in, "{what}: frames lost");
    assert_ordered_and_sized(out, what);
}

fn assert_ordered_and_sized(out: &Out, what: &str) {
    for pair in out.frames.windows(2) {
        assert!(pair[0].0 < pair[1].0, "{what}: out of order {pair:?}");
    }
    for (i, (_, size, caps)) in out.frames.iter().enumerate() {
        assert_eq!(*size, frame_size(caps), "{what}: frame {i} is not {caps}");
    }
}

/// A WebM file of FRAMES VP8 frames, with a Vorbis track if `audio`.
fn media(audio: bool) -> PathBuf {
    static FILES: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    let (video, both) = FILES.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("negotiation");
        std::fs::create_dir_all(&dir).unwrap();
        let encode = |name: &str, audio_branch: &str| {
            let path = dir.join(name);
            let desc = format!(
                "videotestsrc num-buffers={FRAMES} pattern=ball ! \
                 video/x-raw,width=160,height=120,framerate=25/1 ! vp8enc deadline=1 ! mux. \
                 {audio_branch} webmmux name=mux ! filesink location={}",
                path.display()
            );
            let done = play(&Pipeline::launch(&desc));
            assert_eq!(done.error, None, "cannot write {}", path.display());
            path
        };
        (
            encode("video.webm", ""),
            encode(
                "audio-video.webm",
                "audiotestsrc num-buffers=20 samplesperbuffer=2048 ! vorbisenc ! mux.",
            ),
        )
    });
    if audio { both.clone() } else { video.clone() }
}

fn playbin(file: &Path, filter: &str) -> Out {
    let playbin = gst::ElementFactory::make("playbin")
        .property("uri", format!("file://{}", file.display()))
        .build()
        .unwrap();
    let filter = gst::parse::bin_from_description(filter, true).unwrap();
    let sink = gst::ElementFactory::make("fakesink").build().unwrap();
    let audio = gst::ElementFactory::make("fakesink").build().unwrap();
    playbin.set_property("video-filter", &filter);
    playbin.set_property("video-sink", &sink);
    playbin.set_property("audio-sink", &audio);
    let playbin = playbin.downcast::<gst::Pipeline>().unwrap();
    play(&Pipeline::wrap(playbin, sink.static_pad("sink").as_ref()))
}

#[test]
fn playbin_video_filter_plays_every_frame() {
    let _w = common::begin("playbin_video_filter_plays_every_frame", 600);
    for audio in [false, true] {
        let file = media(audio);
        for processor in PROCESSORS {
            for workers in [1, 3] {
                let filter = format!("parallelfilter workers={workers} {processor}");
                let out = playbin(&file, &filter);
                assert_complete(&out, &format!("{filter} on {}", file.display()));
            }
        }
    }
}

#[test]
fn playbin_video_filter_chains_around_the_element() {
    let _w = common::begin("playbin_video_filter_chains_around_the_element", 300);
    let file = media(true);
    for filter in [
        "videoconvert ! parallelfilter workers=2 filter=videoflip ! videoconvert",
        "parallelfilter workers=2 processor=analyze ! videoscale ! capsfilter caps=video/x-raw,width=80,height=60",
        "parallelfilter workers=2 filter=\"videoscale ! capsfilter caps=video/x-raw,width=320,height=240\"",
    ] {
        let out = playbin(&file, filter);
        assert_complete(&out, filter);
    }
}

/// `videotestsrc` with `source_caps` through the element with `props`, into `downstream`
/// (ending at a sink named `sink`); `on_frame(n, sink_pad)` runs as frame
/// n (from 1) reaches the sink.
fn run_live(
    frames: usize,
    source_caps: &str,
    props: &str,
    downstream: &str,
    on_frame: impl Fn(usize, &gst::Pad) + Send + Sync + 'static,
) -> Out {
    let desc = format!(
        "videotestsrc num-buffers={frames} ! {source_caps} ! parallelfilter name=pf {props} ! {downstream}"
    );
    let p = Pipeline::launch(&desc);
    let pad = p.sink().static_pad("sink").unwrap();
    let seen = Mutex::new(0);
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, _| {
        let n = {
            let mut seen = seen.lock().unwrap();
            *seen += 1;
            *seen
        };
        on_frame(n, pad);
        gst::PadProbeReturn::Ok
    });
    play(&p)
}

#[test]
fn a_bare_reconfigure_never_stops_the_stream() {
    let _w = common::begin("a_bare_reconfigure_never_stops_the_stream", 300);
    for processor in PROCESSORS {
        for workers in WORKERS {
            let props = format!("workers={workers} {processor}");
            let out = run_live(
                FRAMES,
                "video/x-raw,format=I420,width=160,height=120",
                &props,
                "fakesink name=sink",
                |n, pad| {
                    if n % 5 == 0 {
                        pad.push_event(gst::event::Reconfigure::new());
                    }
                },
            );
            assert_complete(&out, &props);
            assert!(
                out.caps.iter().all(|c| c == &out.caps[0]),
                "{props}: caps changed without reason: {:?}",
                out.caps
            );
        }
    }
}

fn caps(s: &str) -> gst::Caps {
    s.parse().unwrap_or_else(|e| panic!("bad caps {s}: {e}"))
}

/// Frames of a run whose downstream changes its caps twice: enough for
/// both changes to get through a full element and a source lagging behind.
const CHANGING_FRAMES: usize = 60;

/// A capsfilter after the element asks for `second` from frame 4 on, and
/// for `first` again once the first frame in `second` reached the sink.
fn change_downstream_caps(first: &str, second: &str) {
    for processor in PROCESSORS {
        for workers in WORKERS {
            let props = format!("workers={workers} {processor}");
            let (first_caps, second_caps) = (caps(first), caps(second));
            let switched_back = Arc::new(Mutex::new(false));
            let back = switched_back.clone();
            // The source is free to follow downstream.
            let out = run_live(
                CHANGING_FRAMES,
                "video/x-raw",
                &props,
                &format!("capsfilter name=cf caps={first} ! fakesink name=sink"),
                move |n, pad| {
                    let current = pad.current_caps().unwrap();
                    let mut back = back.lock().unwrap();
                    let caps = if n == 4 {
                        second_caps.clone()
                    } else if n > 4 && !*back && current.can_intersect(&second_caps) {
                        *back = true;
                        first_caps.clone()
                    } else {
                        return;
                    };
                    let pipeline = pad.parent_element().unwrap().parent().unwrap();
                    let cf = pipeline.downcast::<gst::Bin>().unwrap().by_name("cf");
                    cf.unwrap().set_property("caps", caps);
                },
            );
            let what = format!("{props}, {first} then {second}");
            assert_all_out(&out, &what);
            assert!(*switched_back.lock().unwrap(), "{what}: never changed");
            let (_, _, last) = out.frames.last().unwrap();
            assert!(
                last.can_intersect(&caps(first)),
                "{what}: the last frame is {last}"
            );
        }
    }
}

#[test]
fn downstream_size_change_mid_stream() {
    let _w = common::begin("downstream_size_change_mid_stream", 300);
    change_downstream_caps(
        "video/x-raw,width=160,height=120",
        "video/x-raw,width=80,height=60",
    );
}

#[test]
fn downstream_format_change_mid_stream() {
    let _w = common::begin("downstream_format_change_mid_stream", 300);
    change_downstream_caps("video/x-raw,format=I420", "video/x-raw,format=Y42B");
}

// Upstream caps change ----------------------------------------------------

#[test]
fn caps_renegotiation_mid_stream_keeps_every_frame() {
    let _wd = common::begin("renegotiation", 60);
    let p = Pipeline::launch(
        "videotestsrc num-buffers=40 ! capsfilter name=cf caps=video/x-raw,width=64,height=48 ! \
         parallelfilter name=pf processor=delay delay-max=15000000 workers=6 ! fakesink name=sink",
    );
    let cf = p.pipeline.by_name("cf").unwrap();
    p.play();
    for _ in 0..10 {
        p.next_buffer();
    }
    cf.set_property(
        "caps",
        gst::Caps::builder("video/x-raw")
            .field("width", 32)
            .field("height", 24)
            .build(),
    );
    if let Some(err) = p.wait_end() {
        panic!("{}", err.text());
    }
    p.stop();
    let mut size = None;
    let mut sizes_seen = Vec::new();
    let mut frames = 0;
    for r in p.records() {
        match r {
            Item::Caps(caps) => {
                let info = gst_video::VideoInfo::from_caps(&caps).unwrap();
                size = Some(info.size());
                sizes_seen.push(info.width());
            }
            Item::Buffer(f) => {
                assert_eq!(
                    Some(f.size()),
                    size,
                    "buffer {frames} does not match its caps"
                );
                frames += 1;
            }
            _ => {}
        }
    }
    assert_eq!(frames, 40);
    assert_eq!(sizes_seen, vec![64, 32]);
    assert_increasing(&p.buffer_pts());
}
