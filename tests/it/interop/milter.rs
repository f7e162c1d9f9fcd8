//! `mailctl serve` with real milters (`[[server.milters]]`):
//! - a milter in Python over Sendmail's own libmilter (pymilter), told what to do by the Subject: it sees the
//!   session's macros, the envelope, the header fields and the body, and each action does what it says:
//!   reject with its own reply, tempfail, discard, quarantine (Junk; a user's mail for other servers is
//!   refused rather than sent), header edits, a new body and a new envelope sender;
//! - rspamd's proxy worker in milter mode rejecting GTUBE with its reply and adding its headers;
//! - OpenDKIM signing on submission, its signature verified by dkimpy.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::harness::{Need, Spawned, free_port, run_tool, setup};
use crate::serve_milter::milters;
use kit::TestDb;
use kit::serve::mail::{PASSWORD, example, message};
use kit::serve::{HOSTNAME, ServeOptions, TestServer};
use kit::smtp_client::SmtpClient;

const BOB: &str = "bob@example.test";
const FAR: &str = "someone@far.test";

/// The test milter: records what it saw (macros, connect data, envelope, fields, body) as one JSON line per
/// message, then acts on the first word of the Subject.
const PYMILTER: &str = r#"
import json, sys, time
import Milter

LOG = sys.argv[2]
MACROS = ["i", "j", "v", "_", "{daemon_name}", "{client_addr}", "{client_name}", "{auth_authen}",
          "{mail_addr}", "{rcpt_addr}"]

class Test(Milter.Base):
    def __init__(self):
        self.seen = {"macros": {}, "headers": [], "rcpts": [], "body": ""}
        self.subject = ""

    def note(self):
        for m in MACROS:
            v = self.getsymval(m)
            if v is not None:
                self.seen["macros"][m] = v

    def connect(self, hostname, family, hostaddr):
        self.note()
        self.seen["connect"] = [hostname, hostaddr[0]]
        return Milter.CONTINUE

    def hello(self, name):
        self.seen["helo"] = name
        return Milter.CONTINUE

    def envfrom(self, f, *params):
        self.note()
        self.seen["from"] = f
        return Milter.CONTINUE

    def envrcpt(self, to, *params):
        self.note()
        self.seen["rcpts"].append(to)
        return Milter.CONTINUE

    def header(self, name, value):
        self.seen["headers"].append([name, value])
        if name.lower() == "subject":
            self.subject = value
        return Milter.CONTINUE

    def body(self, chunk):
        self.seen["body"] += chunk.decode("utf-8", "replace")
        return Milter.CONTINUE

    def eom(self):
        self.note()
        with open(LOG, "a") as f:
            f.write(json.dumps(self.seen) + "\n")
        action = self.subject.split()[0] if self.subject else ""
        if action == "reject":
            self.setreply("554", "5.7.1", "Rejected by the test milter")
            return Milter.REJECT
        if action == "tempfail":
            return Milter.TEMPFAIL
        if action == "discard":
            return Milter.DISCARD
        if action == "quarantine":
            self.quarantine("looks odd")
            return Milter.ACCEPT
        if action == "badfrom":
            self.chgfrom("<two words@far.test>")
            return Milter.ACCEPT
        if action == "edit":
            self.addheader("X-Milter", "seen by libmilter")
            self.addheader("X-First", "inserted first", 0)
            self.chgheader("Subject", 1, "edited by the milter")
            self.chgheader("X-Drop", 1, "")
            self.chgfrom("<changed@far.test>")
            self.replacebody(b"The milter's body.\r\n")
            return Milter.ACCEPT
        return Milter.CONTINUE

Milter.factory = Test
Milter.set_flags(Milter.ADDHDRS | Milter.CHGHDRS | Milter.CHGBODY | Milter.QUARANTINE | Milter.CHGFROM)
Milter.runmilter("mailctl-test", sys.argv[1], 60)
"#;

