use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::http::{respond, serve_with};
use super::*;
use crate::smtp::http::HEAD_LIMIT;

/// Every sample of an exposition as `name{labels}` -> value, after checking each line's shape: HELP and TYPE
/// precede a family's samples, every sample belongs to a declared family, every value is a number.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helped = Vec::new();
    let mut samples = BTreeMap::new();
    assert!(text.ends_with('\n'), "exposition must end with a newline");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            assert!(!help.is_empty(), "{line}");
            helped.push(name.to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert_eq!(
                helped.last().map(String::as_str),
                Some(name),
                "HELP before TYPE"
            );
            assert!(types.insert(name.into(), kind.into()).is_none(), "{line}");
        } else {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("value: {line}"));
            let name = series.split('{').next().unwrap();
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{line}"
            );
            let labels = &series[name.len()..];
            if !labels.is_empty() {
                let inner = labels.strip_prefix('{').unwrap().strip_suffix('}').unwrap();
                let (key, val) = inner.split_once('=').unwrap();
                assert!(key.bytes().all(|b| b.is_ascii_lowercase()), "{line}");
                assert!(val.starts_with('"') && val.ends_with('"'), "{line}");
            }
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|f| types.get(*f).is_some_and(|k| k == "histogram"))
                })
                .unwrap_or(name);
            assert!(
                types.contains_key(family),
                "sample of undeclared family: {line}"
            );
            assert!(
                samples.insert(series.to_string(), value).is_none(),
                "duplicate: {line}"
            );
        }
    }
    samples
}

#[test]
fn fresh_metrics_expose_every_family_at_zero() {
    let samples = parse(&Metrics::default().render());
    for name in [
        "mailctl_smtp_connections_total{listener=\"smtp\"}",
        "mailctl_smtp_connections_active{listener=\"submissions\"}",
        "mailctl_smtp_connections_refused_total{reason=\"max_connections_per_ip\"}",
        "mailctl_smtp_messages_accepted_total{listener=\"submission\"}",
        "mailctl_smtp_messages_rejected_total{reason=\"timeout\"}",
        "mailctl_smtp_auth_total{result=\"failure\"}",
        "mailctl_smtp_delivery_seconds_bucket{le=\"+Inf\"}",
        "mailctl_smtp_delivery_seconds_sum",
        "mailctl_smtp_delivery_seconds_count",
    ] {
        assert_eq!(samples.get(name), Some(&0.0), "{name}");
    }
    let rejected = samples.keys().filter(|k| k.contains("rejected_total"));
    assert_eq!(rejected.count(), RejectReason::ALL.len());
    let refused = samples.keys().filter(|k| k.contains("refused_total"));
    assert_eq!(refused.count(), Refusal::ALL.len());
}

#[test]
fn counters_count_by_label() {
    let m = Metrics::default();
    m.connection_opened(ListenerKind::Smtp);
    m.connection_opened(ListenerKind::Smtp);
    m.connection_opened(ListenerKind::Submission);
    m.connection_closed(ListenerKind::Smtp);
    m.connection_refused(Refusal::Total);
    m.rejected(RejectReason::Relay);
    m.rejected(RejectReason::Relay);
    m.rejected(RejectReason::AuthLockout);
    m.auth(true);
    m.auth(false);
    m.auth(false);
    m.accepted(ListenerKind::Submissions, Duration::from_millis(3));
    let s = parse(&m.render());
    let get = |k: &str| s.get(k).copied().unwrap_or_else(|| panic!("missing {k}"));
    assert_eq!(
        get("mailctl_smtp_connections_total{listener=\"smtp\"}"),
        2.0
    );
    assert_eq!(
        get("mailctl_smtp_connections_total{listener=\"submission\"}"),
        1.0
    );
    assert_eq!(
        get("mailctl_smtp_connections_active{listener=\"smtp\"}"),
        1.0
    );
    assert_eq!(
        get("mailctl_smtp_connections_active{listener=\"submission\"}"),
        1.0
    );
    assert_eq!(
        get("mailctl_smtp_connections_refused_total{reason=\"max_connections\"}"),
        1.0
    );
    assert_eq!(
        get("mailctl_smtp_connections_refused_total{reason=\"max_connections_per_ip\"}"),
        0.0
    );
    assert_eq!(
        get("mailctl_smtp_messages_rejected_total{reason=\"relay\"}"),
        2.0
    );
    assert_eq!(
        get("mailctl_smtp_messages_rejected_total{reason=\"auth_lockout\"}"),
        1.0
    );
    assert_eq!(get("mailctl_smtp_auth_total{result=\"success\"}"), 1.0);
    assert_eq!(get("mailctl_smtp_auth_total{result=\"failure\"}"), 2.0);
    assert_eq!(
        get("mailctl_smtp_messages_accepted_total{listener=\"submissions\"}"),
        1.0
    );
}

#[test]
fn a_gauge_never_renders_negative() {
    let m = Metrics::default();
    m.connection_closed(ListenerKind::Smtp);
    let s = parse(&m.render());
    assert_eq!(s["mailctl_smtp_connections_active{listener=\"smtp\"}"], 0.0);
}

