//! The LMTP client against a scripted fake LMTP server on 127.0.0.1 and on a unix socket.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixListener};
use tokio::task::JoinHandle;

use super::{Client, Endpoint, Timeouts};
use crate::smtp::deliver::{Failure, Target};

const HOST: &str = "mx.example.test";
const MESSAGE: &[u8] = b"Subject: hi\r\n\r\nline one\r\n.hidden\r\n.\r\nlast\r\n";

/// How the fake server behaves.
#[derive(Clone)]
struct Script {
    greeting: &'static str,
    /// Reply to `RCPT TO:<mailbox>`.
    rcpt: fn(&str) -> &'static str,
    /// Reply to `DATA`.
    data: &'static str,
    /// Replies after the final dot, one per accepted recipient, in order.
    after_data: Vec<&'static str>,
    /// Close the connection after the first line of message data.
    close_mid_data: bool,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            greeting: "220 fake LMTP ready",
            rcpt: |_| "250 2.1.5 ok",
            data: "354 go ahead",
            after_data: Vec::new(),
            close_mid_data: false,
        }
    }
}

/// What the fake server received.
#[derive(Debug, Default)]
struct Transcript {
    commands: Vec<String>,
    /// The message data as sent, dot-stuffed, with its final `.\r\n`.
    data: Vec<u8>,
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(stream: S, script: Script) -> Transcript {
    let mut stream = BufReader::new(stream);
    let mut seen = Transcript::default();
    let mut accepted = 0;
    let mut send = format!("{}\r\n", script.greeting);
    loop {
        stream.get_mut().write_all(send.as_bytes()).await.unwrap();
        let mut line = String::new();
        if stream.read_line(&mut line).await.unwrap() == 0 {
            return seen;
        }
        let line = line.trim_end().to_string();
        seen.commands.push(line.clone());
        let verb = line.split([' ', ':']).next().unwrap().to_ascii_uppercase();
        send = match verb.as_str() {
            "LHLO" => {
                "250-fake\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n".into()
            }
            "MAIL" => "250 2.1.0 ok\r\n".into(),
            "RCPT" => {
                let mailbox = line.trim_start_matches("RCPT TO:<").trim_end_matches('>');
                let reply = (script.rcpt)(mailbox);
                if reply.starts_with('2') {
                    accepted += 1;
                }
                format!("{reply}\r\n")
            }
            "DATA" => {
                let reply = format!("{}\r\n", script.data);
                stream.get_mut().write_all(reply.as_bytes()).await.unwrap();
                if !script.data.starts_with("354") {
                    send = String::new();
                    continue;
                }
                loop {
                    let mut data = Vec::new();
                    stream.read_until(b'\n', &mut data).await.unwrap();
                    seen.data.extend_from_slice(&data);
                    if script.close_mid_data || data.is_empty() {
                        return seen;
                    }
                    if data == b".\r\n" {
                        break;
                    }
                }
                let replies = script.after_data.iter().take(accepted);
                let mut all: String = replies.map(|r| format!("{r}\r\n")).collect();
                for _ in script.after_data.len()..accepted {
                    all.push_str("250 2.0.0 saved\r\n");
                }
                all
            }
            "QUIT" => {
                let _ = stream.get_mut().write_all(b"221 bye\r\n").await;
                return seen;
            }
            _ => "500 5.5.1 what?\r\n".into(),
        };
    }
}

async fn tcp_server(script: Script) -> (Client, JoinHandle<Transcript>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        serve(stream, script).await
    });
    (Client::new(Endpoint::Tcp(addr), HOST), task)
}

fn target(name: &str) -> Target {
    Target {
        mailbox: format!("{name}@example.com"),
        maildir: format!("example.com/{name}/"),
        junk: false,
    }
}

