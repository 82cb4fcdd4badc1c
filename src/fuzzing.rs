//! Entry points that feed arbitrary bytes to the sans-I/O machines, shared by
//! the cargo-fuzz targets in `fuzz/` and by the randomized tests below.
//!
//! Each driver splits the input into reads of varying size, runs the machine
//! to quiescence after each, answers logins alternately with failure and
//! success, and checks what must hold for any input: no panic, bounded output
//! per step, and a timed-out machine always closes. (Bounds on buffered input
//! are pinned by the limit tests of each machine.)

use crate::auth::Secret;
use crate::imap::{ImapBackendAuth, ImapBackendLogin, ImapPreAuth, ImapSettings};
use crate::login::{
    BackendEvent, BackendGreeting, BackendLogin, LoginFailure, PreAuth, PreAuthEvent,
};
use crate::managesieve::{ManageSieveBackendLogin, ManageSievePreAuth, ManageSieveSettings};
use crate::pop3::{Pop3BackendAuth, Pop3BackendLogin, Pop3PreAuth, Pop3Settings};
use std::rc::Rc;

/// Output allowed per step: replies are short, and each step answers at most
/// what one read could contain (every command gets at most a few lines).
const MAX_OUTPUT_PER_STEP: usize = 1 << 20;

/// Splits `data` into chunks whose sizes come from the data itself.
fn chunks(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = data;
    std::iter::from_fn(move || {
        let (&size, tail) = rest.split_first()?;
        let take = (usize::from(size) % 64 + 1).min(tail.len());
        let (chunk, after) = tail.split_at(take);
        rest = after;
        (!chunk.is_empty()).then_some(chunk)
    })
}

fn drive_preauth<P: PreAuth>(mut machine: P, data: &[u8]) {
    let _ = machine.take_output();
    let mut logins = 0u32;
    for chunk in chunks(data) {
        machine.receive(chunk);
        loop {
            match machine.poll() {
                PreAuthEvent::NeedInput => break,
                PreAuthEvent::StartTls => machine.tls_started(),
                PreAuthEvent::Close => {
                    assert!(machine.take_output().len() <= MAX_OUTPUT_PER_STEP);
                    return;
                }
                PreAuthEvent::Login(_) => {
                    logins += 1;
                    if logins % 3 == 0 {
                        let done = machine.login_succeeded(&BackendGreeting::default());
                        assert!(done.to_client.len() <= MAX_OUTPUT_PER_STEP);
                        return;
                    }
                    machine.login_failed(if logins % 2 == 0 {
                        LoginFailure::Unavailable
                    } else {
                        LoginFailure::AuthFailed
                    });
                }
            }
        }
        assert!(machine.take_output().len() <= MAX_OUTPUT_PER_STEP);
    }
    machine.timed_out();
    assert_eq!(machine.poll(), PreAuthEvent::Close);
}

/// The bearer-token offer when the input's first byte asks for it (bit 3).
fn oauth_offer(data: &[u8]) -> Option<crate::login::OAuthOffer> {
    data.first()
        .is_some_and(|b| b & 8 == 8)
        .then(|| crate::login::OAuthOffer {
            mechanisms: crate::auth::oauth::BearerMechanism::ALL.to_vec(),
            max_token: 200,
        })
}

/// A bearer login to replay (its token is the `password`).
fn bearer(mechanism: crate::auth::oauth::BearerMechanism) -> crate::auth::oauth::Bearer {
    crate::auth::oauth::Bearer {
        mechanism,
        host: Some("mail.example.org".into()),
        port: Some(143),
    }
}

/// Arbitrary client bytes into the IMAP pre-auth machine.
pub fn imap_preauth(data: &[u8]) {
    let settings = ImapSettings {
        max_line: 256,
        max_literal: 128,
        max_auth_failures: 5,
        starttls: data.first().is_some_and(|b| b & 1 == 1),
        require_tls: data.first().is_some_and(|b| b & 2 == 2),
        oauth: oauth_offer(data),
        ..ImapSettings::default()
    };
    drive_preauth(ImapPreAuth::new(Rc::new(settings)), data);
}

