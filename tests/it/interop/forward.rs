//! Forwarding through `mailctl serve` to a stock Postfix, judged by independent code:
//!
//! - `bob@remote.test` (SPF pass, DMARC `p=reject`) writes to `fwd@fwd.test`, an alias on mailctl forwarding
//!   to `user@pf.test`, a mailbox of Postfix (virtual(8) delivery into a Maildir, as the generated maps set
//!   it up). dkimpy (python3-dkim, the reference DKIM and ARC implementation in Python) then verifies, over
//!   the test's DNS, mailctl's DKIM signature of fwd.test and the ARC chain (`cv=pass`) of the delivered file.
//! - `bouncer@fwd.test` forwards to `bouncy@pf.test`, which Postfix accepts and then bounces
//!   (`error:5.2.2`). Postfix sends the bounce to the SRS address mailctl gave the copy; mailctl reverses it
//!   and sends it on to bob, whose mailbox is on Postfix too: the bounce comes home.
//! - A forged SRS address of fwd.test is refused at RCPT.
//!
//! Postfix reaches mailctl through `transport_maps` (it resolves names with the system resolver, not the
//! test's DNS); mailctl reaches Postfix through the test's DNS (MX of pf.test and remote.test) and its
//! outbound port.

use std::time::Duration;

use super::harness::postfix::Postfix;
use super::harness::serve::{Serve, ServeOptions};
use super::harness::{Need, PASSWORD, Site, free_port, run_tool, setup, tail, wait_until};
use kit::TestDb;
use kit::dns::TestDns;
use kit::serve::mail::message;
use kit::smtp_client::SmtpClient;

/// Verifies the first DKIM signature (which must be of `expected_d`) and the ARC chain of the message in
/// argv[1], resolving TXT records through the DNS server at 127.0.0.1:argv[2]. Prints `dkim=… d=… arc=…`.
const VERIFY: &str = r#"
import sys, dkim, dns.resolver
r = dns.resolver.Resolver(configure=False)
r.nameservers = ["127.0.0.1"]
r.port = int(sys.argv[2])
def txt(name, timeout=5):
    try:
        answer = r.resolve(name.decode().rstrip("."), "TXT", lifetime=timeout)
    except Exception:
        return None
    return b"".join(answer[0].strings)
msg = open(sys.argv[1], "rb").read()
d = dkim.DKIM(msg)
ok = d.verify(idx=0, dnsfunc=txt)
cv, results, reason = dkim.arc_verify(msg, dnsfunc=txt)
print("dkim=%s d=%s arc=%s reason=%s" % (ok, d.domain.decode() if d.domain else "", cv.decode(), reason))
"#;

