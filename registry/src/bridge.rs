//! A small runtime of a store's own, so that its blocking calls (the store
//! traits block) can drive async clients from any thread: the gRPC handlers'
//! blocking pool, a benchmark's plain thread or a test.

use std::future::Future;
use std::time::Duration;

use crate::error::{RegistryError, Result};

/// Runs futures on a runtime of its own and waits for them.
pub(crate) struct Bridge {
    name: &'static str,
    rt: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge").field("name", &self.name).finish()
    }
}

impl Bridge {
    /// Two worker threads named `algobay-<name>`.
    pub(crate) fn new(name: &'static str) -> Result<Bridge> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("algobay-{name}"))
            .enable_all()
            .build()
            .map_err(|e| RegistryError::Storage(format!("{name}: runtime: {e}")))?;
        Ok(Bridge { name, rt: Some(rt) })
    }

    /// Runs `fut` on the bridge's runtime and waits for it.
    pub(crate) fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        let rt = self
            .rt
            .as_ref()
            .ok_or_else(|| RegistryError::Storage(format!("{}: the store is closed", self.name)))?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv()
            .map_err(|_| RegistryError::Storage(format!("{}: the call was dropped", self.name)))?
    }

    /// Starts `fut` on the bridge's runtime without waiting.
    pub(crate) fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        if let Some(rt) = &self.rt {
            rt.spawn(fut);
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        // A runtime may not be dropped on an async thread; let one of its own go.
        if let Some(rt) = self.rt.take() {
            let _ = std::thread::Builder::new()
                .name(format!("algobay-{}-close", self.name))
                .spawn(move || rt.shutdown_timeout(Duration::from_secs(5)));
        }
    }
}
