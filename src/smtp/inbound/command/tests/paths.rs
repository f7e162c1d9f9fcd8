//! Envelope addresses: quoting, literals, IDN, source routes and the address tricks relays get attacked with.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{codes, err, ok};
use crate::smtp::inbound::command::{
    Command, CommandError, ForwardPath, Path, PathDomain, ReversePath,
};

/// The sender path of a MAIL line that must parse to a mailbox.
fn sender(line: &str) -> Path {
    match ok(line) {
        Command::Mail {
            from: ReversePath::Path(path),
            ..
        } => path,
        other => panic!("{line:?} gave {other:?}"),
    }
}

/// The recipient path of `RCPT TO:<address>`.
fn rcpt(address: &str) -> Path {
    match ok(&format!("RCPT TO:<{address}>")) {
        Command::Rcpt {
            to: ForwardPath::Path(path),
            ..
        } => path,
        other => panic!("{address:?} gave {other:?}"),
    }
}

/// The codes RCPT TO answers for an address that must be refused.
fn rcpt_codes(address: &str) -> String {
    codes(format!("RCPT TO:<{address}>").as_bytes())
}

#[test]
fn plain_address_keeps_local_case_and_lowercases_domain() {
    let p = sender("MAIL FROM:<John.Doe@Example.ORG>");
    assert_eq!(p.local, "John.Doe");
    assert_eq!(p.domain, PathDomain::Name("example.org".into()));
    assert_eq!(p.domain_name(), Some("example.org"));
    assert!(!p.quoted && !p.utf8 && !p.had_route);
    assert_eq!(p.to_string(), "John.Doe@example.org");
}

