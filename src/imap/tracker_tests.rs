use super::*;

fn tracker() -> SessionTracker {
    SessionTracker::new(1024, true)
}

/// Feeds all of `bytes` from the client, as one read; the step.
fn client(t: &mut SessionTracker, bytes: &[u8]) -> ClientStep {
    t.client(bytes)
}

/// Feeds server bytes and expects them all forwarded.
fn server(t: &mut SessionTracker, bytes: &[u8]) {
    assert_eq!(
        t.server(bytes),
        ServerStep::Forward(bytes.len()),
        "{bytes:?}"
    );
}

fn park(t: &mut SessionTracker, bytes: &[u8]) -> (usize, String, Vec<u8>) {
    match client(t, bytes) {
        ClientStep::Park {
            forward,
            logout_tag,
            internal,
        } => (forward, logout_tag, internal),
        other => panic!("{other:?}: {}", t.unparkable_reason()),
    }
}

#[test]
fn a_plain_webmail_session_parks_with_unselect() {
    let mut t = tracker();
    assert_eq!(
        client(&mut t, b"a1 SELECT INBOX\r\n"),
        ClientStep::Forward(17)
    );
    assert!(!t.parkable(), "SELECT still running");
    server(
        &mut t,
        b"* 3 EXISTS\r\n* OK [UIDVALIDITY 1] ok\r\na1 OK [READ-WRITE] done\r\n",
    );
    assert_eq!(
        client(&mut t, b"a2 FETCH 1 BODY[]\r\n"),
        ClientStep::Forward(19)
    );
    server(
        &mut t,
        b"* 1 FETCH (BODY[] {12}\r\na2 OK fake\r\n)\r\na2 OK done\r\n",
    );
    assert!(t.parkable(), "{}", t.unparkable_reason());
    let (forward, tag, internal) = park(&mut t, b"a3 LOGOUT\r\n");
    assert_eq!((forward, tag.as_str()), (0, "a3"));
    assert_eq!(internal, b"mg1 UNSELECT\r\n");
    assert_eq!(
        t.server(b"mg1 OK Unselect completed.\r\n"),
        ServerStep::Internal {
            forward: 0,
            len: 28,
            ok: true
        }
    );
    assert!(t.parkable());
}

#[test]
fn a_literal_in_a_response_hides_a_tagged_look_alike() {
    let mut t = tracker();
    client(&mut t, b"a2 FETCH 1 BODY[]\r\n");
    // The literal's content looks like the answer; only the real one counts.
    server(&mut t, b"* 1 FETCH (BODY[] {13}\r\na2 OK inside");
    assert!(!t.parkable());
    server(&mut t, b"\r\n)\r\n");
    assert!(!t.parkable(), "the answer has not come yet");
    server(&mut t, b"a2 OK done\r\n");
    assert!(t.parkable());
}

#[test]
fn without_a_selected_mailbox_the_neutral_command_is_noop() {
    let mut t = tracker();
    let (forward, tag, internal) = park(&mut t, b"x LOGOUT\r\n");
    assert_eq!((forward, tag.as_str()), (0, "x"));
    assert_eq!(internal, b"mg1 NOOP\r\n");
}

#[test]
fn bytes_before_the_logout_are_forwarded_and_a_partial_line_is_kept() {
    let mut t = tracker();
    assert_eq!(client(&mut t, b"a NOOP\r\nb LOG"), ClientStep::Forward(8));
    server(&mut t, b"a OK\r\n");
    let (forward, tag, _) = park(&mut t, b"b LOGOUT\r\n");
    assert_eq!((forward, tag.as_str()), (0, "b"));
}

#[test]
fn a_pipelined_logout_behind_a_running_command_is_forwarded() {
    let mut t = tracker();
    let bytes = b"a NOOP\r\nb LOGOUT\r\n";
    assert_eq!(client(&mut t, bytes), ClientStep::Forward(bytes.len()));
}

