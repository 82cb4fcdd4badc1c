//! Strangers bounded in time and count before login, with real Dovecot
//! behind: clients that never read, that dribble, that pipeline without
//! reading, that flood from one address; connection caps with their one-line
//! refusals; command and protocol-error caps; the failure delay; user names
//! too long to look up. Each hostile client is closed at its bound while an
//! ordinary client logs in.

mod support;

use mailgate::check_client::ImapClient;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use support::stack::*;

/// A connection from `source` (a loopback address) to `to`, its greeting read.
fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let source: SocketAddr = format!("{source}:0").parse().unwrap();
    socket.bind(&source.into()).unwrap();
    socket.connect(&to.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
}

/// Everything the server sends until it closes.
fn read_to_close(stream: &mut TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut out = Vec::new();
    match stream.read_to_end(&mut out) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("not closed: {e}; got {:?}", String::from_utf8_lossy(&out)),
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One line from the server.
fn line(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    while !out.ends_with(b"\n") {
        match stream.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => out.push(byte[0]),
            Err(e) => panic!(
                "reading a line: {e}; got {:?}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// LOGIN through a raw connection; the tagged answer.
fn raw_login(stream: &mut TcpStream, user: &str, password: &str) -> String {
    write!(stream, "l1 LOGIN \"{user}\" \"{password}\"\r\n").unwrap();
    loop {
        let answer = line(stream);
        if answer.starts_with("l1 ") || answer.is_empty() {
            return answer;
        }
    }
}

fn admin_metric(stack: &Stack, selector: &str) -> f64 {
    let text = mailgate_testkit::admin::AdminClient::new(stack.mailgate.addr(2), None)
        .run(&mailgate_testkit::admin::Action::Metrics)
        .unwrap()
        .body;
    support::metric(&text, selector)
}

#[test]
fn a_client_that_does_not_read_its_answers_is_closed_at_the_preauth_deadline() {
    let stack = Stack::start(
        "[limits]\npreauth_timeout = \"2s\"\nmax_preauth_commands = 100000000\nmax_protocol_errors = 100000000\n",
    );
    let mut hostile = TcpStream::connect(stack.imap()).unwrap();
    hostile
        .set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    // Pipelines NOOPs and never reads: the answers fill both socket buffers,
    // mailgate's write blocks, and only the deadline can end the session.
    let commands = b"a NOOP\r\n".repeat(8192);
    let started = Instant::now();
    let closed = loop {
        match hostile.write(&commands) {
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break true, // reset or broken pipe: mailgate closed it
        }
        if started.elapsed() > Duration::from_secs(30) {
            break false;
        }
    };
    assert!(closed, "the connection was never closed");
    stack
        .mailgate
        .wait_for_log("outcome=\"preauth_timeout\"", Duration::from_secs(10));
    let mut c = ImapClient::connect(stack.imap()).unwrap();
    assert!(c.login(ALICE, ALICE_PW).unwrap().is_ok(), "others log in");
}

#[test]
fn commands_and_protocol_errors_before_login_are_capped() {
    let stack = Stack::start("[limits]\nmax_preauth_commands = 5\nmax_protocol_errors = 3\n");
    let mut imap = connect_from("127.0.0.1", stack.imap());
    imap.write_all(&b"n NOOP\r\n".repeat(6)).unwrap();
    let text = read_to_close(&mut imap);
    assert_eq!(text.matches("n OK").count(), 5, "{text}");
    assert!(
        text.contains("* BYE Too many commands before login."),
        "{text}"
    );

    let mut imap = connect_from("127.0.0.1", stack.imap());
    imap.write_all(b"a BOGUS\r\nb BOGUS\r\n").unwrap();
    assert!(line(&mut imap).contains("* OK"), "greeting");
    assert!(line(&mut imap).starts_with("a BAD"));
    assert!(line(&mut imap).starts_with("b BAD"));
    imap.write_all(b"n NOOP\r\nc BOGUS\r\n").unwrap();
    let text = read_to_close(&mut imap);
    assert!(text.starts_with("n OK"), "{text}");
    assert!(
        text.contains("c BAD") && text.contains("* BYE Too many invalid commands."),
        "{text}"
    );

    let mut pop3 = connect_from("127.0.0.1", stack.pop3());
    pop3.write_all(b"BOGUS\r\nBOGUS\r\nBOGUS\r\n").unwrap();
    let text = read_to_close(&mut pop3);
    assert_eq!(text.matches("-ERR Unknown command").count(), 3, "{text}");
    assert!(text.contains("-ERR Too many invalid commands"), "{text}");
}

#[test]
fn connections_over_the_per_address_cap_get_one_line_and_other_addresses_log_in() {
    let stack = Stack::start(
        "[limits]\nmax_preauth_per_address = 3\nexempt_networks = [\"127.0.0.3/32\"]\n[admin]\naddress = \"127.0.0.1:0\"\n",
    );
    let held: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut s = connect_from("127.0.0.1", stack.imap());
            assert!(line(&mut s).starts_with("* OK"));
            s
        })
        .collect();
    let mut over = connect_from("127.0.0.1", stack.imap());
    assert_eq!(
        read_to_close(&mut over),
        "* BYE [UNAVAILABLE] Too many connections, try again later.\r\n"
    );
    let mut over = connect_from("127.0.0.1", stack.pop3());
    assert_eq!(
        read_to_close(&mut over),
        "-ERR [SYS/TEMP] Too many connections, try again later.\r\n"
    );
    let mut other = connect_from("127.0.0.2", stack.imap());
    assert!(line(&mut other).starts_with("* OK"));
    assert!(
        raw_login(&mut other, ALICE, ALICE_PW).starts_with("l1 OK"),
        "another address logs in"
    );
    let exempt: Vec<TcpStream> = (0..5)
        .map(|_| {
            let mut s = connect_from("127.0.0.3", stack.imap());
            assert!(
                line(&mut s).starts_with("* OK"),
                "an exempt network has no cap"
            );
            s
        })
        .collect();
    assert_eq!(
        admin_metric(
            &stack,
            "mailgate_connections_refused_total{reason=\"max_preauth_per_address\"}"
        ),
        2.0
    );
    // Closing the held connections frees their places (once mailgate has
    // seen them close).
    drop(held);
    let freed = (0..250).any(|_| {
        let mut again = connect_from("127.0.0.1", stack.imap());
        if line(&mut again).starts_with("* OK") {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
        false
    });
    assert!(freed, "places never freed");
    drop(exempt);
}

#[test]
fn at_the_preauth_cap_a_newcomer_evicts_the_connection_idle_longest() {
    let stack = Stack::start_one_worker(
        "[limits]\nmax_preauth_connections = 2\n[admin]\naddress = \"127.0.0.1:0\"\n",
    );
    let mut first = connect_from("127.0.0.1", stack.imap());
    assert!(line(&mut first).starts_with("* OK"));
    let mut second = connect_from("127.0.0.2", stack.imap());
    assert!(line(&mut second).starts_with("* OK"));
    let mut third = connect_from("127.0.0.3", stack.imap());
    assert!(
        line(&mut third).starts_with("* OK"),
        "the newcomer is served"
    );
    assert_eq!(
        read_to_close(&mut first),
        "* BYE [UNAVAILABLE] Connection queue full, try again later.\r\n",
        "the connection idle longest is evicted"
    );
    assert!(raw_login(&mut second, ALICE, ALICE_PW).starts_with("l1 OK"));
    let mut fourth = connect_from("127.0.0.4", stack.imap());
    assert!(line(&mut fourth).starts_with("* OK"));
    let mut fifth = connect_from("127.0.0.5", stack.imap());
    assert!(line(&mut fifth).starts_with("* OK"));
    assert!(
        read_to_close(&mut third).starts_with("* BYE [UNAVAILABLE] Connection queue full"),
        "a logged-in session is never evicted; the oldest waiting one is"
    );
    assert_eq!(
        admin_metric(
            &stack,
            "mailgate_connections_refused_total{reason=\"preauth_evicted\"}"
        ),
        2.0
    );
    second.write_all(b"n1 NOOP\r\n").unwrap();
    let answer = loop {
        let answer = line(&mut second);
        if !answer.starts_with("* ") {
            break answer;
        }
    };
    assert!(
        answer.starts_with("n1 OK"),
        "the logged-in session is up: {answer:?}"
    );
}

#[test]
fn max_connections_counts_every_listener() {
    let stack = Stack::start("[limits]\nmax_connections = 2\nmax_preauth_connections = 10\n");
    let mut imap = connect_from("127.0.0.1", stack.imap());
    assert!(line(&mut imap).starts_with("* OK"));
    let mut pop3 = connect_from("127.0.0.2", stack.pop3());
    assert!(line(&mut pop3).starts_with("+OK"));
    let mut over = connect_from("127.0.0.3", stack.pop3());
    assert!(read_to_close(&mut over).starts_with("-ERR [SYS/TEMP] Too many connections"));
}

#[test]
fn slow_and_pipelining_clients_are_closed_at_their_deadlines_while_others_log_in() {
    mailgate::runtime::raise_fd_limit();
    let stack = Stack::start(
        "[limits]\npreauth_timeout = \"5s\"\nmax_preauth_per_address = 0\nmax_preauth_connections = 5000\nmax_preauth_commands = 100000000\n",
    );
    const DRIBBLERS: usize = 2000;
    const PIPELINERS: usize = 500;
    let mut dribblers: Vec<TcpStream> = (0..DRIBBLERS)
        .map(|_| {
            let s = TcpStream::connect(stack.imap()).unwrap();
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    let mut pipeliners: Vec<TcpStream> = (0..PIPELINERS)
        .map(|_| {
            let s = TcpStream::connect(stack.imap()).unwrap();
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    let burst = b"p NOOP\r\n".repeat(4096);
    // A byte a second from each dribbler, NOOPs without reading from each
    // pipeliner, while an ordinary client logs in. The ordinary client
    // connects in the middle of the flood, so its own pre-auth deadline
    // (5 s, like everyone's) leaves a loaded 2-core CI machine room for one
    // greeting and one login.
    let mut ordinary = None;
    for round in 0..3 {
        for s in &mut dribblers {
            let _ = s.write(&b"a NOOP\r\n"[round..round + 1]);
        }
        for s in &mut pipeliners {
            let _ = s.write(&burst);
        }
        if round == 1 {
            let mut client = ImapClient::connect(stack.imap()).unwrap();
            let answer = client.login(ALICE, ALICE_PW).unwrap();
            assert!(answer.is_ok(), "login during the flood: {answer:?}");
            ordinary = Some(client);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    // Past the deadline every one of them has been closed by mailgate.
    let closed = |s: &mut TcpStream| -> bool {
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut sink = [0u8; 65536];
        loop {
            match s.read(&mut sink) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    };
    let open: usize = dribblers
        .iter_mut()
        .chain(pipeliners.iter_mut())
        .map(|s| usize::from(!closed(s)))
        .sum();
    assert_eq!(open, 0, "connections still open past the deadline");
    let mut ordinary = ordinary.expect("logged in during round 1");
    assert!(ordinary.command("SELECT INBOX").unwrap().is_ok());
    let ends = stack
        .mailgate
        .wait_for_session_ends("imap", DRIBBLERS + PIPELINERS);
    let timed_out = ends
        .iter()
        .filter(|l| l.contains("outcome=\"preauth_timeout\""))
        .count();
    assert!(timed_out >= DRIBBLERS, "{timed_out} timed out");
}

#[test]
fn a_flood_from_one_address_does_not_stop_a_login_from_another() {
    mailgate::runtime::raise_fd_limit();
    let stack = Stack::start("[limits]\nmax_preauth_per_address = 50\n");
    let flood: Vec<TcpStream> = (0..300)
        .map(|_| connect_from("127.0.0.1", stack.imap()))
        .collect();
    let mut other = connect_from("127.0.0.2", stack.imap());
    assert!(line(&mut other).starts_with("* OK"));
    assert!(raw_login(&mut other, BOB, "wrong").starts_with("l1 NO"));
    assert!(raw_login(&mut other, ALICE, ALICE_PW).starts_with("l1 OK"));
    drop(flood);
}

#[test]
fn failed_logins_are_answered_after_the_same_delay_whatever_refused_them() {
    let stack = Stack::start("[limits]\nfailure_delay = \"1s\"\nmax_auth_failures = 10\n");
    let mut c = ImapClient::connect(stack.imap()).unwrap();
    for (user, password) in [("nobody@nowhere.test", "x"), (ALICE, "wrong")] {
        let asked = Instant::now();
        let r = c.login(user, password).unwrap();
        assert_eq!(r.status, "NO", "{user}");
        assert!(
            r.text.starts_with("[AUTHENTICATIONFAILED]"),
            "{user}: {}",
            r.text
        );
        // A lower bound only: a timer never fires early.
        assert!(
            asked.elapsed() >= Duration::from_secs(1),
            "{user} answered early"
        );
    }
    assert!(
        c.login(ALICE, ALICE_PW).unwrap().is_ok(),
        "success is not delayed"
    );
}

#[test]
fn user_names_over_255_bytes_fail_without_a_lookup() {
    let stack = Stack::start("[limits]\nmax_auth_failures = 10\n");
    let name = |len: usize| format!("{}@example.org", "a".repeat(len - "@example.org".len()));
    let mut c = ImapClient::connect(stack.imap()).unwrap();
    for len in [255, 256] {
        let r = c.login(&name(len), "pw").unwrap();
        assert!(
            r.text.starts_with("[AUTHENTICATIONFAILED]"),
            "{len}: {}",
            r.text
        );
    }
    let log = stack
        .mailgate
        .wait_for_log("user name longer than 255 bytes", Duration::from_secs(5));
    assert_eq!(
        log.matches("user name longer than 255 bytes").count(),
        1,
        "only 256"
    );
    assert!(
        log.contains("refused the login"),
        "255 reached the back end:\n{log}"
    );
}

#[test]
fn control_characters_in_user_names_fail_without_a_lookup_in_every_mechanism() {
    let stack = Stack::start("[limits]\nmax_auth_failures = 10\n");
    let mut imap = connect_from("127.0.0.1", stack.imap());
    assert!(line(&mut imap).starts_with("* OK"));
    let expect_no = |stream: &mut TcpStream, tag: &str| loop {
        let answer = line(stream);
        if answer.starts_with(tag) {
            assert!(answer.contains("NO"), "{answer:?}");
            break;
        }
        assert!(!answer.is_empty(), "closed");
    };
    // A literal user name with a control character (IMAP refuses NUL in
    // literals on its own).
    let user = "alice@example.org\x01bob@example.org";
    write!(
        imap,
        "a LOGIN {{{}+}}\r\n{user} \"{ALICE_PW}\"\r\n",
        user.len()
    )
    .unwrap();
    expect_no(&mut imap, "a ");
    // AUTHENTICATE PLAIN with a TAB in the authentication identity (a NUL
    // there would shift the fields of the back end's PLAIN message).
    use base64::Engine as _;
    let plain = base64::engine::general_purpose::STANDARD
        .encode(format!("\0ali\tce@example.org\0{ALICE_PW}"));
    write!(imap, "b AUTHENTICATE PLAIN {plain}\r\n").unwrap();
    expect_no(&mut imap, "b ");
    // AUTHENTICATE LOGIN with DEL.
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    write!(imap, "c AUTHENTICATE LOGIN\r\n").unwrap();
    assert!(line(&mut imap).starts_with("+ "));
    write!(imap, "{}\r\n", b64("alice\x7f@example.org")).unwrap();
    assert!(line(&mut imap).starts_with("+ "));
    write!(imap, "{}\r\n", b64(ALICE_PW)).unwrap();
    expect_no(&mut imap, "c ");
    // POP3 USER with a control character (SOH).
    let mut pop3 = connect_from("127.0.0.1", stack.pop3());
    assert!(line(&mut pop3).starts_with("+OK"));
    write!(pop3, "USER alice\x01@example.org\r\n").unwrap();
    assert!(line(&mut pop3).starts_with("+OK"));
    write!(pop3, "PASS {ALICE_PW}\r\n").unwrap();
    assert!(line(&mut pop3).starts_with("-ERR"));
    let log = stack
        .mailgate
        .wait_for_log("user name with a control character", Duration::from_secs(5));
    assert!(
        eventually_count(&stack, "user name with a control character", 4),
        "{log}"
    );
    assert!(
        !log.contains("refused the login"),
        "a name reached the back end:\n{log}"
    );
}

/// Whether `needle` appears `n` times in mailgate's log within 5 s.
fn eventually_count(stack: &Stack, needle: &str, n: usize) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if stack.mailgate.log().matches(needle).count() >= n {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn max_sessions_per_user_address_caps_one_user_from_one_address_only() {
    let stack = Stack::start("[limits]\nmax_sessions_per_user_address = 2\n");
    let logged_in = |source: &str, user: &str, password: &str| {
        let mut s = connect_from(source, stack.imap());
        assert!(line(&mut s).starts_with("* OK"));
        let answer = raw_login(&mut s, user, password);
        (s, answer)
    };
    let (first, a) = logged_in("127.0.0.1", ALICE, ALICE_PW);
    let (_second, b) = logged_in("127.0.0.1", ALICE, ALICE_PW);
    assert!(a.starts_with("l1 OK") && b.starts_with("l1 OK"), "{a} {b}");
    let (_third, c) = logged_in("127.0.0.1", ALICE, ALICE_PW);
    assert!(c.starts_with("l1 NO [UNAVAILABLE]"), "cap + 1: {c}");
    let (_other_user, d) = logged_in("127.0.0.1", CAROL, CAROL_PW);
    assert!(!d.starts_with("l1 NO [UNAVAILABLE]"), "another user: {d}");
    let (_other_address, e) = logged_in("127.0.0.2", ALICE, ALICE_PW);
    assert!(e.starts_with("l1 OK"), "another address: {e}");
    // A session's end gives its place back.
    drop(first);
    let freed = (0..250).any(|_| {
        let (_s, answer) = logged_in("127.0.0.1", ALICE, ALICE_PW);
        if answer.starts_with("l1 OK") {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
        false
    });
    assert!(freed, "the place was never given back");
}

/// Sets the flag when dropped.
struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A crowd that holds pre-auth places: connections that dribble one byte a
/// second and never finish a line, and connections that pipeline commands
/// and never read; each closed one is opened again, until `stop`.
fn crowd(
    to: SocketAddr,
    dribblers: &[(String, usize)],
    non_readers: &[(String, usize)],
    stop: &std::sync::atomic::AtomicBool,
) -> usize {
    use std::sync::atomic::Ordering;
    let open = |source: &str| {
        let s = connect_from(source, to);
        s.set_nonblocking(true).unwrap();
        s
    };
    let mut conns: Vec<(String, bool, TcpStream)> = Vec::new();
    for (sources, non_reader) in [(dribblers, false), (non_readers, true)] {
        for (source, count) in sources {
            for _ in 0..*count {
                conns.push((source.clone(), non_reader, open(source)));
            }
        }
    }
    let flood = b"p NOOP\r\n".repeat(32 * 1024);
    let mut reopened = 0;
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        for (source, non_reader, stream) in &mut conns {
            let closed = if *non_reader {
                // Any amount is fine: the stream is garbage either way.
                match stream.write(&flood) {
                    Ok(n) => n == 0,
                    Err(e) => e.kind() != ErrorKind::WouldBlock,
                }
            } else {
                // Dribblers read (and drop) what they get, to see the close.
                let gone = loop {
                    match stream.read(&mut buf) {
                        Ok(0) => break true,
                        Ok(_) => continue,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
                        Err(_) => break true,
                    }
                };
                gone || !matches!(stream.write(b"x"), Ok(1))
            };
            if closed {
                *stream = open(source);
                reopened += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(1000));
    }
    reopened
}

#[test]
fn a_crowd_of_strangers_cannot_lock_out_a_newcomer_and_nat_users_stay_logged_in() {
    mailgate::runtime::raise_fd_limit();
    let stack = Stack::start(
        "[limits]\nmax_preauth_connections = 1000\n[admin]\naddress = \"127.0.0.1:0\"\n",
    );
    // 200 users behind one (NAT) address, logged in and idling.
    let mut idlers: Vec<TcpStream> = (0..200)
        .map(|i| {
            let mut s = connect_from("127.4.0.1", stack.imap());
            assert!(line(&mut s).starts_with("* OK"), "idler {i} greeted");
            assert!(
                raw_login(&mut s, ALICE, ALICE_PW).starts_with("l1 OK"),
                "idler {i} logs in"
            );
            s.write_all(b"i IDLE\r\n").unwrap();
            assert!(line(&mut s).starts_with("+ "), "idler {i} idles");
            s
        })
        .collect();
    // 3 000 dribblers from 30 addresses, 300 non-readers from 10 more.
    let dribblers: Vec<(String, usize)> = (1..=30).map(|i| (format!("127.1.0.{i}"), 100)).collect();
    let non_readers: Vec<(String, usize)> =
        (1..=10).map(|i| (format!("127.2.0.{i}"), 30)).collect();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let to = stack.imap();
    let reopened = std::thread::scope(|scope| {
        let crowd = scope.spawn(|| crowd(to, &dribblers, &non_readers, &stop));
        // The crowd stops however this ends (a failed assertion included).
        let _stop = StopOnDrop(&stop);
        std::thread::sleep(Duration::from_secs(3));
        for round in 0..5 {
            let asked = Instant::now();
            let mut c = connect_from("127.3.0.1", stack.imap());
            let greeting = line(&mut c);
            assert!(greeting.starts_with("* OK"), "round {round}: {greeting:?}");
            let login = raw_login(&mut c, ALICE, ALICE_PW);
            assert!(
                login.starts_with("l1 OK"),
                "round {round}: the newcomer logs in: {login:?}"
            );
            c.write_all(b"s SELECT INBOX\r\nf FETCH 1 BODY[]\r\n")
                .unwrap();
            let fetched = loop {
                let answer = line(&mut c);
                if answer.starts_with("f ") {
                    break answer;
                }
            };
            assert!(fetched.starts_with("f OK"), "round {round}: {fetched:?}");
            let took = asked.elapsed();
            eprintln!("round {round}: connect to FETCH answered in {took:?}");
            // A bound that only a lock-out (until the crowd's preauth
            // timeout of 60 s) would pass, not a timing claim.
            assert!(took < Duration::from_secs(10), "round {round}: {took:?}");
            std::thread::sleep(Duration::from_secs(1));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        crowd.join().unwrap()
    });
    eprintln!("the crowd reopened {reopened} connections");
    let evicted = admin_metric(
        &stack,
        "mailgate_connections_refused_total{reason=\"preauth_evicted\"}",
    );
    assert!(evicted > 0.0, "the crowd filled the pre-auth places");
    for (i, s) in idlers.iter_mut().enumerate() {
        s.write_all(b"DONE\r\n").unwrap();
        let answer = loop {
            let answer = line(s);
            if !answer.starts_with("* ") {
                break answer;
            }
        };
        assert!(answer.starts_with("i OK"), "idler {i}: {answer:?}");
    }
}
