# SPDX-License-Identifier: MPL-2.0
"""A tiny MLServer runtime for the interoperability test: answers every
inference with `mean` (FP32 [1], the mean of the input's elements) and
`nbytes` (INT64 [1], the input's element count)."""

import numpy as np
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput


class MeanModel(MLModel):
    async def load(self) -> bool:
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0])
        return InferenceResponse(
            model_name=self.name,
            id=payload.id,
            outputs=[
                ResponseOutput(name="mean", datatype="FP32", shape=[1],
                               data=[float(np.mean(x))]),
                ResponseOutput(name="nbytes", datatype="INT64", shape=[1],
                               data=[int(x.size)]),
            ],
        )
