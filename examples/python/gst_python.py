# SPDX-License-Identifier: MPL-2.0
"""Checks that this Python has what the examples need from GStreamer.

The apt packages are those of DEPS_PYTHON_APT_PACKAGES in scripts/deps.sh,
which ./demo.sh and ./test.sh install. Without gst-python's overrides
(python3-gst-1.0), PyGObject still imports Gst, but buffer maps are
read-only and array fields cannot be read, so the examples would fail
later with a TypeError; this names the missing package instead.
"""

import importlib.util
import sys


def require():
    """Exits with status 1 and what to install when something is missing."""
    try:
        import gi
    except ImportError:
        sys.exit(
            f"needs python3-gi (PyGObject), which {sys.executable} does not have: "
            "apt-get install python3-gi, and run the system python, /usr/bin/python3"
        )
    for namespace, package in (
        ("Gst", "gir1.2-gstreamer-1.0"),
        ("GstApp", "gir1.2-gst-plugins-base-1.0"),
    ):
        try:
            gi.require_version(namespace, "1.0")
        except ValueError:
            sys.exit(f"needs {package} (the {namespace} typelib): apt-get install {package}")
    if importlib.util.find_spec("gi.overrides.Gst") is None:
        sys.exit(
            "needs python3-gst-1.0 (GStreamer's Python overrides): "
            "apt-get install python3-gst-1.0"
        )