#[test]
fn enable_and_compress_taint_the_session_for_good() {
    for command in [
        "ENABLE CONDSTORE",
        "COMPRESS DEFLATE",
        "NOTIFY NONE",
        "ID NIL",
    ] {
        let mut t = tracker();
        let line = format!("a {command}\r\n");
        client(&mut t, line.as_bytes());
        server(&mut t, b"a OK done\r\n");
        let step = client(&mut t, b"b LOGOUT\r\n");
        if command.starts_with("ID") {
            assert!(matches!(step, ClientStep::Park { .. }), "{command}");
        } else {
            assert_eq!(step, ClientStep::Forward(10), "{command}");
            assert_eq!(t.unparkable_reason(), parkable::NOT_ALLOWED);
        }
    }
}

#[test]
fn append_literals_stream_through_and_their_content_is_not_read_as_commands() {
    let mut t = tracker();
    assert_eq!(
        client(&mut t, b"a APPEND INBOX {20}\r\n"),
        ClientStep::Forward(21)
    );
    server(&mut t, b"+ OK\r\n");
    // Literal bytes that look like a LOGOUT line are data.
    assert_eq!(
        client(&mut t, b"z LOGOUT\r\nabcdefghij"),
        ClientStep::Forward(20)
    );
    assert_eq!(client(&mut t, b"\r\n"), ClientStep::Forward(2));
    assert!(!t.parkable());
    server(&mut t, b"a OK [APPENDUID 1 2] done\r\n");
    assert!(t.parkable());
}

#[test]
fn a_synchronizing_literal_refused_before_its_bytes_is_given_up() {
    let mut t = tracker();
    client(&mut t, b"a APPEND INBOX {999999}\r\n");
    server(&mut t, b"a NO [TOOBIG] too big\r\n");
    // The client sends nothing of the literal; its next command is read.
    assert!(t.parkable(), "{}", t.unparkable_reason());
    assert!(matches!(
        client(&mut t, b"b LOGOUT\r\n"),
        ClientStep::Park { .. }
    ));
}

#[test]
fn a_non_synchronizing_literal_is_sent_anyway() {
    let mut t = tracker();
    client(&mut t, b"a APPEND INBOX {10+}\r\n");
    server(&mut t, b"a NO [TOOBIG] too big\r\n");
    assert_eq!(client(&mut t, b"b LOGOUT\r\n"), ClientStep::Forward(10));
    assert!(!t.parkable(), "literal bytes were taken as data");
}

#[test]
fn idle_is_followed_through_done() {
    let mut t = tracker();
    client(&mut t, b"a IDLE\r\n");
    server(&mut t, b"+ idling\r\n* 4 EXISTS\r\n");
    assert!(!t.parkable());
    client(&mut t, b"DONE\r\n");
    server(&mut t, b"a OK Idle completed.\r\n");
    assert!(matches!(
        client(&mut t, b"b LOGOUT\r\n"),
        ClientStep::Park { .. }
    ));
}

#[test]
fn close_and_a_failed_select_leave_no_mailbox_selected() {
    let mut t = SessionTracker::new(1024, false);
    client(&mut t, b"a SELECT INBOX\r\n");
    server(&mut t, b"a OK done\r\n");
    assert!(!t.parkable(), "selected, and no UNSELECT to undo it");
    client(&mut t, b"b CLOSE\r\n");
    server(&mut t, b"b OK closed\r\n");
    assert!(t.parkable());
    client(&mut t, b"c SELECT nothere\r\n");
    server(&mut t, b"c NO no such mailbox\r\n");
    let (_, _, internal) = park(&mut t, b"d LOGOUT\r\n");
    assert_eq!(internal, b"mg1 NOOP\r\n");
}

#[test]
fn our_answer_split_across_reads_is_held_until_it_can_be_told_apart() {
    let mut t = tracker();
    park(&mut t, b"a LOGOUT\r\n");
    // Unsolicited untagged data first, then our answer in pieces.
    assert_eq!(t.server(b"* BYE soon\r\nmg"), ServerStep::Forward(12));
    assert_eq!(t.server(b"mg1 O"), ServerStep::Forward(0));
    assert_eq!(
        t.server(b"mg1 OK NOOP completed.\r\n"),
        ServerStep::Internal {
            forward: 0,
            len: 24,
            ok: true
        }
    );
}