/// Arbitrary client bytes into the POP3 pre-auth machine.
pub fn pop3_preauth(data: &[u8]) {
    let settings = Pop3Settings {
        max_line: 256,
        max_auth_failures: 5,
        starttls: data.first().is_some_and(|b| b & 1 == 1),
        require_tls: data.first().is_some_and(|b| b & 2 == 2),
        oauth: oauth_offer(data),
        ..Pop3Settings::default()
    };
    drive_preauth(Pop3PreAuth::new(Rc::new(settings)), data);
}

/// Arbitrary client bytes into the ManageSieve pre-auth machine, then
/// arbitrary server bytes (the same input) into its back-end login, with
/// and without STARTTLS and a client address.
pub fn managesieve(data: &[u8]) {
    let mut settings = ManageSieveSettings::default();
    settings.listener.max_line = 256;
    settings.listener.max_literal = 128;
    settings.listener.max_auth_failures = 5;
    settings.listener.starttls = data.first().is_some_and(|b| b & 1 == 1);
    settings.listener.require_tls = data.first().is_some_and(|b| b & 2 == 2);
    settings.listener.oauth = oauth_offer(data);
    let tls_active = data.first().is_some_and(|b| b & 4 == 4);
    drive_preauth(
        ManageSievePreAuth::with_tls(Rc::new(settings), tls_active),
        data,
    );
    let password = || Secret::new(b"p\"w\\ \xc3\xa9".to_vec());
    let client = crate::login::ClientAddress {
        peer: ([192, 0, 2, 7], 50123).into(),
        local: ([198, 51, 100, 1], 4190).into(),
    };
    drive_backend(
        ManageSieveBackendLogin::new("user@example.org", password()),
        data,
    );
    drive_backend(
        ManageSieveBackendLogin::new("user@example.org", password())
            .with_starttls()
            .with_client_address(client),
        data,
    );
    for mechanism in crate::auth::oauth::BearerMechanism::ALL {
        drive_backend(
            ManageSieveBackendLogin::new("user@example.org", password())
                .with_bearer(bearer(mechanism)),
            data,
        );
    }
}

fn drive_backend<B: BackendLogin>(mut machine: B, data: &[u8]) {
    for chunk in chunks(data) {
        machine.receive(chunk);
        let event = machine.poll();
        assert!(machine.take_output().len() <= MAX_OUTPUT_PER_STEP);
        if let BackendEvent::Done(_) = event {
            return;
        }
    }
}

/// Arbitrary server bytes into both back-end login machines, every method.
pub fn backend_login(data: &[u8]) {
    let password = || Secret::new(b"p\"w\\ \xc3\xa9".to_vec());
    for method in [
        ImapBackendAuth::Auto,
        ImapBackendAuth::Plain,
        ImapBackendAuth::Login,
    ] {
        drive_backend(
            ImapBackendLogin::new("user@example.org", password(), method),
            data,
        );
    }
    for method in [
        Pop3BackendAuth::Auto,
        Pop3BackendAuth::Plain,
        Pop3BackendAuth::User,
    ] {
        drive_backend(
            Pop3BackendLogin::new("user@example.org", password(), method),
            data,
        );
    }
    // Remembered offers (PLAIN, PIPELINING): the login without CAPA, its
    // re-check on a refusal.
    drive_backend(
        Pop3BackendLogin::new("user@example.org", password(), Pop3BackendAuth::Auto)
            .with_offers(crate::login::BackendOffers(0b11)),
        data,
    );
    // And with a greeting that offered XCLIENT (bits 3, 4) remembered: the
    // login before the greeting, in every mode.
    for method in [
        Pop3BackendAuth::Auto,
        Pop3BackendAuth::Plain,
        Pop3BackendAuth::User,
    ] {
        drive_backend(
            Pop3BackendLogin::new("user@example.org", password(), method)
                .with_client_address(crate::login::ClientAddress {
                    peer: std::net::SocketAddr::from(([192, 0, 2, 7], 40000)),
                    local: std::net::SocketAddr::from(([198, 51, 100, 1], 110)),
                })
                .with_offers(crate::login::BackendOffers(0b1_1011))
                .with_early_login(),
            data,
        );
    }
    drive_backend(
        ImapBackendLogin::new("user@example.org", password(), ImapBackendAuth::Auto)
            .with_compression(),
        data,
    );
    // Remembered greeting offers (bit 0 a greeting's list, then ID,
    // AUTH=PLAIN, SASL-IR, LITERAL+): the login before the greeting, and
    // its retry when the greeting offers otherwise.
    for (method, offers) in [
        (ImapBackendAuth::Auto, 0b0_1111),
        (ImapBackendAuth::Login, 0b1_0001),
    ] {
        drive_backend(
            ImapBackendLogin::new("user@example.org", password(), method)
                .with_offers(crate::login::BackendOffers(offers)),
            data,
        );
    }
    for mechanism in crate::auth::oauth::BearerMechanism::ALL {
        drive_backend(
            ImapBackendLogin::new("user@example.org", password(), ImapBackendAuth::Auto)
                .with_bearer(bearer(mechanism)),
            data,
        );
        drive_backend(
            Pop3BackendLogin::new("user@example.org", password(), Pop3BackendAuth::Auto)
                .with_bearer(bearer(mechanism)),
            data,
        );
    }
}

