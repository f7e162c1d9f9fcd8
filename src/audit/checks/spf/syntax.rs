//! The grammar of one SPF record (RFC 7208 section 12), term by term.
//!
//! mail-auth's own parser is built to evaluate, not to explain: it stops at the first problem and does not say
//! which term it was. This one keeps every term it understands (so the lookup walk can still count them) and
//! lists every term it does not, with the reason, so `spf.syntax` can name the exact bad term.

use std::net::{Ipv4Addr, Ipv6Addr};

/// A mechanism's name (RFC 7208 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `all`: matches every IP.
    All,
    /// `include:domain`: evaluates another domain's record.
    Include,
    /// `a[:domain][/cidr]`: the domain's addresses.
    A,
    /// `mx[:domain][/cidr]`: the addresses of the domain's MX hosts.
    Mx,
    /// `ptr[:domain]`: reverse DNS of the IP (deprecated).
    Ptr,
    /// `ip4:network[/cidr]`.
    Ip4,
    /// `ip6:network[/cidr]`.
    Ip6,
    /// `exists:domain`: any A record at the (usually macro-built) name.
    Exists,
}

impl Kind {
    /// Whether evaluating the mechanism queries DNS, so it counts against the limit of 10 (RFC 7208 4.6.4).
    pub fn queries_dns(self) -> bool {
        matches!(
            self,
            Kind::Include | Kind::A | Kind::Mx | Kind::Ptr | Kind::Exists
        )
    }
}

/// One mechanism as published.
#[derive(Debug, Clone)]
pub struct Mechanism {
    /// `+`, `-`, `~` or `?` (`+` when none is written).
    pub qualifier: char,
    /// Which mechanism.
    pub kind: Kind,
    /// The domain-spec, without any CIDR suffix (`None` where the mechanism uses the current domain).
    pub target: Option<String>,
    /// The term exactly as written.
    pub text: String,
}

/// A parsed record: what it says, and which terms do not parse.
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// Every term after `v=spf1`, as written, in order.
    pub terms: Vec<String>,
    /// The mechanisms that parse, in order.
    pub mechanisms: Vec<Mechanism>,
    /// `redirect=` target.
    pub redirect: Option<String>,
    /// Terms that do not parse, each with the reason.
    pub errors: Vec<(String, String)>,
}

impl Record {
    /// The first `all` mechanism (evaluation never goes past it).
    pub fn all(&self) -> Option<&Mechanism> {
        self.mechanisms.iter().find(|m| m.kind == Kind::All)
    }

    /// The redirect that evaluation can reach: RFC 7208 6.1 ignores `redirect` when an `all` is present.
    pub fn effective_redirect(&self) -> Option<&str> {
        self.redirect.as_deref().filter(|_| self.all().is_none())
    }
}

/// Whether a TXT value is an SPF record: `v=spf1` alone or followed by a space (RFC 7208 4.5), any case.
pub fn is_spf(txt: &str) -> bool {
    txt.get(..6)
        .is_some_and(|v| v.eq_ignore_ascii_case("v=spf1"))
        && matches!(txt.as_bytes().get(6), None | Some(b' '))
}

/// Parses a record for which [`is_spf`] holds. Terms are separated by spaces only, as RFC 7208 says.
pub fn parse(record: &str) -> Record {
    let mut parsed = Record::default();
    let mut exp_seen = false;
    for term in record.split(' ').filter(|t| !t.is_empty()).skip(1) {
        parsed.terms.push(term.to_string());
        let result = match parse_term(term) {
            Ok(Term::Redirect(_)) if parsed.redirect.is_some() => {
                Err("redirect appears more than once (RFC 7208 6)".to_string())
            }
            Ok(Term::Exp) if exp_seen => Err("exp appears more than once (RFC 7208 6)".to_string()),
            other => other,
        };
        match result {
            Ok(Term::Mechanism(m)) => parsed.mechanisms.push(m),
            Ok(Term::Redirect(target)) => parsed.redirect = Some(target),
            Ok(Term::Exp) => exp_seen = true,
            Ok(Term::Other) => {}
            Err(why) => parsed.errors.push((term.to_string(), why)),
        }
    }
    parsed
}

enum Term {
    Mechanism(Mechanism),
    Redirect(String),
    Exp,
    Other,
}

/// Macro letters allowed in a domain-spec; `c`, `r` and `t` only make sense in explanation text.
const DOMAIN_LETTERS: &str = "slodiphv";
const ALL_LETTERS: &str = "slodiphvcrt";

