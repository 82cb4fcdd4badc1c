use super::*;

fn run(config: &str) -> String {
    import(&Input {
        source: "perdition.conf",
        config,
        popmap: None,
        map_out: "users.map",
        password_out: "sql.pw",
        modes: None,
        defaults: None,
    })
    .toml
}

fn config_of(toml_text: &str) -> toml::Table {
    toml_text.parse().expect("the output is TOML")
}

#[test]
fn the_classic_ldap_front_end() {
    let out = run(
        "map_library /usr/lib/x86_64-linux-gnu/libperditiondb_ldap.so.0\n\
         map_library_opt \"ldap://ldap1 ldap2/ou=People,dc=infra,dc=org,o=Anarchy?mail,host?sub?(&(mail=%s)(status=active))\"\n\
         outgoing_port 10143\nprotocol IMAP4\nssl_mode tls_listen\n\
         ssl_cert_file /etc/ssl/mail.pem\nssl_key_file /etc/ssl/mail.key\n",
    );
    let t = config_of(&out);
    let listen = t["listen"].as_array().unwrap();
    assert_eq!(listen.len(), 1);
    assert_eq!(listen[0]["protocol"].as_str(), Some("imap"));
    assert_eq!(listen[0]["address"].as_str(), Some("0.0.0.0:143"));
    assert_eq!(listen[0]["tls"].as_str(), Some("starttls"));
    assert_eq!(listen[0]["require_tls"].as_bool(), Some(false));
    assert_eq!(t["tls"]["cert"].as_str(), Some("/etc/ssl/mail.pem"));
    assert_eq!(t["directory"]["kind"].as_str(), Some("ldap"));
    assert_eq!(
        t["directory"]["url"].as_str(),
        Some("ldap://ldap1 ldap2/ou=People,dc=infra,dc=org,o=Anarchy?mail,host?sub?(&(mail=%s)(status=active))")
    );
    assert_eq!(t["backend"]["imap_port"].as_integer(), Some(10143));
    assert!(!out.contains("# not carried over: "), "{out}");
}

#[test]
fn imap4s_defaults_to_ssl_both_ways_as_perdition_does() {
    let t = config_of(&run(
        "protocol IMAP4S\nmap_library \"\"\noutgoing_server 10.0.0.1\n",
    ));
    assert_eq!(t["listen"][0]["tls"].as_str(), Some("implicit"));
    assert_eq!(t["listen"][0]["address"].as_str(), Some("0.0.0.0:993"));
    assert_eq!(t["backend"]["tls"].as_str(), Some("implicit"));
    assert_eq!(t["backend"]["imap_port"].as_integer(), Some(993));
    assert_eq!(t["tls"]["cert"].as_str(), Some(DEFAULT_CERT));
}

#[test]
fn tls_listen_force_requires_tls_and_bind_addresses_become_listeners() {
    let t = config_of(&run(
        "P POP3\nl 1110\nb 127.0.0.1,10.0.0.5:2110,mail.example.org\nssl_mode tls_listen_force\n",
    ));
    let listen = t["listen"].as_array().unwrap();
    let addresses: Vec<&str> = listen
        .iter()
        .map(|l| l["address"].as_str().unwrap())
        .collect();
    assert_eq!(addresses, ["127.0.0.1:1110", "10.0.0.5:2110"]);
    assert_eq!(listen[0]["require_tls"].as_bool(), Some(true));
    assert_eq!(t["backend"]["pop3_port"].as_integer(), Some(110));
}

#[test]
fn the_bind_password_never_reaches_the_output() {
    let out = run(
        "M libperditiondb_ldap.so.0\n\
         m ldap://ldap.example.org/o=x?uid,mailhost,port?sub?(uid=%s)?!bindname=uid=perdition%2co=x,X-BINDPW=s3cret\n",
    );
    assert!(!out.contains("s3cret"), "{out}");
    let t = config_of(&out);
    assert_eq!(
        t["directory"]["bind_dn"].as_str(),
        Some("uid=perdition,o=x")
    );
    assert_eq!(
        t["directory"]["bind_password_file"].as_str(),
        Some("ldap.pw")
    );
    assert_eq!(
        t["directory"]["url"].as_str(),
        Some("ldap://ldap.example.org/o=x?uid,mailhost,port?sub?(uid=%s)")
    );
}

