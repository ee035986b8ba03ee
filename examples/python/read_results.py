#!/usr/bin/env python3
# SPDX-License-Identifier: MPL-2.0
"""Reads parallelfilter's analysis results from Python.

    videotestsrc ! parallelfilter processor=analyze post-messages=true ! appsink

Each output buffer carries the GstParallelFilterAnalysisMeta custom meta
(structure `parallelfilter-analysis`); with post-messages=true the element
also posts one `parallelfilter-analysis` element message per frame, in
output order, with stream-time and running-time added. This app reads both,
checks them against each other and against the fields docs/analysis.md
lists ("Results"), and prints a few frames.

    GST_PLUGIN_PATH=target/release /usr/bin/python3 examples/python/read_results.py

Needs python3-gi, python3-gst-1.0 and the GStreamer typelibs
(gir1.2-gstreamer-1.0, gir1.2-gst-plugins-base-1.0).
"""

import sys

import gst_python  # next to this file

gst_python.require()
from gi.repository import Gst, GstApp  # noqa: E402,F401

FRAMES = 30
META = "GstParallelFilterAnalysisMeta"
NAME = "parallelfilter-analysis"


def results(s):
    """The analysis fields of a structure as a dict."""
    return {
        "timestamp": s.get_value("timestamp"),
        "duration": s.get_value("duration"),
        "seq": s.get_value("seq"),
        "worker": s.get_value("worker"),
        "processing-time": s.get_value("processing-time"),
        "luma-average": s.get_value("luma-average"),
        "luma-variance": s.get_value("luma-variance"),
        "luma-min": s.get_value("luma-min"),
        "luma-max": s.get_value("luma-max"),
        "histogram": list(s.get_value("histogram")),
        "sharpness": s.get_value("sharpness"),
        "motion": s.get_value("motion"),
        "scene-change": s.get_value("scene-change"),
    }


def check(r, seq, pts):
    assert r["seq"] == seq, f"seq {r['seq']}, expected {seq}"
    assert r["timestamp"] == pts, f"timestamp {r['timestamp']}, buffer PTS {pts}"
    assert 0.0 <= r["luma-average"] <= 1.0, r
    assert 0.0 <= r["luma-variance"] <= 1.0, r
    assert 0 <= r["luma-min"] <= r["luma-max"] <= 255, r
    assert len(r["histogram"]) == 16, r["histogram"]
    assert all(isinstance(n, int) and n >= 0 for n in r["histogram"]), r["histogram"]
    assert r["sharpness"] >= 0.0, r
    assert 0.0 <= r["motion"] <= 1.0, r
    assert seq > 0 or r["motion"] == 0.0, "the first frame has motion 0"
    assert isinstance(r["scene-change"], bool), r


def main():
    Gst.init(None)
    pipeline = Gst.parse_launch(
        f"videotestsrc num-buffers={FRAMES} pattern=ball ! "
        "video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! "
        "parallelfilter name=pf processor=analyze post-messages=true workers=4 ! "
        "appsink name=sink sync=false"
    )
    sink = pipeline.get_by_name("sink")
    bus = pipeline.get_bus()
    metas = []
    messages = []

    def drain_bus():
        while True:
            msg = bus.pop_filtered(Gst.MessageType.ELEMENT | Gst.MessageType.ERROR)
            if msg is None:
                return
            if msg.type == Gst.MessageType.ERROR:
                err, debug = msg.parse_error()
                pipeline.set_state(Gst.State.NULL)
                sys.exit(f"error: {err.message} ({debug})")
            s = msg.get_structure()
            if s is not None and s.get_name() == NAME:
                m = results(s)
                m["running-time"] = s.get_value("running-time")
                m["stream-time"] = s.get_value("stream-time")
                messages.append(m)

    pipeline.set_state(Gst.State.PLAYING)
    while not sink.is_eos():
        sample = sink.try_pull_sample(Gst.SECOND)
        drain_bus()
        if sample is None:
            continue
        buffer = sample.get_buffer()
        meta = buffer.get_custom_meta(META)
        assert meta is not None, f"buffer {buffer.pts} has no {META}"
        s = meta.get_structure()
        assert s.get_name() == NAME, s.get_name()
        r = results(s)
        check(r, len(metas), buffer.pts)
        metas.append(r)
    pipeline.set_state(Gst.State.NULL)
    drain_bus()

    assert len(metas) == FRAMES, f"{len(metas)} buffers, expected {FRAMES}"
    assert [m["seq"] for m in messages] == list(range(FRAMES)), "messages out of order"
    for meta, msg in zip(metas, messages):
        for field, value in meta.items():
            assert msg[field] == value, f"message {field}={msg[field]}, meta {value}"
        # Segment starting at 0: running time and stream time are the PTS.
        assert msg["running-time"] == msg["timestamp"] == msg["stream-time"], msg

    print(f"read_results: {FRAMES} frames of videotestsrc pattern=ball, "
          f"{META} on every buffer and {len(messages)} bus messages")
    print("  seq  timestamp      worker  luma-avg  luma-var  min  max   sharpness  motion  scene")
    for r in metas[:5] + metas[-2:]:
        print(f"  {r['seq']:3d}  {r['timestamp'] / Gst.SECOND:9.6f} s  {r['worker']:6d}  "
              f"{r['luma-average']:8.4f}  {r['luma-variance']:8.5f}  {r['luma-min']:3d}  "
              f"{r['luma-max']:3d}  {r['sharpness']:10.3e}  {r['motion']:6.4f}  "
              f"{r['scene-change']}")
    print("OK: metas and messages agree, in input order, fields as in docs/analysis.md")


if __name__ == "__main__":
    main()
