//! Every message fetched through mailgate equals the file on Dovecot's disk,
//! byte for byte, over IMAP and POP3, including the multi-MiB one.

mod support;

use mailgate::check_client::{ImapClient, Pop3Client};
use support::stack::*;

#[test]
fn imap_fetch_and_pop3_retr_equal_the_files_on_disk() {
    let stack = Stack::start("");
    let on_disk: Vec<Vec<u8>> = (0..ALICE_SIZES.len())
        .map(|i| std::fs::read(stack.dovecot.message_path(ALICE, i)).unwrap())
        .collect();
    assert!(on_disk[2].len() >= 5 * 1024 * 1024);

    let mut imap = ImapClient::connect(stack.imap()).unwrap();
    assert!(imap.login(ALICE, ALICE_PW).unwrap().is_ok());
    for (i, expected) in on_disk.iter().enumerate() {
        let got = imap.fetch_message(i + 1).unwrap();
        assert!(
            got == *expected,
            "IMAP message {} differs ({} vs {} bytes)",
            i + 1,
            got.len(),
            expected.len()
        );
    }
    imap.logout().unwrap();

    let mut pop3 = Pop3Client::connect(stack.pop3()).unwrap();
    assert_eq!(pop3.login(ALICE, ALICE_PW).unwrap(), "+OK Logged in.");
    for (i, expected) in on_disk.iter().enumerate() {
        let got = pop3.retrieve(i + 1).unwrap();
        assert!(got == *expected, "POP3 message {} differs", i + 1);
    }
    pop3.command("QUIT").unwrap();

    // The session log line accounts for the bytes relayed, never the password.
    drop(imap);
    drop(pop3);
    let imap_line = &stack.mailgate.wait_for_session_ends("imap", 1)[0];
    let pop3_line = &stack.mailgate.wait_for_session_ends("pop3", 1)[0];
    assert!(
        !stack.mailgate.log().contains(ALICE_PW),
        "password in the log"
    );
    let total: u64 = on_disk.iter().map(|m| m.len() as u64).sum();
    for line in [imap_line, pop3_line] {
        let down: u64 = field(line, "bytes_down").parse().unwrap();
        assert!(down > total, "{line}");
        assert_eq!(field(line, "outcome"), "\"relayed\"", "{line}");
        assert_eq!(
            field(line, "relay"),
            "\"splice\"",
            "plaintext both sides: {line}"
        );
    }
}

fn field<'a>(line: &'a str, name: &str) -> &'a str {
    let start = line.find(&format!("{name}=")).unwrap() + name.len() + 1;
    line[start..].split(' ').next().unwrap()
}