/// Arbitrary text as a Perdition-style LDAP URL: parsed or refused, never a
/// panic; what parses names at least one server and expands any key into a
/// filter.
pub fn ldap_url(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(spec) = crate::directory::ldap::query::parse_url(&text) {
        assert!(!spec.servers.is_empty());
        let _ = crate::directory::ldap::query::filter_for(&spec.filter, &text);
    }
}

/// Arbitrary bytes as an OAUTHBEARER or XOAUTH2 message: decoded or
/// refused, never a panic; a decoded login re-encodes to a message that
/// decodes to the same login.
pub fn bearer_message(data: &[u8]) {
    use crate::auth::oauth::*;
    let max = 1024;
    if let Ok(BearerMessage::Login(login)) = decode_oauthbearer(data, max) {
        let again = decode_oauthbearer(encode_oauthbearer(&login).expose(), max);
        assert_eq!(again, Ok(BearerMessage::Login(login)));
    }
    if let Ok(login) = decode_xoauth2(data, max) {
        assert_eq!(
            decode_xoauth2(encode_xoauth2(&login).expose(), max),
            Ok(login)
        );
    }
}

/// Arbitrary bytes as what an identity provider sends: a JWT (parsed,
/// its signature checked against a fixed key set, its claims against a
/// policy), a JWKS document, an introspection answer and an HTTP answer
/// around them — parsed or refused, never a panic; an HTTP body read is
/// never larger than its bound.
pub fn oauth_provider(data: &[u8]) {
    use crate::oauth::{fetch, introspection, jwks::KeySet, Jwt, JwtPolicy};
    let policy = JwtPolicy {
        issuer: Some("https://idp".into()),
        audiences: vec!["mail".into()],
        user_claim: "email".into(),
        leeway: std::time::Duration::from_secs(60),
    };
    let keys = KeySet::parse(
        br#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#,
    )
    .expect("a fixed, valid key set");
    if let Ok(jwt) = Jwt::parse(data) {
        let _ = jwt.check_signature(&keys);
        let _ = jwt.check_claims(&policy, "u@example.org", 1_800_000_000);
    }
    let _ = KeySet::parse(data);
    let introspection = introspection::IntrospectionPolicy {
        endpoint: fetch::Endpoint::parse("http://127.0.0.1/i").expect("a fixed URL"),
        client_id: "c".into(),
        client_secret: Secret::new(b"s".to_vec()),
        user_claim: "username".into(),
        leeway: std::time::Duration::from_secs(1),
        timeout: std::time::Duration::from_secs(1),
    };
    let _ = introspection::judge(data, &introspection, "u", 0);
    if let Ok(body) = fetch::answer_body(data, 64) {
        assert!(body.len() <= 64);
    }
    let _ = fetch::Endpoint::parse(&String::from_utf8_lossy(data));
}

