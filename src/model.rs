//! Names that parse, never unchecked strings.
//!
//! A [`DomainName`] cannot hold an invalid or non-canonical name: it is lower-case ASCII, internationalized names
//! already in their punycode (`xn--`) form, exactly as the postfixadmin schema stores them. Functions that take one
//! never re-check it. The same holds for [`LocalPart`], [`Address`] and [`AliasAddress`].

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// A fully qualified mail domain, lower-case ASCII (A-labels for IDNs), at least two labels, no trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DomainName(String);

impl DomainName {
    /// The canonical ASCII form, as stored in the database.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses a name already stored in the database; stored rows are trusted to be canonical.
    pub fn from_stored(s: &str) -> Self {
        DomainName(s.to_ascii_lowercase())
    }
}

/// A stored (ASCII) domain name or address as a person reads it: an internationalized name gets its Unicode
/// form beside the punycode, `xn--bcher-kva.example (bücher.example)`; any other text is returned as it is.
pub fn shown_with_unicode(stored: &str) -> String {
    if !stored.contains("xn--") {
        return stored.to_string();
    }
    let (local, domain) = match stored.rsplit_once('@') {
        Some((l, d)) => (Some(l), d),
        None => (None, stored),
    };
    let (unicode, result) = idna::domain_to_unicode(domain);
    if result.is_err() || unicode == domain {
        return stored.to_string();
    }
    match local {
        Some(l) => format!("{stored} ({l}@{unicode})"),
        None => format!("{stored} ({unicode})"),
    }
}

impl FromStr for DomainName {
    type Err = String;

    fn from_str(input: &str) -> Result<Self, String> {
        let bad = |why: &str| Err(format!("invalid domain name '{}': {why}", printable(input)));
        if input.is_empty() {
            return bad("it is empty");
        }
        if input.ends_with('.') {
            return bad("remove the trailing dot");
        }
        if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return bad("it contains white space or control characters");
        }
        let ascii = if input.is_ascii() {
            input.to_ascii_lowercase()
        } else {
            match idna::domain_to_ascii_strict(input) {
                Ok(a) => a,
                Err(_) => return bad("not a valid internationalized name"),
            }
        };
        if ascii.len() > 253 {
            return bad("longer than 253 characters");
        }
        let labels: Vec<&str> = ascii.split('.').collect();
        if labels.len() < 2 {
            return bad("a mail domain needs at least two labels, like example.org");
        }
        for label in &labels {
            if label.is_empty() {
                return bad("it has an empty label");
            }
            if label.len() > 63 {
                return bad("a label is longer than 63 characters");
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return bad("only letters, digits, hyphens and dots are allowed");
            }
            if label.starts_with('-') || label.ends_with('-') {
                return bad("a label starts or ends with a hyphen");
            }
        }
        if ascii.contains("xn--") && idna::domain_to_ascii_strict(&ascii).is_err() {
            return bad("an xn-- label is not valid punycode");
        }
        if labels
            .last()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
        {
            return bad("the top-level label is numeric (an IP address is not a domain)");
        }
        Ok(DomainName(ascii.to_ascii_lowercase()))
    }
}

/// The part of an address before the `@`: a lower-case dot-atom without routing characters.
///
/// `%`, `!` and `/` are refused: the first two are old source-routing syntax that relays have been tricked with,
/// and `/` would escape the mailbox's Maildir path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LocalPart(String);

impl LocalPart {
    /// The stored form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

const LOCAL_SPECIALS: &str = ".#$&'*+-=?^_`{|}~";

impl FromStr for LocalPart {
    type Err = String;

    fn from_str(input: &str) -> Result<Self, String> {
        let bad = |why: &str| Err(format!("invalid local part '{}': {why}", printable(input)));
        if input.is_empty() {
            return bad("it is empty");
        }
        if input.len() > 64 {
            return bad("longer than 64 characters");
        }
        if let Some(c) = input
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || LOCAL_SPECIALS.contains(*c)))
        {
            return bad(&format!(
                "character '{}' is not allowed",
                c.escape_default()
            ));
        }
        if input.starts_with('.') || input.ends_with('.') || input.contains("..") {
            return bad("dots may not lead, trail or repeat");
        }
        Ok(LocalPart(input.to_ascii_lowercase()))
    }
}

