// SPDX-License-Identifier: MPL-2.0
//! `extra-headers`: the structure as set, checked at start into headers
//! sent with every request (probes included). Values are credentials more
//! often than not: no Debug or log line ever shows one.
//!
//! Same meaning as souphttpsrc's `extra-headers`: one header per field; an
//! array or list gives one header per element, under the field's name; a
//! string is used as is, another type as its string transform.

use std::fmt;

use gst::glib;
use gst::prelude::*;
use hyper::header::{HeaderName, HeaderValue};

/// Names the request code sets itself, or the connection owns: a second
/// copy from the user would break the request or its framing.
const RESERVED: &[&str] = &[
    "content-type",
    "content-length",
    "te",
    "connection",
    "transfer-encoding",
    // The binary tensor extension's framing (see protocol::HEADER_LENGTH).
    "inference-header-content-length",
];

/// The `extra-headers` property as set. Its Debug names the fields only,
/// so settings can be printed safely.
#[derive(Clone, Default)]
pub struct HeadersProperty(pub Option<gst::Structure>);

impl fmt::Debug for HeadersProperty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&describe(self.0.as_deref()))
    }
}

/// What a log line may say about an `extra-headers` structure: its field
/// names, never their values.
pub fn describe(s: Option<&gst::StructureRef>) -> String {
    match s {
        None => "none".into(),
        Some(s) => {
            let names: Vec<&str> = s.fields().map(|f| f.as_str()).collect();
            format!(
                "{} field(s) [{}], values not shown",
                names.len(),
                names.join(", ")
            )
        }
    }
}

/// [`describe`] for a property value (a `GstStructure` or NULL).
pub fn describe_value(v: &glib::Value) -> String {
    describe(v.get::<Option<gst::Structure>>().ok().flatten().as_deref())
}

/// The checked headers, in field order (array elements in their order).
/// Kept as plain `http` types so every transport can send them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ExtraHeaders(Vec<(HeaderName, HeaderValue)>);

impl ExtraHeaders {
    /// Checks `s`. An error names the field, never its value.
    pub fn new(s: Option<&gst::StructureRef>) -> Result<Self, String> {
        let mut out = Vec::new();
        for (field, value) in s.into_iter().flat_map(|s| s.iter()) {
            let name = header_name(field)?;
            let values: Vec<glib::Value> = if let Ok(a) = value.get::<gst::Array>() {
                a.iter().map(|v| v.to_value()).collect()
            } else if let Ok(l) = value.get::<gst::List>() {
                l.iter().map(|v| v.to_value()).collect()
            } else {
                vec![value.to_value()]
            };
            for v in &values {
                let text = as_string(v).ok_or_else(|| {
                    format!(
                        "extra-headers field '{field}' holds a {} that has no string form",
                        v.type_()
                    )
                })?;
                let mut v = HeaderValue::from_str(&text).map_err(|_| {
                    format!(
                        "extra-headers field '{field}': its value is not a valid header \
                         value (visible ASCII only, no line breaks)"
                    )
                })?;
                // Never indexed by HTTP/2 header compression, shown as
                // "Sensitive" by HeaderValue's Debug.
                v.set_sensitive(true);
                out.push((name.clone(), v));
            }
        }
        Ok(ExtraHeaders(out))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        self.0.iter().map(|(n, v)| (n, v))
    }
}

impl fmt::Debug for ExtraHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (name, value) in &self.0 {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{name}=<elided, {} bytes>", value.len())?;
        }
        Ok(())
    }
}

fn header_name(field: &str) -> Result<HeaderName, String> {
    let lower = field.to_ascii_lowercase();
    if field.starts_with(':') || lower.starts_with("grpc-") || RESERVED.contains(&lower.as_str()) {
        return Err(format!(
            "extra-headers field '{field}' is a header the element sets itself; it cannot be \
             an extra header"
        ));
    }
    HeaderName::from_bytes(field.as_bytes())
        .map_err(|_| format!("extra-headers field '{field}' is not a valid HTTP header name"))
}

/// A value's text: a string as is, another type through GLib's transform
/// to a string (as souphttpsrc does); `None` for a NULL string or a type
/// without one.
fn as_string(v: &glib::Value) -> Option<String> {
    if let Ok(s) = v.get::<Option<String>>() {
        return s;
    }
    v.transform::<String>()
        .ok()?
        .get::<Option<String>>()
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ExtraHeaders, String> {
        gst::init().unwrap();
        let s: gst::Structure = s.parse().unwrap();
        ExtraHeaders::new(Some(&s))
    }

    fn pairs(h: &ExtraHeaders) -> Vec<(String, String)> {
        h.iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
            .collect()
    }

    #[test]
    fn fields_strings_arrays_and_other_types() {
        let h = parse(
            "headers, Authorization=\"Bearer T\", x-tag=<\"a\", \"b\">, x-n=(int)5, \
             x-l={ \"c\" }, x-b=true",
        )
        .unwrap();
        assert_eq!(
            pairs(&h),
            [
                ("authorization", "Bearer T"),
                ("x-tag", "a"),
                ("x-tag", "b"),
                ("x-n", "5"),
                ("x-l", "c"),
                ("x-b", "TRUE"),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        assert!(h.iter().all(|(_, v)| v.is_sensitive()));
        assert_eq!(ExtraHeaders::new(None).unwrap().iter().count(), 0);
    }

    #[test]
    fn debug_and_descriptions_never_show_values() {
        let h = parse("headers, authorization=\"Bearer secret-token\"").unwrap();
        assert_eq!(format!("{h:?}"), "authorization=<elided, 19 bytes>");
        let s: gst::Structure = "headers, authorization=\"Bearer secret-token\", x-a=1"
            .parse()
            .unwrap();
        let text = format!("{:?}", HeadersProperty(Some(s.clone())));
        assert_eq!(text, "2 field(s) [authorization, x-a], values not shown");
        assert!(!describe_value(&s.to_value()).contains("secret"));
        assert_eq!(format!("{:?}", HeadersProperty(None)), "none");
    }

    #[test]
    fn bad_fields_are_named_without_their_value() {
        for (s, field) in [
            ("headers, Content-Type=\"secret\"", "Content-Type"),
            ("headers, grpc-timeout=\"secret\"", "grpc-timeout"),
            ("headers, te=\"secret\"", "te"),
            ("headers, x/y=\"secret\"", "x/y"),
        ] {
            let err = parse(s).unwrap_err();
            assert!(err.contains(&format!("'{field}'")), "{s}: {err}");
            assert!(!err.contains("secret"), "{s}: {err}");
        }
        let s = gst::Structure::builder("headers")
            .field("x-a", "line\nsecret")
            .build();
        let err = ExtraHeaders::new(Some(&s)).unwrap_err();
        assert!(err.contains("'x-a'") && !err.contains("secret"), "{err}");
    }
}
