//! Outbound routing (`smtp::outbound::mx::route`) against the in-process test DNS server: MX preference order,
//! the shuffle of equal preferences, null MX, the implicit MX, IPv6-only hosts, NXDOMAIN, a dead nameserver,
//! hosts without addresses, lenient CNAMEs, address de-duplication, the host limit and MX loops.

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use kit::dns::TestDns;
use mailctl::dns::Resolver;
use mailctl::smtp::outbound::mx::{
    STATUS_DNS_FAILURE, STATUS_LOOP, STATUS_NO_SUCH_DOMAIN, STATUS_UNROUTABLE,
};
use mailctl::smtp::outbound::{Route, RouteOptions, route, route_with_rng};
use rand::SeedableRng;
use rand::rngs::StdRng;

const LOCAL: &str = "mail.ours.test";

const ZONE: &str = "\
pref.example.\tIN\tMX\t20 mx2.pref.example.
pref.example.\tIN\tMX\t10 mx1.pref.example.
pref.example.\tIN\tMX\t30 mx3.pref.example.
mx1.pref.example.\tIN\tA\t127.0.0.11
mx2.pref.example.\tIN\tA\t127.0.0.12
mx3.pref.example.\tIN\tA\t127.0.0.13
equal.example.\tIN\tMX\t10 a.equal.example.
equal.example.\tIN\tMX\t10 b.equal.example.
equal.example.\tIN\tMX\t5 first.equal.example.
first.equal.example.\tIN\tA\t127.0.0.20
a.equal.example.\tIN\tA\t127.0.0.21
b.equal.example.\tIN\tA\t127.0.0.22
nullmx.example.\tIN\tMX\t0 .
nomx.example.\tIN\tA\t127.0.0.31
nomx.example.\tIN\tAAAA\t::1
v6only.example.\tIN\tMX\t10 mx.v6only.example.
mx.v6only.example.\tIN\tAAAA\t::1
noaddr.example.\tIN\tMX\t10 ghost.noaddr.example.
noaddr.example.\tIN\tMX\t20 mx2.noaddr.example.
mx2.noaddr.example.\tIN\tA\t127.0.0.41
ghosts.example.\tIN\tMX\t10 one.ghosts.example.
ghosts.example.\tIN\tMX\t20 two.ghosts.example.
noaddr-nomx.example.\tIN\tTXT\t\"v=spf1 -all\"
alias.example.\tIN\tMX\t10 mx.alias.example.
mx.alias.example.\tIN\tCNAME\tmx1.pref.example.
dup.example.\tIN\tMX\t10 mx1.pref.example.
dup.example.\tIN\tMX\t20 mx.alias.example.
dup.example.\tIN\tMX\t30 mx2.pref.example.
self.example.\tIN\tMX\t10 primary.self.example.
self.example.\tIN\tMX\t20 mail.ours.test.
self.example.\tIN\tMX\t30 tertiary.self.example.
primary.self.example.\tIN\tA\t127.0.0.51
tertiary.self.example.\tIN\tA\t127.0.0.53
loop.example.\tIN\tMX\t10 MAIL.ours.test.
loop.example.\tIN\tMX\t20 backup.loop.example.
backup.loop.example.\tIN\tA\t127.0.0.61
";

fn setup() -> (TestDns, Resolver) {
    let dns = TestDns::start(&[("example.", ZONE)]);
    let resolver = Resolver::build(&[&dns.nameserver()], Duration::from_secs(2)).unwrap();
    (dns, resolver)
}

async fn lookup(resolver: &Resolver, domain: &str) -> Route {
    route(resolver, domain, &RouteOptions::new(LOCAL)).await
}

fn names(route: &Route) -> Vec<&str> {
    route.hosts().iter().map(|h| h.name.as_str()).collect()
}

