// SPDX-License-Identifier: MPL-2.0
//! `parallelfilter`: process video frames concurrently in a bounded worker
//! pool and push them out in input order.

pub mod analysis;
pub mod engine;
pub mod parallelfilter;
mod runtime;

pub use analysis::AnalysisResult;
pub use parallelfilter::ParallelFilter;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), gst::glib::BoolError> {
    // Custom metas are process-wide; a second plugin load must not
    // register them twice.
    for name in [analysis::ANALYSIS_META, parallelfilter::INFERENCE_META] {
        if !gst::meta::CustomMeta::is_registered(name) {
            gst::meta::CustomMeta::register(name, &[]);
        }
    }
    parallelfilter::register(plugin)
}

gst::plugin_define!(
    parallel,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MPL",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_REPOSITORY"),
    env!("BUILD_REL_DATE")
);