fn parse_term(term: &str) -> Result<Term, String> {
    if !term.is_ascii() || term.bytes().any(|b| !(0x21..=0x7e).contains(&b)) {
        return Err("contains characters outside printable ASCII".into());
    }
    if let Some((name, value)) = term.split_once('=')
        && is_modifier_name(name)
    {
        return match name.to_ascii_lowercase().as_str() {
            "redirect" => domain_spec(value).map(|()| Term::Redirect(value.to_string())),
            "exp" => domain_spec(value).map(|()| Term::Exp),
            _ => macro_string(value, ALL_LETTERS).map(|_| Term::Other),
        };
    }
    let (qualifier, rest) = match term.as_bytes()[0] {
        q @ (b'+' | b'-' | b'~' | b'?') => (q as char, &term[1..]),
        _ => ('+', term),
    };
    let name_end = rest.find([':', '/']).unwrap_or(rest.len());
    let (name, arg) = rest.split_at(name_end);
    let kind = match name.to_ascii_lowercase().as_str() {
        "all" => Kind::All,
        "include" => Kind::Include,
        "a" => Kind::A,
        "mx" => Kind::Mx,
        "ptr" => Kind::Ptr,
        "ip4" => Kind::Ip4,
        "ip6" => Kind::Ip6,
        "exists" => Kind::Exists,
        "" => return Err("empty mechanism name".into()),
        other => return Err(format!("unknown mechanism '{other}'")),
    };
    let target = mechanism_argument(kind, arg)?;
    Ok(Term::Mechanism(Mechanism {
        qualifier,
        kind,
        target,
        text: term.to_string(),
    }))
}

/// Checks what follows the mechanism name; returns the domain-spec, if any.
fn mechanism_argument(kind: Kind, arg: &str) -> Result<Option<String>, String> {
    let spec = arg.strip_prefix(':');
    match kind {
        Kind::All if arg.is_empty() => Ok(None),
        Kind::All => Err("all takes no argument".into()),
        Kind::Include | Kind::Exists => match spec {
            Some(s) => domain_spec(s).map(|()| Some(s.to_string())),
            None => Err("needs a domain (include:domain / exists:domain)".into()),
        },
        Kind::Ptr => match spec {
            Some(s) => domain_spec(s).map(|()| Some(s.to_string())),
            None if arg.is_empty() => Ok(None),
            None => Err("ptr takes only an optional :domain".into()),
        },
        Kind::A | Kind::Mx => match spec {
            Some(s) => {
                let (domain, cidr) = split_dual_cidr(s);
                domain_spec(domain)?;
                dual_cidr(cidr)?;
                Ok(Some(domain.to_string()))
            }
            None => dual_cidr(arg).map(|()| None),
        },
        Kind::Ip4 | Kind::Ip6 => {
            let network = spec.ok_or("needs an address (ip4:192.0.2.1 / ip6:2001:db8::1)")?;
            let (addr, cidr) = match network.rsplit_once('/') {
                Some((a, c)) => (a, Some(c)),
                None => (network, None),
            };
            let (ok, max) = if kind == Kind::Ip4 {
                (addr.parse::<Ipv4Addr>().is_ok(), 32)
            } else {
                (addr.parse::<Ipv6Addr>().is_ok(), 128)
            };
            if !ok {
                return Err(format!("'{addr}' is not a valid IP address"));
            }
            if let Some(c) = cidr {
                cidr_length(c, max)?;
            }
            Ok(None)
        }
    }
}

/// Splits `domain/24//64` into the domain-spec and the dual CIDR suffix (possibly empty).
fn split_dual_cidr(s: &str) -> (&str, &str) {
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let mut end = s.len();
    if let Some(p) = s.rfind("//")
        && digits(&s[p + 2..])
    {
        end = p;
    }
    if let Some(q) = s[..end].rfind('/')
        && digits(&s[q + 1..end])
    {
        end = q;
    }
    s.split_at(end)
}

/// `[/ip4-cidr][//ip6-cidr]`.
fn dual_cidr(cidr: &str) -> Result<(), String> {
    if cidr.is_empty() {
        return Ok(());
    }
    if let Some(v6) = cidr.strip_prefix("//") {
        return cidr_length(v6, 128);
    }
    let Some(rest) = cidr.strip_prefix('/') else {
        return Err(format!("unexpected '{cidr}'"));
    };
    match rest.split_once("//") {
        Some((v4, v6)) => cidr_length(v4, 32).and_then(|()| cidr_length(v6, 128)),
        None => cidr_length(rest, 32),
    }
}

fn cidr_length(digits: &str, max: u32) -> Result<(), String> {
    let bad = || {
        Err(format!(
            "'/{digits}' is not a prefix length from 0 to {max}"
        ))
    };
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
    {
        return bad();
    }
    match digits.parse::<u32>() {
        Ok(n) if n <= max => Ok(()),
        _ => bad(),
    }
}

