//! One QUIC connection's HTTP/3, served by the same service as TCP: the
//! service takes `http::Request<hyper::body::Incoming>`, which only hyper
//! can make, so each HTTP/3 request goes through an in-memory HTTP/2
//! connection to hyper's server, which runs the connection's [`Handler`]
//! (the endpoints, the counts, `ConnectionInfo` with the client's address
//! as it is now). On drain: GOAWAY, the requests finish, the connection
//! closes.

use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::Response;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming};
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::connection::Builders;
use crate::drain::DrainFlag;
use crate::exec::LocalExec;
use crate::handler::Handler;
use crate::{BoxError, Request};

/// The in-memory connection's buffer each way.
const BRIDGE_BUFFER: usize = 256 * 1024;
/// Beyond three round trips, what a client may take to acknowledge the
/// last response before the connection closes (QUIC's default maximum ACK
/// delay is 25 ms).
const ACK_GRACE: std::time::Duration = std::time::Duration::from_millis(100);
/// `H3_NO_ERROR`.
const H3_NO_ERROR: u32 = 0x100;

type H3Conn = h3::server::Connection<h3_quinn::Connection, Bytes>;
type Resolver = h3::server::RequestResolver<h3_quinn::Connection, Bytes>;
type Sender = hyper::client::conn::http2::SendRequest<RequestBody>;

/// Serves `conn` until it closes, or until the drain has let its requests finish.
pub(crate) async fn serve<S, B>(
    conn: quinn::Connection,
    handler: Handler<S>,
    builders: Rc<Builders>,
    exec: LocalExec,
    drain: DrainFlag,
    slot: std::sync::Arc<crate::slots::Slot>,
) where
    Handler<S>: hyper::service::Service<
            Request,
            Response = Response<B>,
            Error: Into<BoxError>,
            Future: 'static,
        > + 'static,
    B: Body<Data = Bytes, Error: Into<BoxError>> + 'static,
{
    let (server_io, client_io) = tokio::io::duplex(BRIDGE_BUFFER);
    let server = builders
        .http2()
        .serve_connection(TokioIo::new(server_io), handler);
    let mut tasks = JoinSet::new();
    tasks.spawn_local(async move {
        if let Err(e) = server.await {
            tracing::debug!(error = %e, "HTTP/3 bridge's server side ended");
        }
    });
    let handshake = hyper::client::conn::http2::Builder::new(exec)
        .max_concurrent_reset_streams(usize::MAX)
        .handshake::<_, RequestBody>(TokioIo::new(client_io))
        .await;
    let sender = match handshake {
        Ok((sender, client)) => {
            tasks.spawn_local(async move {
                let _ = client.await;
            });
            sender
        }
        Err(e) => {
            tracing::warn!(error = %e, "HTTP/3 bridge could not start");
            return;
        }
    };
    let mut h3: H3Conn = match h3::server::builder()
        .build(h3_quinn::Connection::new(conn.clone()))
        .await
    {
        Ok(h3) => h3,
        Err(e) => {
            tracing::debug!(error = %e, "HTTP/3 connection refused before its first request");
            return;
        }
    };
    let mut requests = JoinSet::new();
    let mut goaway_sent = false;
    loop {
        // After our GOAWAY no new stream is accepted: done once the last
        // request is (h3's `accept` ends by itself on the peer's GOAWAY only).
        if goaway_sent && requests.is_empty() {
            break;
        }
        tokio::select! {
            accepted = h3.accept() => match accepted {
                Ok(Some(resolver)) => {
                    slot.quic.streams.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    requests.spawn_local(request(resolver, sender.clone()));
                }
                // GOAWAY either way and every request done, or closed.
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "HTTP/3 connection ended");
                    break;
                }
            },
            () = drain.started(), if !goaway_sent => {
                goaway_sent = true;
                // The last stream already accepted is the last served.
                if let Err(e) = h3.shutdown(0).await {
                    tracing::debug!(error = %e, "HTTP/3 GOAWAY not sent");
                }
            }
            Some(_) = requests.join_next(), if !requests.is_empty() => {}
        }
    }
    while requests.join_next().await.is_some() {}
    // A close discards stream data not yet acknowledged: the client first
    // gets a few round trips to acknowledge the last responses (or to
    // close by itself, as a client told GOAWAY may).
    let grace = conn.rtt() * 3 + ACK_GRACE;
    let _ = tokio::time::timeout(grace, conn.closed()).await;
    conn.close(quinn::VarInt::from_u32(H3_NO_ERROR), b"");
    drop(sender);
    while tasks.join_next().await.is_some() {}
}

/// One request: its head and body to hyper, the response back.
async fn request(resolver: Resolver, mut sender: Sender) {
    let (req, stream) = match resolver.resolve_request().await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "HTTP/3 request refused");
            return;
        }
    };
    let (mut send, mut recv) = stream.split();
    let (mut parts, ()) = req.into_parts();
    parts.version = http::Version::HTTP_2;
    let (tx, body) = RequestBody::channel();
    let pump = async move {
        loop {
            match recv.recv_data().await {
                Ok(Some(mut chunk)) => {
                    let bytes = chunk.copy_to_bytes(chunk.remaining());
                    if tx.send(Ok(Frame::data(bytes))).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send(Err(Box::new(e) as BoxError)).await;
                    return;
                }
            }
        }
        if let Ok(Some(trailers)) = recv.recv_trailers().await {
            let _ = tx.send(Ok(Frame::trailers(trailers))).await;
        }
    };
    let exchange = async {
        if sender.ready().await.is_err() {
            return None;
        }
        sender
            .send_request(http::Request::from_parts(parts, body))
            .await
            .ok()
    };
    let (_, response) = tokio::join!(pump, exchange);
    let Some(response) = response else {
        send.stop_stream(h3::error::Code::H3_INTERNAL_ERROR);
        return;
    };
    let (parts, body) = response.into_parts();
    if let Err(e) = respond(&mut send, Response::from_parts(parts, ()), body).await {
        tracing::debug!(error = %e, "HTTP/3 response not sent whole");
    }
}

async fn respond(
    send: &mut h3::server::RequestStream<h3_quinn::SendStream<Bytes>, Bytes>,
    head: Response<()>,
    mut body: Incoming,
) -> Result<(), BoxError> {
    send.send_response(head).await?;
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        match frame.into_data() {
            Ok(data) => send.send_data(data).await?,
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    send.send_trailers(trailers).await?;
                    return Ok(());
                }
            }
        }
    }
    send.finish().await?;
    Ok(())
}

/// A request body fed from the HTTP/3 stream.
pub(crate) struct RequestBody {
    rx: mpsc::Receiver<Result<Frame<Bytes>, BoxError>>,
}

impl RequestBody {
    fn channel() -> (mpsc::Sender<Result<Frame<Bytes>, BoxError>>, RequestBody) {
        let (tx, rx) = mpsc::channel(4);
        (tx, RequestBody { rx })
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx.poll_recv(cx)
    }
}
