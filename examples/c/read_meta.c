/* SPDX-License-Identifier: MPL-2.0
 *
 * Reads parallelfilter's analysis results from C: the
 * GstParallelFilterAnalysisMeta custom meta on each output buffer (a
 * GstStructure named "parallelfilter-analysis", fields as in
 * docs/analysis.md "Results"), seen by a probe on the sink.
 *
 *   meson setup build && meson compile -C build
 *   GST_PLUGIN_PATH=build build/read_meta [FRAMES]
 *
 * Only needs gstreamer-1.0 (pkg-config). Exits with status 1 if a buffer
 * lacks the meta, a field is missing or out of range, or frames are out of
 * order.
 */

#include <gst/gst.h>
#include <stdlib.h>

#define META "GstParallelFilterAnalysisMeta"
#define NAME "parallelfilter-analysis"

typedef struct
{
  guint64 frames;
  guint64 errors;
} Counts;

static gboolean
check_fields (const GstStructure * s, GstBuffer * buffer, guint64 expected_seq)
{
  guint64 seq, timestamp, processing_time;
  guint worker, luma_min, luma_max;
  gdouble avg, var, sharpness, motion;
  gboolean scene_change;
  const GValue *histogram;

  if (!gst_structure_has_name (s, NAME)
      || !gst_structure_get_uint64 (s, "seq", &seq)
      || !gst_structure_get_uint64 (s, "timestamp", &timestamp)
      || !gst_structure_get_uint64 (s, "processing-time", &processing_time)
      || !gst_structure_get_uint (s, "worker", &worker)
      || !gst_structure_get_double (s, "luma-average", &avg)
      || !gst_structure_get_double (s, "luma-variance", &var)
      || !gst_structure_get_uint (s, "luma-min", &luma_min)
      || !gst_structure_get_uint (s, "luma-max", &luma_max)
      || !gst_structure_get_double (s, "sharpness", &sharpness)
      || !gst_structure_get_double (s, "motion", &motion)
      || !gst_structure_get_boolean (s, "scene-change", &scene_change)
      || !(histogram = gst_structure_get_value (s, "histogram"))
      || !GST_VALUE_HOLDS_ARRAY (histogram)) {
    g_printerr ("missing or mistyped field in %" GST_PTR_FORMAT "\n", s);
    return FALSE;
  }
  if (seq != expected_seq || timestamp != GST_BUFFER_PTS (buffer)) {
    g_printerr ("frame %" G_GUINT64_FORMAT ": seq %" G_GUINT64_FORMAT
        ", timestamp %" G_GUINT64_FORMAT " for PTS %" G_GUINT64_FORMAT "\n",
        expected_seq, seq, timestamp, GST_BUFFER_PTS (buffer));
    return FALSE;
  }
  if (avg < 0.0 || avg > 1.0 || luma_min > luma_max || luma_max > 255
      || motion < 0.0 || motion > 1.0 || gst_value_array_get_size (histogram) != 16) {
    g_printerr ("value out of range in %" GST_PTR_FORMAT "\n", s);
    return FALSE;
  }
  if (seq < 4 || seq % 10 == 0)
    g_print ("  seq %3" G_GUINT64_FORMAT "  pts %" GST_TIME_FORMAT
        "  worker %2u  luma-average %.4f  min %3u  max %3u  motion %.4f"
        "  scene-change %d\n", seq, GST_TIME_ARGS (timestamp), worker, avg,
        luma_min, luma_max, motion, scene_change);
  return TRUE;
}

static GstPadProbeReturn
on_buffer (GstPad * pad, GstPadProbeInfo * info, gpointer user_data)
{
  Counts *counts = user_data;
  GstBuffer *buffer = GST_PAD_PROBE_INFO_BUFFER (info);
  GstCustomMeta *meta = gst_buffer_get_custom_meta (buffer, META);

  if (meta == NULL) {
    g_printerr ("buffer %" G_GUINT64_FORMAT " has no " META "\n",
        counts->frames);
    counts->errors++;
  } else if (!check_fields (gst_custom_meta_get_structure (meta), buffer,
          counts->frames)) {
    counts->errors++;
  }
  counts->frames++;
  return GST_PAD_PROBE_OK;
}

int
main (int argc, char **argv)
{
  Counts counts = { 0, 0 };
  guint64 frames = argc > 1 ? g_ascii_strtoull (argv[1], NULL, 10) : 30;
  GError *error = NULL;
  GstElement *pipeline, *sink;
  GstPad *pad;
  GstBus *bus;
  GstMessage *msg;
  gchar *desc;
  gboolean ok;

  gst_init (&argc, &argv);
  desc = g_strdup_printf ("videotestsrc num-buffers=%" G_GUINT64_FORMAT
      " pattern=ball ! video/x-raw,width=320,height=240 ! "
      "parallelfilter processor=analyze workers=4 ! fakesink name=sink", frames);
  pipeline = gst_parse_launch (desc, &error);
  g_free (desc);
  if (pipeline == NULL) {
    g_printerr ("cannot build the pipeline: %s\n", error->message);
    g_clear_error (&error);
    return EXIT_FAILURE;
  }

  /* The probe runs in the streaming thread, before the sink gets each
   * buffer, in output order. */
  sink = gst_bin_get_by_name (GST_BIN (pipeline), "sink");
  pad = gst_element_get_static_pad (sink, "sink");
  gst_pad_add_probe (pad, GST_PAD_PROBE_TYPE_BUFFER, on_buffer, &counts, NULL);
  gst_object_unref (pad);
  gst_object_unref (sink);

  g_print ("read_meta: %" G_GUINT64_FORMAT " frames through parallelfilter "
      "processor=analyze\n", frames);
  gst_element_set_state (pipeline, GST_STATE_PLAYING);
  bus = gst_element_get_bus (pipeline);
  msg = gst_bus_timed_pop_filtered (bus, GST_CLOCK_TIME_NONE,
      GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
  ok = GST_MESSAGE_TYPE (msg) == GST_MESSAGE_EOS;
  if (!ok) {
    gchar *debug = NULL;
    gst_message_parse_error (msg, &error, &debug);
    g_printerr ("error: %s (%s)\n", error->message, debug ? debug : "");
    g_clear_error (&error);
    g_free (debug);
  }
  gst_message_unref (msg);
  gst_object_unref (bus);
  gst_element_set_state (pipeline, GST_STATE_NULL);
  gst_object_unref (pipeline);

  if (!ok || counts.errors > 0 || counts.frames != frames) {
    g_printerr ("FAILED: %" G_GUINT64_FORMAT " frames of %" G_GUINT64_FORMAT
        ", %" G_GUINT64_FORMAT " bad\n", counts.frames, frames, counts.errors);
    return EXIT_FAILURE;
  }
  g_print ("OK: %" G_GUINT64_FORMAT " frames, each with " META
      " in input order\n", counts.frames);
  return EXIT_SUCCESS;
}
