// SPDX-License-Identifier: MPL-2.0
//! The engine alone: a runtime for it, numbers as frames and items, and a
//! consumer that reports a frame gone at once, as the element's src task
//! does.

use std::sync::LazyLock;

use gstparallel::engine::{Engine, Output, ProcessError};
use tokio::runtime::Runtime;

pub static RT: LazyLock<Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap()
});

/// Frames are numbers, tags are unit, items are numbers too.
pub type TestEngine = Engine<u64, (), u64>;

/// What the consumer got.
#[derive(Debug, PartialEq, Eq)]
pub enum Out {
    Frame(u64),
    Failed(ProcessError),
    Item(u64),
}

/// Pops like the element's src task: a frame is reported as gone at once.
pub fn pop(e: &TestEngine) -> Out {
    match e.pop().expect("engine halted") {
        Output::Frame(p) => {
            p.leaving.left(p.result.is_ok(), p.admitted.elapsed());
            match p.result {
                Ok(v) => Out::Frame(v),
                Err(err) => Out::Failed(err),
            }
        }
        Output::Item { item, .. } => Out::Item(item),
    }
}