#[test]
fn key_options_carry_over_their_lookup_part() {
    let out = run(
        "M ldap\nstrip_domain all\nlower_case servername_lookup\nquery_key \\\\u\\\\D\\\\d,\\\\U\n\
         add_domain servername_lookup\nexplicit_domain example.org\n",
    );
    let t = config_of(&out);
    let d = &t["directory"];
    assert_eq!(d["strip_domain"].as_bool(), Some(true));
    assert_eq!(d["lower_case"].as_bool(), Some(true));
    assert_eq!(d["query_key"].as_str(), Some("\\u@\\d"));
    assert_eq!(d["default_domain"].as_str(), Some("example.org"));
    assert!(
        out.contains("line 2: `strip_domain all` (its remote_login part"),
        "{out}"
    );
    assert!(
        out.contains("line 4: `query_key \\u\\D\\d,\\U` (the fallback formats \\U"),
        "{out}"
    );
}

#[test]
fn a_query_key_perdition_unescaped_is_flagged() {
    let out = run("M ldap\nquery_key \\U\n");
    assert!(out.contains("query_key = \"U\""), "{out}");
    assert!(out.contains("# check: this key has no"), "{out}");
}

#[test]
fn every_option_is_carried_or_listed() {
    let out = run("debug\nfrobnicate 3\npid_file /run/p.pid\nssl_no_cert_verify\nprotocol IMAP4\n");
    assert!(
        out.contains("line 1: `debug` (set MAILGATE_LOG=debug)"),
        "{out}"
    );
    assert!(
        out.contains("line 2: `frobnicate` (Perdition 2.2 has no such option)"),
        "{out}"
    );
    assert!(
        out.contains("line 3: `pid_file /run/p.pid` (a command-line option"),
        "{out}"
    );
    assert!(out.contains("line 4: `ssl_no_cert_verify`"), "{out}");
}

#[test]
fn several_modes_share_one_back_end_setting_per_protocol() {
    let out = run("M \"\"\ns 10.0.0.1\n");
    let t = config_of(&out);
    assert_eq!(t["listen"].as_array().unwrap().len(), 4);
    // IMAP4 (plain, 143) wins over IMAP4S (SSL, 993), and the loss is said.
    assert_eq!(t["backend"]["imap_port"].as_integer(), Some(143));
    assert_eq!(t["backend"]["pop3_port"].as_integer(), Some(110));
    assert!(t["backend"].get("tls").is_none());
    assert!(
        out.contains("IMAP4S's back-end side (tls implicit, port 993)"),
        "{out}"
    );
}

#[test]
fn no_map_library_sends_everyone_to_the_outgoing_server() {
    let imported = import(&Input {
        source: "p.conf",
        config: "M \"\"\ns box1.vpn:10143,box2.vpn\nP IMAP4\n",
        popmap: None,
        map_out: "users.map",
        password_out: "sql.pw",
        modes: None,
        defaults: None,
    });
    let map = imported.map.unwrap();
    assert!(map.contains("\n* box1.vpn:10143\n"), "{map}");
    assert!(imported.toml.contains("round robin over 2 servers"));
}

#[test]
fn padding_in_the_filter_is_removed_and_said() {
    let out = run("M ldap\nm ldap://h/o=x?uid,mailhost?sub?(uid=%20s)\n");
    assert!(out.contains("(uid=%s)"), "{out}");
    assert!(out.contains("padding width"), "{out}");
}

