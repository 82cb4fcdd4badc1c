//! Perdition 2.2's option names: short letters and aliases to one long
//! name each, and which options are flags (present means on).

/// Canonical long names, with their short letter where Perdition has one,
/// and whether the option takes no value.
const OPTIONS: &[(&str, Option<char>, Flag)] = &[
    ("add_domain", Some('A'), Flag::No),
    ("authenticate_in", Some('a'), Flag::Yes),
    ("authenticate_timeout", None, Flag::No),
    ("no_bind_banner", Some('B'), Flag::Yes),
    ("bind_address", Some('b'), Flag::No),
    ("connection_logging", Some('C'), Flag::Yes),
    ("connect_relog", None, Flag::No),
    ("client_server_specification", Some('c'), Flag::Yes),
    ("domain_delimiter", Some('D'), Flag::No),
    ("debug", Some('d'), Flag::Yes),
    ("explicit_domain", Some('e'), Flag::No),
    ("log_facility", Some('F'), Flag::No),
    ("config_file", Some('f'), Flag::No),
    ("group", Some('g'), Flag::No),
    ("help", Some('h'), Flag::Yes),
    ("inetd_mode", Some('i'), Flag::Yes),
    ("capability", Some('I'), Flag::No),
    ("imap_capability", None, Flag::No),
    ("pop_capability", None, Flag::No),
    ("managesieve_capability", None, Flag::No),
    ("connection_limit", Some('L'), Flag::No),
    ("listen_port", Some('l'), Flag::No),
    ("log_passwd", None, Flag::No),
    ("login_disabled", None, Flag::Yes),
    ("lower_case", None, Flag::No),
    ("map_library", Some('M'), Flag::No),
    ("map_library_opt", Some('m'), Flag::No),
    ("no_daemon", None, Flag::Yes),
    ("no_lookup", Some('n'), Flag::Yes),
    ("ok_line", Some('O'), Flag::No),
    ("server_ok_line", None, Flag::Yes),
    ("server_resp_line", Some('o'), Flag::Yes),
    ("protocol", Some('P'), Flag::No),
    ("outgoing_port", Some('p'), Flag::No),
    ("pid_file", None, Flag::No),
    ("quiet", Some('q'), Flag::Yes),
    ("query_key", None, Flag::No),
    ("strip_domain", Some('S'), Flag::No),
    ("outgoing_server", Some('s'), Flag::No),
    ("tcp_keepalive", None, Flag::Yes),
    ("timeout", Some('t'), Flag::No),
    ("username", Some('u'), Flag::No),
    ("username_from_database", Some('U'), Flag::Yes),
    ("ssl_mode", None, Flag::No),
    ("ssl_ca_chain_file", None, Flag::No),
    ("ssl_ca_file", None, Flag::No),
    ("ssl_ca_path", None, Flag::No),
    ("ssl_ca_accept_self_signed", None, Flag::Yes),
    ("ssl_cert_file", None, Flag::No),
    ("ssl_cert_accept_expired", None, Flag::Yes),
    ("ssl_cert_accept_not_yet_valid", None, Flag::Yes),
    ("ssl_cert_accept_self_signed", None, Flag::Yes),
    ("ssl_cert_verify_depth", None, Flag::No),
    ("ssl_dh_params_file", None, Flag::No),
    ("ssl_key_file", None, Flag::No),
    ("ssl_listen_ciphers", None, Flag::No),
    ("ssl_outgoing_ciphers", None, Flag::No),
    ("ssl_no_cert_verify", None, Flag::Yes),
    ("ssl_no_client_cert_verify", None, Flag::Yes),
    ("ssl_no_cn_verify", None, Flag::Yes),
    ("ssl_passphrase_fd", None, Flag::No),
    ("ssl_passphrase_file", None, Flag::No),
    ("ssl_listen_min_proto_version", None, Flag::No),
    ("ssl_outgoing_min_proto_version", None, Flag::No),
    ("ssl_listen_max_proto_version", None, Flag::No),
    ("ssl_outgoing_max_proto_version", None, Flag::No),
    ("ssl_listen_compression", None, Flag::Yes),
    ("ssl_outgoing_compression", None, Flag::Yes),
    ("ssl_no_cipher_server_preference", None, Flag::Yes),
];

/// Whether an option takes no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    /// Present means on; a value is ignored.
    Yes,
    /// Takes a value.
    No,
}

/// The canonical long name of `key` (a long name, or a short letter), and
/// whether it is a flag; `None` if Perdition has no such option.
pub fn canonical(key: &str) -> Option<(&'static str, Flag)> {
    let mut chars = key.chars();
    let short = match (chars.next(), chars.next()) {
        (Some(c), None) => Some(c),
        _ => None,
    };
    OPTIONS
        .iter()
        .find(|(long, letter, _)| *long == key || (short.is_some() && *letter == short))
        .map(|&(long, _, flag)| (long, flag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_letters_and_long_names_meet() {
        assert_eq!(canonical("m"), Some(("map_library_opt", Flag::No)));
        assert_eq!(canonical("M"), Some(("map_library", Flag::No)));
        assert_eq!(canonical("p"), Some(("outgoing_port", Flag::No)));
        assert_eq!(canonical("P"), Some(("protocol", Flag::No)));
        assert_eq!(canonical("I"), Some(("capability", Flag::No)));
        assert_eq!(canonical("debug"), Some(("debug", Flag::Yes)));
        assert_eq!(canonical("listen"), None);
        assert_eq!(canonical("x"), None);
    }

    #[test]
    fn no_two_options_share_a_name_or_letter() {
        for (i, (long, letter, _)) in OPTIONS.iter().enumerate() {
            for (other, other_letter, _) in &OPTIONS[i + 1..] {
                assert_ne!(long, other);
                if letter.is_some() {
                    assert_ne!(letter, other_letter, "{long} and {other}");
                }
            }
        }
    }
}