#[tokio::test]
async fn all_recipients_accepted_over_tcp() {
    let (client, server) = tcp_server(Script::default()).await;
    let targets = vec![target("alice"), target("bob")];
    let result = client.deliver("sender@example.org", MESSAGE, targets).await;
    assert_eq!(result, Ok(vec![]));
    let seen = server.await.unwrap();
    assert_eq!(
        seen.commands,
        [
            "LHLO mx.example.test",
            "MAIL FROM:<sender@example.org>",
            "RCPT TO:<alice@example.com>",
            "RCPT TO:<bob@example.com>",
            "DATA",
            "QUIT",
        ]
    );
}

#[tokio::test]
async fn all_recipients_accepted_over_a_unix_socket_with_null_sender_and_junk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lmtp");
    let listener = UnixListener::bind(&path).unwrap();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        serve(stream, Script::default()).await
    });
    let client = Client::new(Endpoint::Unix(path), HOST);
    let mut junk = target("carol");
    junk.junk = true;
    assert_eq!(client.deliver("", MESSAGE, vec![junk]).await, Ok(vec![]));
    let seen = server.await.unwrap();
    assert_eq!(seen.commands[1], "MAIL FROM:<>");
    assert_eq!(seen.commands[2], "RCPT TO:<carol@example.com>");
}

#[tokio::test]
async fn lines_starting_with_a_dot_are_stuffed() {
    let (client, server) = tcp_server(Script::default()).await;
    let result = client.deliver("s@x", MESSAGE, vec![target("alice")]).await;
    assert_eq!(result, Ok(vec![]));
    let seen = server.await.unwrap();
    assert_eq!(
        seen.data,
        b"Subject: hi\r\n\r\nline one\r\n..hidden\r\n..\r\nlast\r\n.\r\n"
    );
}

#[tokio::test]
async fn a_rejected_recipient_fails_alone_with_the_reply_as_reason() {
    let script = Script {
        rcpt: |m| match m {
            "bob@example.com" => "550 5.1.1 <bob@example.com> User doesn't exist",
            _ => "250 2.1.5 ok",
        },
        ..Script::default()
    };
    let (client, server) = tcp_server(script).await;
    let targets = vec![target("alice"), target("bob")];
    let failed = client.deliver("s@x", MESSAGE, targets).await.unwrap();
    let failure = Failure::permanent("550 5.1.1 <bob@example.com> User doesn't exist");
    assert_eq!(failed, [(target("bob"), failure)]);
    let seen = server.await.unwrap();
    assert!(
        seen.data.ends_with(b"\r\n.\r\n"),
        "the message went to alice"
    );
}

#[tokio::test]
async fn a_452_recipient_is_a_temporary_failure() {
    let script = Script {
        rcpt: |_| "452 4.2.2 <alice@example.com> Mailbox is full",
        ..Script::default()
    };
    let (client, server) = tcp_server(script).await;
    let err = client
        .deliver("s@x", MESSAGE, vec![target("alice")])
        .await
        .unwrap_err();
    assert!(err.temporary);
    assert!(err.reason.starts_with("452 4.2.2"), "{err:?}");
    let seen = server.await.unwrap();
    assert!(
        !seen.commands.iter().any(|c| c == "DATA"),
        "no DATA without recipients"
    );
}

#[tokio::test]
async fn all_recipients_refused_is_temporary_when_any_refusal_is() {
    let script = Script {
        rcpt: |m| match m {
            "alice@example.com" => "550 5.1.1 no such user",
            _ => "451 4.3.0 try later",
        },
        ..Script::default()
    };
    let (client, _server) = tcp_server(script).await;
    let err = client
        .deliver("s@x", MESSAGE, vec![target("alice"), target("bob")])
        .await
        .unwrap_err();
    assert_eq!(err, Failure::transient("451 4.3.0 try later"));
}

