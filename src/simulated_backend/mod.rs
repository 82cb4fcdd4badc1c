//! A simulated IMAP4rev1/POP3 back end: the demo's back end, the loadgen's
//! (`mailgate-loadgen backend`), and the tests' when Dovecot is not needed.
//!
//! Every user name is accepted with one configured password; the mailbox
//! holds deterministic synthetic messages ([`message`]), so a client can check
//! what it received byte for byte. It must be cheap enough that a benchmark
//! measures the proxy, not it: async on a tokio runtime of its own (one
//! thread per requested core), every `FETCH` / `RETR` answer built once at
//! start and written with one `write_all`, commands parsed in place by the
//! proxy's own IMAP framer and parser. It supports what mail clients, the
//! proxy's back-end login and the loadgen's scenarios send: `CAPABILITY`,
//! `ID`, `LOGIN`, `AUTHENTICATE PLAIN`, `SELECT`/`EXAMINE`, `LIST`,
//! `[UID] FETCH n BODY[]`, `IDLE`, `NOOP`, `LOGOUT`; POP3 `CAPA`, `USER`/
//! `PASS`, `AUTH PLAIN`, `STAT`, `LIST`, `UIDL`, `RETR`, `DELE`, `NOOP`,
//! `RSET`, `QUIT`. A `corrupt` mailbox flips one byte in the middle of every
//! message it serves, so tests can prove that clients notice. A mailbox
//! may hold given messages (a corpus) instead of synthetic ones, and may
//! speak `COMPRESS=DEFLATE` (RFC 4978) after login, as Dovecot's
//! `imap_zlib` does: its `FETCH` answers are then deflated once at start
//! too, each as a stream of its own (see [`imap`]).

mod imap;
mod pop3;

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Arc;

/// What the simulated back end serves.
#[derive(Debug, Clone, Default)]
pub struct Mailbox {
    /// The password every user must give.
    pub password: String,
    /// Sizes of the messages, in order (message 1 first).
    pub message_sizes: Vec<usize>,
    /// The messages themselves, served instead of synthetic ones of
    /// `message_sizes` when not empty (a corpus).
    pub messages: Vec<Vec<u8>>,
    /// Announce `COMPRESS=DEFLATE` after login and compress the IMAP
    /// connection when asked.
    pub compress: bool,
    /// Flip one byte in the middle of every message served (for tests that
    /// prove a client checks what it receives).
    pub corrupt: bool,
    /// The `UIDVALIDITY` that `SELECT` reports (0 stands for 1, the least
    /// valid value): different boxes say different numbers, so a client can
    /// tell which box a session reached.
    pub uid_validity: u32,
}

