//! The byte streams connections run on: a TCP or TLS socket, or an HTTP reply being captured.

use tokio::io::{AsyncRead, AsyncWrite};

pub(crate) trait AsyncStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> AsyncStream for T {}

/// An accepted connection, plain or TLS.
pub(crate) type Stream = Box<dyn AsyncStream>;
/// Where a session's bytes go: the socket, or an HTTP reply being captured.
pub(crate) type Writer = Box<dyn AsyncWrite + Unpin + Send>;
