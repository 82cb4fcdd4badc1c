//! The sans-I/O cost of one login: client pre-auth parsing and the back-end
//! login exchange, per protocol, without sockets. The end-to-end CPU per login
//! (perf/) is compared against this floor.
#![allow(missing_docs)] // criterion_main! defines an undocumented `main`

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use mailgate::auth::Secret;
use mailgate::imap::framing::Framer;
use mailgate::imap::{ImapBackendAuth, ImapBackendLogin, ImapPreAuth, ImapSettings};
use mailgate::login::{BackendEvent, BackendLogin, PreAuth, PreAuthEvent};
use mailgate::pop3::{Pop3BackendAuth, Pop3BackendLogin, Pop3PreAuth, Pop3Settings};
use std::rc::Rc;

fn client_side(c: &mut Criterion) {
    let imap = Rc::new(ImapSettings::default());
    let pop3 = Rc::new(Pop3Settings::default());
    let mut group = c.benchmark_group("client_preauth");
    group.throughput(Throughput::Elements(1));
    group.bench_function("imap_login_quoted", |b| {
        b.iter(|| {
            let mut m = ImapPreAuth::new(imap.clone());
            black_box(m.take_output());
            m.receive(b"a1 LOGIN \"alice@example.org\" \"correct horse battery\"\r\n");
            assert!(matches!(m.poll(), PreAuthEvent::Login(_)));
        })
    });
    group.bench_function("imap_login_literal_plus", |b| {
        b.iter(|| {
            let mut m = ImapPreAuth::new(imap.clone());
            m.receive(b"a1 LOGIN {17+}\r\nalice@example.org {21+}\r\ncorrect horse battery\r\n");
            assert!(matches!(m.poll(), PreAuthEvent::Login(_)));
        })
    });
    group.bench_function("imap_authenticate_plain_ir", |b| {
        b.iter(|| {
            let mut m = ImapPreAuth::new(imap.clone());
            m.receive(b"a1 AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUub3JnAGNvcnJlY3QgaG9yc2U=\r\n");
            assert!(matches!(m.poll(), PreAuthEvent::Login(_)));
        })
    });
    group.bench_function("pop3_user_pass", |b| {
        b.iter(|| {
            let mut m = Pop3PreAuth::new(pop3.clone());
            m.receive(b"USER alice@example.org\r\nPASS correct horse battery\r\n");
            assert!(matches!(m.poll(), PreAuthEvent::Login(_)));
        })
    });
    group.finish();

    let mut group = c.benchmark_group("framing");
    let line = {
        let mut l = b"a1 ID (".to_vec();
        while l.len() < 8000 {
            l.extend_from_slice(b"\"key\" \"value\" ");
        }
        l.extend_from_slice(b")\r\n");
        l
    };
    group.throughput(Throughput::Bytes(line.len() as u64));
    group.bench_function("imap_8k_line", |b| {
        b.iter(|| black_box(Framer::new(8192, 8192).scan(&line)))
    });
    group.finish();
}

fn backend_side(c: &mut Criterion) {
    let mut group = c.benchmark_group("backend_login");
    group.throughput(Throughput::Elements(1));
    group.bench_function("imap_dovecot_sasl_ir", |b| {
        b.iter(|| {
            let mut m = ImapBackendLogin::new(
                "alice@example.org",
                Secret::new(b"correct horse battery".to_vec()),
                ImapBackendAuth::Auto,
            );
            m.receive(b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN] Dovecot ready.\r\n");
            assert_eq!(m.poll(), BackendEvent::NeedInput);
            black_box(m.take_output());
            m.receive(b"mg1 OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH] Logged in\r\n");
            assert!(matches!(m.poll(), BackendEvent::Done(_)));
        })
    });
    group.bench_function("pop3_auth_plain", |b| {
        b.iter(|| {
            let mut m = Pop3BackendLogin::new(
                "alice@example.org",
                Secret::new(b"correct horse battery".to_vec()),
                Pop3BackendAuth::Plain,
            );
            m.receive(b"+OK Dovecot ready.\r\n");
            assert_eq!(m.poll(), BackendEvent::NeedInput);
            black_box(m.take_output());
            m.receive(b"+OK Logged in.\r\n");
            assert!(matches!(m.poll(), BackendEvent::Done(_)));
        })
    });
    group.finish();
}

criterion_group!(benches, client_side, backend_side);
criterion_main!(benches);
