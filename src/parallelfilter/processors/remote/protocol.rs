// SPDX-License-Identifier: MPL-2.0
//! The Open Inference Protocol (KServe v2) over REST, as pure code: the
//! endpoints, the inference request (JSON, or a JSON header followed by
//! the tensor's bytes with the binary tensor data extension), and the
//! decoding of responses, server metadata and repository indexes. No I/O
//! here, so all of it is unit-tested.

use std::fmt::Write;

use bytes::Bytes;
use gst::glib;
use gst::prelude::*;
use serde_json::{Value, json};

/// The binary tensor data extension's header: the JSON header's length
/// when tensor bytes follow it, in requests and responses.
pub(super) const HEADER_LENGTH: &str = "inference-header-content-length";

/// Server readiness, after a server's base URL.
pub(super) const SERVER_READY: &str = "/v2/health/ready";
/// Server metadata: its extensions.
pub(super) const SERVER_METADATA: &str = "/v2";
/// The models a server has (a Triton and MLServer extension).
pub(super) const REPOSITORY_INDEX: &str = "/v2/repository/index";

/// Model readiness; `model` is the name as a path segment.
pub(super) fn model_ready(model: &str) -> String {
    format!("/v2/models/{model}/ready")
}

/// Model metadata: its inputs and outputs.
pub(super) fn model_metadata(model: &str) -> String {
    format!("/v2/models/{model}")
}

/// Inference.
pub(super) fn infer(model: &str) -> String {
    format!("/v2/models/{model}/infer")
}

/// Input tensor name when the model metadata names none.
pub(super) const DEFAULT_INPUT_NAME: &str = "input";

/// What goes into the input tensor.
pub(super) struct Tensor {
    pub datatype: &'static str,
    pub shape: Vec<i64>,
    /// The elements, little-endian (shared: a retry or gRPC sends it
    /// again without a copy).
    pub bytes: Bytes,
}

/// An encoded inference request.
pub(super) struct EncodedRequest {
    pub body: Bytes,
    /// With the binary extension, the JSON header's length (sent as
    /// [`HEADER_LENGTH`]); `None`: the body is all JSON.
    pub header_len: Option<usize>,
}

impl Tensor {
    /// The request carrying this tensor as input `input_name`, its data
    /// after the JSON header when the server takes `binary` tensors.
    pub(super) fn encode(&self, binary: bool, input_name: &str, id: u64) -> EncodedRequest {
        let mut input = json!({
            "name": input_name,
            "shape": self.shape,
            "datatype": self.datatype,
        });
        if binary {
            input["parameters"] = json!({ "binary_data_size": self.bytes.len() });
            let header = json!({ "id": id.to_string(), "inputs": [input] }).to_string();
            let mut body = Vec::with_capacity(header.len() + self.bytes.len());
            body.extend_from_slice(header.as_bytes());
            body.extend_from_slice(&self.bytes);
            return EncodedRequest {
                body: Bytes::from(body),
                header_len: Some(header.len()),
            };
        }
        // The data array written directly: a serde_json::Value per pixel
        // would cost far more than the numbers themselves.
        let mut s = json!({ "id": id.to_string(), "inputs": [input] }).to_string();
        // Reopen the input object: drop the closing "}]}".
        s.truncate(s.len() - 3);
        s.reserve(self.bytes.len() * 4 + 16);
        s.push_str(",\"data\":[");
        match self.datatype {
            "FP32" => {
                for (i, c) in self.bytes.chunks_exact(4).enumerate() {
                    let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                    let v = if v.is_finite() { v } else { 0.0 };
                    let _ = write!(s, "{}{v:?}", if i > 0 { "," } else { "" });
                }
            }
            _ => {
                for (i, b) in self.bytes.iter().enumerate() {
                    let _ = write!(s, "{}{b}", if i > 0 { "," } else { "" });
                }
            }
        }
        s.push_str("]}]}");
        EncodedRequest {
            body: Bytes::from(s),
            header_len: None,
        }
    }
}

