// SPDX-License-Identifier: MPL-2.0
//! A batch in one request (pure): the frames' tensors stacked along the
//! first dimension, and the answer's outputs cut back into one slice per
//! frame.
//!
//! A frame's tensor already starts with a batch dimension of 1 (`[1, H,
//! W, C]`), so N frames make `[N, H, W, C]`: what a KServe or Triton model
//! with a batch dimension takes, and at batch-size 1 the same request as
//! without batching.

use super::protocol::{Output, Tensor};
use super::tensor::Appended;

/// The tensors of `n` frames as one, `[N, ...]`, written once: `frame(i,
/// bytes)` appends frame i's and gives its datatype and shape, which all
/// must share (a batch never crosses a caps change, so they do).
pub(super) fn stack(
    n: usize,
    mut frame: impl FnMut(usize, &mut Vec<u8>) -> Appended,
) -> Result<Tensor, String> {
    let mut bytes = Vec::new();
    let mut first: Option<(&'static str, Vec<i64>)> = None;
    for i in 0..n {
        let (datatype, shape) = frame(i, &mut bytes)?;
        match &first {
            None if shape.first() != Some(&1) => {
                return Err(format!(
                    "a frame's tensor has shape {shape:?}, not a first dimension of 1"
                ));
            }
            None => {
                bytes.reserve(bytes.len() * (n - 1));
                first = Some((datatype, shape));
            }
            Some((d, s)) if *d != datatype || *s != shape => {
                return Err(format!(
                    "the frames of one batch have different tensors: {d} {s:?} and \
                     {datatype} {shape:?}"
                ));
            }
            Some(_) => {}
        }
    }
    let (datatype, mut shape) = first.ok_or_else(|| "an empty batch has no tensor".to_string())?;
    shape[0] = n as i64;
    Ok(Tensor {
        datatype,
        shape,
        bytes: bytes.into(),
    })
}

/// Batches of the same datatype and shape but the first dimension as one
/// request's tensor, in order.
pub(super) fn join(parts: &[&Tensor]) -> Tensor {
    let mut shape = parts.first().map_or_else(Vec::new, |t| t.shape.clone());
    if let Some(first) = shape.first_mut() {
        *first = parts.iter().filter_map(|t| t.shape.first()).sum();
    }
    let mut bytes = Vec::with_capacity(parts.iter().map(|t| t.bytes.len()).sum());
    for t in parts {
        bytes.extend_from_slice(&t.bytes);
    }
    Tensor {
        datatype: parts.first().map_or("UINT8", |t| t.datatype),
        shape,
        bytes: bytes.into(),
    }
}

/// Each frame's slice of every output, `[1, ...]`, in frame order; an
/// output whose first dimension is not the batch's size is an error (also
/// for a batch of one: what a model answers must not depend on how full
/// its batches happen to be).
pub(super) fn split(outputs: Vec<Output>, n: usize) -> Result<Vec<Vec<Output>>, String> {
    let mut frames: Vec<Vec<Output>> = (0..n).map(|_| Vec::with_capacity(outputs.len())).collect();
    for o in outputs {
        if o.shape.first() != Some(&(n as i64)) || !o.data.len().is_multiple_of(n) {
            return Err(format!(
                "output '{}' has shape {:?} ({} elements) for a batch of {n} frames: \
                 the model's outputs lack the batch dimension (a first dimension of {n})",
                o.name,
                o.shape,
                o.data.len()
            ));
        }
        let per_frame = o.data.len() / n;
        let mut shape = o.shape;
        shape[0] = 1;
        let mut data = o.data.into_iter();
        for frame in &mut frames {
            frame.push(Output {
                name: o.name.clone(),
                datatype: o.datatype.clone(),
                shape: shape.clone(),
                data: data.by_ref().take(per_frame).collect(),
            });
        }
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use gst::prelude::*;

    use super::*;

    /// `stack` over ready-made UINT8 tensors.
    fn stacked(tensors: &[(Vec<i64>, Vec<u8>)]) -> Result<Tensor, String> {
        stack(tensors.len(), |i, bytes| {
            bytes.extend_from_slice(&tensors[i].1);
            Ok(("UINT8", tensors[i].0.clone()))
        })
    }

    fn output(name: &str, shape: Vec<i64>, data: Vec<i64>) -> Output {
        Output {
            name: name.into(),
            datatype: "INT64".into(),
            shape,
            data: data.into_iter().map(|x| x.to_send_value()).collect(),
        }
    }

    #[test]
    fn frames_stack_along_the_first_dimension() {
        let t = stacked(&[
            (vec![1, 2, 1], vec![1, 2]),
            (vec![1, 2, 1], vec![3, 4]),
            (vec![1, 2, 1], vec![5, 6]),
        ])
        .unwrap();
        assert_eq!(t.shape, [3, 2, 1]);
        assert_eq!(t.bytes[..], [1, 2, 3, 4, 5, 6]);
        let one = stacked(&[(vec![1, 4], vec![9; 4])]).unwrap();
        assert_eq!(one.shape, [1, 4]);
        assert!(stacked(&[(vec![1, 2], vec![0; 2]), (vec![1, 3], vec![0; 3])]).is_err());
        assert!(stacked(&[(vec![2, 2], vec![0; 4])]).is_err());
        assert!(stacked(&[]).is_err());
    }

    #[test]
    fn batches_join_along_the_first_dimension() {
        let a = stacked(&[(vec![1, 2], vec![1, 2]), (vec![1, 2], vec![3, 4])]).unwrap();
        let b = stacked(&[(vec![1, 2], vec![5, 6])]).unwrap();
        let t = join(&[&a, &b]);
        assert_eq!(t.shape, [3, 2]);
        assert_eq!(&t.bytes[..], [1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn outputs_are_cut_into_one_slice_per_frame() {
        gst::init().unwrap();
        let frames = split(
            vec![
                output("a", vec![2, 3], vec![1, 2, 3, 4, 5, 6]),
                output("b", vec![2], vec![7, 8]),
            ],
            2,
        )
        .unwrap();
        let values = |o: &Output| {
            o.data
                .iter()
                .map(|v| v.get::<i64>().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(frames.len(), 2);
        assert_eq!(
            (frames[1][0].shape.clone(), values(&frames[1][0])),
            (vec![1, 3], vec![4, 5, 6])
        );
        assert_eq!(
            (frames[0][1].shape.clone(), values(&frames[0][1])),
            (vec![1], vec![7])
        );
        assert_eq!(values(&frames[1][1]), [8]);
    }

    #[test]
    fn outputs_without_the_batch_dimension_are_an_error() {
        gst::init().unwrap();
        let err = split(vec![output("mean", vec![1], vec![5])], 4).unwrap_err();
        assert!(
            err.contains("'mean'") && err.contains("batch dimension"),
            "{err}"
        );
        assert!(split(vec![output("s", vec![], vec![5])], 2).is_err());
        // A batch of one needs the dimension too.
        assert!(split(vec![output("s", vec![3], vec![5, 6, 7])], 1).is_err());
        let one = split(vec![output("s", vec![1, 3], vec![5, 6, 7])], 1).unwrap();
        assert_eq!(one[0][0].shape, [1, 3]);
    }
}
