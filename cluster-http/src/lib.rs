//! HTTP serving on `cluster_thread` workers (hyper 1, tower services, axum
//! routers), with graceful drain, limits, health and metrics endpoints.
//!
//! **Not implemented yet**: this crate is a placeholder in the workspace so
//! that the layout is stable; it exports nothing.