/// Whether server metadata (`GET /v2`) lists the binary tensor data
/// extension.
pub(super) fn supports_binary(server_metadata: &Value) -> bool {
    server_metadata["extensions"]
        .as_array()
        .is_some_and(|e| e.iter().any(|x| x == "binary_tensor_data"))
}

/// The model's first input name, from its metadata.
pub(super) fn first_input(model_metadata: &Value) -> Option<String> {
    model_metadata["inputs"][0]["name"]
        .as_str()
        .map(str::to_string)
}

/// A model in a server's repository index.
pub(super) struct IndexEntry {
    pub name: String,
    pub state: Option<String>,
    pub reason: Option<String>,
}

impl IndexEntry {
    /// Without a state, listed means served.
    pub(super) fn ready(&self) -> bool {
        self.state
            .as_deref()
            .is_none_or(|s| s.eq_ignore_ascii_case("READY"))
    }

    /// "UNAVAILABLE: unloaded".
    pub(super) fn state_text(&self) -> String {
        let state = self.state.as_deref().unwrap_or("READY");
        match &self.reason {
            Some(r) => format!("{state}: {r}"),
            None => state.to_string(),
        }
    }
}

/// The entries of a repository index; `None` when it is not a list.
/// Entries without a name are skipped.
pub(super) fn parse_index(index: &Value) -> Option<Vec<IndexEntry>> {
    let entries = index.as_array()?.iter().filter_map(|m| {
        let text = |k: &str| m[k].as_str().filter(|v| !v.is_empty()).map(String::from);
        Some(IndexEntry {
            name: text("name")?,
            state: text("state"),
            reason: text("reason"),
        })
    });
    Some(entries.collect())
}

/// An output tensor of an answer.
#[derive(Debug)]
pub(super) struct Output {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
    pub data: Vec<glib::SendValue>,
}

impl Output {
    /// The `outputs` entry of the inference meta.
    pub(super) fn into_structure(self) -> gst::Structure {
        gst::Structure::builder("output")
            .field("name", self.name)
            .field("datatype", self.datatype)
            .field("shape", gst::Array::new(self.shape))
            .field("data", gst::Array::from_values(self.data))
            .build()
    }
}

/// Outputs of an inference response, JSON or with binary tensors after the
/// JSON header.
pub(super) fn parse_response(
    body: &[u8],
    header_len: Option<usize>,
) -> Result<Vec<Output>, String> {
    let (json, mut binary) = match header_len {
        Some(n) if n <= body.len() => (&body[..n], &body[n..]),
        Some(n) => return Err(format!("header length {n} beyond the body")),
        None => (body, &[][..]),
    };
    let v: Value = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    let outputs = v["outputs"]
        .as_array()
        .ok_or_else(|| "no 'outputs' array".to_string())?;
    let mut out = Vec::with_capacity(outputs.len());
    for o in outputs {
        let name = o["name"].as_str().unwrap_or_default();
        let datatype = o["datatype"].as_str().unwrap_or_default();
        let shape: Vec<i64> = o["shape"]
            .as_array()
            .map(|s| s.iter().filter_map(Value::as_i64).collect())
            .unwrap_or_default();
        let data: Vec<glib::SendValue> =
            if let Some(size) = o["parameters"]["binary_data_size"].as_u64() {
                let size = size as usize;
                if size > binary.len() {
                    return Err(format!("output '{name}': binary data cut short"));
                }
                let (this, rest) = binary.split_at(size);
                binary = rest;
                decode_binary(datatype, this)?
            } else {
                let mut flat = Vec::new();
                flatten(&o["data"], &mut flat);
                flat.into_iter()
                    .map(|x| json_value(datatype, x))
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("output '{name}': {e}"))?
            };
        // Without a shape there is nothing to check.
        if o["shape"].is_array() {
            check_elements(name, &shape, data.len())?;
        }
        out.push(Output {
            name: name.to_string(),
            datatype: datatype.to_string(),
            shape,
            data,
        });
    }
    Ok(out)
}