#[tokio::test]
async fn each_accepted_recipient_gets_its_own_reply_after_data() {
    let script = Script {
        rcpt: |m| match m {
            "dave@example.com" => "550 5.1.1 unknown",
            _ => "250 2.1.5 ok",
        },
        after_data: vec!["250 2.0.0 saved", "452 4.2.2 quota", "552 5.2.2 too big"],
        ..Script::default()
    };
    let (client, _server) = tcp_server(script).await;
    let targets = vec![
        target("alice"),
        target("bob"),
        target("dave"),
        target("carol"),
    ];
    let failed = client.deliver("s@x", MESSAGE, targets).await.unwrap();
    assert_eq!(
        failed,
        [
            (target("dave"), Failure::permanent("550 5.1.1 unknown")),
            (target("bob"), Failure::transient("452 4.2.2 quota")),
            (target("carol"), Failure::permanent("552 5.2.2 too big")),
        ]
    );
}

#[tokio::test]
async fn a_refused_data_command_fails_every_recipient() {
    let script = Script {
        data: "554 5.6.0 no thanks",
        ..Script::default()
    };
    let (client, _server) = tcp_server(script).await;
    let err = client
        .deliver("s@x", MESSAGE, vec![target("alice"), target("bob")])
        .await
        .unwrap_err();
    assert_eq!(err, Failure::permanent("554 5.6.0 no thanks"));
}

#[tokio::test]
async fn a_server_closing_mid_data_is_a_temporary_failure() {
    let script = Script {
        close_mid_data: true,
        ..Script::default()
    };
    let (client, _server) = tcp_server(script).await;
    let big: Vec<u8> = b"x: y\r\n\r\n"
        .iter()
        .copied()
        .chain(std::iter::repeat_n(b'z', 1 << 20))
        .collect();
    let err = client
        .deliver("s@x", &big, vec![target("alice"), target("bob")])
        .await
        .unwrap_err();
    assert!(err.temporary, "{err:?}");
}

#[tokio::test]
async fn a_refused_connection_is_a_temporary_failure() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let client = Client::new(Endpoint::Tcp(addr), HOST);
    let err = client
        .deliver("s@x", MESSAGE, vec![target("alice")])
        .await
        .unwrap_err();
    assert!(
        err.temporary && err.reason.contains("unavailable"),
        "{err:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let client = Client::new(Endpoint::Unix(dir.path().join("none")), HOST);
    let err = client
        .deliver("s@x", MESSAGE, vec![target("alice")])
        .await
        .unwrap_err();
    assert!(err.temporary && !err.reason.contains("none"), "{err:?}");
}

#[tokio::test]
async fn a_silent_server_times_out_as_a_temporary_failure() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let _server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(stream);
    });
    let timeouts = Timeouts {
        command: Duration::from_millis(200),
        data_end: Duration::from_millis(200),
    };
    let client = Client::new(Endpoint::Tcp(addr), HOST).with_timeouts(timeouts);
    let err = client
        .deliver("s@x", MESSAGE, vec![target("alice")])
        .await
        .unwrap_err();
    assert_eq!(err, Failure::transient("LMTP server timed out"));
}

#[tokio::test]
async fn a_server_that_is_not_ready_and_control_characters_are_refused() {
    let script = Script {
        greeting: "421 4.3.2 shutting down",
        ..Script::default()
    };
    let (client, _server) = tcp_server(script).await;
    let err = client
        .deliver("s@x", MESSAGE, vec![target("alice")])
        .await
        .unwrap_err();
    assert!(err.temporary && err.reason.contains("421 4.3.2"), "{err:?}");

    let (client, server) = tcp_server(Script::default()).await;
    let mut evil = target("alice");
    evil.mailbox = "alice@example.com>\r\nRCPT TO:<mallory@example.com".into();
    let failed = client
        .deliver("s@x", MESSAGE, vec![target("bob"), evil.clone()])
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert!(!failed[0].1.temporary);
    let seen = server.await.unwrap();
    assert!(!seen.commands.iter().any(|c| c.contains("mallory")));
    let client = Client::new(Endpoint::Tcp("127.0.0.1:9".into()), HOST);
    let err = client
        .deliver("a\r\nb", MESSAGE, vec![target("bob")])
        .await
        .unwrap_err();
    assert!(!err.temporary);
}