fn v4(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

#[tokio::test]
async fn hosts_come_in_preference_order_with_their_addresses() {
    let (_dns, resolver) = setup();
    let route = lookup(&resolver, "pref.example").await;
    assert_eq!(
        names(&route),
        ["mx1.pref.example", "mx2.pref.example", "mx3.pref.example"]
    );
    let hosts = route.hosts();
    assert_eq!(
        hosts.iter().map(|h| h.preference).collect::<Vec<_>>(),
        [10, 20, 30]
    );
    assert_eq!(hosts[0].ipv4, [v4(11)]);
    assert!(hosts[0].ipv6.is_empty());
    assert!(!hosts[0].implicit);
    // Case and a trailing dot do not matter.
    assert_eq!(lookup(&resolver, "PREF.example.").await, route);
}

#[tokio::test]
async fn equal_preferences_are_shuffled_reproducibly_by_the_given_rng() {
    let (_dns, resolver) = setup();
    let options = RouteOptions::new(LOCAL);
    let mut orders = HashSet::new();
    for seed in 0..32 {
        let first = route_with_rng(
            &resolver,
            "equal.example",
            &options,
            &mut StdRng::seed_from_u64(seed),
        )
        .await;
        let again = route_with_rng(
            &resolver,
            "equal.example",
            &options,
            &mut StdRng::seed_from_u64(seed),
        )
        .await;
        assert_eq!(first, again, "same seed, same order");
        let order: Vec<String> = names(&first).iter().map(|n| n.to_string()).collect();
        assert_eq!(order[0], "first.equal.example", "preference 5 always first");
        orders.insert(order);
    }
    let expected: HashSet<Vec<String>> = [
        ["first.equal.example", "a.equal.example", "b.equal.example"],
        ["first.equal.example", "b.equal.example", "a.equal.example"],
    ]
    .iter()
    .map(|o| o.iter().map(|n| n.to_string()).collect())
    .collect();
    assert_eq!(orders, expected, "both orders of the equal pair occur");
}

#[tokio::test]
async fn a_null_mx_means_no_mail() {
    let (_dns, resolver) = setup();
    assert_eq!(lookup(&resolver, "nullmx.example").await, Route::NullMx);
}

#[tokio::test]
async fn without_mx_the_domain_itself_is_the_implicit_mx() {
    let (_dns, resolver) = setup();
    let route = lookup(&resolver, "nomx.example").await;
    let hosts = route.hosts();
    assert_eq!(hosts.len(), 1, "{route:?}");
    assert_eq!(hosts[0].name, "nomx.example");
    assert_eq!(hosts[0].preference, 0);
    assert!(hosts[0].implicit);
    assert_eq!(hosts[0].ipv4, [v4(31)]);
    assert_eq!(hosts[0].ipv6, [Ipv6Addr::LOCALHOST]);

    // No MX and no address either: permanent.
    let route = lookup(&resolver, "noaddr-nomx.example").await;
    assert!(
        matches!(&route, Route::Permanent(e) if e.status == STATUS_UNROUTABLE),
        "{route:?}"
    );
}

#[tokio::test]
async fn an_ipv6_only_host_is_used() {
    let (_dns, resolver) = setup();
    let route = lookup(&resolver, "v6only.example").await;
    let hosts = route.hosts();
    assert_eq!(names(&route), ["mx.v6only.example"]);
    assert!(hosts[0].ipv4.is_empty());
    assert_eq!(hosts[0].ipv6, [Ipv6Addr::LOCALHOST]);
    assert_eq!(hosts[0].addresses().count(), 1);
}

#[tokio::test]
async fn a_domain_that_does_not_exist_fails_permanently() {
    let (_dns, resolver) = setup();
    let route = lookup(&resolver, "missing.example").await;
    assert!(
        matches!(&route, Route::Permanent(e) if e.status == STATUS_NO_SUCH_DOMAIN && e.reason.contains("NXDOMAIN")),
        "{route:?}"
    );
}

#[tokio::test]
async fn a_dead_nameserver_is_a_temporary_failure() {
    // Nothing listens on port 1 of loopback.
    let resolver = Resolver::build(&["127.0.0.1:1"], Duration::from_millis(300)).unwrap();
    let route = lookup(&resolver, "pref.example").await;
    assert!(
        matches!(&route, Route::Temporary(e) if e.status == STATUS_DNS_FAILURE),
        "{route:?}"
    );
}

#[tokio::test]
async fn hosts_without_addresses_are_skipped() {
    let (_dns, resolver) = setup();
    let route = lookup(&resolver, "noaddr.example").await;
    assert_eq!(names(&route), ["mx2.noaddr.example"]);
    assert_eq!(route.hosts()[0].ipv4, [v4(41)]);

    // Every host without an address: permanent, naming them.
    let route = lookup(&resolver, "ghosts.example").await;
    assert!(
        matches!(&route, Route::Permanent(e) if e.status == STATUS_UNROUTABLE
            && e.reason.contains("one.ghosts.example") && e.reason.contains("two.ghosts.example")),
        "{route:?}"
    );
}

#[tokio::test]
async fn cname_hosts_are_followed_and_duplicate_addresses_tried_once() {
    let (_dns, resolver) = setup();
    let route = lookup(&resolver, "alias.example").await;
    assert_eq!(names(&route), ["mx.alias.example"]);
    assert_eq!(route.hosts()[0].ipv4, [v4(11)]);

    // mx.alias.example is mx1.pref.example again: only the better-preference entry remains.
    let route = lookup(&resolver, "dup.example").await;
    assert_eq!(names(&route), ["mx1.pref.example", "mx2.pref.example"]);
}

#[tokio::test]
async fn the_number_of_hosts_is_limited() {
    let (_dns, resolver) = setup();
    let mut options = RouteOptions::new(LOCAL);
    options.max_hosts = 2;
    let route = route(&resolver, "pref.example", &options).await;
    assert_eq!(names(&route), ["mx1.pref.example", "mx2.pref.example"]);
}

#[tokio::test]
async fn this_server_and_worse_mx_hosts_are_skipped() {
    let (_dns, resolver) = setup();
    // mail.ours.test is the preference-20 MX: it and the preference-30 host would hand the mail back to it.
    let route = lookup(&resolver, "self.example").await;
    assert_eq!(names(&route), ["primary.self.example"]);

    // Another server name: all three are candidates (mail.ours.test has no address in the test zone).
    let route = route_with_rng(
        &resolver,
        "self.example",
        &RouteOptions::new("other.ours.test"),
        &mut StdRng::seed_from_u64(1),
    )
    .await;
    assert_eq!(
        names(&route),
        ["primary.self.example", "tertiary.self.example"]
    );

    // The best MX is this server (whatever the case): the mail loops.
    let route = lookup(&resolver, "loop.example").await;
    assert!(
        matches!(&route, Route::Permanent(e) if e.status == STATUS_LOOP),
        "{route:?}"
    );
}