/// `message()` with `X-Drop: yes` on top, for the test of a deleted field.
fn with_drop(from: &str, to: &str, subject: &str, id: &str) -> Vec<u8> {
    let mut m = b"X-Drop: yes\r\n".to_vec();
    m.extend_from_slice(&message(from, to, subject, id));
    m
}

fn mx_send(server: &TestServer, subject: &str, id: &str) -> kit::smtp_client::Reply {
    let mut c = SmtpClient::connect(server.smtp());
    c.ehlo("mta.far.test");
    let reply = c.send_mail(FAR, &[BOB], &with_drop(FAR, BOB, subject, id));
    c.command("QUIT");
    reply
}

fn submit(server: &TestServer, to: &str, subject: &str, id: &str) -> kit::smtp_client::Reply {
    let alice = "alice@example.test";
    let mut c = SmtpClient::connect(server.submission());
    c.ehlo("laptop.example.test");
    c.starttls(server.root(), HOSTNAME);
    c.ehlo("laptop.example.test");
    c.auth_plain(alice, PASSWORD).expect(235, "2.7.0");
    let reply = c.send_mail(alice, &[to], &message(alice, to, subject, id));
    c.command("QUIT");
    reply
}

/// The last message the test milter recorded.
fn last_seen(log: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let line = text.lines().last().expect("the milter recorded a message");
    serde_json::from_str(line).expect("JSON")
}

/// The header fields of a delivered file, in order, from the first field the client sent (`From` of
/// `message()`, or `X-...` fields a milter put before it); serve's own trace fields come first.
fn header_names(delivered: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(delivered);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    head.split("\r\n")
        .filter(|l| !l.starts_with([' ', '\t']))
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.to_string()))
        .collect()
}

