//! Certificates from an ACME CA (RFC 8555; Let's Encrypt), for the listeners of `serve`: `[server.acme]`.
//!
//! - [`settings`]: the validated `[server.acme]` section.
//! - [`store`]: the directory that holds the account, the key, the certificate chain and the state of the last
//!   attempt, every file 0600 and written atomically; the key is made once and kept across renewals (DANE
//!   `3 1 1` records stay valid) unless `reuse_key = false`.
//! - [`client`]: the HTTP client the ACME protocol runs over: HTTPS/1.1 through mailctl's resolver and TLS
//!   set-up (no hyper, no system resolver, so tests point it at loopback like every other lookup).
//! - [`challenge`]: the answers the CA's validation fetches: TLS-ALPN-01 (RFC 8737) on the `[server.https]`
//!   listener, or HTTP-01 on `http_listen`.
//! - [`order`]: one issuance: account, order, challenges, a CSR for our key, the chain.
//! - [`names`]: which names the certificate covers: `server.hostname`, and with `[server.https]` the
//!   `mta-sts.` and `autoconfig.` names of every active hosted domain whose name resolves (to
//!   `server.public_ips` when those are set): a name the CA cannot reach would fail the whole order, so it is
//!   left out and reported instead.
//! - [`manager`]: the daemon's task: issues at start when there is no certificate yet (the listeners start with a
//!   self-signed placeholder), renews `renew_days` before expiry (or half-way through a short-lived
//!   certificate), re-issues when the names change, answers `mailctl cert renew`, and swaps the result into the
//!   listeners through the same reload SIGHUP uses. A failure keeps the certificate in use and is retried
//!   with a growing delay.

pub mod challenge;
pub mod client;
pub mod manager;
pub mod names;
pub mod order;
pub mod settings;
pub mod store;

pub use settings::AcmeSettings;
