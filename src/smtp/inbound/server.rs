//! One accept loop per listener: admission (connection limits), implicit TLS for `submissions`, and one task
//! per session.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use super::Context;
use super::command::Reply;
use super::session::Session;
use super::session::io::Stream;
use crate::smtp::settings::ListenerKind;

/// Accepts until shutdown. Errors from `accept` (e.g. out of file descriptors) are logged and slowed down,
/// never fatal: the daemon keeps serving the connections it has.
pub async fn accept_loop(server: Arc<Context>, kind: ListenerKind, listener: TcpListener) {
    let mut shutdown = server.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = shutdown.recv() => return,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let server = server.clone();
                tokio::spawn(async move { handle(server, kind, tcp, peer).await });
            }
            Err(e) => {
                tracing::warn!(target: "mailctl::smtp", listener = kind.name(), error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn handle(server: Arc<Context>, kind: ListenerKind, mut tcp: TcpStream, peer: SocketAddr) {
    let _slot = match server.connections.admit(peer.ip()) {
        Ok(slot) => slot,
        Err(refusal) => {
            server.metrics.connection_refused(refusal);
            let bye = Reply::new(
                421,
                Some((4, 7, 0)),
                format!(
                    "{} Too many connections, try again later",
                    server.settings.hostname
                ),
            );
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                tcp.write_all(&bye.to_bytes()),
            )
            .await;
            return;
        }
    };
    let _ = tcp.set_nodelay(true);
    server.metrics.connection_opened(kind);
    let stream = if kind == ListenerKind::Submissions {
        let Some(tls) = &server.tls else {
            server.metrics.connection_closed(kind);
            return;
        };
        let handshake = Box::pin(tls.acceptor().accept(tcp));
        match tokio::time::timeout(server.settings.limits.command_timeout, handshake).await {
            Ok(Ok(s)) => Stream::Tls(Box::new(s)),
            Ok(Err(e)) => {
                tracing::debug!(target: "mailctl::smtp", client = %peer.ip(), error = %e, "TLS handshake failed");
                server.metrics.connection_closed(kind);
                return;
            }
            Err(_) => {
                server.metrics.connection_closed(kind);
                return;
            }
        }
    } else {
        Stream::Plain(tcp)
    };
    Session::run(server.clone(), kind, peer, stream).await;
    server.metrics.connection_closed(kind);
}