#[test]
fn quoted_local_parts_are_unquoted_and_unescaped() {
    let p = rcpt(r#""john doe"@example.org"#);
    assert_eq!(p.local, "john doe");
    assert!(p.quoted);
    assert_eq!(rcpt(r#""a\"b\\c"@example.org"#).local, r#"a"b\c"#);
    assert_eq!(rcpt(r#""a>b"@example.org"#).local, "a>b");
    assert_eq!(rcpt(r#""alice"@example.org"#).local, "alice");
    assert_eq!(
        rcpt(r#""user@evil.example"@example.org"#).local,
        "user@evil.example"
    );
}

#[test]
fn display_requotes_local_parts_that_need_it() {
    assert_eq!(
        rcpt(r#""john doe"@example.org"#).to_string(),
        r#""john doe"@example.org"#
    );
    assert_eq!(
        rcpt(r#""a\"b"@example.org"#).to_string(),
        r#""a\"b"@example.org"#
    );
    assert_eq!(
        rcpt(r#""alice"@example.org"#).to_string(),
        "alice@example.org"
    );
}

#[test]
fn malformed_quoted_local_parts_are_refused() {
    for address in [
        r#""unterminated@example.org"#,
        r#""a"b@example.org"#,
        r#"""@example.org"#,
        r#"a"b"@example.org"#,
        "\"a\tb\"@example.org",
    ] {
        assert_eq!(rcpt_codes(address), "501 5.1.3", "{address}");
    }
}

#[test]
fn percent_and_bang_are_ordinary_local_part_characters() {
    let p = rcpt("user%elsewhere.example@hosted.example");
    assert_eq!(p.local, "user%elsewhere.example");
    assert_eq!(p.domain_name(), Some("hosted.example"));
    assert_eq!(
        rcpt("elsewhere!user@hosted.example").local,
        "elsewhere!user"
    );
}

#[test]
fn ipv4_and_ipv6_literals_become_addresses() {
    assert_eq!(
        rcpt("postmaster@[192.0.2.1]").domain,
        PathDomain::Ipv4(Ipv4Addr::new(192, 0, 2, 1))
    );
    let v6 = rcpt("a@[IPv6:2001:DB8::1]");
    assert_eq!(
        v6.domain,
        PathDomain::Ipv6(
            "2001:db8::1"
                .parse::<Ipv6Addr>()
                .unwrap_or(Ipv6Addr::UNSPECIFIED)
        )
    );
    assert_eq!(v6.domain_name(), None);
    assert_eq!(v6.to_string(), "a@[IPv6:2001:db8::1]");
    assert!(matches!(
        rcpt("a@[ipv6:::ffff:192.0.2.1]").domain,
        PathDomain::Ipv6(_)
    ));
    assert_eq!(rcpt("a@[192.0.2.1]").to_string(), "a@[192.0.2.1]");
}

#[test]
fn bad_address_literals_are_refused() {
    for address in [
        "a@[192.0.2.256]",
        "a@[192.0.2]",
        "a@[0300.0.2.1]",
        "a@[IPv6:1.2.3.4]",
        "a@[IPv6:fe80::1%eth0]",
        "a@[x-tag:foo]",
        "a@[192.0.2.1",
        "a@[192.0.2.1]x",
        "a@[]",
    ] {
        assert_eq!(rcpt_codes(address), "501 5.1.3", "{address}");
    }
}

#[test]
fn idn_domains_become_a_labels() {
    let p = rcpt("info@Bücher.example");
    assert_eq!(p.domain_name(), Some("xn--bcher-kva.example"));
    assert!(p.utf8);
    let fullwidth_dot = rcpt("info@bücher\u{ff0e}example");
    assert_eq!(fullwidth_dot.domain_name(), Some("xn--bcher-kva.example"));
}

#[test]
fn ascii_a_labels_are_checked_and_kept() {
    let p = rcpt("info@XN--BCHER-KVA.example");
    assert_eq!(p.domain_name(), Some("xn--bcher-kva.example"));
    assert!(!p.utf8);
    assert_eq!(rcpt_codes("info@xn--zz-!!.example"), "501 5.1.3");
    assert_eq!(rcpt_codes("info@xn--a.example"), "501 5.1.3");
}

#[test]
fn utf8_local_parts_are_parsed_and_flagged() {
    let p = rcpt("jérôme@example.org");
    assert_eq!(p.local, "jérôme");
    assert!(p.utf8);
    assert_eq!(rcpt("\"日本 語\"@example.org").local, "日本 語");
}

#[test]
fn invalid_utf8_or_invisible_controls_in_addresses_are_refused() {
    assert_eq!(codes(b"RCPT TO:<j\xe9r\xf4me@example.org>"), "501 5.1.3");
    assert_eq!(codes(b"MAIL FROM:<\xc0\xafroot@example.org>"), "501 5.1.7");
    assert_eq!(rcpt_codes("a\u{85}b@example.org"), "501 5.1.3");
    assert_eq!(rcpt_codes("a\u{a0}b@example.org"), "501 5.1.3");
}

#[test]
fn source_routes_are_stripped_and_flagged() {
    let p = rcpt("@relay1.example,@relay2.example:user@final.example");
    assert_eq!(p.local, "user");
    assert_eq!(p.domain_name(), Some("final.example"));
    assert!(p.had_route);
    let p = sender("MAIL FROM:<@[IPv6:2001:db8::1]:user@final.example>");
    assert!(p.had_route);
    assert_eq!(p.to_string(), "user@final.example");
}

#[test]
fn malformed_source_routes_are_refused() {
    for address in [
        "@relay.example",
        "@relay.example:",
        "@relay.example,relay2.example:u@d.example",
        "@:u@d.example",
        "@bad_domain:u@d.example",
        "@a.example,:u@d.example",
    ] {
        assert_eq!(rcpt_codes(address), "501 5.1.3", "{address}");
    }
}

#[test]
fn bare_postmaster_is_a_recipient_in_any_case() {
    for line in [
        "RCPT TO:<Postmaster>",
        "rcpt to:<POSTMASTER>",
        "RCPT TO: <postmaster>",
    ] {
        assert!(
            matches!(
                ok(line),
                Command::Rcpt {
                    to: ForwardPath::Postmaster,
                    ..
                }
            ),
            "{line}"
        );
    }
    assert_eq!(codes(b"MAIL FROM:<postmaster>"), "501 5.1.7");
}

#[test]
fn address_tricks_are_refused_at_the_syntax_level() {
    for address in [
        "user@hosted.example.",
        "user@192.0.2.1",
        "user@host.123",
        "user@@hosted.example",
        "user@hosted.example@evil.example",
        "user",
        "@hosted.example",
        ".user@hosted.example",
        "user.@hosted.example",
        "us..er@hosted.example",
        "user@-hosted.example",
        "user@hosted-.example",
        "user@hosted..example",
        "user@hosted_name.example",
        "user@",
        "us er@hosted.example",
        "user@hosted.example <evil@x.example",
        "user\\@hosted.example",
        "user@exa(mple).com",
    ] {
        assert_eq!(rcpt_codes(address), "501 5.1.3", "{address}");
    }
}

#[test]
fn the_path_must_be_followed_by_a_blank_or_nothing() {
    assert_eq!(codes(b"RCPT TO:<a@b.example>x"), "501 5.5.4");
    assert_eq!(codes(b"RCPT TO:<a@b.example"), "501 5.1.3");
    assert_eq!(codes(b"RCPT TO:<a@b.example>>"), "501 5.5.4");
    assert_eq!(codes(b"RCPT TO:<<a@b.example>>"), "501 5.1.3");
}

#[test]
fn over_long_local_parts_and_domains_are_refused() {
    assert_eq!(
        rcpt(&format!("{}@example.org", "a".repeat(128)))
            .local
            .len(),
        128
    );
    assert_eq!(
        rcpt_codes(&format!("{}@example.org", "a".repeat(129))),
        "501 5.1.3"
    );
    assert_eq!(
        rcpt_codes(&format!("a@{}.example", "b".repeat(64))),
        "501 5.1.3"
    );
    let long_domain = vec!["abcdefghij"; 30].join(".");
    assert_eq!(rcpt_codes(&format!("a@{long_domain}")), "501 5.1.3");
}

#[test]
fn bad_sender_and_bad_recipient_name_their_side() {
    assert!(matches!(err(b"MAIL FROM:<a@>"), CommandError::BadSender(_)));
    assert!(matches!(
        err(b"RCPT TO:<a@>"),
        CommandError::BadRecipient(_)
    ));
    assert!(
        err(b"RCPT TO:<a@>")
            .reply()
            .text()
            .starts_with("Bad recipient address syntax")
    );
}

#[test]
fn single_label_domains_are_syntactically_valid() {
    assert_eq!(rcpt("root@localhost").domain_name(), Some("localhost"));
}

#[test]
fn path_domain_parse_is_usable_for_ehlo_names() {
    assert_eq!(
        PathDomain::parse("Mail.Example.ORG"),
        Ok(PathDomain::Name("mail.example.org".into()))
    );
    assert_eq!(
        PathDomain::parse("[192.0.2.7]"),
        Ok(PathDomain::Ipv4(Ipv4Addr::new(192, 0, 2, 7)))
    );
    assert!(PathDomain::parse("192.0.2.7").is_err());
    assert!(PathDomain::parse("").is_err());
}
