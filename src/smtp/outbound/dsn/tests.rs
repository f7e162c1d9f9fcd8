//! DSNs parsed back with a minimal MIME reader (mail-parser is not reachable from this crate): structure, the
//! null-sender rule, injection attempts, delay warnings, 8-bit headers.

use super::*;

type Fields = Vec<(String, String)>;

struct Part {
    headers: Fields,
    body: String,
}

/// Unfolded `Name: value` fields of a CRLF header block.
fn fields(block: &str) -> Fields {
    let mut out: Fields = Vec::new();
    for line in block.split("\r\n").filter(|l| !l.is_empty()) {
        if line.starts_with([' ', '\t']) {
            let last = out.last_mut().expect("continuation after a field");
            last.1.push_str(line);
        } else {
            let (name, value) = line.split_once(':').expect("a field has a colon");
            out.push((name.to_string(), value.trim().to_string()));
        }
    }
    for f in &mut out {
        f.1 = f.1.trim().to_string();
    }
    out
}

fn get<'a>(fields: &'a Fields, name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn split_head(text: &str) -> (Fields, String) {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    (fields(head), body.to_string())
}

/// The top-level header fields and the parts of a multipart message.
fn parse(message: &[u8]) -> (Fields, Vec<Part>) {
    let text = std::str::from_utf8(message).expect("DSN is UTF-8");
    assert!(
        !text.replace("\r\n", "").contains(['\r', '\n']),
        "bare CR or LF"
    );
    assert!(text.split("\r\n").all(|l| l.len() <= 998), "line over 998");
    let (top, body) = split_head(text);
    let content_type = get(&top, "Content-Type").expect("Content-Type");
    let boundary = content_type
        .split("boundary=\"")
        .nth(1)
        .and_then(|b| b.split('"').next())
        .expect("boundary");
    let (open, close) = (format!("--{boundary}"), format!("--{boundary}--"));
    let mut parts = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in body.split("\r\n") {
        if line == open || line == close {
            if let Some(lines) = current.take() {
                let (headers, body) = split_head(&lines.join("\r\n"));
                parts.push(Part { headers, body });
            }
            if line == close {
                break;
            }
            current = Some(Vec::new());
        } else if let Some(lines) = current.as_mut() {
            lines.push(line);
        }
    }
    (top, parts)
}

fn qp_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let text = text.replace("=\r\n", "");
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// The field groups of a message/delivery-status body: per-message first, then one per recipient.
fn groups(body: &str) -> Vec<Fields> {
    body.split("\r\n\r\n")
        .filter(|g| !g.trim().is_empty())
        .map(fields)
        .collect()
}

const ORIGINAL: &[u8] = b"Received: from x\r\n\tby y\r\nFrom: Alice <alice@ours.example>\r\n\
Subject: hello\r\nMessage-ID: <m1@ours.example>\r\n\r\nSECRET BODY\r\n";

fn report(sender: &str) -> Report<'_> {
    Report {
        reporting_mta: "mx.ours.example",
        original_sender: sender,
        arrival_date: DateTime::parse_from_rfc2822("Tue, 1 Jul 2025 10:52:37 +0000")
            .unwrap()
            .with_timezone(&Utc),
        original_message: ORIGINAL,
        original_envelope_id: Some("env-1"),
    }
}

fn failed(rcpt: &str, reply: &str) -> RecipientStatus {
    RecipientStatus {
        final_recipient: rcpt.into(),
        original_recipient: None,
        status: "5.1.1".into(),
        remote_mta: Some("mx.remote.example".into()),
        diagnostic: Some(Diagnostic::Smtp(reply.into())),
        last_attempt: Some(Utc::now()),
        will_retry_until: None,
    }
}

