//! [`FaultyStore`]: a test layer that makes the calls through it fail on demand, so the layers
//! above it (and the daemon) can be tested against outages without stopping a real server.
//! Built for tests only (the `test-servers` feature); never a backend.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::layer::content_store_impl;
use crate::{ContentStore, StoreError};

/// A transient failure, as a refused connection looks once `object_store` gave up on it.
pub fn outage() -> StoreError {
    StoreError::backend(
        "a call through the fault layer",
        object_store::Error::Generic {
            store: "fault layer",
            source: "connection refused (injected)".into(),
        },
    )
}

/// A failure that would repeat: the credentials are refused.
pub fn denied() -> StoreError {
    StoreError::backend(
        "a call through the fault layer",
        object_store::Error::PermissionDenied {
            path: "injected".into(),
            source: "403 (injected)".into(),
        },
    )
}

/// Passes every call to `inner`, except that the next [`Self::fail_next`] calls fail instead.
pub struct FaultyStore {
    inner: Arc<dyn ContentStore>,
    /// Calls still to fail, and how.
    faults: Mutex<(u32, fn() -> StoreError)>,
    /// Calls made through this layer (failed ones included).
    calls: AtomicU32,
}

impl FaultyStore {
    /// A layer over `inner` that fails nothing yet.
    pub fn new(inner: Arc<dyn ContentStore>) -> Self {
        Self {
            inner,
            faults: Mutex::new((0, outage)),
            calls: AtomicU32::new(0),
        }
    }

    /// Makes the next `count` calls (of any operation) fail with `error()`.
    pub fn fail_next(&self, count: u32, error: fn() -> StoreError) {
        *self.faults.lock().unwrap_or_else(|e| e.into_inner()) = (count, error);
    }

    /// How many calls went through this layer so far.
    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Counts a call and fails it if a fault is due.
    fn call(&self) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut faults = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *faults {
            (0, _) => Ok(()),
            (left, error) => {
                *left -= 1;
                Err(error())
            }
        }
    }
}

content_store_impl! {
    FaultyStore {
        inner => kind display_url admin;
        inner [call] => contains find_missing put_file read read_to_file get_action_result
            put_action_result replace_action_result quarantine;
    }
}