#[test]
fn a_line_longer_than_the_bound_turns_the_tracker_into_a_pass_through() {
    let mut t = SessionTracker::new(16, true);
    let long = [b'x'; 40];
    assert_eq!(client(&mut t, &long), ClientStep::Forward(40));
    assert_eq!(client(&mut t, b"\r\na LOGOUT\r\n"), ClientStep::Forward(12));
    assert_eq!(t.unparkable_reason(), "lost track");
}

#[test]
fn too_many_pending_commands_turn_the_tracker_into_a_pass_through() {
    let mut t = tracker();
    let many: Vec<u8> = (0..=MAX_PENDING)
        .flat_map(|i| format!("t{i} NOOP\r\n").into_bytes())
        .collect();
    assert_eq!(client(&mut t, &many), ClientStep::Forward(many.len()));
    assert_eq!(t.unparkable_reason(), "lost track");
}

const SESSION_CLIENT: &[u8] =
    b"a SELECT INBOX\r\nb APPEND INBOX {5+}\r\nhello\r\nc IDLE\r\nDONE\r\n";
const SESSION_SERVER: &[u8] =
    b"* 1 EXISTS\r\na OK done\r\nb OK appended\r\n+ idling\r\n* 1 FETCH (BODY[] {4}\r\nc OK)\r\nc OK done\r\n";

/// Feeds `bytes` cut at `split` the way a relay does (keeping what the
/// tracker did not take); the client steps' parks.
fn feed_client(t: &mut SessionTracker, bytes: &[u8], split: usize) -> Vec<String> {
    let mut kept = Vec::new();
    let mut parks = Vec::new();
    for chunk in [&bytes[..split], &bytes[split..]] {
        kept.extend_from_slice(chunk);
        match t.client(&kept) {
            ClientStep::Forward(n) => {
                kept.drain(..n);
            }
            ClientStep::Park { logout_tag, .. } => {
                parks.push(logout_tag);
                kept.clear();
            }
        }
    }
    assert!(kept.is_empty(), "{kept:?}");
    parks
}

#[test]
fn any_split_of_the_client_side_gives_the_same_decisions() {
    let mut all = SESSION_CLIENT.to_vec();
    all.extend_from_slice(b"d LOGOUT\r\n");
    for split in 0..=all.len() {
        // Without the answers, LOGOUT is behind running commands: forwarded.
        let mut t = tracker();
        assert!(feed_client(&mut t, &all, split).is_empty(), "split {split}");
    }
    for split in 0..=SESSION_CLIENT.len() {
        let mut t = tracker();
        assert!(feed_client(&mut t, SESSION_CLIENT, split).is_empty());
        server(&mut t, SESSION_SERVER);
        assert!(t.parkable(), "split {split}: {}", t.unparkable_reason());
    }
}

#[test]
fn any_split_of_the_server_side_gives_the_same_decisions() {
    for split in 0..=SESSION_SERVER.len() {
        let mut t = tracker();
        assert_eq!(
            t.client(SESSION_CLIENT),
            ClientStep::Forward(SESSION_CLIENT.len())
        );
        for chunk in [&SESSION_SERVER[..split], &SESSION_SERVER[split..]] {
            assert_eq!(t.server(chunk), ServerStep::Forward(chunk.len()));
        }
        assert!(t.parkable(), "split {split}: {}", t.unparkable_reason());
        let (_, tag, internal) = park(&mut t, b"d LOGOUT\r\n");
        assert_eq!(
            (tag.as_str(), internal.as_slice()),
            ("d", &b"mg1 UNSELECT\r\n"[..])
        );
    }
}

/// Runs `client` lines then `server` lines, then asks for a park; the
/// internal command sent, or why not.
fn logout_after(client_bytes: &[u8], server_bytes: &[u8]) -> Result<Vec<u8>, &'static str> {
    let mut t = tracker();
    assert_eq!(
        client(&mut t, client_bytes),
        ClientStep::Forward(client_bytes.len())
    );
    server(&mut t, server_bytes);
    match client(&mut t, b"z LOGOUT\r\n") {
        ClientStep::Park { internal, .. } => Ok(internal),
        // Not even read as a LOGOUT (e.g. taken for a command's continuation).
        ClientStep::Forward(_) => Err(t
            .logout_not_parked()
            .unwrap_or_else(|| t.unparkable_reason())),
    }
}