/// A mailbox address `local@domain` in canonical form.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address {
    /// The local part.
    pub local: LocalPart,
    /// The domain.
    pub domain: DomainName,
}

impl Address {
    /// Builds an address from a stored `username` / `address` column.
    pub fn from_stored(s: &str) -> Result<Self, String> {
        s.parse()
    }
}

impl FromStr for Address {
    type Err = String;

    fn from_str(input: &str) -> Result<Self, String> {
        let Some((local, domain)) = input.rsplit_once('@') else {
            return Err(format!(
                "invalid address '{}': expected local@domain",
                printable(input)
            ));
        };
        let local = local.parse::<LocalPart>()?;
        let domain = domain
            .parse::<DomainName>()
            .map_err(|e| format!("invalid address '{}': {e}", printable(input)))?;
        let address = Address { local, domain };
        // RFC 5321's path limit; it also keeps every address inside postfixadmin's varchar(255) columns.
        if address.to_string().len() > 254 {
            return Err(format!(
                "invalid address '{}': longer than 254 characters",
                printable(input)
            ));
        }
        Ok(address)
    }
}

/// The address of an alias: an ordinary address or the catch-all `@domain` of a domain.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AliasAddress {
    /// `local@domain`.
    Address(Address),
    /// `@domain`: takes every recipient of the domain that has no mailbox or alias of its own.
    CatchAll(DomainName),
}

impl AliasAddress {
    /// The domain the alias belongs to.
    pub fn domain(&self) -> &DomainName {
        match self {
            AliasAddress::Address(a) => &a.domain,
            AliasAddress::CatchAll(d) => d,
        }
    }
}

impl FromStr for AliasAddress {
    type Err = String;

    fn from_str(input: &str) -> Result<Self, String> {
        match input.strip_prefix('@') {
            Some(domain) => Ok(AliasAddress::CatchAll(domain.parse()?)),
            None => Ok(AliasAddress::Address(input.parse()?)),
        }
    }
}

/// A DNS name that names records rather than hosts, such as an SPF `include:` target (`_spf.provider.example`):
/// like a [`DomainName`] but labels may also hold underscores. Stored lower case, without a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct RecordName(String);

impl RecordName {
    /// The name as written in records.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RecordName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for RecordName {
    type Err = String;

    fn from_str(input: &str) -> Result<Self, String> {
        if !input.is_ascii() {
            return Ok(RecordName(input.parse::<DomainName>()?.0));
        }
        // Underscores are the only difference from a domain name: check the rest with them replaced.
        let probe = input.replace('_', "u");
        probe
            .parse::<DomainName>()
            .map_err(|e| e.replacen(&probe, input, 1))?;
        Ok(RecordName(input.to_ascii_lowercase()))
    }
}

/// A DKIM selector: 1 to 63 characters of `[a-z0-9-]`, not starting or ending with a hyphen (one DNS label, so
/// it can never reach outside `_domainkey`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Selector(String);

impl Selector {
    /// The selector as published.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The DNS name of the key record: `S._domainkey.DOMAIN.`
    pub fn record_name(&self, domain: &DomainName) -> String {
        format!("{}._domainkey.{}.", self.0, domain)
    }
}

impl FromStr for Selector {
    type Err = String;

    fn from_str(input: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            Err(format!(
                "invalid DKIM selector '{}': {why}",
                printable(input)
            ))
        };
        if input.is_empty() || input.len() > 63 {
            return bad("it must be 1 to 63 characters");
        }
        if let Some(c) = input
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return bad(&format!(
                "character '{}' is outside [a-z0-9-]",
                c.escape_default()
            ));
        }
        if input.starts_with('-') || input.ends_with('-') {
            return bad("it may not start or end with a hyphen");
        }
        Ok(Selector(input.to_string()))
    }
}

macro_rules! display_and_serialize {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    )*};
}
display_and_serialize!(DomainName, LocalPart, Address, AliasAddress, Selector);

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for LocalPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