#[test]
fn modes_given_by_the_caller_win() {
    let imported = import(&Input {
        source: "p.conf",
        config: "protocol POP3\nlisten_port 2143\n",
        popmap: None,
        map_out: "users.map",
        password_out: "sql.pw",
        modes: Some(vec![Mode::Imap4]),
        defaults: None,
    });
    let t = config_of(&imported.toml);
    assert_eq!(t["listen"][0]["address"].as_str(), Some("0.0.0.0:2143"));
    assert!(imported.toml.contains("replaced by --modes"));
}

#[test]
fn the_user_perdition_switches_to_is_the_one_mailgate_switches_to() {
    let t = config_of(&run("protocol IMAP4\n"));
    assert_eq!(t["runtime"]["user"].as_str(), Some("nobody"));
    let t = config_of(&run("protocol IMAP4\nu mail\ng mail\n"));
    assert_eq!(t["runtime"]["user"].as_str(), Some("mail"));
    assert_eq!(t["runtime"]["group"].as_str(), Some("mail"));
}

#[test]
fn values_cannot_write_toml_through_a_comment() {
    // A quoted value with a newline, and a NUL: listed, escaped, and the
    // output is still TOML with no [admin] table.
    let out = run(
        "protocol IMAP4\nok_line \"x\n[admin]\naddress = '0.0.0.0:1'\"\nlog_facility a\u{0}b\n",
    );
    let t = config_of(&out);
    assert!(t.get("admin").is_none(), "{out}");
    assert!(out.contains("ok_line x\\n[admin]"), "{out}");
    assert!(out.contains("log_facility a\\u{0}b"), "{out}");
}

#[test]
fn the_fuzz_target_holds_on_the_golden_inputs() {
    for input in [
        &include_bytes!("../../../tests/golden/perdition/classic.conf")[..],
        include_bytes!("../../../tests/golden/perdition/every-option.conf"),
        include_bytes!("../../../tests/golden/perdition/every-option.popmap.re"),
        b"ok_line \"a\nb\"\x00\x7f\r",
    ] {
        crate::fuzzing::perdition_import(input);
    }
}

fn run_with_defaults(config: &str, defaults: &str) -> String {
    import(&Input {
        source: "perdition.conf",
        config,
        popmap: None,
        map_out: "users.map",
        password_out: "sql.pw",
        modes: None,
        defaults: Some(defaults),
    })
    .toml
}

const CLASSIC: &str =
    "map_library_opt \"ldap://ldap1/ou=People,dc=infra,dc=org?mail,host?sub?(mail=%s)\"\n\
                       outgoing_port 10143\ntimeout 1800\n";

