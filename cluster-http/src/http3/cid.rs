//! quinn's connection IDs from the router: each names this endpoint's slot
//! and generation (see `cluster_net::quic`), and an ID that is not this
//! endpoint's is invalid to it, so quinn drops such a packet rather than
//! answer it with a stateless reset.

use cluster_net::quic::CID_LEN;
use cluster_net::QuicRouter;
use quinn::{ConnectionId, ConnectionIdGenerator};
use quinn_proto::InvalidCid;

pub(crate) struct Generator(pub(crate) QuicRouter);

impl ConnectionIdGenerator for Generator {
    fn generate_cid(&mut self) -> ConnectionId {
        ConnectionId::new(&self.0.new_cid())
    }

    fn validate(&self, cid: &ConnectionId) -> Result<(), InvalidCid> {
        if self.0.is_own(cid) {
            Ok(())
        } else {
            Err(InvalidCid)
        }
    }

    fn cid_len(&self) -> usize {
        CID_LEN
    }

    fn cid_lifetime(&self) -> Option<std::time::Duration> {
        None
    }
}
