//! The ACME state directory: `account.json` (the account's key and URL, with the directory it belongs to),
//! `key.pem` (the certificate's private key, kept across renewals), `cert.pem` (the chain the listeners serve),
//! `state.json` (the last attempt: when, what came of it, which names were left out; the outcome of the last
//! request), `renew.request` (left by `mailctl cert renew` for the running daemon) and `daemon.lock` (held by
//! the running daemon, so `cert renew` knows whether one is there). Every file is 0600 and replaced atomically
//! (written to a temporary file of its own beside, synced, renamed), so a crash or a second writer leaves the
//! old file or the new one, never half of one. Written by root (`mailctl cert renew` run by an admin), a file
//! is given to the directory's owner first, so the daemon, running as that user, can read and replace it.
//!
//! Before the first certificate is issued the listeners need one to start: [`Store::prepare`] makes the key and
//! a self-signed placeholder for the host name, and puts a placeholder back whenever the key and the chain on
//! disk do not belong together (a crash between writing a new key and its chain), so `serve` always starts.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::tls::leaf::Leaf;

/// The subject common name of the placeholder certificate.
pub const PLACEHOLDER_CN: &str = "mailctl ACME placeholder";

/// What `state.json` holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct State {
    /// When the last issuance was attempted (Unix seconds).
    pub last_attempt: Option<i64>,
    /// When a certificate was last obtained.
    pub last_success: Option<i64>,
    /// Why the last attempt failed (`None` after a success).
    pub last_error: Option<String>,
    /// Failed attempts in a row (the retry delay grows with it).
    #[serde(default)]
    pub failures: u32,
    /// Names of hosted domains left out of the certificate, each with the reason.
    #[serde(default)]
    pub skipped: Vec<String>,
    /// Names the CA refused to validate, with when (Unix seconds): left out for a day, then tried again.
    #[serde(default)]
    pub refused: Vec<(String, i64)>,
    /// What came of the last `mailctl cert renew` request the daemon handled.
    pub request: Option<Handled>,
}

/// The daemon's answer to a `mailctl cert renew` request.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Handled {
    /// The request's id.
    pub id: String,
    /// A certificate was obtained and is being served.
    pub renewed: bool,
    /// Why not, when something failed (`None` with `renewed: false`: it was not due).
    pub error: Option<String>,
}

/// A renewal asked for by `mailctl cert renew`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Request {
    /// Unique per request; echoed in [`State::handled_request`].
    pub id: String,
    /// Renew even when not due.
    pub force: bool,
}

