//! A rustls connection (server or client side) driven through rustls's
//! unbuffered API over three buffers this module owns: ciphertext received
//! and not yet processed, plaintext decrypted and not yet taken, records
//! encoded and not yet sent. Each buffer is released once its bytes are
//! gone, so a quiet connection holds rustls's state and no buffer (rustls's
//! buffered `Connection` keeps a 4 KiB receive buffer for its whole life,
//! which was a fifth of an idle IMAPS session).
//!
//! Pure code: it never touches a socket ([`super::TlsStream`] moves the
//! bytes) and knows no session.

use rustls::client::UnbufferedClientConnection;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};
use std::io;

/// Ciphertext held while a record or a handshake message is incomplete:
/// rustls's 64 KiB limit for a handshake message, split into records, and
/// one large read beyond it. More is an error, not a bigger buffer.
pub const MAX_INCOMING: usize = 2 * 64 * 1024 + 1024;

/// Record overhead at most: a 5-byte header and, for TLS 1.2 AES-GCM, an
/// 8-byte explicit nonce and a 16-byte tag (TLS 1.3: content type and tag).
const RECORD_OVERHEAD: usize = 5 + 8 + 16;
/// Plaintext per record (TLS's maximum fragment).
const RECORD_PAYLOAD: usize = 16 * 1024;

/// rustls's two unbuffered connection kinds.
pub enum Conn {
    /// We are the client (a TLS back end).
    Client(UnbufferedClientConnection),
    /// We are the server (a client of ours).
    Server(UnbufferedServerConnection),
}

impl From<UnbufferedClientConnection> for Conn {
    fn from(conn: UnbufferedClientConnection) -> Self {
        Conn::Client(conn)
    }
}

impl From<UnbufferedServerConnection> for Conn {
    fn from(conn: UnbufferedServerConnection) -> Self {
        Conn::Server(conn)
    }
}

/// Where [`Records::advance`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Every complete record is processed: more ciphertext is needed for
    /// anything more (the handshake is blocked, or traffic flows).
    NeedInput,
    /// close_notify was sent and received: nothing more will come or go.
    Closed,
}

/// What the caller wants done once rustls lets application data flow.
#[derive(Clone, Copy)]
enum Intent<'a> {
    Read,
    Write(&'a [u8]),
    Close,
}

/// One step's outcome inside [`Records::drive`].
enum Step {
    Again,
    Stop(Progress),
}

/// The connection and its buffers.
pub struct Records {
    conn: Conn,
    incoming: Vec<u8>,
    plaintext: Vec<u8>,
    /// How much of `plaintext` was taken already.
    taken: usize,
    outgoing: Vec<u8>,
    peer_closed: bool,
    close_sent: bool,
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl Records {
    /// A connection with empty buffers; [`Records::advance`] produces its
    /// first flight (the client's hello).
    pub fn new(conn: impl Into<Conn>) -> Self {
        Self {
            conn: conn.into(),
            incoming: Vec::new(),
            plaintext: Vec::new(),
            taken: 0,
            outgoing: Vec::new(),
            peer_closed: false,
            close_sent: false,
        }
    }

    fn common(&self) -> &rustls::CommonState {
        match &self.conn {
            Conn::Client(c) => c,
            Conn::Server(c) => c,
        }
    }

    /// Whether the handshake is still under way.
    pub fn is_handshaking(&self) -> bool {
        self.common().is_handshaking()
    }

    /// Whether the session was resumed (an abbreviated handshake).
    pub fn resumed(&self) -> bool {
        matches!(
            self.common().handshake_kind(),
            Some(rustls::HandshakeKind::Resumed)
        )
    }

    /// Whether the peer sent close_notify.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Whether decrypted bytes wait to be taken.
    pub fn has_plaintext(&self) -> bool {
        self.taken < self.plaintext.len()
    }

    /// Moves plaintext into `into` (cleared first, up to its capacity) and
    /// returns how much; the plaintext buffer is released once emptied.
    pub fn take_plaintext(&mut self, into: &mut Vec<u8>) -> usize {
        into.clear();
        let n = into.capacity().min(self.plaintext.len() - self.taken);
        into.extend_from_slice(&self.plaintext[self.taken..self.taken + n]);
        self.taken += n;
        if self.taken == self.plaintext.len() {
            self.plaintext = Vec::new();
            self.taken = 0;
        }
        n
    }

    /// Records to send, if any; the caller sends them before the next
    /// ones (taken whole, so the order on the wire is the order encoded).
    pub fn take_outgoing(&mut self) -> Option<Vec<u8>> {
        if self.outgoing.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.outgoing))
        }
    }

    /// Adds `read` (the bytes just received) to the ciphertext; returns a
    /// buffer for the caller to reuse: `read` itself if its bytes were
    /// copied, or the empty buffer it replaced.
    pub fn receive(&mut self, read: Vec<u8>) -> io::Result<Vec<u8>> {
        if self.incoming.is_empty() {
            return Ok(std::mem::replace(&mut self.incoming, read));
        }
        if self.incoming.len() + read.len() > MAX_INCOMING {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "TLS record or handshake message over the size limit",
            ));
        }
        self.incoming.extend_from_slice(&read);
        Ok(read)
    }

    /// The ciphertext buffer, if it is empty and holds memory (for the
    /// caller's next read, or its pool).
    pub fn release_incoming(&mut self) -> Option<Vec<u8>> {
        (self.incoming.is_empty() && self.incoming.capacity() > 0)
            .then(|| std::mem::take(&mut self.incoming))
    }

    /// Processes every complete record received: plaintext is kept for
    /// [`Records::take_plaintext`], handshake messages and alerts to send
    /// for [`Records::take_outgoing`].
    pub fn advance(&mut self) -> io::Result<Progress> {
        self.drive(Intent::Read).map(|(progress, _)| progress)
    }

    /// Encrypts `plaintext` into records to send (after processing what
    /// was received, as rustls requires).
    pub fn write(&mut self, plaintext: &[u8]) -> io::Result<()> {
        match self.drive(Intent::Write(plaintext))? {
            (_, true) => Ok(()),
            (Progress::Closed, false) => Err(io::ErrorKind::BrokenPipe.into()),
            (Progress::NeedInput, false) => Err(io::Error::other(
                "TLS application data before the handshake completed",
            )),
        }
    }

    /// Queues close_notify (once).
    pub fn close(&mut self) -> io::Result<()> {
        if self.close_sent {
            return Ok(());
        }
        let (_, done) = self.drive(Intent::Close)?;
        self.close_sent = done;
        Ok(())
    }

    /// Runs rustls's states until it needs input or the connection is
    /// closed, carrying out `intent` when application data may flow.
    /// Returns where it stopped and whether the intent was carried out.
    fn drive(&mut self, intent: Intent<'_>) -> io::Result<(Progress, bool)> {
        let mut done = matches!(intent, Intent::Read);
        loop {
            let Self {
                conn,
                incoming,
                plaintext,
                outgoing,
                peer_closed,
                ..
            } = self;
            let mut out = Output {
                plaintext,
                outgoing,
                peer_closed,
                intent,
                done: &mut done,
            };
            let (discard, step) = match conn {
                Conn::Client(c) => out.handle(c.process_tls_records(incoming)),
                Conn::Server(c) => out.handle(c.process_tls_records(incoming)),
            };
            incoming.drain(..discard);
            match step? {
                Step::Again => {}
                Step::Stop(progress) => return Ok((progress, done)),
            }
        }
    }
}