#[test]
#[ignore = "interop: needs root, MariaDB and python3-milter; run with --ignored interop"]
fn interop_libmilter_actions_reach_the_message_and_the_reply() {
    let db: TestDb = setup(&[Need::Pymilter]);
    example(&db);
    let dir = tempfile::tempdir().expect("tempdir");
    let (script, seen) = (
        dir.path().join("test_milter.py"),
        dir.path().join("seen.jsonl"),
    );
    std::fs::write(&script, PYMILTER).expect("script");
    let port = free_port();
    let _milter = Spawned::start(
        "/usr/bin/python3",
        &[
            &script.to_string_lossy(),
            &format!("inet:{port}@127.0.0.1"),
            &seen.to_string_lossy(),
        ],
        dir.path(),
        port,
        Duration::from_secs(30),
    );
    let address = format!("inet:127.0.0.1:{port}");
    let server = TestServer::start(
        &db,
        ServeOptions::default().server_key(
            "milters",
            milters(&[(
                &address,
                "listeners = [\"smtp\", \"submission\"], timeout = 10",
            )]),
        ),
    );

    // Nothing to do: taken unchanged; the milter saw the session, the envelope and the message.
    let reply = mx_send(&server, "pass", "pass@far.test");
    reply.expect(250, "2.0.0");
    let id = reply.first().rsplit(' ').next().unwrap().to_string();
    let s = last_seen(&seen);
    let m = &s["macros"];
    assert_eq!(m["j"], HOSTNAME, "{s}");
    assert_eq!(m["i"], id.as_str(), "{s}");
    assert_eq!(m["{daemon_name}"], "smtp", "{s}");
    assert_eq!(m["{client_addr}"], "127.0.0.1", "{s}");
    assert_eq!(m["{mail_addr}"], FAR, "{s}");
    assert_eq!(m["{rcpt_addr}"], BOB, "{s}");
    assert_eq!(s["connect"][1], "127.0.0.1", "{s}");
    assert_eq!(s["helo"], "mta.far.test", "{s}");
    assert_eq!(s["from"], format!("<{FAR}>"), "{s}");
    assert_eq!(s["rcpts"][0], format!("<{BOB}>"), "{s}");
    assert!(
        s["headers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h[0] == "Subject" && h[1] == "pass"),
        "field values without the leading space: {s}"
    );
    assert!(
        s["body"]
            .as_str()
            .unwrap()
            .contains("\r\n.leading dot survives\r\n"),
        "{s}"
    );
    let inbox = server.inbox(BOB);
    assert_eq!(inbox.len(), 1);
    assert!(header_names(&inbox[0]).contains(&"X-Drop".to_string()));

    // Reject with the milter's own reply; tempfail; discard (250, nothing delivered).
    mx_send(&server, "reject", "reject@far.test").expect(554, "5.7.1 Rejected by the test milter");
    mx_send(&server, "tempfail", "tempfail@far.test").expect(451, "4.7.1");
    mx_send(&server, "discard", "discard@far.test").expect(250, "2.0.0");
    assert_eq!(server.inbox(BOB).len(), 1, "{}", server.log());
    assert!(
        server.log().contains("discarded"),
        "the log says so: {}",
        server.log()
    );

    // Quarantine: filed as Junk.
    mx_send(&server, "quarantine", "quarantine@far.test").expect(250, "2.0.0");
    assert_eq!(TestServer::count(&server.junk(BOB)), 1, "{}", server.log());
    assert_eq!(server.inbox(BOB).len(), 1);

    // Edits: a field inserted first, one added last, one changed, one removed, a new body.
    mx_send(&server, "edit", "edit@far.test").expect(250, "2.0.0");
    let inbox = server.inbox(BOB);
    assert_eq!(inbox.len(), 2);
    let edited = inbox
        .iter()
        .find(|m| String::from_utf8_lossy(m).contains("edit@far.test"))
        .expect("the edited message");
    let text = String::from_utf8_lossy(edited);
    let names = header_names(edited);
    let first_sent = names.iter().position(|n| n == "X-First").expect("X-First");
    assert_eq!(
        names[first_sent + 1],
        "From",
        "X-First is the first field of the message: {text}"
    );
    assert_eq!(names.last().map(String::as_str), Some("X-Milter"), "{text}");
    assert!(!names.contains(&"X-Drop".to_string()), "{text}");
    assert!(
        text.contains("\r\nSubject: edited by the milter\r\n"),
        "{text}"
    );
    assert!(text.ends_with("\r\n\r\nThe milter's body.\r\n"), "{text}");

    // A new envelope sender that is not an address is ignored (it would become MAIL FROM), and logged.
    submit(
        &server,
        "far@far.test",
        "badfrom",
        "sub-badfrom@example.test",
    )
    .expect(250, "2.0.0");
    assert!(
        server.log().contains("is not an address: ignored"),
        "{}",
        server.log()
    );

    // Submission: the login is a macro; a new envelope sender and a quarantine reach the queue.
    submit(&server, "far@far.test", "edit", "sub-edit@example.test").expect(250, "2.0.0");
    let s = last_seen(&seen);
    assert_eq!(s["macros"]["{auth_authen}"], "alice@example.test", "{s}");
    assert_eq!(s["macros"]["{daemon_name}"], "submission", "{s}");
    submit(&server, "far@far.test", "quarantine", "sub-q@example.test").expect(
        554,
        "5.7.1 Message quarantined by a content filter, not sent",
    );
    let queued = server.run(&["--json", "queue", "list"]).ok().json();
    let rows = queued.as_array().expect("queue rows");
    let senders: Vec<&str> = rows
        .iter()
        .map(|r| r["sender"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        senders.len(),
        2,
        "the quarantined message is not queued: {queued}"
    );
    assert!(
        senders.contains(&"changed@far.test") && senders.contains(&"alice@example.test"),
        "the milter's envelope sender, and the original where the milter's was not an address: {queued}"
    );
}

/// rspamd's own config for the test: its proxy worker as a milter that scans itself, on `port`, asking DNS
/// only of `nameserver`; the milter headers it adds for every message.
fn rspamd_config(dir: &Path, port: u16, nameserver: &str) -> PathBuf {
    let local = dir.join("local.d");
    std::fs::create_dir_all(&local).expect("local.d");
    for sub in ["db", "run", "log"] {
        std::fs::create_dir_all(dir.join(sub)).expect("dir");
    }
    std::fs::write(
        local.join("milter_headers.conf"),
        "use = [\"x-spamd-result\", \"x-rspamd-server\"];\nskip_local = false;\nskip_authenticated = false;\n",
    )
    .expect("milter_headers");
    let conf = dir.join("rspamd.conf");
    std::fs::write(
        &conf,
        format!(
            ".include \"$CONFDIR/common.conf\"\n\
             options {{\n  pidfile = \"$RUNDIR/rspamd.pid\";\n  .include \"$CONFDIR/options.inc\"\n  \
             disable_hyperscan = true;\n  dns {{ nameserver = [\"{nameserver}\"]; timeout = 1s; retransmits = 1; }}\n}}\n\
             logging {{ type = \"file\"; filename = \"$LOGDIR/rspamd.log\"; level = \"notice\"; }}\n\
             worker \"rspamd_proxy\" {{\n  bind_socket = \"127.0.0.1:{port}\";\n  milter = yes;\n  \
             timeout = 120s;\n  count = 1;\n  upstream \"local\" {{ default = yes; self_scan = yes; }}\n}}\n"
        ),
    )
    .expect("rspamd.conf");
    conf
}

#[test]
#[ignore = "interop: needs root, MariaDB and rspamd; run with --ignored interop"]
fn interop_rspamd_rejects_gtube_and_adds_its_headers() {
    let db = setup(&[Need::Rspamd]);
    example(&db);
    let dir = tempfile::tempdir().expect("tempdir");
    let dns = kit::dns::TestDns::start(&[("test.", "")]);
    let port = free_port();
    let conf = rspamd_config(dir.path(), port, &dns.nameserver());
    let d = |sub: &str| dir.path().join(sub).to_string_lossy().into_owned();
    let rspamd = Spawned::start(
        "/usr/bin/rspamd",
        &[
            "-f",
            "-i",
            "-c",
            &conf.to_string_lossy(),
            &format!("--var=LOCAL_CONFDIR={}", dir.path().display()),
            &format!("--var=DBDIR={}", d("db")),
            &format!("--var=RUNDIR={}", d("run")),
            &format!("--var=LOGDIR={}", d("log")),
        ],
        dir.path(),
        port,
        Duration::from_secs(90),
    );
    let address = format!("inet:127.0.0.1:{port}");
    let server = TestServer::start(
        &db,
        ServeOptions::default()
            .dns(&dns)
            .server_key("milters", milters(&[(&address, "timeout = 60")])),
    );
    let gtube = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";
    let mut c = SmtpClient::connect(server.smtp());
    c.ehlo("mta.far.test");
    let mut spam = message(FAR, BOB, "spam", "gtube@far.test");
    spam.extend_from_slice(format!("{gtube}\r\n").as_bytes());
    let reply = c.send_mail(FAR, &[BOB], &spam);
    assert_eq!(
        reply.code,
        554,
        "{}\n--- rspamd ---\n{}\n--- serve ---\n{}",
        reply.raw(),
        rspamd.log(),
        server.log()
    );
    assert!(
        reply.raw().contains("5.7.1 Gtube pattern"),
        "rspamd's own words: {}",
        reply.raw()
    );
    c.send_mail(FAR, &[BOB], &message(FAR, BOB, "ham", "ham@far.test"))
        .expect(250, "2.0.0");
    c.command("QUIT");
    let inbox = server.inbox(BOB);
    assert_eq!(inbox.len(), 1, "only the clean message");
    let names = header_names(&inbox[0]);
    assert!(
        names.iter().any(|n| n == "X-Spamd-Result") && names.iter().any(|n| n == "X-Rspamd-Server"),
        "rspamd's headers: {names:?}\n{}",
        String::from_utf8_lossy(&inbox[0])
    );
}

/// dkimpy verifies the message in argv[1] against the public key in argv[2] (base64 DER), whatever selector
/// and domain the signature names.
const VERIFY: &str = r#"
import sys, dkim
msg = open(sys.argv[1], "rb").read()
key = open(sys.argv[2]).read().strip()
def dns(name, timeout=5):
    return ("v=DKIM1; k=rsa; p=" + key).encode()
sig = dkim.DKIM(msg)
ok = sig.verify(dnsfunc=dns)
print("dkim=%s d=%s s=%s" % (ok, sig.domain.decode() if sig.domain else "", sig.selector.decode() if sig.selector else ""))
"#;

#[test]
#[ignore = "interop: needs root, MariaDB, opendkim and python3-dkim; run with --ignored interop"]
fn interop_opendkim_signs_submitted_mail_and_dkimpy_verifies_it() {
    let db = setup(&[Need::Opendkim, Need::Dkimpy]);
    example(&db);
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("s1.private");
    kit::openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        &key.to_string_lossy(),
    ]);
    let der = dir.path().join("s1.der");
    kit::openssl(&[
        "pkey",
        "-in",
        &key.to_string_lossy(),
        "-pubout",
        "-outform",
        "DER",
        "-out",
        &der.to_string_lossy(),
    ]);
    let public = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(&der).expect("public key"))
    };
    let public_file = dir.path().join("s1.pub");
    std::fs::write(&public_file, &public).expect("public key file");
    let port = free_port();
    let conf = dir.path().join("opendkim.conf");
    std::fs::write(
        &conf,
        format!(
            "Syslog no\nBackground no\nMode s\nDomain example.test\nSelector s1\nKeyFile {}\n\
             Socket inet:{port}@127.0.0.1\nCanonicalization relaxed/simple\nPidFile {}\n\
             RequireSafeKeys no\nUserID root\n",
            key.display(),
            dir.path().join("opendkim.pid").display()
        ),
    )
    .expect("opendkim.conf");
    let opendkim = Spawned::start(
        "/usr/sbin/opendkim",
        &["-f", "-x", &conf.to_string_lossy()],
        dir.path(),
        port,
        Duration::from_secs(30),
    );
    let address = format!("inet:127.0.0.1:{port}");
    let server = TestServer::start(
        &db,
        ServeOptions::default().server_key(
            "milters",
            milters(&[(&address, "listeners = [\"submission\"]")]),
        ),
    );
    submit(&server, BOB, "signed", "signed@example.test").expect(250, "2.0.0");
    let inbox = server.inbox(BOB);
    assert_eq!(inbox.len(), 1);
    let text = String::from_utf8_lossy(&inbox[0]).into_owned();
    assert!(
        text.contains("DKIM-Signature:")
            && text.contains("d=example.test")
            && text.contains("s=s1"),
        "OpenDKIM signed: {text}\n--- opendkim ---\n{}",
        opendkim.log()
    );
    let file = dir.path().join("delivered.eml");
    std::fs::write(&file, &inbox[0]).expect("copy");
    let script = dir.path().join("verify.py");
    std::fs::write(&script, VERIFY).expect("script");
    let verdict = run_tool(
        Path::new("/usr/bin/python3"),
        &[
            &script.to_string_lossy(),
            &file.to_string_lossy(),
            &public_file.to_string_lossy(),
        ],
        Duration::from_secs(60),
    );
    assert!(
        verdict.stdout.contains("dkim=True d=example.test s=s1"),
        "dkimpy: {}{}\n--- delivered ---\n{text}",
        verdict.stdout,
        verdict.stderr
    );
}