#[test]
fn debians_shipped_defaults_start_the_five_modes_managesieve_included() {
    let out = run_with_defaults(
        CLASSIC,
        "RUN_PERDITION=yes\n#FLAGS=\nPOP3=yes\nPOP3_FLAGS=\nPOP3S=yes\nPOP3S_FLAGS=\n\
         IMAP4=yes\nIMAP4_FLAGS=\nIMAP4S=yes\nIMAP4S_FLAGS=\nMANAGESIEVE=yes\nMANAGESIEVE_FLAGS=\n",
    );
    let t = config_of(&out);
    let addresses: Vec<&str> = t["listen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["address"].as_str().unwrap())
        .collect();
    assert_eq!(
        addresses,
        [
            "0.0.0.0:110",
            "0.0.0.0:995",
            "0.0.0.0:143",
            "0.0.0.0:993",
            "0.0.0.0:4190"
        ]
    );
    assert_eq!(t["listen"][4]["protocol"].as_str(), Some("managesieve"));
    // The file's outgoing_port, as Perdition applies it to every mode.
    assert_eq!(t["backend"]["managesieve_port"].as_integer(), Some(10143));
    assert!(!out.contains("MANAGESIEVE=yes"), "{out}");
    assert!(!out.contains("RUN_PERDITION"), "{out}");
}

#[test]
fn flags_override_the_file_and_a_modes_own_flags_its_listener() {
    let out = run_with_defaults(
        CLASSIC,
        "RUN_PERDITION=yes\nFLAGS=\"-t 600\"\nPOP3=no\nPOP3S=no\nMANAGESIEVE=no\n\
         IMAP4_FLAGS=\"-l 1143 --bind_address=10.0.0.1 --lower_case all\"\n\
         IMAP4S_FLAGS='--listen_port 1993 --ssl_mode ssl_listen'\n",
    );
    let t = config_of(&out);
    let listen = t["listen"].as_array().unwrap();
    assert_eq!(listen.len(), 2, "{out}");
    assert_eq!(listen[0]["address"].as_str(), Some("10.0.0.1:1143"));
    assert_eq!(listen[0].get("tls"), None);
    assert_eq!(listen[1]["address"].as_str(), Some("0.0.0.0:1993"));
    assert_eq!(listen[1]["tls"].as_str(), Some("implicit"));
    // ssl_listen only: the back end stays plaintext, on the file's port.
    assert_eq!(t["backend"]["imap_port"].as_integer(), Some(10143));
    // FLAGS' timeout replaced the file's, and the override is listed.
    assert!(out.contains("600"), "{out}");
    assert!(
        out.contains(
            "# not carried over: line 3: `timeout 1800` (FLAGS (defaults line 2) sets it again)"
        ),
        "{out}"
    );
    // An option only one mode sets, that mailgate has once: listed.
    assert!(
        out.contains("IMAP4_FLAGS (defaults line 6): `lower_case all` only for IMAP4"),
        "{out}"
    );
}

#[test]
fn the_same_flag_in_every_modes_flags_applies_to_all() {
    let out = run_with_defaults(
        "",
        "POP3=no\nPOP3S=no\nMANAGESIEVE=no\nIMAP4_FLAGS='-p 10143'\nIMAP4S_FLAGS='--outgoing_port=10143'\n",
    );
    let t = config_of(&out);
    assert_eq!(t["backend"]["imap_port"].as_integer(), Some(10143), "{out}");
    assert!(out.contains("RUN_PERDITION=yes"), "{out}");
}

#[test]
fn modes_on_the_command_line_win_over_the_defaults_file() {
    let out = import(&Input {
        source: "perdition.conf",
        config: CLASSIC,
        popmap: None,
        map_out: "users.map",
        password_out: "sql.pw",
        modes: Some(vec![Mode::Pop3]),
        defaults: Some("RUN_PERDITION=yes\nPOP3=no\nIMAP4_FLAGS='-l 1143'\n"),
    })
    .toml;
    let t = config_of(&out);
    let listen = t["listen"].as_array().unwrap();
    assert_eq!(listen.len(), 1);
    assert_eq!(listen[0]["address"].as_str(), Some("0.0.0.0:110"));
}

#[test]
fn managesieve_is_chosen_by_protocol_program_name_or_defaults_flags() {
    for name in [
        "MANAGESIEVE",
        "managesieve",
        "perdition.managesieve",
        "sieve",
    ] {
        assert_eq!(Mode::parse(name), Some(Mode::ManageSieve), "{name}");
    }
    assert_eq!(Mode::parse("perdition.imap4s"), Some(Mode::Imap4s));
    let t = config_of(&run("protocol MANAGESIEVE\n"));
    assert_eq!(t["listen"][0]["protocol"].as_str(), Some("managesieve"));
    assert_eq!(t["listen"][0]["address"].as_str(), Some("0.0.0.0:4190"));
    assert_eq!(t["backend"]["managesieve_port"].as_integer(), Some(4190));
    // MANAGESIEVE_FLAGS set that listener alone.
    let out = run_with_defaults(
        "",
        "POP3=no\nPOP3S=no\nIMAP4=no\nIMAP4S=no\nMANAGESIEVE=yes\nMANAGESIEVE_FLAGS='-l 2000 --ssl_mode tls_listen'\n",
    );
    let t = config_of(&out);
    let listen = t["listen"].as_array().unwrap();
    assert_eq!(listen.len(), 1, "{out}");
    assert_eq!(listen[0]["address"].as_str(), Some("0.0.0.0:2000"));
    assert_eq!(listen[0]["tls"].as_str(), Some("starttls"));
}