/// Arbitrary bytes as a compressed back-end leg: inflated into rooms of
/// sizes taken from the data, an error or bytes but never a panic; and a
/// deflater's output of the same bytes (written in parts, stored and
/// compressed blocks mixed) inflates back to exactly them.
pub fn deflate_stream(data: &[u8]) {
    use crate::compress::{Deflater, Inflater};
    let mut inflater = Inflater::new();
    let mut at = 0;
    for &room in data.iter().take(64) {
        let room = usize::from(room) * 16 + 1;
        let mut out = Vec::with_capacity(room);
        match inflater.read(&data[at..], &mut out) {
            Ok((used, _)) => at += used,
            Err(_) => break,
        }
    }
    let mut wire = Vec::new();
    let mut deflater = Deflater::new(1);
    for part in data.chunks(700) {
        deflater.write(part, &mut wire).expect("deflate");
    }
    let mut inflater = Inflater::new();
    let mut back = Vec::new();
    let mut at = 0;
    while back.len() < data.len() {
        let mut out = Vec::with_capacity(4096);
        let (used, made) = inflater
            .read(&wire[at..], &mut out)
            .expect("our own stream");
        assert!(used > 0 || made > 0, "stalled");
        at += used;
        back.extend_from_slice(&out);
    }
    assert_eq!(back, data);
}

/// Arbitrary bytes as an auth_http server's answer: a head found in them
/// parses to an answer or a named refusal, never a panic; a route it gives
/// has a host and a port.
pub fn auth_http_answer(data: &[u8]) {
    use crate::directory::http::exchange::{head_end, parse_head, Answer};
    let Some(end) = head_end(data) else { return };
    if let Ok(head) = parse_head(&data[..end]) {
        let _ = head.body_to_skip();
        if let Ok(Answer::Route(route)) = head.answer() {
            assert!(!route.host.is_empty() && route.port.is_some_and(|p| p > 0));
        }
    }
}

/// Arbitrary text as a static map: parsed or refused with a line number,
/// never a panic; a parsed map answers lookups.
pub fn static_map(data: &[u8]) {
    use crate::directory::Directory;
    let text = String::from_utf8_lossy(data);
    let path = std::path::Path::new("fuzz.map");
    match crate::directory::StaticMap::parse(&text, path, data.first().is_some_and(|b| b & 1 == 1))
    {
        Ok(map) => {
            for user in ["alice@example.org", "", "@", "x@", &*text] {
                let answer = map.lookup(user);
                drop(answer);
            }
            let _ = map.ports().count();
        }
        Err(e) => assert!(e.line >= 1),
    }
}

/// Arbitrary text as a configuration file: loaded or refused with a message
/// naming the file, never a panic. (Files it names are looked up in a folder
/// that does not exist.)
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let path = std::path::Path::new("fuzz.toml");
    let base = std::path::Path::new("/nonexistent/mailgate-fuzz");
    if let Err(e) = crate::config::parse_str(&text, path, base) {
        assert!(e.to_string().contains("fuzz.toml") || e.to_string().contains("fuzz"));
    }
}

/// Arbitrary bytes as a logged-in IMAP session seen by the connection
/// cache's tracker, the client and server sides interleaved as the data
/// says, each fed the way the tracked relay feeds it (what a step did not
/// take is kept and offered again with the next bytes). Must hold for any
/// input: no panic; every byte is forwarded exactly once, in order, except
/// the client's `LOGOUT` answered here and our own command's answer; what
/// is held back never exceeds a line bound.
pub fn imap_tracker(data: &[u8]) {
    use crate::imap::tracker::{ClientStep, ServerStep, SessionTracker};
    const MAX_LINE: usize = 256;
    let Some((&flags, data)) = data.split_first() else {
        return;
    };
    let mut tracker = SessionTracker::new(MAX_LINE, flags & 1 == 1);
    let (mut client_kept, mut server_kept) = (Vec::new(), Vec::new());
    let (mut client_in, mut client_out, mut server_in, mut server_out) = (0, 0, 0, 0);
    // The LOGOUT answered here and what the client sent after it.
    let mut client_taken = 0;
    let mut parked = false;
    for (i, chunk) in chunks(data).enumerate() {
        if (flags >> (i % 7 + 1)) & 1 == 0 {
            if parked {
                continue;
            }
            client_in += chunk.len();
            client_kept.extend_from_slice(chunk);
            match tracker.client(&client_kept) {
                ClientStep::Forward(n) => {
                    assert!(n <= client_kept.len());
                    client_out += n;
                    client_kept.drain(..n);
                }
                ClientStep::Park {
                    forward, internal, ..
                } => {
                    assert!(forward <= client_kept.len());
                    assert!(internal.ends_with(b"\r\n"));
                    client_out += forward;
                    client_taken = client_kept.len() - forward;
                    client_kept.clear();
                    parked = true;
                }
            }
            assert!(
                client_kept.len() <= MAX_LINE + 1,
                "client bytes held: {}",
                client_kept.len()
            );
        } else {
            server_in += chunk.len();
            server_kept.extend_from_slice(chunk);
            match tracker.server(&server_kept) {
                ServerStep::Forward(n) => {
                    assert!(n <= server_kept.len());
                    server_out += n;
                    server_kept.drain(..n);
                }
                ServerStep::Internal { forward, len, .. } => {
                    assert!(forward + len <= server_kept.len());
                    server_out += forward + len;
                    server_kept.drain(..forward + len);
                }
            }
            assert!(
                server_kept.len() <= MAX_LINE + 1,
                "server bytes held: {}",
                server_kept.len()
            );
        }
    }
    assert_eq!(client_out + client_kept.len() + client_taken, client_in);
    assert_eq!(server_out + server_kept.len(), server_in);
}

