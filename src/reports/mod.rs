//! What receivers report back about the hosted domains: DMARC aggregate reports (RFC 7489 appendix C, RFC 9990)
//! and TLS reports (RFC 8460), found in files and mail ([`extract`]) and stored once each ([`ingest`]).
//!
//! The reports are the receivers' own verdicts on our mail, where `mailctl audit` can only simulate one: which IPs
//! sent as the domain, whether SPF and DKIM passed aligned, what was quarantined or rejected, and whether TLS to
//! the domain's MX failed.

pub mod extract;
pub mod ingest;
pub mod send;
pub mod summary;
