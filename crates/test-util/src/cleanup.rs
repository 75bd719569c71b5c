//! Clean-up that a test's guard runs when it is dropped, however the test ends.

use futures::future::BoxFuture;

/// Runs an async clean-up when dropped, on a thread and a small runtime of its own: a
/// `Drop` may run inside a runtime that must not be blocked on, or outside any.
#[must_use = "the clean-up runs when this is dropped"]
pub struct Cleanup(Option<Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>>);

impl Cleanup {
    pub fn new<F, Fut>(cleanup: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self(Some(Box::new(move || Box::pin(cleanup()))))
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Some(cleanup) = self.0.take() else {
            return;
        };
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for clean-up");
            runtime.block_on(cleanup());
        });
        let _ = thread.join();
    }
}