#[test]
#[ignore = "interop: needs root, Postfix, Dovecot and swaks; run with --ignored (.ci/run does)"]
fn forwarded_mail_passes_dkimpy_dkim_and_arc_at_postfix_and_postfix_bounces_come_home() {
    let db = setup(&[Need::Postfix, Need::Dkimpy]);
    // Postfix's site: pf.test (the forwarding target) and remote.test (the original sender's mailbox).
    let pf_site = Site::new(db);
    for domain in ["pf.test", "remote.test"] {
        pf_site.cli(&format!("domain add {domain}"));
    }
    for mailbox in ["user@pf.test", "bouncy@pf.test", "bob@remote.test"] {
        pf_site.add_mailbox(mailbox, PASSWORD, None);
    }

    // mailctl's site: fwd.test with its aliases and an RSA key (ARC is rsa-sha256 only).
    let site = Site::new(TestDb::sqlite());
    site.cli("domain add fwd.test");
    site.cli("alias add fwd@fwd.test user@pf.test");
    site.cli("alias add bouncer@fwd.test bouncy@pf.test");
    site.cli("dkim generate fwd.test --selector s1");
    let key = site
        .mailctl_stdin(&["dkim", "show", "fwd.test", "--format", "zone"], "")
        .ok()
        .stdout;
    let zone = format!(
        "pf.test. IN MX 10 mx.pf.test.\n\
         remote.test. IN MX 10 mx.pf.test.\n\
         mx.pf.test. IN A 127.0.0.1\n\
         fwd.test. IN TXT \"v=spf1 ip4:127.0.0.0/8 -all\"\n\
         remote.test. IN TXT \"v=spf1 ip4:127.0.0.0/8 -all\"\n\
         _dmarc.remote.test. IN TXT \"v=DMARC1; p=reject\"\n\
         {key}"
    );
    let dns = TestDns::start(&[("test.", &zone)]);

    // Postfix's port is picked first: mailctl delivers to it; Postfix reaches mailctl through a transport map.
    let postfix_port = free_port();
    let mut options = ServeOptions::new("mx.fwd.test");
    options.nameserver = Some(dns.nameserver());
    options.outbound_port = Some(postfix_port);
    let fwd = Serve::start(&site, options);
    let transport = pf_site.path("transport");
    std::fs::write(
        &transport,
        format!(
            "bouncy@pf.test error:5.2.2 Mailbox full\nfwd.test smtp:[127.0.0.1]:{}\n",
            fwd.smtp().port()
        ),
    )
    .expect("transport map");
    let maps = pf_site.generate("postfix");
    let lines = [format!("transport_maps = texthash:{}", transport.display())];
    let postfix = Postfix::start_on(&pf_site, &maps, &lines, postfix_port);

    // 1. Forwarded, signed, sealed; dkimpy verifies both at the destination.
    send(&fwd, "bob@remote.test", "fwd@fwd.test", "arc1@remote.test");
    if !wait_until(Duration::from_secs(30), || {
        !pf_site.new_mail("user@pf.test").is_empty()
    }) {
        postfix.fail(&format!(
            "the forwarded copy did not reach user@pf.test\n--- mailctl log ---\n{}",
            tail(&fwd.log(), 30)
        ));
    }
    let file = pf_site.path("delivered.eml");
    std::fs::write(&file, &pf_site.new_mail("user@pf.test")[0]).expect("copy");
    let script = pf_site.path("verify.py");
    std::fs::write(&script, VERIFY).expect("script");
    let verdict = run_tool(
        std::path::Path::new("/usr/bin/python3"),
        &[
            &script.to_string_lossy(),
            &file.to_string_lossy(),
            &dns.addr.port().to_string(),
        ],
        Duration::from_secs(60),
    );
    assert_eq!(verdict.code, 0, "dkimpy failed: {}", verdict.stderr);
    assert!(
        verdict.stdout.contains("dkim=True d=fwd.test arc=pass"),
        "dkimpy: {}\n--- delivered ---\n{}",
        verdict.stdout,
        String::from_utf8_lossy(&std::fs::read(&file).unwrap_or_default())
    );

    // 2. Postfix bounces the copy to the SRS sender; mailctl sends the bounce on to bob.
    send(
        &fwd,
        "bob@remote.test",
        "bouncer@fwd.test",
        "bounce@remote.test",
    );
    if !wait_until(Duration::from_secs(40), || {
        pf_site.new_mail("bob@remote.test").iter().any(|m| {
            let text = String::from_utf8_lossy(m);
            text.contains("bouncy@pf.test") && text.contains("Mailbox full")
        })
    }) {
        postfix.fail(&format!(
            "no bounce reached bob@remote.test\n--- mailctl log ---\n{}",
            tail(&fwd.log(), 40)
        ));
    }
    let log = postfix.log();
    assert!(
        log.lines().any(|l| l.contains("to=<SRS0=")
            && l.contains("@fwd.test>")
            && l.contains("status=sent")),
        "Postfix sent its bounce to the SRS address:\n{log}"
    );

    // 3. A forged SRS address is refused.
    let mut c = SmtpClient::connect(fwd.smtp());
    c.ehlo("mx.pf.test");
    c.command("MAIL FROM:<>").expect(250, "");
    c.command("RCPT TO:<SRS0=AAAA=J2=remote.test=eve@fwd.test>")
        .expect(550, "5.1.1");
    let _ = c.try_command("QUIT");
}

/// Sends `from` -> `to` to mailctl's MX listener as an outside server would.
fn send(fwd: &Serve, from: &str, to: &str, id: &str) {
    let mut c = SmtpClient::connect(fwd.smtp());
    c.ehlo("mx.remote.test");
    c.send_mail(from, &[to], &message(from, to, "forwarded", id))
        .expect(250, "2.0.0");
    let _ = c.try_command("QUIT");
}