#[test]
fn histogram_buckets_are_cumulative_and_end_at_the_count() {
    let m = Metrics::default();
    for ms in [0.5, 1.0, 3.0, 200.0, 20_000.0] {
        m.accepted(ListenerKind::Smtp, Duration::from_secs_f64(ms / 1000.0));
    }
    let s = parse(&m.render());
    let bucket = |le: &str| s[&format!("mailctl_smtp_delivery_seconds_bucket{{le=\"{le}\"}}")];
    assert_eq!(bucket("0.001"), 2.0, "0.5 ms and exactly 1 ms");
    assert_eq!(bucket("0.0025"), 2.0);
    assert_eq!(bucket("0.005"), 3.0);
    assert_eq!(bucket("0.25"), 4.0);
    assert_eq!(bucket("10"), 4.0);
    assert_eq!(bucket("+Inf"), 5.0);
    assert_eq!(s["mailctl_smtp_delivery_seconds_count"], 5.0);
    let sum = s["mailctl_smtp_delivery_seconds_sum"];
    assert!((sum - 20.2045).abs() < 1e-6, "{sum}");
    let mut last = 0.0;
    let les: Vec<String> = render_order_les(&m.render());
    assert_eq!(les.len(), LATENCY_BUCKETS.len() + 1);
    for le in les {
        assert!(bucket(&le) >= last, "buckets must not decrease at le={le}");
        last = bucket(&le);
    }
}

fn render_order_les(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("mailctl_smtp_delivery_seconds_bucket{le=\""))
        .map(|l| l.split('"').next().unwrap().to_string())
        .collect()
}

fn status(response: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(response);
    text.split(' ').nth(1).unwrap().parse().unwrap()
}

#[test]
fn requests_are_answered_by_method_path_and_shape() {
    let m = Metrics::default();
    let cases: [(&[u8], u16); 10] = [
        (b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 200),
        (b"GET /metrics?x=1 HTTP/1.0\r\n\r\n", 200),
        (b"GET /metrics HTTP/1.1\n\n", 200),
        (b"HEAD /metrics HTTP/1.1\r\n\r\n", 200),
        (b"POST /metrics HTTP/1.1\r\n\r\n", 405),
        (b"GET / HTTP/1.1\r\n\r\n", 404),
        (b"GET /metrics HTTP/2.0\r\n\r\n", 400),
        (b"GET  /metrics HTTP/1.1\r\n\r\n", 400),
        (b"GET /metrics HTTP/1.1\r\nno colon\r\n\r\n", 400),
        (b"GET /metrics HTTP/1.1\r\n folded: x\r\n\r\n", 400),
    ];
    for (head, want) in cases {
        let got = respond(head, &m);
        assert_eq!(status(&got), want, "{}", String::from_utf8_lossy(head));
        let text = String::from_utf8_lossy(&got);
        assert!(text.contains("\r\nConnection: close\r\n"), "{text}");
    }
    let head = respond(b"HEAD /metrics HTTP/1.1\r\n\r\n", &m);
    assert!(head.ends_with(b"\r\n\r\n"), "HEAD has no body");
}

/// Starts the endpoint on a loopback port with a short read timeout.
async fn endpoint(
    metrics: Arc<Metrics>,
) -> (
    std::net::SocketAddr,
    crate::smtp::shutdown::Trigger,
    tokio::task::JoinHandle<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = crate::smtp::shutdown::channel();
    let task = tokio::spawn(serve_with(
        listener,
        metrics,
        rx,
        Duration::from_millis(300),
    ));
    (addr, tx, task)
}

/// Sends `request` and reads the whole response (the server closes the connection).
async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("server closes the connection")
        .unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn endpoint_serves_metrics_over_a_real_socket_and_stops_on_shutdown() {
    let metrics = Arc::new(Metrics::default());
    metrics.rejected(RejectReason::Relay);
    let (addr, tx, task) = endpoint(metrics.clone()).await;

    let r = exchange(
        addr,
        b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: test\r\n\r\n",
    )
    .await;
    let (head, body) = r.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    assert!(
        head.contains(&format!("\r\nContent-Length: {}", body.len())),
        "{head}"
    );
    assert_eq!(
        parse(body)["mailctl_smtp_messages_rejected_total{reason=\"relay\"}"],
        1.0
    );

    let r = exchange(addr, b"GET /favicon.ico HTTP/1.1\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 404 "), "{r}");
    let r = exchange(addr, b"\x16\x03\x01 not http\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 400 "), "{r}");
    let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n", "a".repeat(HEAD_LIMIT));
    let r = exchange(addr, huge.as_bytes()).await;
    assert!(r.starts_with("HTTP/1.1 431 "), "{r}");
    // A client that sends half a head and stalls is answered 408 after the read timeout.
    let r = exchange(addr, b"GET /metrics HTTP/1.1\r\n").await;
    assert!(r.starts_with("HTTP/1.1 408 "), "{r}");

    tx.fire();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("endpoint stops on shutdown")
        .unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "listener is closed"
    );
}
