//! mailctl's SRS against postsrsd's, the daemon stock Postfix setups use: with the same secret, both write the
//! same SRS0 and SRS1 addresses, each reverses the other's, and mailctl's silent addresses (for senders that
//! were not authenticated) are ones postsrsd does not accept. postsrsd runs with its two TCP lookup tables
//! (Postfix's `tcp_table` protocol: `get KEY` -> `200 VALUE`) on loopback, as a child of the test.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::harness::{Need, Site, free_port, listening, loopback, setup, wait_until};

/// The secret both use (as postsrsd's secret file holds it: one line).
const SECRET: &str = "the secret postsrsd and mailctl share";
/// The forwarding domain.
const DOMAIN: &str = "fwd.example";

/// A running postsrsd, killed on drop.
struct Postsrsd {
    child: Child,
    forward: u16,
    reverse: u16,
}

impl Postsrsd {
    fn start(site: &Site) -> Postsrsd {
        let secret = site.path("postsrsd.secret");
        std::fs::write(&secret, format!("{SECRET}\n")).expect("secret file");
        let (forward, reverse) = (free_port(), free_port());
        let child = Command::new("/usr/sbin/postsrsd")
            .arg(format!("-s{}", secret.display()))
            .arg(format!("-d{DOMAIN}"))
            .args(["-l127.0.0.1", "-4"])
            .arg(format!("-f{forward}"))
            .arg(format!("-r{reverse}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn postsrsd");
        let up = wait_until(Duration::from_secs(10), || {
            listening(loopback(forward)) && listening(loopback(reverse))
        });
        assert!(up, "postsrsd does not listen within 10 s");
        Postsrsd {
            child,
            forward,
            reverse,
        }
    }

    /// One `tcp_table` lookup: the reply line without its newline.
    fn get(port: u16, key: &str) -> String {
        let mut tcp = TcpStream::connect(loopback(port)).expect("connect to postsrsd");
        tcp.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        tcp.write_all(format!("get {key}\n").as_bytes())
            .expect("send");
        let mut line = String::new();
        BufReader::new(tcp).read_line(&mut line).expect("reply");
        line.trim_end().to_string()
    }

    fn forward(&self, sender: &str) -> String {
        let reply = Postsrsd::get(self.forward, sender);
        reply
            .strip_prefix("200 ")
            .unwrap_or_else(|| panic!("postsrsd forward {sender}: {reply}"))
            .to_string()
    }

    fn reverse(&self, address: &str) -> String {
        Postsrsd::get(self.reverse, address)
    }
}

impl Drop for Postsrsd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
#[ignore = "interop: needs root, Postfix, Dovecot and swaks; run with --ignored (.ci/run does)"]
fn srs_addresses_of_mailctl_and_postsrsd_are_the_same_and_reverse_each_other() {
    let db = setup(&[Need::Postsrsd]);
    let site = Site::new(db);
    site.mailctl_stdin(&["srs", "rotate", "--secret-stdin"], &format!("{SECRET}\n"))
        .ok();
    let postsrsd = Postsrsd::start(&site);
    let mailctl = |args: &[&str]| site.mailctl_stdin(args, "");

    for sender in [
        "bob@remote.example",
        "first.last+tag@sub.remote.example",
        // An SRS0 address of another forwarder: both make the same SRS1.
        "SRS0=HHHH=TT=orig.example=user@first.example",
        // An SRS1 address: both keep the first forwarder and re-hash.
        "SRS1=XXXX=first.example==HHHH=TT=orig.example=user@second.example",
    ] {
        let theirs = postsrsd.forward(sender);
        let ours = mailctl(&["srs", "forward", sender, "--domain", DOMAIN]).ok();
        assert_eq!(ours.stdout.trim(), theirs, "forward of {sender}");
        // Each reverses the other's address.
        let back = mailctl(&["srs", "reverse", &theirs]).ok().stdout;
        let expected = postsrsd.reverse(&theirs);
        assert_eq!(
            format!("200 {}", back.trim()),
            expected,
            "reverse of {theirs}"
        );
    }
    let ours = mailctl(&["srs", "forward", "bob@remote.example", "--domain", DOMAIN])
        .ok()
        .stdout;
    assert_eq!(
        postsrsd.reverse(ours.trim()),
        "200 bob@remote.example",
        "postsrsd reverses mailctl's address"
    );
    // A forged address is refused by both.
    let forged = ours.trim().replacen("=bob@", "=eve@", 1);
    assert!(!postsrsd.reverse(&forged).starts_with("200 "));
    mailctl(&["srs", "reverse", &forged]).fails(1, "forged");
}
