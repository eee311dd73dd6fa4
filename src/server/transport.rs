//! The byte stream under a connection: plain TCP, or TLS over TCP driven by
//! rustls. Both read and write plaintext with `WouldBlock` semantics, so the
//! connection state machine above is the same for HTTP and HTTPS.

use mio::net::TcpStream;
use rustls::{ServerConfig, ServerConnection};
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;

/// A connection's socket, plain or wrapped in a rustls server connection.
pub struct Transport {
    sock: TcpStream,
    tls: Option<Box<ServerConnection>>,
    close_notify_sent: bool,
}

impl Transport {
    pub fn plain(sock: TcpStream) -> Transport {
        Transport {
            sock,
            tls: None,
            close_notify_sent: false,
        }
    }

    pub fn tls(sock: TcpStream, config: &Arc<ServerConfig>) -> io::Result<Transport> {
        let tls = ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
        Ok(Transport {
            sock,
            tls: Some(Box::new(tls)),
            close_notify_sent: false,
        })
    }

    pub fn socket(&mut self) -> &mut TcpStream {
        &mut self.sock
    }
}

/// A connection's byte stream as `Conn` uses it: plaintext in and out with
/// `WouldBlock` semantics, whatever is underneath (plain TCP, TLS, or an
/// in-memory stream in tests).
pub trait Stream {
    /// A TLS handshake is under way (each step may cost a key exchange).
    fn is_handshaking(&self) -> bool;
    /// Whether a read shorter than the buffer proves the stream drained.
    fn short_read_drains(&self) -> bool;
    /// Read plaintext: `Ok(0)` at the end of the stream, `WouldBlock` when
    /// nothing more can be had now.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Write plaintext; returns how much was taken.
    fn write(&mut self, data: &[u8]) -> io::Result<usize>;
    /// Bytes below the plaintext (TLS records) wait for the socket.
    fn has_pending_output(&self) -> bool;
    /// Push what is pending below the plaintext; true once nothing is left.
    fn flush(&mut self) -> io::Result<bool>;
    /// Before closing: say so in the protocol (TLS close_notify), once.
    fn send_close_notify(&mut self);
    fn shutdown_write(&mut self);
    fn set_nodelay(&mut self);
    /// Read and discard raw bytes (after our last response).
    fn discard(&mut self, buf: &mut [u8]) -> io::Result<usize>;
}

impl Stream for Transport {
    /// The TLS handshake is not finished: the next read may cost a key
    /// exchange and a signature.
    fn is_handshaking(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.is_handshaking())
    }

    /// Whether a read shorter than the buffer proves the socket drained:
    /// true for plain TCP; with TLS, rustls may hold more plaintext.
    fn short_read_drains(&self) -> bool {
        self.tls.is_none()
    }

    /// Read plaintext: `Ok(0)` at the end of the stream, `WouldBlock` when
    /// nothing more can be had now (TLS handshake messages are answered on
    /// the way).
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = &mut self.tls else {
            return self.sock.read(buf);
        };
        loop {
            match tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The peer closed TCP without close_notify: an end all the same.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            match tls.read_tls(&mut self.sock) {
                Ok(0) => return Ok(0),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
            if let Err(e) = tls.process_new_packets() {
                // Send the alert rustls queued, once, then give up.
                let _ = write_tls(tls, &mut self.sock);
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            if tls.wants_write() {
                write_tls(tls, &mut self.sock)?;
            }
        }
    }

    /// Write plaintext; returns how much was taken (all of it unless the
    /// socket, or rustls's bounded buffer, is full).
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let Some(tls) = &mut self.tls else {
            return self.sock.write(data);
        };
        let n = tls.writer().write(data)?;
        write_tls(tls, &mut self.sock)?;
        if n == 0 && !data.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    /// Encrypted bytes wait for the socket to take them.
    fn has_pending_output(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Push what rustls holds; true once nothing is left.
    fn flush(&mut self) -> io::Result<bool> {
        match &mut self.tls {
            None => Ok(true),
            Some(tls) => {
                write_tls(tls, &mut self.sock)?;
                Ok(!tls.wants_write())
            }
        }
    }

    /// Before closing: TLS says close_notify (once). Plain TCP has nothing to say.
    fn send_close_notify(&mut self) {
        if let Some(tls) = &mut self.tls {
            if !self.close_notify_sent {
                tls.send_close_notify();
                self.close_notify_sent = true;
            }
        }
    }

    fn shutdown_write(&mut self) {
        let _ = self.sock.shutdown(Shutdown::Write);
    }

    fn set_nodelay(&mut self) {
        let _ = self.sock.set_nodelay(true);
    }

    /// Read and discard raw bytes (after our last response).
    fn discard(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.read(buf)
    }
}

/// Write rustls's records until it has none or the socket would block.
fn write_tls(tls: &mut ServerConnection, sock: &mut TcpStream) -> io::Result<()> {
    while tls.wants_write() {
        match tls.write_tls(sock) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