/// Where one state's output goes.
struct Output<'a, 'b> {
    plaintext: &'a mut Vec<u8>,
    outgoing: &'a mut Vec<u8>,
    peer_closed: &'a mut bool,
    intent: Intent<'b>,
    done: &'a mut bool,
}

impl Output<'_, '_> {
    /// Handles one state; returns the ciphertext to discard with the step.
    fn handle<Data>(
        &mut self,
        status: UnbufferedStatus<'_, '_, Data>,
    ) -> (usize, io::Result<Step>) {
        let mut discard = status.discard;
        let state = match status.state {
            Ok(state) => state,
            Err(e) => return (discard, Err(tls_error(e))),
        };
        let step = match state {
            ConnectionState::ReadTraffic(mut traffic) => loop {
                match traffic.next_record() {
                    None => break Ok(Step::Again),
                    Some(Ok(record)) => {
                        discard += record.discard;
                        self.plaintext.extend_from_slice(record.payload);
                    }
                    Some(Err(e)) => break Err(tls_error(e)),
                }
            },
            ConnectionState::EncodeTlsData(mut encode) => {
                append(self.outgoing, 0, |out| match encode.encode(out) {
                    Ok(n) => Ok(n),
                    Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
                        Err(Some(required_size))
                    }
                    Err(_) => Err(None),
                })
                .map(|()| Step::Again)
            }
            // Encoded records are in `outgoing`, which the caller sends in
            // order before anything encoded later.
            ConnectionState::TransmitTlsData(transmit) => {
                transmit.done();
                Ok(Step::Again)
            }
            ConnectionState::BlockedHandshake => Ok(Step::Stop(Progress::NeedInput)),
            ConnectionState::PeerClosed => {
                *self.peer_closed = true;
                Ok(Step::Again)
            }
            ConnectionState::Closed => {
                *self.peer_closed = true;
                Ok(Step::Stop(Progress::Closed))
            }
            ConnectionState::WriteTraffic(mut traffic) => {
                let encrypted = match self.intent {
                    _ if *self.done => Ok(()),
                    Intent::Read => Ok(()),
                    Intent::Write(data) => {
                        let records = data.len().div_ceil(RECORD_PAYLOAD).max(1);
                        let guess = data.len() + records * RECORD_OVERHEAD;
                        append(self.outgoing, guess, |out| {
                            traffic.encrypt(data, out).map_err(encrypt_error)
                        })
                    }
                    Intent::Close => append(self.outgoing, 64, |out| {
                        traffic.queue_close_notify(out).map_err(encrypt_error)
                    }),
                };
                *self.done = true;
                encrypted.map(|()| Step::Stop(Progress::NeedInput))
            }
            // Early data is never enabled; nothing else exists today.
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "unexpected TLS state",
            )),
        };
        (discard, step)
    }
}