/// Arbitrary bytes where a PROXY header should be: read the way the
/// listener reads (exactly what `advance` asks), never past the input's
/// header bound, never a panic; a complete v2 header round-trips through
/// the encoder when it names TCP addresses.
pub fn proxy_header(data: &[u8]) {
    use crate::proxy_header::{advance, Next, V2_MAX_BODY};
    let mut seen = 0;
    loop {
        match advance(&data[..seen]) {
            Ok(Next::Read(n)) => {
                seen += n;
                assert!(seen <= 16 + V2_MAX_BODY);
                if seen > data.len() {
                    return;
                }
            }
            Ok(Next::Done(header)) => {
                if let (Some(s), Some(d)) = (header.source, header.destination) {
                    let again = crate::proxy_header::v2(s, d);
                    let mut at = 0;
                    while let Ok(Next::Read(n)) = advance(&again[..at]) {
                        at += n;
                    }
                    assert_eq!(advance(&again[..at]), Ok(Next::Done(header)));
                }
                return;
            }
            Err(_) => return,
        }
    }
}

/// Arbitrary text as a Perdition configuration (and the same text as its
/// popmap and popmap.re, and as /etc/default/perdition): imported or
/// listed, never a panic; the TOML it writes always parses as TOML.
pub fn perdition_import(data: &[u8]) {
    use crate::import::perdition::{import, Input};
    let text = String::from_utf8_lossy(data);
    for also in [None, Some(text.as_ref())] {
        let imported = import(&Input {
            source: "fuzz.conf",
            config: &text,
            popmap: also,
            map_out: "users.map",
            password_out: "sql.pw",
            modes: None,
            defaults: also,
        });
        assert!(
            imported.toml.parse::<toml::Table>().is_ok(),
            "not TOML:\n{}",
            imported.toml
        );
    }
}

#[cfg(test)]
mod tests {
    //! A few thousand structured random inputs on every test run; the fuzz
    //! targets explore much further.

    use super::*;

