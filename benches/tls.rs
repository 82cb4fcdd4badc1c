//! TLS costs on one core, in memory (no sockets): a full and a resumed
//! handshake with mailgate's server settings (rustls + ring, ECDSA P-256,
//! tickets), and the relay path: encrypting and decrypting 64 KiB.
#![allow(missing_docs)] // criterion_main! defines an undocumented `main`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use std::io::{Read, Write};
use std::sync::Arc;

fn configs() -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let der = CertificateDer::from(cert.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .unwrap();
    server.ticketer = rustls::crypto::ring::Ticketer::new().unwrap();
    server.alpn_protocols = vec![b"imap".to_vec()];
    let mut roots = RootCertStore::empty();
    roots.add(der).unwrap();
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

/// Moves every pending record from `from` to `to`, draining `to`'s
/// plaintext into `sink` so that it never refuses input. Returns whether
/// anything moved.
fn transfer(
    from: &mut rustls::Connection,
    to: &mut rustls::Connection,
    buf: &mut Vec<u8>,
    sink: &mut [u8],
) -> (bool, usize) {
    let mut moved = false;
    let mut plaintext = 0;
    while from.wants_write() {
        buf.clear();
        from.write_tls(buf).unwrap();
        let mut rest = buf.as_slice();
        while !rest.is_empty() {
            to.read_tls(&mut rest).unwrap();
            to.process_new_packets().unwrap();
            while let Ok(n) = to.reader().read(sink) {
                if n == 0 {
                    break;
                }
                plaintext += n;
            }
        }
        moved = true;
    }
    (moved, plaintext)
}

/// Moves records both ways until neither end has anything to send; the
/// plaintext bytes the client received.
fn exchange(client: &mut rustls::Connection, server: &mut rustls::Connection) -> usize {
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut sink = vec![0u8; 64 * 1024];
    let mut received = 0;
    loop {
        let (a, _) = transfer(client, server, &mut buf, &mut sink);
        let (b, n) = transfer(server, client, &mut buf, &mut sink);
        received += n;
        if !a && !b {
            return received;
        }
    }
}

fn handshake(
    server: &Arc<ServerConfig>,
    client: &Arc<ClientConfig>,
) -> (rustls::Connection, rustls::Connection) {
    let name = ServerName::try_from("localhost").unwrap();
    let mut c = rustls::Connection::from(ClientConnection::new(client.clone(), name).unwrap());
    let mut s = rustls::Connection::from(ServerConnection::new(server.clone()).unwrap());
    exchange(&mut c, &mut s);
    assert!(!c.is_handshaking() && !s.is_handshaking());
    (c, s)
}

fn tls(c: &mut Criterion) {
    let (server, client) = configs();
    let mut group = c.benchmark_group("tls");
    group.throughput(Throughput::Elements(1));
    let mut no_resumption = (*client).clone();
    no_resumption.resumption = rustls::client::Resumption::disabled();
    let no_resumption = Arc::new(no_resumption);
    group.bench_function("handshake_full", |b| {
        b.iter(|| {
            let (_, s) = handshake(&server, &no_resumption);
            assert_eq!(s.handshake_kind(), Some(rustls::HandshakeKind::Full));
        })
    });
    let resuming = Arc::new((*client).clone());
    handshake(&server, &resuming);
    group.bench_function("handshake_resumed", |b| {
        b.iter(|| {
            let (_, s) = handshake(&server, &resuming);
            assert_eq!(s.handshake_kind(), Some(rustls::HandshakeKind::Resumed));
        })
    });
    let payload = vec![0x5au8; 64 * 1024];
    let (mut c, mut s) = handshake(&server, &client);
    group.throughput(Throughput::Bytes(payload.len() as u64));
    group.bench_function("relay_64k_encrypt_decrypt", |b| {
        b.iter(|| {
            s.writer().write_all(&payload).unwrap();
            assert_eq!(exchange(&mut c, &mut s), payload.len());
        })
    });
    group.finish();
}

criterion_group!(benches, tls);
criterion_main!(benches);
