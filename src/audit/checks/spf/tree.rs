//! `spf.lookups`: the whole include/redirect tree, walked the way a receiver would count it (RFC 7208 4.6.4).
//!
//! Every DNS-querying term (`include`, `a`, `mx`, `ptr`, `exists`, a reachable `redirect`) counts against the
//! limit of 10, and every `a`/`mx`/`exists` target or `include`/`redirect` target that answers NXDOMAIN or NODATA
//! is a void lookup, limit 2, over the whole tree. An `mx` term may name at most 10 MX hosts (more: permerror),
//! and each of its hosts without an address is one more void lookup; a name counts as having an address when
//! it has an A or an AAAA record (see [`super::probe`] for that choice). Terms after `all` are neither counted
//! nor followed: receivers stop at `all` (`spf.all` warns about them). The walk is static (it follows every
//! branch, since any IP may reach any branch), resolves each node's children and targets concurrently, and
//! stops at include loops, at a depth of 10 and after 50 records, so a hostile tree cannot make the audit run
//! away.

use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::future::{BoxFuture, join, join_all};

use super::probe::{self, Probe};
use super::spf_values;
use super::syntax::{self, Kind, Record};
use crate::audit::{Finding, Status};
use crate::dns::{Answer, RecordType, Resolver};

/// RFC 7208 4.6.4: at most 10 DNS-querying terms.
pub const MAX_LOOKUPS: usize = 10;
/// RFC 7208 4.6.4: at most 2 void lookups.
pub const MAX_VOIDS: usize = 2;
/// Deeper chains are not followed (they cannot stay within 10 lookups anyway).
const MAX_DEPTH: usize = 10;
/// Records fetched per tree before the walk stops.
const MAX_RECORDS: usize = 50;

/// One record in the tree: the domain's own, or one reached through `include:` / `redirect=`.
#[derive(Debug, Clone, Default)]
pub struct Node {
    /// `example.org` for the root, else the term that leads here (`include:_spf.example.net`).
    pub label: String,
    /// The name whose TXT record this is (lower case, no trailing dot).
    pub domain: String,
    /// Reached through `redirect=` rather than `include:`.
    pub is_redirect: bool,
    /// The record, when exactly one was found.
    pub record: Option<Record>,
    /// DNS-querying terms of this record itself.
    pub lookups: usize,
    /// Void lookups caused here, each described by its term.
    pub voids: Vec<String>,
    /// What makes receivers return permerror here (loop, missing or duplicate record ...).
    pub problems: Vec<String>,
    /// Terms of this record that make receivers return permerror (an `mx` with more than 10 hosts): (term, why).
    pub permerrors: Vec<(String, String)>,
    /// What the walk could not follow and why (macro targets).
    pub notes: Vec<String>,
    /// Lookups that got no answer.
    pub failed: Vec<String>,
    /// Records reached from this one.
    pub children: Vec<Node>,
}

impl Node {
    fn new(label: String, domain: &str) -> Node {
        Node {
            label,
            domain: normalize(domain),
            ..Node::default()
        }
    }

    /// DNS-querying terms in this subtree.
    pub fn total_lookups(&self) -> usize {
        self.lookups + self.children.iter().map(Node::total_lookups).sum::<usize>()
    }

    /// Every node of the subtree, this one first.
    pub fn nodes(&self) -> Vec<&Node> {
        let mut all = vec![self];
        for child in &self.children {
            all.extend(child.nodes());
        }
        all
    }

    /// The record `redirect=` leads to, if the walk reached it.
    pub fn redirect_child(&self) -> Option<&Node> {
        self.children.iter().find(|c| c.is_redirect)
    }
}

/// Lower case, without the trailing dot.
pub(super) fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Walks the tree under `domain`, whose record is already fetched and parsed.
pub async fn walk(resolver: &Resolver, domain: &str, record: Record) -> Node {
    let walker = Walker {
        resolver,
        fetched: AtomicUsize::new(0),
    };
    let mut root = Node::new(domain.to_string(), domain);
    root.record = Some(record);
    let chain = vec![root.domain.clone()];
    walker.expand(root, chain, 0).await
}

struct Walker<'r> {
    resolver: &'r Resolver,
    fetched: AtomicUsize,
}