impl fmt::Display for AliasAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AliasAddress::Address(a) => a.fmt(f),
            AliasAddress::CatchAll(d) => write!(f, "@{d}"),
        }
    }
}

/// A message that stays one line whatever it quotes: control characters (line breaks, terminal escapes) are
/// shown escaped (`\n`, `\u{1b}`), everything else, quotes included, as it is. For whole messages; see
/// [`printable`] for a value quoted inside one.
pub fn one_line(message: &str) -> String {
    let mut shown = String::with_capacity(message.len());
    for c in message.chars() {
        match c.is_control() {
            true => shown.extend(c.escape_debug()),
            false => shown.push(c),
        }
    }
    shown
}

/// Renders user input safely inside a one-line message: control characters (CR, LF, NUL) are escaped.
pub fn printable(input: &str) -> String {
    input
        .chars()
        .flat_map(char::escape_debug)
        .collect::<String>()
        .replace("\\'", "'")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internationalized_names_are_shown_in_unicode_too() {
        assert_eq!(
            shown_with_unicode("xn--bcher-kva.example"),
            "xn--bcher-kva.example (bücher.example)"
        );
        assert_eq!(
            shown_with_unicode("anna@xn--bcher-kva.example"),
            "anna@xn--bcher-kva.example (anna@bücher.example)"
        );
        assert_eq!(shown_with_unicode("example.org"), "example.org");
    }

    #[test]
    fn record_names_allow_underscores_and_nothing_else_a_domain_refuses() {
        let n: RecordName = "_SPF.Provider.example".parse().unwrap();
        assert_eq!(n.as_str(), "_spf.provider.example");
        assert!("spf.provider.example".parse::<RecordName>().is_ok());
        for bad in ["_spf", "_spf..example", "_spf.example.", "a b.example", ""] {
            let e = bad.parse::<RecordName>().unwrap_err();
            assert!(e.contains(&format!("'{bad}'")), "{e}");
        }
    }

    #[test]
    fn domain_names_are_canonicalized() {
        let d: DomainName = "Example.ORG".parse().unwrap();
        assert_eq!(d.as_str(), "example.org");
        let idn: DomainName = "bücher.example".parse().unwrap();
        assert_eq!(idn.as_str(), "xn--bcher-kva.example");
    }

    #[test]
    fn bad_domain_names_are_refused() {
        for bad in [
            "",
            "localhost",
            "example..org",
            "-a.org",
            "a-.org",
            "a_b.org",
            "example.org.",
            "1.2.3.4",
            "a b.org",
            "ex\nample.org",
        ] {
            assert!(bad.parse::<DomainName>().is_err(), "{bad:?} accepted");
        }
        let long = format!("{}.org", "a".repeat(64));
        assert!(long.parse::<DomainName>().is_err());
    }

    #[test]
    fn local_parts_refuse_routing_characters() {
        for bad in [
            "a%b", "a!b", "a/b", ".a", "a.", "a..b", "", "a b", "\"q\"", "a@b",
        ] {
            assert!(bad.parse::<LocalPart>().is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            "Alice.Smith+tag".parse::<LocalPart>().unwrap().as_str(),
            "alice.smith+tag"
        );
    }

    #[test]
    fn alias_addresses_include_catch_all() {
        assert_eq!(
            "@Example.org".parse::<AliasAddress>().unwrap().to_string(),
            "@example.org"
        );
        assert!("@".parse::<AliasAddress>().is_err());
        let a: AliasAddress = "Bob@example.org".parse().unwrap();
        assert_eq!(a.to_string(), "bob@example.org");
    }

    #[test]
    fn selectors_stay_one_label() {
        assert_eq!("m202611".parse::<Selector>().unwrap().as_str(), "m202611");
        for bad in ["", "M2026", "a.b", "a_b", "-a", "a-", "sel ector", "ä"] {
            assert!(bad.parse::<Selector>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn printable_escapes_control_characters() {
        assert_eq!(printable("a\r\nb"), "a\\r\\nb");
    }
}