/// An output's data must fill its shape; a dynamic (negative) dimension
/// cannot be checked.
pub(super) fn check_elements(name: &str, shape: &[i64], len: usize) -> Result<(), String> {
    let elements = shape.iter().try_fold(1u64, |n, &d| {
        u64::try_from(d).ok().map(|d| n.saturating_mul(d))
    });
    match elements {
        Some(n) if n != len as u64 => Err(format!(
            "output '{name}': shape {shape:?} holds {n} elements, the data {len}"
        )),
        _ => Ok(()),
    }
}

fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| flatten(x, out)),
        Value::Null => {}
        x => out.push(x),
    }
}

fn is_integer(datatype: &str) -> bool {
    datatype.starts_with("INT") || datatype.starts_with("UINT") || datatype == "BOOL"
}

fn json_value(datatype: &str, v: &Value) -> Result<glib::SendValue, String> {
    Ok(match v {
        Value::String(s) => s.to_send_value(),
        Value::Bool(b) => i64::from(*b).to_send_value(),
        Value::Number(n) if is_integer(datatype) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i,
            (None, Some(u), _) => u.min(i64::MAX as u64) as i64,
            (None, None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.2e18 => f as i64,
            _ => return Err(format!("{n} is not a {datatype} value")),
        }
        .to_send_value(),
        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN).to_send_value(),
        other => other.to_string().to_send_value(),
    })
}

fn half_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let frac = (h & 0x3ff) as f32;
    match exp {
        0 => sign * frac * 2f32.powi(-24),
        31 if frac == 0.0 => sign * f32::INFINITY,
        31 => f32::NAN,
        e => sign * (1.0 + frac / 1024.0) * 2f32.powi(e - 15),
    }
}

