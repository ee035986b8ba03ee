// SPDX-License-Identifier: MPL-2.0
//! The `filter` description: parsed into a chain with exactly one free
//! sink and one free src pad, and checked without starting anything.

use gst::prelude::*;

/// The parsed description, checked: exactly one free sink and one free src
/// pad.
pub(super) struct Chain {
    pub(super) bin: gst::Bin,
    pub(super) sink: gst::Pad,
    pub(super) src: gst::Pad,
}

/// Parses `description` into a new chain; the error says what is wrong
/// with the description.
pub(super) fn parse(description: &str) -> Result<Chain, String> {
    let bin = gst::parse::bin_from_description_full(
        description,
        false,
        None,
        gst::ParseFlags::FATAL_ERRORS,
    )
    .map_err(|e| format!("cannot parse filter '{description}': {e}"))?
    .downcast::<gst::Bin>()
    .map_err(|_| format!("filter '{description}' is not a bin"))?;
    let (mut sinks, mut srcs) = (Vec::new(), Vec::new());
    for element in bin.iterate_recurse().into_iter().flatten() {
        let factory = element.factory().map(|f| f.name().to_string());
        if let Some(factory @ ("queue" | "queue2" | "multiqueue")) = factory.as_deref() {
            return Err(format!(
                "filter '{description}' contains {factory}: an instance must process each \
                 buffer in the thread that pushes it (the instances already run in parallel)"
            ));
        }
        for pad in element.pads() {
            if pad.peer().is_some() {
                continue;
            }
            match pad.direction() {
                gst::PadDirection::Sink => sinks.push(pad),
                gst::PadDirection::Src => srcs.push(pad),
                _ => {}
            }
        }
    }
    let names = |pads: &[gst::Pad]| {
        pads.iter()
            .map(|p| {
                let parent = p.parent().map(|e| e.name().to_string()).unwrap_or_default();
                format!("{parent}:{}", p.name())
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    if sinks.len() != 1 || srcs.len() != 1 {
        return Err(format!(
            "filter '{description}' must have exactly one free sink pad and one free src \
             pad, it has {} sink ({}) and {} src ({})",
            sinks.len(),
            names(&sinks),
            srcs.len(),
            names(&srcs)
        ));
    }
    Ok(Chain {
        bin,
        sink: sinks.remove(0),
        src: srcs.remove(0),
    })
}

/// The element factories `description` names that are not installed.
pub(crate) fn missing_elements(description: &str) -> Vec<String> {
    let mut context = gst::ParseContext::new();
    match gst::parse::bin_from_description_full(
        description,
        false,
        Some(&mut context),
        gst::ParseFlags::FATAL_ERRORS,
    ) {
        Err(err) if err.kind::<gst::ParseError>() == Some(gst::ParseError::NoSuchElement) => {
            context
                .missing_elements()
                .into_iter()
                .filter(|name| gst::ElementFactory::find(name).is_none())
                .collect()
        }
        _ => Vec::new(),
    }
}

/// Checks a description without starting anything: for a warning when the
/// property is set.
pub(crate) fn check(description: &str) -> Result<(), String> {
    parse(description).map(|_| ())
}