#[test]
fn a_bounce_is_a_multipart_report_with_three_parts() {
    let dsn = bounce(
        &report("alice@ours.example"),
        &[
            failed("bob@remote.example", "550 5.1.1 user unknown"),
            RecipientStatus {
                remote_mta: None,
                diagnostic: Some(Diagnostic::Local("host not found".into())),
                status: "5.4.4".into(),
                ..failed("carol@gone.example", "")
            },
        ],
    )
    .unwrap();
    assert_eq!(dsn.recipient, "alice@ours.example");
    assert_eq!(Dsn::ENVELOPE_SENDER, "");
    assert!(dsn.message.is_ascii());
    let (top, parts) = parse(&dsn.message);
    assert_eq!(
        get(&top, "From"),
        Some("Mail Delivery System <MAILER-DAEMON@mx.ours.example>")
    );
    assert_eq!(get(&top, "To"), Some("<alice@ours.example>"));
    assert_eq!(
        get(&top, "Subject"),
        Some("Undelivered Mail Returned to Sender")
    );
    assert_eq!(get(&top, "Auto-Submitted"), Some("auto-replied"));
    assert_eq!(get(&top, "MIME-Version"), Some("1.0"));
    assert_eq!(get(&top, "Message-ID"), Some(dsn.message_id.as_str()));
    assert!(dsn.message_id.ends_with("@mx.ours.example>"));
    DateTime::parse_from_rfc2822(get(&top, "Date").unwrap()).unwrap();
    let content_type = get(&top, "Content-Type").unwrap();
    assert!(content_type.starts_with("multipart/report; report-type=delivery-status;"));

    assert_eq!(parts.len(), 3);
    assert_eq!(
        get(&parts[0].headers, "Content-Type"),
        Some("text/plain; charset=us-ascii")
    );
    let human = &parts[0].body;
    assert!(
        human.contains("<bob@remote.example>: host mx.remote.example said: 550 5.1.1 user unknown")
    );
    assert!(human.contains("<carol@gone.example>: host not found"));

    assert_eq!(
        get(&parts[1].headers, "Content-Type"),
        Some("message/delivery-status")
    );
    let g = groups(&parts[1].body);
    assert_eq!(g.len(), 3);
    assert_eq!(get(&g[0], "Reporting-MTA"), Some("dns; mx.ours.example"));
    assert_eq!(get(&g[0], "Original-Envelope-Id"), Some("env-1"));
    assert_eq!(
        get(&g[0], "Arrival-Date"),
        Some("Tue, 1 Jul 2025 10:52:37 +0000")
    );
    assert_eq!(
        get(&g[1], "Final-Recipient"),
        Some("rfc822; bob@remote.example")
    );
    assert_eq!(get(&g[1], "Action"), Some("failed"));
    assert_eq!(get(&g[1], "Status"), Some("5.1.1"));
    assert_eq!(get(&g[1], "Remote-MTA"), Some("dns; mx.remote.example"));
    assert_eq!(
        get(&g[1], "Diagnostic-Code"),
        Some("smtp; 550 5.1.1 user unknown")
    );
    DateTime::parse_from_rfc2822(get(&g[1], "Last-Attempt-Date").unwrap()).unwrap();
    assert_eq!(get(&g[1], "Will-Retry-Until"), None);
    assert_eq!(get(&g[2], "Status"), Some("5.4.4"));
    assert_eq!(get(&g[2], "Remote-MTA"), None);
    assert_eq!(
        get(&g[2], "Diagnostic-Code"),
        Some("X-mailctl; host not found")
    );

    assert_eq!(
        get(&parts[2].headers, "Content-Type"),
        Some("text/rfc822-headers")
    );
    let returned = fields(&parts[2].body);
    assert_eq!(get(&returned, "Subject"), Some("hello"));
    assert_eq!(get(&returned, "Received"), Some("from x\tby y"));
    assert!(!String::from_utf8_lossy(&dsn.message).contains("SECRET BODY"));
}

#[test]
fn the_null_sender_never_gets_a_dsn() {
    let rcpts = [failed("bob@remote.example", "550 no")];
    for sender in ["", "<>", "  "] {
        assert_eq!(
            bounce(&report(sender), &rcpts).unwrap_err(),
            DsnError::NullSender
        );
        assert_eq!(
            delay_warning(&report(sender), &rcpts).unwrap_err(),
            DsnError::NullSender
        );
    }
    for bad in ["a@b\r\nBcc: c@d", "<a@b>", "no-at-sign"] {
        assert!(matches!(
            bounce(&report(bad), &rcpts),
            Err(DsnError::InvalidSender(_))
        ));
    }
    assert_eq!(
        bounce(&report("a@b.example"), &[]).unwrap_err(),
        DsnError::NoRecipients
    );
}