impl<'r> Walker<'r> {
    /// Counts the node's terms, then probes its targets and fetches its children, all at once.
    fn expand<'s>(
        &'s self,
        mut node: Node,
        chain: Vec<String>,
        depth: usize,
    ) -> BoxFuture<'s, Node> {
        Box::pin(async move {
            let Some(record) = node.record.clone() else {
                return node;
            };
            let redirect = record.effective_redirect();
            // Receivers stop at the first `all`: what follows is never looked up.
            let evaluated = match record.mechanisms.iter().position(|m| m.kind == Kind::All) {
                Some(end) => &record.mechanisms[..=end],
                None => &record.mechanisms[..],
            };
            node.lookups = evaluated.iter().filter(|m| m.kind.queries_dns()).count()
                + usize::from(redirect.is_some());
            let mut probes = Vec::new();
            let mut targets = Vec::new();
            for m in evaluated {
                let target = m.target.as_deref().unwrap_or(&node.domain);
                match m.kind {
                    Kind::Include => targets.push((m.text.clone(), target.to_string(), false)),
                    Kind::A | Kind::Mx | Kind::Exists if target.contains('%') => node.notes.push(
                        format!("{}: target built from macros, not resolved here", m.text),
                    ),
                    Kind::A | Kind::Mx | Kind::Exists => {
                        probes.push(probe::probe(self.resolver, m.kind, &m.text, target));
                    }
                    _ => {}
                }
            }
            if let Some(r) = redirect {
                targets.push((format!("redirect={r}"), r.to_string(), true));
            }
            let mut children = Vec::new();
            for (label, target, is_redirect) in targets {
                let name = normalize(&target);
                if target.contains('%') {
                    node.notes
                        .push(format!("{label}: target built from macros, not followed"));
                } else if chain.contains(&name) {
                    let mut looped = Node::new(label, &name);
                    looped.is_redirect = is_redirect;
                    looped.problems.push(format!(
                        "include loop: {} -> {name} (receivers recurse until the lookup limit: permerror)",
                        chain.join(" -> ")
                    ));
                    node.children.push(looped);
                } else if depth >= MAX_DEPTH {
                    node.problems.push(format!(
                        "{label}: not followed, deeper than {MAX_DEPTH} levels"
                    ));
                } else if self.fetched.fetch_add(1, Ordering::Relaxed) >= MAX_RECORDS {
                    node.problems.push(format!(
                        "{label}: not followed, the tree has more than {MAX_RECORDS} records"
                    ));
                } else {
                    let mut next = chain.clone();
                    next.push(name.clone());
                    children.push(self.fetch(label, name, is_redirect, next, depth + 1));
                }
            }
            let (probed, fetched) = join(join_all(probes), join_all(children)).await;
            for p in probed.into_iter().flatten() {
                match p {
                    Probe::Void(v) => node.voids.push(v),
                    Probe::Failed(f) => node.failed.push(f),
                    Probe::Permerror(term, why) => node.permerrors.push((term, why)),
                }
            }
            node.children.extend(fetched);
            node
        })
    }

    /// Fetches the record at an include/redirect target and walks on from it.
    fn fetch<'s>(
        &'s self,
        label: String,
        name: String,
        is_redirect: bool,
        chain: Vec<String>,
        depth: usize,
    ) -> BoxFuture<'s, Node> {
        Box::pin(async move {
            let mut node = Node::new(label, &name);
            node.is_redirect = is_redirect;
            let missing = "no SPF record: receivers return permerror when evaluation reaches it";
            match self.resolver.query(&name, RecordType::TXT).await {
                Answer::Failed(e) => node.failed.push(format!("TXT {name}: {e}")),
                Answer::NxDomain => {
                    node.voids
                        .push(format!("{} ({name} does not exist)", node.label));
                    node.problems.push(missing.into());
                }
                Answer::NoData => {
                    node.voids
                        .push(format!("{} ({name} has no TXT record)", node.label));
                    node.problems.push(missing.into());
                }
                Answer::Records { data, .. } => {
                    let values = spf_values(&data);
                    match values.as_slice() {
                        [] => node.problems.push(missing.into()),
                        [one] => {
                            node.record = Some(syntax::parse(one));
                            return self.expand(node, chain, depth).await;
                        }
                        more => node.problems.push(format!(
                            "{} SPF records at {name}: receivers return permerror",
                            more.len()
                        )),
                    }
                }
            }
            node
        })
    }
}

/// The tree as indented lines, each with its lookup count (and void lookups, problems, failures).
pub fn render(root: &Node) -> String {
    let mut out = Vec::new();
    render_into(root, 0, &mut out);
    out.join("\n")
}

