#!/usr/bin/env python3
# SPDX-License-Identifier: MPL-2.0
"""N live streams through one shared pool (parallelfilter context=cameras),
with each stream's throughput and latency from its element's stats.

    GST_PLUGIN_PATH=target/release /usr/bin/python3 examples/python/context.py 8
"""

import sys
import time

import gst_python  # next to this file

gst_python.require()
from gi.repository import Gst  # noqa: E402

Gst.init(None)
n = int(sys.argv[1]) if len(sys.argv) > 1 else 4
pipeline = Gst.parse_launch(" ".join(
    f"videotestsrc is-live=true pattern={i % 20} ! video/x-raw,width=640,height=480,framerate=30/1 ! "
    f"parallelfilter name=pf{i} context=cameras processor=analyze ! fakesink"
    for i in range(n)))
pipeline.set_state(Gst.State.PLAYING)
start = time.monotonic()
msg = pipeline.get_bus().timed_pop_filtered(5 * Gst.SECOND, Gst.MessageType.ERROR)
elapsed = time.monotonic() - start
if msg:
    sys.exit(f"error: {msg.parse_error()[0].message}")
for i in range(n):
    s = pipeline.get_by_name(f"pf{i}").get_property("stats")
    print(f"stream {i}: {s.get_value('frames-out') / elapsed:.1f} frames/s, "
          f"latency avg {s.get_value('avg-latency') / 1e6:.1f} ms, "
          f"max {s.get_value('max-latency') / 1e6:.1f} ms, pool workers {s.get_value('workers')}")
pipeline.set_state(Gst.State.NULL)
