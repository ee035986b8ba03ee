// SPDX-License-Identifier: MPL-2.0
//! `context`: the pools elements of this process share, by name. A pool
//! lives as long as its members; the registry only keeps weak handles.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use tokio::runtime::Handle;

use super::super::frame::{Frame, SharedProcessor};
use super::state::{FrameEngine, Serialized, Tag};
use crate::engine::{Config, Engine, SharedPool, WeakSharedPool, lock};

type Pools = HashMap<String, WeakSharedPool<Frame, Tag, Serialized>>;

static POOLS: LazyLock<Mutex<Pools>> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// An engine in the pool named `context`, or with a pool of its own.
pub(super) fn engine(
    context: Option<&str>,
    config: Config,
    processor: SharedProcessor,
    handle: Handle,
) -> FrameEngine {
    let Some(name) = context else {
        return Engine::new(config, processor, handle);
    };
    let mut pools = lock(&POOLS);
    // Pools whose last member left.
    pools.retain(|_, pool| pool.upgrade().is_some());
    loop {
        let pool = match pools.get(name).and_then(WeakSharedPool::upgrade) {
            Some(pool) => pool,
            None => {
                let pool = SharedPool::new(handle.clone());
                pools.insert(name.to_owned(), pool.downgrade());
                pool
            }
        };
        match Engine::join(&pool, config.clone(), processor.clone()) {
            Some(engine) => return engine,
            // Its last member just left: a new pool.
            None => {
                pools.remove(name);
            }
        }
    }
}

/// Members of the pool named `context` now (for tests and logs).
pub(super) fn members(context: &str) -> usize {
    lock(&POOLS)
        .get(context)
        .and_then(WeakSharedPool::upgrade)
        .map_or(0, |pool| pool.members())
}
