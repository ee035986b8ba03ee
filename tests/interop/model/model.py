# SPDX-License-Identifier: MPL-2.0
"""A tiny MLServer runtime for the interoperability test. The input's first
dimension is the batch (1 for a single frame); every output has one row per
frame: `mean` (FP32 [N], the mean of the frame's elements) and `nbytes`
(INT64 [N], the frame's element count)."""

import numpy as np
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput


class MeanModel(MLModel):
    async def load(self) -> bool:
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0])
        rows = x.reshape(x.shape[0], -1) if x.ndim > 1 else x.reshape(1, -1)
        n = rows.shape[0]
        return InferenceResponse(
            model_name=self.name,
            id=payload.id,
            outputs=[
                ResponseOutput(name="mean", datatype="FP32", shape=[n],
                               data=[float(v) for v in rows.mean(axis=1)]),
                ResponseOutput(name="nbytes", datatype="INT64", shape=[n],
                               data=[int(rows.shape[1])] * n),
            ],
        )