/// The ACME account as stored.
#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory: String,
    credentials: instant_acme::AccountCredentials,
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// The directory (not touched yet).
    pub fn new(dir: &Path) -> Store {
        Store {
            dir: dir.to_path_buf(),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Creates the directory (0700), the key and a placeholder certificate for `hostname` when missing or when
    /// the key and chain do not belong together; with `owner`, gives the directory and its files to that
    /// uid/gid (a daemon started as root prepares them for the user it becomes).
    pub fn prepare(&self, hostname: &str, owner: Option<(u32, u32)>) -> Result<()> {
        if !self.dir.is_dir() {
            std::fs::create_dir_all(&self.dir)
                .map_err(|e| self.io("cannot create", &self.dir, e))?;
            std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| self.io("cannot set permissions of", &self.dir, e))?;
        }
        let key_path = self.path("key.pem");
        if !key_path.exists() {
            self.new_key()?;
        }
        let (cert, key) = (self.path("cert.pem"), key_path);
        // A chain missing, unparsable or not for the key: the placeholder. One that cannot be read (a
        // permission problem) is left alone for the start-up checks to name.
        let readable = std::fs::File::open(&cert).is_ok() && std::fs::File::open(&key).is_ok();
        let missing = !cert.exists();
        if missing || (readable && crate::tls::server::Tls::load(&cert, &key).is_err()) {
            let placeholder = self.placeholder(hostname)?;
            self.write("cert.pem", placeholder.as_bytes())?;
        }
        if let Some((uid, gid)) = owner {
            let files = [
                "cert.pem",
                "key.pem",
                "account.json",
                "state.json",
                "renew.request",
                "daemon.lock",
            ];
            let present = files.iter().map(|n| self.path(n)).filter(|p| p.exists());
            for path in std::iter::once(self.dir.clone()).chain(present) {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                    .map_err(|e| self.io("cannot change the owner of", &path, e))?;
            }
        }
        Ok(())
    }

    /// A self-signed certificate for `hostname` with the stored key, valid for 30 days.
    fn placeholder(&self, hostname: &str) -> Result<String> {
        let key = self.key()?;
        let mut params = rcgen::CertificateParams::new(vec![hostname.to_string()])
            .map_err(|e| Error::usage(format!("server.hostname: {hostname}: {e}")))?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, PLACEHOLDER_CN);
        let ((y0, m0, d0), (y1, m1, d1)) = (day(-1), day(30));
        params.not_before = rcgen::date_time_ymd(y0, m0, d0);
        params.not_after = rcgen::date_time_ymd(y1, m1, d1);
        let cert = params
            .self_signed(&key)
            .map_err(|e| Error::Refused(format!("cannot make the placeholder certificate: {e}")))?;
        Ok(cert.pem())
    }

    /// The certificate's private key.
    pub fn key(&self) -> Result<rcgen::KeyPair> {
        let path = self.path("key.pem");
        let pem = std::fs::read_to_string(&path).map_err(|e| self.io("cannot read", &path, e))?;
        rcgen::KeyPair::from_pem(&pem).map_err(|e| {
            Error::Refused(format!("{}: not a usable private key: {e}", path.display()))
        })
    }

    /// Makes and stores a new ECDSA P-256 key, replacing the old one.
    pub fn new_key(&self) -> Result<rcgen::KeyPair> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| Error::Refused(format!("cannot generate a key: {e}")))?;
        self.write("key.pem", key.serialize_pem().as_bytes())?;
        Ok(key)
    }

    /// Replaces the key (its chain is written right after; see [`Store::prepare`] for a crash between).
    pub fn write_key(&self, pem: &str) -> Result<()> {
        self.write("key.pem", pem.as_bytes())
    }

    /// The chain in use, when there is one.
    pub fn chain(&self) -> Option<Vec<u8>> {
        std::fs::read(self.path("cert.pem")).ok()
    }

    /// The leaf of the chain in use, parsed.
    pub fn leaf(&self) -> Option<Leaf> {
        self.chain().and_then(|pem| Leaf::from_pem(&pem).ok())
    }

    /// Replaces the chain.
    pub fn save_chain(&self, pem: &str) -> Result<()> {
        self.write("cert.pem", pem.as_bytes())
    }

    /// The state of the last attempt (default when none was made).
    pub fn state(&self) -> State {
        std::fs::read(self.path("state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Replaces the state.
    pub fn save_state(&self, state: &State) -> Result<()> {
        let json = serde_json::to_vec_pretty(state).unwrap_or_default();
        self.write("state.json", &json)
    }

    /// The stored account, when it belongs to `directory`.
    pub fn account(&self, directory: &str) -> Option<instant_acme::AccountCredentials> {
        let bytes = std::fs::read(self.path("account.json")).ok()?;
        let stored: StoredAccount = serde_json::from_slice(&bytes).ok()?;
        (stored.directory == directory).then_some(stored.credentials)
    }

    /// Stores the account of `directory`.
    pub fn save_account(
        &self,
        directory: &str,
        credentials: instant_acme::AccountCredentials,
    ) -> Result<()> {
        let json = serde_json::to_vec(&StoredAccount {
            directory: directory.to_string(),
            credentials,
        })
        .map_err(|e| Error::Refused(format!("cannot store the ACME account: {e}")))?;
        self.write("account.json", &json)
    }

    /// Leaves a renewal request for the daemon.
    pub fn request(&self, request: &Request) -> Result<()> {
        let json = serde_json::to_vec(request).unwrap_or_default();
        self.write("renew.request", &json)
    }

    /// Takes the pending renewal request, if any: renamed away first, so a request written meanwhile is
    /// the next one, never lost.
    pub fn take_request(&self) -> Option<Request> {
        let path = self.path("renew.request");
        let taken = self.path(".renew.request.taken");
        std::fs::rename(&path, &taken).ok()?;
        let bytes = std::fs::read(&taken).ok();
        let _ = std::fs::remove_file(&taken);
        serde_json::from_slice(&bytes?).ok()
    }

    /// Withdraws the pending request `id` (a `cert renew` that stopped waiting), if it is still there.
    pub fn withdraw_request(&self, id: &str) {
        let path = self.path("renew.request");
        let pending: Option<Request> = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if pending.is_some_and(|r| r.id == id) {
            let _ = std::fs::remove_file(&path);
        }
    }

    /// Holds `daemon.lock` for as long as the returned file lives: the running daemon does, so that
    /// [`Store::daemon_running`] can tell. `None` when another process holds it.
    pub fn lock_daemon(&self) -> Result<Option<std::fs::File>> {
        let path = self.path("daemon.lock");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| self.io("cannot open", &path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(file)),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(self.io("cannot lock", &path, e)),
        }
    }

    /// Whether a daemon holds `daemon.lock` now.
    pub fn daemon_running(&self) -> bool {
        let path = self.path("daemon.lock");
        match std::fs::OpenOptions::new().read(true).open(&path) {
            Ok(file) => matches!(
                file.try_lock_shared(),
                Err(std::fs::TryLockError::WouldBlock)
            ),
            Err(_) => false,
        }
    }

    /// Writes `name` atomically, mode 0600, owned by the directory's owner.
    fn write(&self, name: &str, bytes: &[u8]) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let path = self.path(name);
        let unique = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let tmp = self.path(&format!(".{name}.{}.{unique}.tmp", std::process::id()));
        let owner = std::fs::metadata(&self.dir)
            .ok()
            .map(|m| (m.uid(), m.gid()))
            .filter(|&(uid, _)| crate::sys::effective_ids().0 == 0 && uid != 0);
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .and_then(|mut f| {
                if let Some((uid, gid)) = owner {
                    std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
                }
                f.write_all(bytes)?;
                f.sync_all()
            })
            .and_then(|()| std::fs::rename(&tmp, &path))
            .and_then(|()| std::fs::File::open(&self.dir)?.sync_all());
        written.map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            self.io("cannot write", &path, e)
        })
    }

    fn io(&self, action: &'static str, path: &Path, source: std::io::Error) -> Error {
        Error::File {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The date `days` from today (UTC): year, month, day.
fn day(days: i64) -> (i32, u8, u8) {
    use chrono::Datelike;
    let d = chrono::Utc::now() + chrono::Duration::days(days);
    (d.year(), d.month() as u8, d.day() as u8)
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_makes_a_key_and_a_placeholder_and_repairs_a_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(&dir.path().join("acme"));
        store.prepare("mx.example.org", None).unwrap();
        let leaf = store.leaf().unwrap();
        assert_eq!(leaf.names, ["mx.example.org"]);
        assert!(leaf.subject.contains(PLACEHOLDER_CN), "{}", leaf.subject);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(store.dir()), 0o700);
        assert_eq!(mode(&store.dir().join("key.pem")), 0o600);
        assert_eq!(mode(&store.dir().join("cert.pem")), 0o600);
        // A new key without its chain: the next prepare puts a placeholder for the new key back.
        let first = leaf.spki_sha256;
        store.new_key().unwrap();
        store.prepare("mx.example.org", None).unwrap();
        let second = store.leaf().unwrap().spki_sha256;
        assert_ne!(first, second);
        assert!(
            crate::tls::server::Tls::load(
                &store.dir().join("cert.pem"),
                &store.dir().join("key.pem")
            )
            .is_ok()
        );
    }

    #[test]
    fn the_daemon_lock_is_seen_and_root_writes_for_the_owner_of_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        assert!(!store.daemon_running());
        let held = store.lock_daemon().unwrap().expect("free");
        assert!(store.daemon_running());
        assert!(
            store.lock_daemon().unwrap().is_none(),
            "one daemon at a time"
        );
        drop(held);
        assert!(!store.daemon_running());
        if crate::sys::effective_ids().0 == 0 {
            use std::os::unix::fs::MetadataExt;
            std::os::unix::fs::chown(dir.path(), Some(65534), Some(65534)).unwrap();
            store.save_state(&State::default()).unwrap();
            let meta = std::fs::metadata(dir.path().join("state.json")).unwrap();
            assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
        }
    }

    #[test]
    fn state_and_requests_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        assert_eq!(store.state(), State::default());
        let state = State {
            last_error: Some("no".into()),
            failures: 2,
            ..State::default()
        };
        store.save_state(&state).unwrap();
        assert_eq!(store.state(), state);
        assert_eq!(store.take_request(), None);
        let request = Request {
            id: "1".into(),
            force: true,
        };
        store.request(&request).unwrap();
        assert_eq!(store.take_request(), Some(request.clone()));
        assert_eq!(store.take_request(), None);
        store.request(&request).unwrap();
        store.withdraw_request("other");
        store.withdraw_request("1");
        assert_eq!(store.take_request(), None);
    }
}
