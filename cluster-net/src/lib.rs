//! Listeners for `cluster_thread` workers: shared ports with five balance
//! modes, per-worker ports, inherited fds, systemd sockets and socket hand-off.
//!
//! **Not implemented yet**: this crate is a placeholder in the workspace so
//! that the layout is stable; it exports nothing.
