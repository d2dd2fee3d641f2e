//! Listeners with a bound on open connections: each accepted connection holds a permit
//! of its listener until it closes, and a listener at its bound stops accepting (new
//! clients wait in the kernel's backlog) instead of taking connections it cannot serve.
//! Serves both axum (HTTP) and tonic (gRPC) listeners. With TLS, handshakes run in tasks
//! of their own (at most [`HANDSHAKE_TIMEOUT`] each), so a slow client never holds up
//! the accepting of others; a connection is handed on once its handshake is done.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a TLS client may take to finish its handshake.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A TCP listener that keeps at most `max` connections open.
pub struct Limited {
    inner: Arc<TcpListener>,
    permits: Arc<Semaphore>,
    /// With TLS: connections whose handshake is done, from the accepting task.
    ready: Option<tokio::sync::mpsc::Receiver<(Conn, std::net::SocketAddr)>>,
}

impl Limited {
    pub fn new(inner: TcpListener, max: usize) -> Self {
        Limited {
            inner: Arc::new(inner),
            permits: Arc::new(Semaphore::new(max.clamp(1, Semaphore::MAX_PERMITS))),
            ready: None,
        }
    }

    /// The same, each connection a TLS one once `tls` has shaken hands with it.
    pub fn with_tls(inner: TcpListener, max: usize, tls: tokio_rustls::TlsAcceptor) -> Self {
        let mut plain = Limited::new(inner, max);
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let mut accepting = Limited {
            inner: Arc::clone(&plain.inner),
            permits: Arc::clone(&plain.permits),
            ready: None,
        };
        tokio::spawn(async move {
            loop {
                let (conn, addr) = accepting.accept_tcp().await;
                if tx.is_closed() {
                    return;
                }
                let (tls, ready) = (tls.clone(), tx.clone());
                tokio::spawn(async move {
                    let Conn { stream, _permit } = conn;
                    let Stream::Plain(tcp) = stream else { return };
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
                        Ok(Ok(t)) => {
                            let conn = Conn {
                                stream: Stream::Tls(Box::new(t)),
                                _permit,
                            };
                            let _ = ready.send((conn, addr)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, %addr, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
                    }
                });
            }
        });
        plain.ready = Some(rx);
        plain
    }

    /// The next connection, once one may be open.
    pub async fn next(&mut self) -> (Conn, std::net::SocketAddr) {
        match &mut self.ready {
            Some(rx) => match rx.recv().await {
                Some(c) => c,
                // the accepting task is gone: nothing more will come
                None => std::future::pending().await,
            },
            None => self.accept_tcp().await,
        }
    }

    async fn accept_tcp(&mut self) -> (Conn, std::net::SocketAddr) {
        // Never closed, so acquiring cannot fail; if it did, serving unlimited beats
        // stopping.
        let permit = Arc::clone(&self.permits).acquire_owned().await.ok();
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    return (
                        Conn {
                            stream: Stream::Plain(stream),
                            _permit: permit,
                        },
                        addr,
                    );
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
}

impl axum::serve::Listener for Limited {
    type Io = Conn;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Conn, std::net::SocketAddr) {
        self.next().await
    }

    fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.inner.local_addr()
    }
}

/// An accepted connection; its listener's permit goes back when it is dropped.
pub struct Conn {
    stream: Stream,
    _permit: Option<OwnedSemaphorePermit>,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        match &self.stream {
            Stream::Plain(s) => s.connect_info(),
            Stream::Tls(s) => s.get_ref().0.connect_info(),
        }
    }
}

/// Both kinds of stream, read and written alike.
macro_rules! both {
    ($self:ident, $s:ident => $e:expr) => {
        match &mut $self.stream {
            Stream::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            Stream::Tls($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
        }
    };
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        both!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        both!(self, s => s.poll_write(cx, buf))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        both!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        both!(self, s => s.poll_shutdown(cx))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        both!(self, s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// The connections of a limited listener as a stream, for tonic.
pub fn incoming(
    listener: Limited,
) -> impl futures_util::Stream<Item = io::Result<Conn>> + Send + 'static {
    futures_util::stream::unfold(listener, |mut l| async move {
        let (conn, _) = l.next().await;
        Some((Ok(conn), l))
    })
}