    /// Fragments that make random inputs reach deep states.
    const FRAGMENTS: &[&[u8]] = &[
        b"a LOGIN ",
        b"AUTHENTICATE PLAIN",
        b" LOGIN",
        b"{5}\r\n",
        b"{3+}\r\n",
        b"{999999}\r\n",
        b"\"",
        b"\\",
        b"\r\n",
        b"\n",
        b" ",
        b"*\r\n",
        b"AGFAYg==",
        b"=",
        b"\0",
        b"\xff",
        b"(",
        b")",
        b"ID",
        b"NIL",
        b"CAPABILITY",
        b"LOGOUT",
        b"USER x\r\n",
        b"PASS y\r\n",
        b"AUTH PLAIN ",
        b"QUIT",
        b"CAPA",
        b"+OK",
        b"-ERR [SYS/TEMP]",
        b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR LITERAL+]",
        b"mg1 OK",
        b"mg1 NO [UNAVAILABLE]",
        b"mg0 OK",
        b"+ ",
        b".\r\n",
        b"SASL PLAIN",
        b"* CAPABILITY X",
        b"a SELECT INBOX\r\n",
        b"b FETCH 1 (FLAGS MODSEQ)\r\n",
        b"c IDLE\r\n",
        b"DONE\r\n",
        b"a OK done\r\n",
        b"b BAD x\r\n",
        b"* 1 FETCH (BODY[] {4}\r\n",
        b"z LOGOUT\r\n",
        b"AUTHENTICATE \"PLAIN\" ",
        b"\"AGFAYg==\"\r\n",
        b"STARTTLS\r\n",
        b"NOOP \"t\"\r\n",
        b"\"IMPLEMENTATION\" \"x\"\r\n",
        b"\"XCLIENT\"\r\n",
        b"OK \"ready\"\r\n",
        b"NO (TRYLATER) {3}\r\nabc\r\n",
        b"BYE \"x\"\r\n",
    ];

    fn random_input(seed: u64) -> Vec<u8> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut out = Vec::new();
        for _ in 0..(next() % 60) {
            let r = next();
            if r % 4 == 0 {
                out.push((r >> 8) as u8);
            } else {
                out.extend_from_slice(FRAGMENTS[(r >> 8) as usize % FRAGMENTS.len()]);
            }
        }
        out
    }

    #[test]
    fn random_inputs_never_break_the_machines() {
        for seed in 0..3000 {
            let input = random_input(seed);
            imap_preauth(&input);
            pop3_preauth(&input);
            backend_login(&input);
            imap_tracker(&input);
            managesieve(&input);
        }
    }

    /// Fragments of LDAP URLs, maps and configs.
    const TEXT_FRAGMENTS: &[&[u8]] = &[
        b"ldap://",
        b"ldaps://",
        b"3:",
        b"2:",
        b"/ou=People,dc=x?mail,host?sub?(mail=%s)",
        b"?",
        b"%2",
        b"%28",
        b" ",
        b"\n",
        b"[[listen]]\nprotocol = \"imap\"\naddress = \"127.0.0.1:0\"\n",
        b"[directory]\nkind = \"ldap\"\n",
        b"url = \"ldap://h/b?mail,host?sub?(m=%s)\"\n",
        b"[directory]\nkind = \"static\"\nmap = \"m\"\n",
        b"[directory]\nkind = \"http\"\nurl = \"http://127.0.0.1:9/a\"\n",
        b"HTTP/1.0 200 OK\r\n",
        b"Auth-Status: OK\r\nAuth-Server: 10.0.0.1\r\nAuth-Port: 143\r\n",
        b"Auth-Wait: 3\r\nAuth-Pass: \xe9\r\n\r\n",
        b"n,a=user@example.com,\x01",
        b"host=h\x01port=143\x01auth=Bearer abc=\x01\x01",
        b"user=u@x\x01auth=Bearer t\x01\x01",
        b"[limits]\nmax_line = 0\n",
        b"[relay]\npipe_size = 1\n",
        b"[backend]\nallowed_networks = [\"10.0.0.0/99\"]\n",
        b"*@example.org 10.0.0.1:143\n",
        b"* [::1]:0\n",
        b"alice@x box:99999\n",
        b"# comment\n",
        b"\xff",
        b"=",
        b"\"",
    ];

    fn random_text(seed: u64) -> Vec<u8> {
        let mut state = seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1;
        let mut out = Vec::new();
        for _ in 0..(state % 12) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            if state % 5 == 0 {
                out.push((state >> 16) as u8);
            } else {
                out.extend_from_slice(TEXT_FRAGMENTS[(state >> 8) as usize % TEXT_FRAGMENTS.len()]);
            }
        }
        out
    }

    #[test]
    fn random_urls_maps_and_configs_never_panic() {
        for seed in 0..2000 {
            let input = random_text(seed);
            ldap_url(&input);
            static_map(&input);
            config(&input);
            auth_http_answer(&input);
            bearer_message(&input);
            oauth_provider(&input);
            deflate_stream(&input);
        }
    }

    #[test]
    fn endless_input_without_line_end_is_cut_off() {
        let mut input = vec![0u8];
        input.extend(std::iter::repeat_n(b'x', 100_000));
        let with_sizes: Vec<u8> = input
            .chunks(63)
            .flat_map(|c| [&[62u8][..], c].concat())
            .collect();
        imap_preauth(&with_sizes);
        pop3_preauth(&with_sizes);
        backend_login(&with_sizes);
    }
}