#[test]
fn outside_text_cannot_inject_headers_fields_or_parts() {
    let evil_reply = "550-5.1.1 first line\r\n550 5.1.1 no\r\nX-Injected: 1\r\n\r\n--=_mailctl-dsn-0\r\nAction: delivered";
    let mut rcpt = failed("bob@remote.example\r\nBcc: victim@else.example", evil_reply);
    rcpt.remote_mta = Some("mx.remote.example\r\nFoo: bar".into());
    rcpt.status = "5.1.1\r\nX-Status: 2.0.0".into();
    rcpt.original_recipient = Some("orig@remote.example\nX-Orig: 1".into());
    let mut r = report("alice@ours.example");
    r.original_envelope_id = Some("id\r\nX-Env: 1");
    r.reporting_mta = "mx.ours.example\r\nX-Host: 1";
    let dsn = bounce(&r, &[rcpt]).unwrap();
    let text = String::from_utf8(dsn.message.clone()).unwrap();
    for line in text.split("\r\n") {
        for bad in [
            "X-Injected",
            "Bcc:",
            "Foo:",
            "X-Status",
            "X-Orig",
            "X-Env",
            "X-Host",
            "Action: delivered",
        ] {
            assert!(
                !line.trim_start().starts_with(bad),
                "injected line {line:?}"
            );
        }
    }
    let (top, parts) = parse(&dsn.message);
    assert_eq!(parts.len(), 3, "{text}");
    assert_eq!(
        get(&top, "From"),
        Some("Mail Delivery System <MAILER-DAEMON@mx.ours.exampleX-Host1>")
    );
    let g = groups(&parts[1].body);
    assert_eq!(g.len(), 2);
    let names: Vec<&str> = g[1].iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "Original-Recipient",
            "Final-Recipient",
            "Action",
            "Status",
            "Remote-MTA",
            "Diagnostic-Code",
            "Last-Attempt-Date"
        ]
    );
    assert_eq!(get(&g[1], "Action"), Some("failed"));
    assert_eq!(get(&g[1], "Status"), Some("5.0.0"));
    assert!(
        get(&g[1], "Final-Recipient")
            .unwrap()
            .starts_with("utf-8; bob@remote.example\\x{D}\\x{A}Bcc:")
    );
    assert!(
        get(&g[1], "Diagnostic-Code")
            .unwrap()
            .starts_with("smtp; 550-5.1.1 first line 550 5.1.1 no X-Injected: 1")
    );
}

#[test]
fn a_delay_warning_says_delayed_and_until_when() {
    let until = DateTime::parse_from_rfc2822("Sun, 6 Jul 2025 10:52:37 +0000")
        .unwrap()
        .with_timezone(&Utc);
    let mut rcpt = failed("bob@remote.example", "451 4.7.1 try later");
    rcpt.status = "4.7.1".into();
    rcpt.will_retry_until = Some(until);
    let mut wrong_class = rcpt.clone();
    wrong_class.status = "5.1.1".into();
    let dsn = delay_warning(&report("alice@ours.example"), &[rcpt, wrong_class]).unwrap();
    let (top, parts) = parse(&dsn.message);
    assert_eq!(
        get(&top, "Subject"),
        Some("Delayed Mail (still being retried)")
    );
    assert!(parts[0].body.contains("THIS IS A WARNING ONLY"));
    assert!(
        parts[0]
            .body
            .contains("retried until Sun, 6 Jul 2025 10:52:37 +0000")
    );
    let g = groups(&parts[1].body);
    assert_eq!(get(&g[1], "Action"), Some("delayed"));
    assert_eq!(get(&g[1], "Status"), Some("4.7.1"));
    assert_eq!(
        get(&g[1], "Will-Retry-Until"),
        Some("Sun, 6 Jul 2025 10:52:37 +0000")
    );
    assert_eq!(get(&g[2], "Status"), Some("4.0.0"));
    assert_eq!(
        get(&parts[2].headers, "Content-Description"),
        Some("Delayed Message Headers")
    );
}

#[test]
fn eight_bit_headers_and_long_replies_stay_7bit_and_wrapped() {
    let original = "Subject: Grüße\r\nX-Long: ".to_string() + &"y".repeat(1200) + "\r\n\r\nbody";
    let mut r = report("jörg@ours.example");
    r.original_message = original.as_bytes();
    let long_reply = format!("550 5.7.1 {}", "blocked because of reasons ".repeat(40));
    let dsn = bounce(&r, &[failed("zoë@remote.example", &long_reply)]).unwrap();
    let (top, parts) = parse(&dsn.message);
    assert_eq!(get(&top, "To"), Some("<jörg@ours.example>"));
    assert_eq!(
        get(&parts[0].headers, "Content-Transfer-Encoding"),
        Some("quoted-printable")
    );
    let human = String::from_utf8(qp_decode(&parts[0].body)).unwrap();
    assert!(human.contains("<zoë@remote.example>: host mx.remote.example said: 550 5.7.1 blocked"));
    assert!(parts[1].body.is_ascii());
    assert!(parts[1].body.split("\r\n").all(|l| l.len() <= 78));
    let g = groups(&parts[1].body);
    assert_eq!(
        get(&g[1], "Final-Recipient"),
        Some("utf-8; zo\\x{EB}@remote.example")
    );
    assert!(get(&g[1], "Diagnostic-Code").unwrap().ends_with("..."));
    assert_eq!(
        get(&parts[2].headers, "Content-Type"),
        Some("text/rfc822-headers")
    );
    assert_eq!(
        qp_decode(&parts[2].body),
        original
            .split("\r\n\r\n")
            .next()
            .unwrap()
            .to_string()
            .into_bytes()
            .into_iter()
            .chain(*b"\r\n")
            .collect::<Vec<u8>>()
    );
}
