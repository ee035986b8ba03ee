// SPDX-License-Identifier: MPL-2.0
//! The engine's halts are the pads' flow errors: the element halts the
//! engine with what a push returned and returns upstream what the engine
//! refused with, so the mapping is one to one.

use crate::engine::Halt;

impl From<Halt> for gst::FlowError {
    fn from(halt: Halt) -> Self {
        match halt {
            Halt::Flushing => gst::FlowError::Flushing,
            Halt::Eos => gst::FlowError::Eos,
            Halt::NotLinked => gst::FlowError::NotLinked,
            Halt::NotNegotiated => gst::FlowError::NotNegotiated,
            Halt::NotSupported => gst::FlowError::NotSupported,
            Halt::Error => gst::FlowError::Error,
            Halt::CustomError => gst::FlowError::CustomError,
            Halt::CustomError1 => gst::FlowError::CustomError1,
            Halt::CustomError2 => gst::FlowError::CustomError2,
        }
    }
}

impl From<gst::FlowError> for Halt {
    fn from(err: gst::FlowError) -> Self {
        match err {
            gst::FlowError::Flushing => Halt::Flushing,
            gst::FlowError::Eos => Halt::Eos,
            gst::FlowError::NotLinked => Halt::NotLinked,
            gst::FlowError::NotNegotiated => Halt::NotNegotiated,
            gst::FlowError::NotSupported => Halt::NotSupported,
            gst::FlowError::Error => Halt::Error,
            gst::FlowError::CustomError => Halt::CustomError,
            gst::FlowError::CustomError1 => Halt::CustomError1,
            gst::FlowError::CustomError2 => Halt::CustomError2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flow_error_survives_a_halt() {
        use gst::FlowError::*;
        for err in [
            Flushing,
            Eos,
            NotLinked,
            NotNegotiated,
            NotSupported,
            Error,
            CustomError,
            CustomError1,
            CustomError2,
        ] {
            let halt = Halt::from(err);
            assert_eq!(gst::FlowError::from(halt), err);
            // Logs print a halt as they printed the flow error.
            assert_eq!(format!("{halt:?}"), format!("{err:?}"));
        }
    }
}
