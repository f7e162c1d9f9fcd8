//! Checks the in-process test DNS server (`kit::dns::TestDns`) through the same resolver stack `mailctl`
//! uses (`mail_auth::hickory_resolver`), pointed at the server's random loopback port.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use mail_auth::hickory_resolver::TokioResolver;
use mail_auth::hickory_resolver::config::{
    NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use mail_auth::hickory_resolver::net::NetError;
use mail_auth::hickory_resolver::net::runtime::TokioRuntimeProvider;
use mail_auth::hickory_resolver::proto::rr::RData;

use kit::dns::TestDns;

/// Length of each quoted string the long TXT value is split into (the DNS character-string limit).
const CHUNK: usize = 255;

/// A DKIM-like TXT value longer than two character-strings, so the zone must split it into three.
fn long_dkim_value() -> String {
    let key: String = (0..600)
        .map(|i| {
            char::from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[i % 64])
        })
        .collect();
    let value = format!("v=DKIM1; k=rsa; p={key}");
    assert!(value.len() > 2 * CHUNK && value.len() <= 3 * CHUNK);
    value
}

/// The `example.org.` zone body, printed the way a tool would: absolute names, TTLs, a comment, blank lines and
/// the long TXT value as three quoted strings inside parentheses across lines.
fn example_zone_body() -> String {
    let value = long_dkim_value();
    let chunks: Vec<&str> = value
        .as_bytes()
        .chunks(CHUNK)
        .map(|chunk| std::str::from_utf8(chunk).expect("ASCII value"))
        .collect();
    assert_eq!(chunks.len(), 3);
    format!(
        "; records for example.org, as mailctl would print them\n\
         example.org. 3600 IN A 192.0.2.10\n\
         example.org. 3600 IN MX 10 mail.example.org.\n\
         mail.example.org. 3600 IN A 192.0.2.25\n\
         \n\
         mail._domainkey.example.org. 3600 IN TXT ( \"{}\" ; key, part 1\n\
         \t\"{}\"\n\
         \t\"{}\" ) ; DKIM key\n\
         quoted.example.org. 3600 IN TXT \"say \\\"hi\\\" (twice); ok\"\n",
        chunks[0], chunks[1], chunks[2]
    )
}

/// Starts a server for `example.org.` with [`example_zone_body`].
fn start_example() -> TestDns {
    TestDns::start(&[("example.org.", &example_zone_body())])
}

/// A resolver that asks only `server` (UDP, falling back to TCP), never the hosts file, once, with a short
/// timeout. This is how a custom `--nameserver IP:PORT` has to be expressed with hickory-resolver 0.26: the port
/// lives on each of the name server's `connections`, not on `NameServerConfig` itself.
fn resolver_for(server: SocketAddr) -> TokioResolver {
    let mut name_server = NameServerConfig::udp_and_tcp(server.ip());
    for connection in &mut name_server.connections {
        connection.port = server.port();
    }
    let config = ResolverConfig::from_name_servers(vec![name_server]);

    let mut options = ResolverOpts::default();
    options.use_hosts_file = ResolveHosts::Never;
    options.attempts = 1;
    options.timeout = Duration::from_secs(1);

    TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(options)
        .build()
        .expect("build resolver")
}

/// Runs `future` on a fresh single-threaded tokio runtime (the tests themselves are synchronous).
fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build client runtime")
        .block_on(future)
}

#[test]
fn nameserver_is_loopback_address_with_port() {
    let dns = start_example();
    assert_eq!(dns.addr.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_ne!(dns.addr.port(), 0);
    assert_eq!(dns.nameserver(), format!("127.0.0.1:{}", dns.addr.port()));
}

#[test]
fn resolves_a_mx_and_split_txt() {
    let dns = start_example();
    let resolver = resolver_for(dns.addr);
    block_on(async {
        let a = resolver
            .ipv4_lookup("example.org.")
            .await
            .expect("A lookup");
        let addresses: Vec<_> = a
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect();
        assert_eq!(addresses, [Ipv4Addr::new(192, 0, 2, 10)]);

        let mx = resolver.mx_lookup("example.org.").await.expect("MX lookup");
        let exchanges: Vec<_> = mx
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::MX(mx) => Some((mx.preference, mx.exchange.to_string())),
                _ => None,
            })
            .collect();
        assert_eq!(exchanges, [(10, "mail.example.org.".to_owned())]);

        let txt = resolver
            .txt_lookup("mail._domainkey.example.org.")
            .await
            .expect("TXT lookup");
        let values: Vec<Vec<Box<[u8]>>> = txt
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::TXT(txt) => Some(txt.txt_data.to_vec()),
                _ => None,
            })
            .collect();
        assert_eq!(values.len(), 1, "one TXT record");
        assert_eq!(values[0].len(), 3, "kept as three character-strings");
        assert_eq!(values[0].concat(), long_dkim_value().into_bytes());
    });
}