pub(super) fn decode_binary(datatype: &str, b: &[u8]) -> Result<Vec<glib::SendValue>, String> {
    macro_rules! num {
        ($t:ty, $conv:expr) => {{
            let size = std::mem::size_of::<$t>();
            if b.len() % size != 0 {
                return Err(format!(
                    "{} bytes are not a whole number of {datatype} elements",
                    b.len()
                ));
            }
            b.chunks_exact(size)
                .map(|c| {
                    let v = <$t>::from_le_bytes(c.try_into().unwrap_or_default());
                    #[allow(clippy::redundant_closure_call)]
                    ($conv)(v).to_send_value()
                })
                .collect()
        }};
    }
    Ok(match datatype {
        "BOOL" | "UINT8" => num!(u8, i64::from),
        "INT8" => num!(i8, i64::from),
        "UINT16" => num!(u16, i64::from),
        "INT16" => num!(i16, i64::from),
        "UINT32" => num!(u32, i64::from),
        "INT32" => num!(i32, i64::from),
        "UINT64" => num!(u64, |v: u64| v.min(i64::MAX as u64) as i64),
        "INT64" => num!(i64, |v: i64| v),
        "FP16" => num!(u16, |v: u16| half_to_f32(v) as f64),
        "BF16" => num!(u16, |v: u16| f32::from_bits(u32::from(v) << 16) as f64),
        "FP32" => num!(f32, f64::from),
        "FP64" => num!(f64, |v: f64| v),
        "BYTES" => {
            let mut out = Vec::new();
            let mut rest = b;
            while rest.len() >= 4 {
                let n = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                if rest.len() < 4 + n {
                    return Err("BYTES element cut short".into());
                }
                out.push(String::from_utf8_lossy(&rest[4..4 + n]).to_send_value());
                rest = &rest[4 + n..];
            }
            if !rest.is_empty() {
                return Err("BYTES data ends inside an element's length".into());
            }
            out
        }
        other => return Err(format!("unknown datatype '{other}'")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_outputs_are_decoded() {
        gst::init().unwrap();
        let header = json!({"outputs": [
            {"name": "a", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}},
            {"name": "b", "datatype": "INT64", "shape": [1, 1], "data": [[7]]},
        ]})
        .to_string();
        let mut body = header.clone().into_bytes();
        body.extend(1.5f32.to_le_bytes());
        body.extend((-2f32).to_le_bytes());
        let out = parse_response(&body, Some(header.len())).unwrap();
        assert_eq!(out[0].data[1].get::<f64>().unwrap(), -2.0);
        assert_eq!(out[1].data[0].get::<i64>().unwrap(), 7);
        assert_eq!(out[1].shape, [1, 1]);
        assert!(parse_response(&body[..body.len() - 1], Some(header.len())).is_err());
    }

    #[test]
    fn malformed_outputs_are_errors() {
        gst::init().unwrap();
        let parse =
            |o: Value| parse_response(json!({ "outputs": [o] }).to_string().as_bytes(), None);
        let out = |datatype: &str, shape: Value, data: Value| {
            parse(json!({"name": "x", "datatype": datatype, "shape": shape, "data": data}))
        };
        assert!(out("INT32", json!([2]), json!([1, 2])).is_ok());
        assert!(out("INT32", json!([2]), json!([1.0, 2])).is_ok());
        assert!(out("INT32", json!([2]), json!([1.5, 2])).is_err());
        assert!(out("FP32", json!([3]), json!([1, 2])).is_err());
        assert!(out("FP32", json!([-1]), json!([1, 2])).is_ok());
        assert!(decode_binary("FP32", &[0; 7]).is_err());
        assert!(decode_binary("INT16", &[0; 4]).is_ok());
        assert!(decode_binary("BYTES", &[1, 0, 0, 0, b'a', 0]).is_err());
        assert!(decode_binary("BYTES", &[1, 0, 0, 0, b'a']).is_ok());
    }

    #[test]
    fn json_and_binary_bodies() {
        let t = Tensor {
            datatype: "FP32",
            shape: vec![1, 2],
            bytes: [0.5f32, -3.0]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect::<Vec<u8>>()
                .into(),
        };
        let r = t.encode(false, "x", 7);
        assert_eq!(r.header_len, None);
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["id"], "7");
        assert_eq!(v["inputs"][0]["name"], "x");
        assert_eq!(v["inputs"][0]["data"], json!([0.5, -3.0]));
        let r = t.encode(true, "x", 7);
        let n = r.header_len.unwrap();
        let v: Value = serde_json::from_slice(&r.body[..n]).unwrap();
        assert_eq!(v["inputs"][0]["parameters"]["binary_data_size"], 8);
        assert_eq!(&r.body[n..], &t.bytes[..]);
        let u = Tensor {
            datatype: "UINT8",
            shape: vec![1, 3],
            bytes: Bytes::from_static(&[0, 7, 255]),
        };
        let v: Value = serde_json::from_slice(&u.encode(false, "x", 0).body).unwrap();
        assert_eq!(v["inputs"][0]["data"], json!([0, 7, 255]));
    }

    #[test]
    fn metadata_and_index_are_read() {
        assert!(supports_binary(
            &json!({"extensions": ["model_repository", "binary_tensor_data"]})
        ));
        assert!(!supports_binary(&json!({"extensions": ["x"]})));
        assert!(!supports_binary(&json!({})));
        assert_eq!(
            first_input(&json!({"inputs": [{"name": "images"}, {"name": "b"}]})).as_deref(),
            Some("images")
        );
        assert_eq!(first_input(&json!({"inputs": []})), None);
        let index = parse_index(&json!([
            {"name": "a", "state": "READY"},
            {"name": "b", "state": "UNAVAILABLE", "reason": "unloaded"},
            {"name": "", "state": "READY"},
            {"state": "READY"},
        ]))
        .unwrap();
        assert_eq!(index.len(), 2);
        assert!(index[0].ready());
        assert!(!index[1].ready());
        assert_eq!(index[1].state_text(), "UNAVAILABLE: unloaded");
        assert!(parse_index(&json!({"name": "a"})).is_none());
    }

    #[test]
    fn half_floats() {
        assert_eq!(half_to_f32(0x3c00), 1.0);
        assert_eq!(half_to_f32(0xc000), -2.0);
        assert_eq!(half_to_f32(0), 0.0);
    }
}