/// Message `number` (1-based) of `size` bytes: headers, then CRLF text lines,
/// some starting with `.` (to exercise POP3 dot-stuffing).
pub fn message(number: usize, size: usize) -> Vec<u8> {
    let mut out = format!(
        "From: sim@example.org\r\nTo: user@example.org\r\nSubject: message {number}\r\nMessage-ID: <{number}@sim.example.org>\r\n\r\n"
    )
    .into_bytes();
    let mut state = (number as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut column = 0;
    while out.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let byte = if column == 0 && state % 11 == 0 {
            b'.'
        } else if column >= 70 || (column > 0 && state % 53 == 0) {
            column = 0;
            out.push(b'\r');
            b'\n'
        } else {
            b' ' + (state % 94) as u8
        };
        if byte != b'\n' {
            column += 1;
        }
        out.push(byte);
    }
    out.truncate(size.saturating_sub(2));
    if let Some(last) = out.last_mut().filter(|b| **b == b'\r') {
        *last = b'x';
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// What the sessions share: the password and the answers built at start.
#[derive(Debug)]
struct Served {
    password: String,
    sizes: Vec<usize>,
    uid_validity: u32,
    compress: bool,
    /// Per message: `* n FETCH (UID n BODY[] {len}` CRLF, body, `)` CRLF.
    imap_fetch: Vec<Vec<u8>>,
    /// The same, deflated (each from a fresh compressor, ending on a sync
    /// flush) when the mailbox speaks `COMPRESS=DEFLATE`.
    imap_fetch_deflated: Vec<Vec<u8>>,
    /// Per message: `+OK` line, dot-stuffed body, `.` CRLF.
    pop3_retr: Vec<Vec<u8>>,
}

impl Served {
    fn new(mailbox: Mailbox) -> Self {
        let mut imap_fetch = Vec::new();
        let mut imap_fetch_deflated = Vec::new();
        let mut pop3_retr = Vec::new();
        let sizes: Vec<usize> = if mailbox.messages.is_empty() {
            mailbox.message_sizes.clone()
        } else {
            mailbox.messages.iter().map(Vec::len).collect()
        };
        for (i, &size) in sizes.iter().enumerate() {
            let number = i + 1;
            let mut body = match mailbox.messages.get(i) {
                Some(given) => given.clone(),
                None => message(number, size),
            };
            if mailbox.corrupt && !body.is_empty() {
                let middle = body.len() / 2;
                body[middle] = if body[middle] == b'x' { b'y' } else { b'x' };
            }
            let mut fetch =
                format!("* {number} FETCH (UID {number} BODY[] {{{size}}}\r\n").into_bytes();
            fetch.extend_from_slice(&body);
            fetch.extend_from_slice(b")\r\n");
            if mailbox.compress {
                imap_fetch_deflated.push(imap::deflate_alone(&fetch));
            }
            imap_fetch.push(fetch);
            let mut retr = format!("+OK {size} octets\r\n").into_bytes();
            retr.extend_from_slice(&dot_stuff(&body));
            retr.extend_from_slice(b".\r\n");
            pop3_retr.push(retr);
        }
        Self {
            password: mailbox.password,
            sizes,
            uid_validity: mailbox.uid_validity.max(1),
            compress: mailbox.compress,
            imap_fetch,
            imap_fetch_deflated,
            pop3_retr,
        }
    }

    /// Message `number` (1-based) if it exists.
    fn index(&self, number: &[u8]) -> Option<usize> {
        let n: usize = std::str::from_utf8(number).ok()?.trim().parse().ok()?;
        (1..=self.sizes.len()).contains(&n).then(|| n - 1)
    }

    fn password_ok(&self, password: &[u8]) -> bool {
        password == self.password.as_bytes()
    }
}

/// Whether a SASL initial response (base64) logs in: PLAIN with the
/// password, or OAUTHBEARER / XOAUTH2 with the password as the token.
fn sasl_ok(mechanism: &[u8], response: &[u8], served: &Served) -> bool {
    use crate::auth::oauth::{BearerMechanism, BearerMessage};
    if mechanism.eq_ignore_ascii_case(b"PLAIN") {
        return crate::auth::decode_plain(response)
            .is_ok_and(|c| served.password_ok(c.password.expose()));
    }
    let (Some(bearer), Ok(message)) = (
        BearerMechanism::parse(mechanism),
        crate::auth::decode_base64(response),
    ) else {
        return false;
    };
    matches!(
        bearer.decode(&message, 64 * 1024),
        Ok(BearerMessage::Login(login)) if served.password_ok(login.token.expose())
    )
}

/// A running simulated back end (stops when dropped: listeners and
/// connections close).
pub struct SimulatedBackend {
    /// IMAP address.
    pub imap: SocketAddr,
    /// POP3 address.
    pub pop3: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SimulatedBackend {
    /// Starts IMAP and POP3 listeners on `127.0.0.1` with free ports, served
    /// by one thread.
    pub fn start(mailbox: Mailbox) -> io::Result<Self> {
        Self::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST), 1, mailbox)
    }

    /// Starts IMAP and POP3 listeners on `ip` with free ports, served by
    /// `threads` threads.
    pub fn start_on(ip: IpAddr, threads: usize, mailbox: Mailbox) -> io::Result<Self> {
        let imap = TcpListener::bind((ip, 0))?;
        let pop3 = TcpListener::bind((ip, 0))?;
        imap.set_nonblocking(true)?;
        pop3.set_nonblocking(true)?;
        let (imap_addr, pop3_addr) = (imap.local_addr()?, pop3.local_addr()?);
        let runtime = if threads <= 1 {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
        } else {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .thread_name("simulated-backend")
                .enable_all()
                .build()?
        };
        let served = Arc::new(Served::new(mailbox));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("simulated-backend".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let imap = tokio::net::TcpListener::from_std(imap).expect("in a runtime");
                    let pop3 = tokio::net::TcpListener::from_std(pop3).expect("in a runtime");
                    let imap_loop =
                        accept_loop(imap, served.clone(), |s, m| Box::pin(imap::serve(s, m)));
                    let pop3_loop = accept_loop(pop3, served, |s, m| Box::pin(pop3::serve(s, m)));
                    tokio::select! {
                        _ = imap_loop => {}
                        _ = pop3_loop => {}
                        _ = stopped => {}
                    }
                });
                runtime.shutdown_background();
            })?;
        Ok(Self {
            imap: imap_addr,
            pop3: pop3_addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Blocks until the back end stops (never, unless dropped elsewhere).
    pub fn wait(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for SimulatedBackend {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

type SessionFuture = std::pin::Pin<Box<dyn std::future::Future<Output = io::Result<()>> + Send>>;

async fn accept_loop(
    listener: tokio::net::TcpListener,
    served: Arc<Served>,
    serve: fn(tokio::net::TcpStream, Arc<Served>) -> SessionFuture,
) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(stream, served.clone()));
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    }
}

/// POP3 byte-stuffing: a line starting with `.` gets another `.` (RFC 1939 §3).
pub fn dot_stuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 64);
    let mut at_line_start = true;
    for &b in body {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_deterministic_sized_and_crlf() {
        for size in [200, 1000, 65_536, 3_000_001] {
            let m = message(3, size);
            assert_eq!(m.len(), size);
            assert_eq!(m, message(3, size));
            assert!(m.ends_with(b"\r\n"));
            assert!(!m.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'));
        }
        assert_ne!(message(1, 5000), message(2, 5000));
        assert!(message(1, 100_000).windows(2).any(|w| w == b"\n."));
    }

    #[test]
    fn dot_stuffing() {
        assert_eq!(
            dot_stuff(b".a\r\nb\r\n..c\r\n"),
            b"..a\r\nb\r\n...c\r\n".to_vec()
        );
    }
}