fn render_into(node: &Node, depth: usize, out: &mut Vec<String>) {
    let pad = "  ".repeat(depth);
    let voids = node.nodes().iter().map(|n| n.voids.len()).sum::<usize>();
    let mut line = format!("{pad}{} ({}", node.label, node.total_lookups());
    if voids > 0 {
        line.push_str(&format!(", {voids} void"));
    }
    line.push(')');
    for p in &node.problems {
        line.push_str(&format!(" - {p}"));
    }
    out.push(line);
    for (_, why) in &node.permerrors {
        out.push(format!("{pad}  permerror: {why}"));
    }
    for v in &node.voids {
        out.push(format!("{pad}  void: {v}"));
    }
    for f in &node.failed {
        out.push(format!("{pad}  lookup failed: {f}"));
    }
    for child in &node.children {
        render_into(child, depth + 1, out);
    }
}

/// The `spf.lookups` finding for a walked tree.
pub fn finding(domain: &str, tree: &Node) -> Finding {
    let nodes = tree.nodes();
    let total = tree.total_lookups();
    let voids: Vec<&String> = nodes.iter().flat_map(|n| &n.voids).collect();
    let failed: Vec<&String> = nodes.iter().flat_map(|n| &n.failed).collect();
    let problem_nodes: Vec<&&Node> = nodes.iter().filter(|n| !n.problems.is_empty()).collect();
    let notes: Vec<&String> = nodes.iter().flat_map(|n| &n.notes).collect();
    let mut why = Vec::new();
    let mut fixes = Vec::new();
    if total > MAX_LOOKUPS {
        why.push(format!(
            "{total} DNS-querying terms, more than {MAX_LOOKUPS}: receivers return permerror (RFC 7208 4.6.4)"
        ));
        fixes.push(format!(
            "cut the tree to {MAX_LOOKUPS} lookups or fewer: replace include:/a/mx terms by the ip4:/ip6: \
             ranges they stand for, and drop includes of services that no longer send for {domain}"
        ));
    }
    if voids.len() > MAX_VOIDS {
        why.push(format!(
            "{} void lookups (NXDOMAIN or no data), more than {MAX_VOIDS}: receivers return permerror",
            voids.len()
        ));
    }
    let permerrors: Vec<&(String, String)> = nodes.iter().flat_map(|n| &n.permerrors).collect();
    why.extend(permerrors.iter().map(|(_, why)| why.clone()));
    if !permerrors.is_empty() {
        let terms: Vec<&str> = permerrors.iter().map(|(t, _)| t.as_str()).collect();
        fixes.push(format!(
            "replace {} by the ip4:/ip6: ranges of the hosts that send mail (an mx term may name at most {} MX \
             hosts)",
            terms.join(", "),
            probe::MAX_MX_HOSTS
        ));
    }
    if !voids.is_empty() && (voids.len() > MAX_VOIDS || !problem_nodes.is_empty()) {
        let mut terms: Vec<&str> = Vec::new();
        for v in &voids {
            let term = v.split(" (").next().unwrap_or(v);
            if !terms.contains(&term) {
                terms.push(term);
            }
        }
        fixes.push(format!(
            "remove the terms whose target does not exist or has no address: {}",
            terms.join(", ")
        ));
    }
    for n in &problem_nodes {
        why.extend(n.problems.iter().map(|p| format!("{}: {p}", n.label)));
    }
    if !problem_nodes.is_empty() {
        let labels: Vec<&str> = problem_nodes.iter().map(|n| n.label.as_str()).collect();
        fixes.push(format!("remove or correct {}", labels.join(", ")));
    }
    let summary = format!(
        "{total} of {MAX_LOOKUPS} DNS lookups, {} of {MAX_VOIDS} void lookups over the whole include tree",
        voids.len()
    );
    let tree_text = render(tree);
    if !why.is_empty() {
        return Finding::new(
            "spf.lookups",
            Status::Fail,
            domain,
            format!("{}\n{tree_text}", why.join("; ")),
        )
        .fix(fixes.join("; "));
    }
    if !failed.is_empty() {
        let what: Vec<&str> = failed.iter().map(|f| f.as_str()).collect();
        let mut unknown = Finding::unknown_dns(
            "spf.lookups",
            domain,
            "part of the SPF tree",
            &what.join("; "),
        );
        unknown.detail = format!("{}\n{tree_text}", unknown.detail);
        return unknown;
    }
    let mut detail = summary;
    if !notes.is_empty() {
        let notes: Vec<&str> = notes.iter().map(|n| n.as_str()).collect();
        detail.push_str(&format!(" ({})", notes.join("; ")));
    }
    if !tree.children.is_empty() {
        detail.push_str(&format!("\n{tree_text}"));
    }
    Finding::new("spf.lookups", Status::Pass, domain, detail)
}