fn is_modifier_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// A domain-spec: a macro-string ending in a macro or in `.toplabel` (RFC 7208 7.1).
fn domain_spec(spec: &str) -> Result<(), String> {
    if spec.is_empty() {
        return Err("empty domain".into());
    }
    if macro_string(spec, DOMAIN_LETTERS)? {
        return Ok(());
    }
    let name = spec.strip_suffix('.').unwrap_or(spec);
    let Some((_, top)) = name.rsplit_once('.') else {
        return Err(format!("'{spec}' is not a fully qualified domain name"));
    };
    if !spec.contains('%') && name.split('.').any(str::is_empty) {
        return Err(format!("'{spec}' has an empty label"));
    }
    let alnum_or_hyphen = top.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let has_alpha = top.bytes().any(|b| b.is_ascii_alphabetic());
    if top.is_empty()
        || !alnum_or_hyphen
        || top.starts_with('-')
        || top.ends_with('-')
        || !(has_alpha || top.contains('-'))
    {
        return Err(format!("'{spec}' does not end in a valid top-level label"));
    }
    Ok(())
}

/// Checks a macro-string; returns whether it ends with a macro expansion.
fn macro_string(s: &str, letters: &str) -> Result<bool, String> {
    let mut rest = s;
    let mut ends_with_macro = false;
    while let Some(c) = rest.chars().next() {
        if c != '%' {
            rest = &rest[c.len_utf8()..];
            ends_with_macro = false;
            continue;
        }
        match rest.as_bytes().get(1) {
            Some(b'%' | b'_' | b'-') => rest = &rest[2..],
            Some(b'{') => {
                let close = rest
                    .find('}')
                    .ok_or_else(|| format!("unterminated macro in '{s}'"))?;
                macro_body(&rest[2..close], letters)
                    .map_err(|why| format!("bad macro '{}' ({why})", &rest[..=close]))?;
                rest = &rest[close + 1..];
            }
            _ => {
                return Err(format!(
                    "'%' in '{s}' must start a macro: %{{x}}, %%, %_ or %-"
                ));
            }
        }
        ends_with_macro = true;
    }
    Ok(ends_with_macro)
}

/// `letter *DIGIT ["r"] *delimiter`.
fn macro_body(body: &str, letters: &str) -> Result<(), String> {
    let mut chars = body.chars().peekable();
    match chars.next() {
        Some(l) if letters.contains(l.to_ascii_lowercase()) => {}
        Some(l) => return Err(format!("'{l}' is not a macro letter here")),
        None => return Err("no macro letter".into()),
    }
    while chars.next_if(char::is_ascii_digit).is_some() {}
    chars.next_if(|c| c.eq_ignore_ascii_case(&'r'));
    match chars.find(|c| !".-+,/_=".contains(*c)) {
        Some(c) => Err(format!("'{c}' is not a delimiter")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(record: &str) -> Vec<String> {
        parse(record).errors.into_iter().map(|(t, _)| t).collect()
    }

    #[test]
    fn valid_terms_parse() {
        let r = parse(
            "v=spf1 +a -mx:mail.example.org/24//64 ~a//64 ?ptr ip4:192.0.2.0/24 ip6:2001:db8::/32 \
             include:_spf.example.net exists:%{i}._spf.%{d} redirect=_spf.example.org exp=exp.%{d2} \
             foo.bar=%{l}x -all",
        );
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(r.mechanisms.len(), 9);
        assert_eq!(r.mechanisms[1].target.as_deref(), Some("mail.example.org"));
        assert_eq!(r.redirect.as_deref(), Some("_spf.example.org"));
        assert_eq!(r.all().map(|m| m.qualifier), Some('-'));
        assert_eq!(r.effective_redirect(), None);
    }

    #[test]
    fn bad_terms_are_named() {
        assert_eq!(
            errors(
                "v=spf1 ip4:192.0.2.300 ip4:192.0.2.0/33 include: include:localhost a:x.example/024 \
                 all:x foo -redirect=x exists:%{z}.example mx:%x.example redirect=a.example redirect=b.example"
            ),
            [
                "ip4:192.0.2.300",
                "ip4:192.0.2.0/33",
                "include:",
                "include:localhost",
                "a:x.example/024",
                "all:x",
                "foo",
                "-redirect=x",
                "exists:%{z}.example",
                "mx:%x.example",
                "redirect=b.example"
            ]
        );
    }

    #[test]
    fn spf_records_are_recognized_by_their_version() {
        assert!(is_spf("v=spf1 -all"));
        assert!(is_spf("V=SPF1"));
        assert!(!is_spf("v=spf10 -all"));
        assert!(!is_spf("v=DMARC1; p=none"));
        assert!(!is_spf("v=spf"));
        assert!(!is_spf("v=spf\u{e9}1"));
    }
}