#[test]
fn missing_name_is_nxdomain_not_timeout() {
    let dns = start_example();
    let resolver = resolver_for(dns.addr);
    let started = Instant::now();
    let error =
        block_on(resolver.txt_lookup("_dmarc.example.org.")).expect_err("no such name in the zone");
    assert!(error.is_nx_domain(), "expected NXDOMAIN, got {error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "answered, not timed out"
    );

    // An existing name without records of the asked type: NOERROR with no answers.
    let error = block_on(resolver.txt_lookup("mail.example.org."))
        .expect_err("no TXT at mail.example.org.");
    assert!(
        error.is_no_records_found(),
        "expected no records, got {error:?}"
    );
    assert!(!error.is_nx_domain(), "the name exists: {error:?}");
}

#[test]
fn names_outside_the_zones_are_refused_not_forwarded() {
    let dns = start_example();
    let resolver = resolver_for(dns.addr);
    let started = Instant::now();
    let error =
        block_on(resolver.ipv4_lookup("example.com.")).expect_err("example.com. is not served");
    assert!(
        !matches!(error, NetError::Timeout),
        "expected an answer (REFUSED), got {error:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "answered, not timed out"
    );
}

#[test]
fn serves_several_zones() {
    let dns = TestDns::start(&[
        ("example.org.", &example_zone_body()),
        ("example.net", "www.example.net. 60 IN A 198.51.100.7\n"),
    ]);
    let resolver = resolver_for(dns.addr);
    block_on(async {
        let org = resolver
            .ipv4_lookup("example.org.")
            .await
            .expect("A in .org zone");
        assert_eq!(org.answers().len(), 1);
        let net = resolver
            .ipv4_lookup("www.example.net.")
            .await
            .expect("A in .net zone");
        assert!(
            matches!(net.answers()[0].data, RData::A(a) if a.0 == Ipv4Addr::new(198, 51, 100, 7))
        );
    });
}

#[test]
#[should_panic(expected = "does not load")]
fn broken_zone_panics_with_parser_message() {
    TestDns::start(&[(
        "example.org.",
        "example.org. 300 IN MX not-a-number mail.example.org.\n",
    )]);
}

#[test]
fn dropping_stops_the_server() {
    let dns = start_example();
    let addr = dns.addr;
    let resolver = resolver_for(addr);
    block_on(resolver.ipv4_lookup("example.org.")).expect("answered while running");
    drop(dns);

    // A fresh resolver, so no cached answer or pooled connection can hide the shutdown.
    let resolver = resolver_for(addr);
    let started = Instant::now();
    let result = block_on(resolver.ipv4_lookup("example.org."));
    assert!(result.is_err(), "still answering after drop: {result:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn quoting_survives_parenthesis_joining() {
    let dns = start_example();
    let resolver = resolver_for(dns.addr);
    let txt = block_on(resolver.txt_lookup("quoted.example.org.")).expect("TXT lookup");
    let RData::TXT(txt) = &txt.answers()[0].data else {
        panic!("not a TXT answer: {txt:?}");
    };
    assert_eq!(txt.txt_data.concat(), b"say \"hi\" (twice); ok");
}

#[test]
#[should_panic(expected = "record cannot be encoded")]
fn overlong_txt_string_panics_at_load() {
    let value = "x".repeat(300);
    TestDns::start(&[(
        "example.org.",
        &format!("example.org. 300 IN TXT \"{value}\"\n"),
    )]);
}
