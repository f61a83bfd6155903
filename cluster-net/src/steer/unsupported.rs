//! Elsewhere than Linux: no kernel steering. [`probe`] says so, and a
//! [`Steering`] cannot exist, so the code that would use one is never run.

use std::os::fd::BorrowedFd;

use super::{Mode, Unsupported};

/// Never made: there is no such value.
pub(crate) enum Steering {}

impl Steering {
    pub(crate) fn for_group(_mode: Mode, _member: BorrowedFd<'_>) -> Result<Steering, Unsupported> {
        Err(reason())
    }

    pub(crate) fn mode(&self) -> Mode {
        match *self {}
    }

    pub(crate) fn publish(&self, _slot: usize, _open: usize, _full: bool) {
        match *self {}
    }

    pub(crate) fn took(&self, _slot: usize) {
        match *self {}
    }

    pub(crate) fn drained(&self, _slot: usize) {
        match *self {}
    }

    pub(crate) fn insert(
        &self,
        _slot: usize,
        _socket: BorrowedFd<'_>,
    ) -> Result<(), std::io::Error> {
        match *self {}
    }

    pub(crate) fn set_live(&self, _slot: usize, _live: bool) -> Result<(), std::io::Error> {
        match *self {}
    }
}

pub(crate) fn probe() -> Result<(), Unsupported> {
    Err(reason())
}

fn reason() -> Unsupported {
    Unsupported {
        reason: "kernel steering needs Linux".into(),
        denied: false,
    }
}

pub(crate) fn detach(_socket: &impl std::os::fd::AsFd) {}