#[test]
fn a_failed_select_does_not_hide_a_later_pending_one() {
    // Both pipelined; the failure is answered first.
    let internal = logout_after(
        b"a SELECT nosuch\r\nb SELECT INBOX\r\n",
        b"a NO no such mailbox\r\n* 1 EXISTS\r\nb OK [READ-WRITE] selected\r\n",
    );
    assert_eq!(internal.unwrap(), b"mg1 UNSELECT\r\n");
}

#[test]
fn a_finished_close_does_not_hide_a_later_pending_select() {
    let internal = logout_after(
        b"a SELECT X\r\nb CLOSE\r\nc SELECT Y\r\n",
        b"a OK selected\r\nb OK closed\r\nc OK selected\r\n",
    );
    assert_eq!(internal.unwrap(), b"mg1 UNSELECT\r\n");
    // Answers out of order: the last command sent still decides.
    let internal = logout_after(
        b"a SELECT X\r\nb CLOSE\r\n",
        b"b OK closed\r\na OK selected\r\n",
    );
    assert_eq!(internal.unwrap(), b"mg1 NOOP\r\n");
}

#[test]
fn a_literal_the_back_end_did_not_read_cannot_smuggle_a_command() {
    // Dovecot answers the unknown command BAD without reading the literal,
    // then runs the "literal" as the command `b ENABLE QRESYNC`.
    let smuggled = logout_after(
        b"a XYZZY {18+}\r\nb ENABLE QRESYNC\r\n",
        b"a BAD Unknown command.\r\n* ENABLED QRESYNC\r\nb OK Enabled.\r\n",
    );
    assert!(smuggled.is_err());
    // The same with an allowed command the back end refuses: the BAD alone
    // is enough.
    let mut t = tracker();
    client(&mut t, b"a NOOP {18+}\r\nb ENABLE QRESYNC\r\n");
    server(&mut t, b"a BAD NOOP takes no arguments\r\n");
    assert_eq!(t.unparkable_reason(), BACKEND_BAD);
    // An answer to a tag the tracker never saw as a command.
    let mut t = tracker();
    server(&mut t, b"b OK Enabled.\r\n");
    assert_eq!(t.unparkable_reason(), UNKNOWN_TAG);
    let mut t = tracker();
    server(&mut t, b"* BAD Invalid tag\r\n");
    assert_eq!(t.unparkable_reason(), BACKEND_BAD);
}

#[test]
fn implicit_condstore_enabling_commands_are_not_parked() {
    for command in [
        "SELECT INBOX (CONDSTORE)",
        "EXAMINE INBOX (QRESYNC (1 2))",
        "FETCH 1:* (FLAGS MODSEQ)",
        "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 7)",
        "STORE 1 (UNCHANGEDSINCE 7) +FLAGS (\\Seen)",
        "SEARCH MODSEQ 5",
        "UID SEARCH MODSEQ 5",
        "STATUS INBOX (HIGHESTMODSEQ)",
    ] {
        let line = format!("a {command}\r\n");
        let got = logout_after(line.as_bytes(), b"a OK done\r\n");
        assert!(got.is_err(), "{command} parked");
    }
}

#[test]
fn select_parameters_after_a_literal_mailbox_name_are_seen() {
    let got = logout_after(b"a SELECT {5+}\r\nINBOX (CONDSTORE)\r\n", b"a OK done\r\n");
    assert_eq!(got.unwrap_err(), parkable::SELECT_PARAMETERS);
    let got = logout_after(b"a SELECT {5+}\r\nINBOX\r\n", b"a OK done\r\n");
    assert_eq!(got.unwrap(), b"mg1 UNSELECT\r\n");
}

#[test]
fn an_unknown_extension_command_is_not_parked() {
    let got = logout_after(b"a XAPPLEPUSHSERVICE aps-version 2\r\n", b"a OK done\r\n");
    assert_eq!(got.unwrap_err(), parkable::NOT_ALLOWED);
}