fn encrypt_error(e: EncryptError) -> Option<usize> {
    match e {
        EncryptError::InsufficientSize(InsufficientSizeError { required_size }) => {
            Some(required_size)
        }
        _ => None,
    }
}

/// Appends what `write` puts into a slice of `room` bytes (grown to the size
/// it asks for, `Err(Some(size))`) to `out`.
fn append(
    out: &mut Vec<u8>,
    mut room: usize,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, Option<usize>>,
) -> io::Result<()> {
    let start = out.len();
    loop {
        out.resize(start + room, 0);
        match write(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(Some(required)) if required > room => room = required,
            Err(_) => {
                out.truncate(start);
                return Err(io::Error::other("TLS record could not be encoded"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::test_configs;
    use mailgate_testkit::certs::TestCa;
    use rustls::pki_types::ServerName;

    /// A client and a server side, before their handshake.
    fn pair() -> (Records, Records) {
        let (server, client) = test_configs(&TestCa::new());
        let name = ServerName::try_from("localhost").unwrap();
        (
            Records::new(UnbufferedClientConnection::new(client, name).unwrap()),
            Records::new(UnbufferedServerConnection::new(server).unwrap()),
        )
    }

    /// Carries what `from` has to send to `to` in pieces of `piece` bytes,
    /// processing each as it arrives; whether there was anything.
    fn carry(from: &mut Records, to: &mut Records, piece: usize) -> bool {
        let Some(out) = from.take_outgoing() else {
            return false;
        };
        for chunk in out.chunks(piece) {
            to.receive(chunk.to_vec()).unwrap();
            to.advance().unwrap();
            to.release_incoming();
        }
        true
    }

    fn handshake(client: &mut Records, server: &mut Records, piece: usize) {
        client.advance().unwrap();
        while carry(client, server, piece) | carry(server, client, piece) {}
        assert!(!client.is_handshaking() && !server.is_handshaking());
    }

    /// Takes all plaintext `records` holds, `size` bytes at a time.
    fn take_all(records: &mut Records, size: usize) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = Vec::with_capacity(size);
        while records.has_plaintext() {
            let n = records.take_plaintext(&mut buf);
            assert!(n > 0 && n <= size);
            got.extend_from_slice(&buf);
        }
        got
    }

    #[test]
    fn records_split_anywhere_arrive_whole_and_a_quiet_connection_holds_no_buffer() {
        let (mut client, mut server) = pair();
        handshake(&mut client, &mut server, 7);
        let message: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        client.write(&message).unwrap();
        assert!(carry(&mut client, &mut server, 1000));
        assert_eq!(take_all(&mut server, 1024), message);

        server.write(b"* OK done\r\n").unwrap();
        assert!(carry(&mut server, &mut client, 3));
        assert_eq!(take_all(&mut client, 64), b"* OK done\r\n");

        for side in [&mut client, &mut server] {
            assert_eq!(side.incoming.capacity(), 0, "receive buffer released");
            assert_eq!(side.plaintext.capacity(), 0, "plaintext buffer released");
            assert!(side.take_outgoing().is_none());
        }
    }

    #[test]
    fn close_notify_each_way_closes_the_connection() {
        let (mut client, mut server) = pair();
        handshake(&mut client, &mut server, 1 << 20);
        client.close().unwrap();
        client.close().unwrap(); // once only
        assert!(carry(&mut client, &mut server, 1 << 20));
        assert!(server.peer_closed() && !server.has_plaintext());
        server.write(b"last words").unwrap(); // still allowed: half-closed
        server.close().unwrap();
        assert!(carry(&mut server, &mut client, 1 << 20));
        assert_eq!(take_all(&mut client, 64), b"last words");
        assert_eq!(client.advance().unwrap(), Progress::Closed);
        assert!(client.write(b"late").is_err());
    }

    #[test]
    fn application_data_before_the_handshake_is_refused() {
        let (mut client, _server) = pair();
        client.advance().unwrap();
        assert!(client.write(b"a001 LOGIN").is_err());
    }

    #[test]
    fn held_ciphertext_is_bounded() {
        let (_client, mut server) = pair();
        server.receive(vec![0x16; 10]).unwrap();
        server
            .receive(vec![0x16; MAX_INCOMING - 10])
            .expect("up to the limit");
        assert!(server.receive(vec![0x16]).is_err(), "one byte over");
    }

    #[test]
    fn garbage_is_a_tls_error() {
        let (_client, mut server) = pair();
        server
            .receive(b"a001 LOGIN alice secret\r\n".to_vec())
            .unwrap();
        let err = server.advance().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
