//! The executor hyper's HTTP/2 connections spawn their streams on: the
//! worker's `LocalSet`, so services need not be `Send`. A stream that panics
//! is reported to the server, as a connection task's panic is.

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::sync::mpsc;

/// Spawns with `tokio::task::spawn_local`; panics go to `panics`.
#[derive(Debug, Clone)]
pub(crate) struct LocalExec {
    panics: mpsc::UnboundedSender<String>,
}

impl LocalExec {
    pub(crate) fn new(panics: mpsc::UnboundedSender<String>) -> LocalExec {
        LocalExec { panics }
    }
}

impl<F> hyper::rt::Executor<F> for LocalExec
where
    F: Future + 'static,
{
    fn execute(&self, future: F) {
        let panics = self.panics.clone();
        // An HTTP/2 stream, spawned from its connection: in its span.
        let future = tracing::Instrument::in_current_span(future);
        tokio::task::spawn_local(async move {
            if let Err(payload) = (CatchUnwind { future }).await {
                let _ = panics.send(cluster_core::hooks::panic_message(payload.as_ref()));
            }
        });
    }
}

pin_project! {
    /// A future whose panic becomes an `Err` with the payload.
    pub(crate) struct CatchUnwind<F> {
        #[pin]
        pub(crate) future: F,
    }
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let future = self.project().future;
        match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
            Ok(polled) => polled.map(Ok),
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}
