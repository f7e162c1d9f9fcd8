//! The DNS world of the `serve` inbound-check tests (`serve_checks`): one authoritative zone `test.`
//! on loopback with the SPF, DKIM, DMARC and DNSBL records the daemon looks up, a DKIM key published in it, and
//! helpers to sign, tamper with and look at the mail the tests send.
//!
//! Everything sits in the one zone `test.`, so every name the checks ask about that the zone lacks (DMARC's
//! tree walk, a blocklist that does not list the client) gets NXDOMAIN rather than the REFUSED the server gives
//! for names outside its zones. The client always connects from 127.0.0.1: SPF records authorize that address
//! for a pass and leave it out for a fail, and a DNSBL listing is the A record `1.0.0.127.<zone>`.

use mailctl::dkim::{KeyPair, KeySpec, keys};

use kit::dns::TestDns;
use kit::serve::mail::{Delivered, find};
use kit::serve::{HOSTNAME, TestServer};

/// The records every test gets, besides the DKIM keys [`World::new`] adds.
const ZONE: &str = r#"
spfpass.test.            IN TXT "v=spf1 ip4:127.0.0.1 -all"
spffail.test.            IN TXT "v=spf1 ip4:192.0.2.1 -all"
reject.test.             IN TXT "v=spf1 ip4:192.0.2.1 -all"
_dmarc.reject.test.      IN TXT "v=DMARC1; p=reject"
quarantine.test.         IN TXT "v=spf1 ip4:192.0.2.1 -all"
_dmarc.quarantine.test.  IN TXT "v=DMARC1; p=quarantine"
signed.test.             IN TXT "v=spf1 ip4:192.0.2.1 -all"
_dmarc.signed.test.      IN TXT "v=DMARC1; p=reject"
example.test.            IN TXT "v=spf1 ip4:192.0.2.1 -all"
_dmarc.example.test.     IN TXT "v=DMARC1; p=reject"
1.0.0.127.bl.test.       IN A   127.0.0.2
"#;

/// The DNSBL zone that lists 127.0.0.1.
pub const LISTING_ZONE: &str = "bl.test";
/// A DNSBL zone that lists nobody (NXDOMAIN for every query).
pub const CLEAN_ZONE: &str = "nolist.test";
/// The DKIM selector of the published keys.
pub const SELECTOR: &str = "sel";

/// The served zone and the DKIM key published as `sel._domainkey.signed.test` and `sel._domainkey.example.test`.
pub struct World {
    /// The authoritative server the daemon's resolver is pointed at.
    pub dns: TestDns,
    /// The private key behind both published DKIM records.
    pub key: KeyPair,
}

impl World {
    /// Generates a key of `spec` and starts the DNS server.
    pub fn new(spec: KeySpec) -> World {
        let key = keys::generate(spec).expect("generate a DKIM key");
        let txt = mailctl::dkim::zone_txt_rdata(&mailctl::dkim::txt_value(
            key.algorithm,
            &key.public_b64,
        ));
        let mut zone = ZONE.to_string();
        for domain in ["signed.test", "example.test"] {
            zone += &format!("{SELECTOR}._domainkey.{domain}. IN TXT {txt}\n");
        }
        World {
            dns: TestDns::start(&[("test.", &zone)]),
            key,
        }
    }

    /// `message` with a DKIM-Signature of `domain` (selector [`SELECTOR`]) prepended.
    pub fn sign(&self, message: &[u8], domain: &str) -> Vec<u8> {
        mailctl::dkim::sign::sign(
            message,
            &domain.parse().expect("signing domain"),
            &SELECTOR.parse().expect("selector"),
            &self.key,
        )
        .expect("sign the message")
    }
}

/// `message` with one body byte changed (the `H` of the body's first `Hello` becomes `J`).
pub fn tampered(message: &[u8]) -> Vec<u8> {
    let body = find(message, b"\r\n\r\n").expect("header/body separator") + 4;
    let at = body + find(&message[body..], b"Hello").expect("a Hello in the body");
    let mut out = message.to_vec();
    out[at] = b'J';
    out
}

/// The `Authentication-Results:` field the daemon writes for `results` (one per folded line, in order).
pub fn results_field(results: &[&str]) -> String {
    format!(
        "Authentication-Results: {HOSTNAME};\r\n\t{}",
        results.join(";\r\n\t")
    )
}

/// Asserts `mailbox` has exactly one message in its INBOX and none in `.Junk`; returns it split.
#[track_caller]
pub fn only_in_inbox(server: &TestServer, mailbox: &str) -> Delivered {
    only_in(server, mailbox, false)
}

/// Asserts `mailbox` has exactly one message in `.Junk` and none in its INBOX; returns it split.
#[track_caller]
pub fn only_in_junk(server: &TestServer, mailbox: &str) -> Delivered {
    only_in(server, mailbox, true)
}

#[track_caller]
fn only_in(server: &TestServer, mailbox: &str, junk: bool) -> Delivered {
    let inbox = server.inbox(mailbox);
    let spam = TestServer::messages(&server.junk(mailbox));
    let (here, there, name) = if junk {
        (spam, inbox, ".Junk")
    } else {
        (inbox, spam, "INBOX")
    };
    assert!(
        here.len() == 1 && there.is_empty(),
        "{mailbox}: expected one message in {name} only, got {} there and {} in the other folder\n\
         --- daemon stderr ---\n{}",
        here.len(),
        there.len(),
        server.log()
    );
    Delivered::parse(&here[0])
}

/// Asserts nothing at all was delivered to `mailbox` (neither INBOX nor `.Junk`).
#[track_caller]
pub fn nothing_for(server: &TestServer, mailbox: &str) {
    assert!(server.inbox(mailbox).is_empty(), "{mailbox}: INBOX");
    assert!(
        TestServer::messages(&server.junk(mailbox)).is_empty(),
        "{mailbox}: .Junk"
    );
}
