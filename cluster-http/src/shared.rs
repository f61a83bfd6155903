//! What every connection of one server shares (TCP and HTTP/3 alike).

use std::sync::Arc;

use cluster_core::Worker;

use crate::drain::Drain;
use crate::endpoints::Endpoints;
use crate::slots::Slot;

/// What every connection of one server shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) worker: Worker,
    /// This worker's slot's counts, shared with the cluster.
    pub(crate) slot: Arc<Slot>,
    pub(crate) endpoints: Endpoints,
    pub(crate) drain: Drain,
    /// `Alt-Svc` for TCP responses, while HTTP/3 is served.
    pub(crate) alt_svc: Option<http::HeaderValue>,
}
