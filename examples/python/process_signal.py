#!/usr/bin/env python3
# SPDX-License-Identifier: MPL-2.0
"""A Python process-frame handler doing I/O-bound work in parallel.

With processor=custom and no Rust processor, parallelfilter hands every frame
to the process-frame signal on one of its worker threads, up to `workers`
frames at once. The handler here stands for a call to a remote service: it
waits (time.sleep, which releases the GIL as a socket read would) for a
latency that differs per frame, then writes the frame's number into its
first bytes. Handlers run concurrently on several threads, so the shared
counters are guarded by a lock.

It prints the concurrency reached (most handlers running at once) and the
wall time against the sum of the handlers' waits, and asserts that every
frame left in input order carrying its own number.

    GST_PLUGIN_PATH=target/release /usr/bin/python3 examples/python/process_signal.py

Needs python3-gi, python3-gst-1.0 (writable buffer maps) and the GStreamer
typelibs (gir1.2-gstreamer-1.0, gir1.2-gst-plugins-base-1.0).
"""

import struct
import sys
import threading
import time

import gst_python  # next to this file

gst_python.require()
from gi.repository import Gst, GstApp  # noqa: E402,F401

FRAMES = 60
WORKERS = 8


def latency(seq):
    """The simulated service's latency for frame `seq`: 20 to 60 ms."""
    return 0.020 + ((seq * 7919) % 41) / 1000.0


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0
        self.threads = set()
        self.waited = 0.0


def process_frame(element, buffer, seq, stats):
    """Runs on a worker thread; returns False on failure (an element error)."""
    with stats.lock:
        stats.active += 1
        stats.max_active = max(stats.max_active, stats.active)
        stats.threads.add(threading.get_ident())
    try:
        wait = latency(seq)
        time.sleep(wait)  # the "request": releases the GIL
        ok, info = buffer.map(Gst.MapFlags.READ | Gst.MapFlags.WRITE)
        if not ok:
            return False
        try:
            info.data[:8] = struct.pack("<Q", seq)
        finally:
            buffer.unmap(info)
        with stats.lock:
            stats.waited += wait
        return True
    finally:
        with stats.lock:
            stats.active -= 1


def main():
    Gst.init(None)
    pipeline = Gst.parse_launch(
        f"videotestsrc num-buffers={FRAMES} ! "
        "video/x-raw,format=GRAY8,width=64,height=48,framerate=30/1 ! "
        f"parallelfilter name=pf processor=custom workers={WORKERS} ! "
        "appsink name=sink sync=false"
    )
    stats = Stats()
    pipeline.get_by_name("pf").connect("process-frame", process_frame, stats)
    sink = pipeline.get_by_name("sink")
    bus = pipeline.get_bus()

    start = time.monotonic()
    pipeline.set_state(Gst.State.PLAYING)
    out = []
    while True:
        sample = sink.try_pull_sample(Gst.SECOND)
        if sample is not None:
            buffer = sample.get_buffer()
            ok, info = buffer.map(Gst.MapFlags.READ)
            assert ok, "cannot map an output buffer"
            out.append((buffer.pts, struct.unpack("<Q", bytes(info.data[:8]))[0]))
            buffer.unmap(info)
            continue
        msg = bus.pop_filtered(Gst.MessageType.ERROR)
        if msg is not None:
            err, debug = msg.parse_error()
            pipeline.set_state(Gst.State.NULL)
            sys.exit(f"error: {err.message} ({debug})")
        if sink.is_eos():
            break
    elapsed = time.monotonic() - start
    pipeline.set_state(Gst.State.NULL)

    seqs = [seq for _, seq in out]
    pts = [p for p, _ in out]
    assert seqs == list(range(FRAMES)), f"frames out of order or missing: {seqs}"
    assert pts == sorted(pts), "PTS out of order"
    assert stats.max_active > 1, "handlers never ran concurrently"
    print(f"process_signal: {FRAMES} frames, workers={WORKERS}, "
          "a Python handler waiting 20-60 ms per frame")
    print(f"  max simultaneous handlers: {stats.max_active} of {WORKERS} workers, "
          f"on {len(stats.threads)} threads")
    print(f"  wall time {elapsed:.2f} s for {stats.waited:.2f} s of handler waits: "
          f"{stats.waited / elapsed:.1f}x concurrency on average")
    print(f"OK: {FRAMES} frames in input order, each written by its handler")


if __name__ == "__main__":
    main()
