//! The simulated back end's POP3 side.

use super::Served;
use std::io;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub(super) async fn serve(stream: TcpStream, served: Arc<Served>) -> io::Result<()> {
    let (read, mut out) = stream.into_split();
    let mut reader = BufReader::new(read);
    out.write_all(b"+OK Simulated back end ready.\r\n").await?;
    let mut user = None;
    let mut logged_in = false;
    let mut line = Vec::new();
    loop {
        line.clear();
        if (&mut reader)
            .take(64 * 1024)
            .read_until(b'\n', &mut line)
            .await?
            == 0
        {
            return Ok(());
        }
        let text = String::from_utf8_lossy(line.trim_ascii_end()).into_owned();
        let (keyword, arg) = text.split_once(' ').unwrap_or((&text, ""));
        let sizes = &served.sizes;
        let reply = match (keyword.to_ascii_uppercase().as_str(), logged_in) {
            ("CAPA", _) => {
                "+OK\r\nUSER\r\nSASL PLAIN OAUTHBEARER XOAUTH2\r\nUIDL\r\nTOP\r\nPIPELINING\r\n.\r\n"
                    .to_owned()
            }
            ("QUIT", _) => {
                out.write_all(b"+OK bye\r\n").await?;
                return Ok(());
            }
            ("USER", false) => {
                user = Some(arg.to_owned());
                "+OK\r\n".to_owned()
            }
            ("PASS", false) => {
                logged_in = user.is_some() && served.password_ok(arg.as_bytes());
                login_reply(logged_in)
            }
            ("AUTH", false) => {
                let (mechanism, ir) = arg.split_once(' ').unwrap_or((arg, ""));
                logged_in = super::sasl_ok(mechanism.as_bytes(), ir.as_bytes(), &served);
                login_reply(logged_in)
            }
            (_, false) => "-ERR not logged in\r\n".to_owned(),
            ("NOOP" | "RSET", true) => "+OK\r\n".to_owned(),
            ("STAT", true) => format!("+OK {} {}\r\n", sizes.len(), sizes.iter().sum::<usize>()),
            ("LIST", true) => {
                let mut r = format!("+OK {} messages\r\n", sizes.len());
                for (i, s) in sizes.iter().enumerate() {
                    r.push_str(&format!("{} {s}\r\n", i + 1));
                }
                r + ".\r\n"
            }
            ("UIDL", true) => {
                let mut r = "+OK\r\n".to_owned();
                for i in 1..=sizes.len() {
                    r.push_str(&format!("{i} sim-{i}\r\n"));
                }
                r + ".\r\n"
            }
            ("RETR", true) => match served.index(arg.as_bytes()) {
                Some(i) => {
                    out.write_all(&served.pop3_retr[i]).await?;
                    continue;
                }
                None => "-ERR no such message\r\n".to_owned(),
            },
            ("DELE", true) => "+OK marked\r\n".to_owned(),
            _ => "-ERR unsupported\r\n".to_owned(),
        };
        out.write_all(reply.as_bytes()).await?;
    }
}

fn login_reply(ok: bool) -> String {
    if ok {
        "+OK Logged in.\r\n".to_owned()
    } else {
        "-ERR [AUTH] Authentication failed.\r\n".to_owned()
    }
}
