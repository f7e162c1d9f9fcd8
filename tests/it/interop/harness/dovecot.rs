//! A private Dovecot instance: `dovecot.conf` is instance plumbing (base and state directories and the log
//! under the [`Site`]'s directory, IMAP and LMTP on free loopback ports, no TLS, no auth failure delay, the
//! same Maildir root `mailctl serve` delivers to, no auth penalty) plus `!include` of `auth-mailctl.conf.ext` exactly as
//! `mailctl config dovecot --out DIR` wrote it, whose passdb and userdb use the generated
//! `dovecot-sql.conf.ext`. Run in the foreground as the test's child; `dovecot stop` (then SIGKILL) on drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{Site, free_port, loopback, program, run_tool, tail, wait_until};

/// A running Dovecot.
pub struct Dovecot {
    dovecot: PathBuf,
    /// The instance's dovecot.conf.
    pub conf: PathBuf,
    log: PathBuf,
    /// IMAP on 127.0.0.1.
    pub imap_port: u16,
    /// LMTP on 127.0.0.1.
    pub lmtp_port: u16,
    /// The auth service for Postfix's `smtpd_sasl_type = dovecot` on 127.0.0.1, when asked for.
    pub auth_port: Option<u16>,
    child: Option<Child>,
}

impl Dovecot {
    /// Starts Dovecot with the files in `generated` (the `--out` directory of `mailctl config dovecot`) and
    /// waits until both listeners answer.
    pub fn start(site: &Site, generated: &Path) -> Dovecot {
        Dovecot::start_with(site, generated, false)
    }

    /// [`Dovecot::start`], with the auth service also listening on a loopback port for Postfix's SASL
    /// (`smtpd_sasl_path = inet:127.0.0.1:PORT`) when `auth_listener`.
    pub fn start_with(site: &Site, generated: &Path, auth_listener: bool) -> Dovecot {
        let dovecot = program("dovecot").expect("dovecot installed");
        let base = site.path("dovecot");
        let (run, state) = (base.join("run"), base.join("state"));
        for dir in [&run, &state] {
            std::fs::create_dir_all(dir).expect("dovecot directory");
        }
        let log = base.join("dovecot.log");
        let (imap_port, lmtp_port) = (free_port(), free_port());
        let conf = base.join("dovecot.conf");
        let auth_port = auth_listener.then(free_port);
        let auth_service = match auth_port {
            Some(port) => format!(
                "service auth {{\n  inet_listener auth-postfix {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n}}\n"
            ),
            None => String::new(),
        };
        let text = format!(
            "# Instance plumbing of the interop test.\n\
             base_dir = {run}\n\
             state_dir = {state}\n\
             log_path = {log}\n\
             protocols = imap lmtp\n\
             listen = 127.0.0.1\n\
             ssl = no\n\
             disable_plaintext_auth = no\n\
             auth_mechanisms = plain\n\
             auth_failure_delay = 0\n\
             auth_verbose = yes\n\
             default_internal_user = dovecot\n\
             default_login_user = dovenull\n\
             mail_location = maildir:{vmail}/%d/%n\n\
             service imap-login {{\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {imap_port}\n  }}\n\
               inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
             # No growing delay after the wrong passwords the tests try on purpose (Dovecot's auth penalty).\n\
             service anvil {{\n  unix_listener anvil-auth-penalty {{\n    mode = 0\n  }}\n}}\n\
             service lmtp {{\n  inet_listener lmtp {{\n    address = 127.0.0.1\n    port = {lmtp_port}\n  }}\n}}\n\
             {auth_service}\
             \n# From mailctl config dovecot, unchanged.\n\
             !include {auth}\n",
            run = run.display(),
            state = state.display(),
            log = log.display(),
            vmail = site.vmail_root.display(),
            auth = generated.join("auth-mailctl.conf.ext").display(),
        );
        std::fs::write(&conf, text).expect("dovecot.conf");
        let mut instance = Dovecot {
            dovecot,
            conf,
            log,
            imap_port,
            lmtp_port,
            auth_port,
            child: None,
        };
        let child = Command::new(&instance.dovecot)
            .arg("-F")
            .arg("-c")
            .arg(&instance.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(base.join("dovecot.stderr")).expect("dovecot stderr file"),
            )
            .spawn()
            .expect("spawn dovecot");
        instance.child = Some(child);
        let up = wait_until(Duration::from_secs(15), || {
            super::listening(instance.imap())
                && super::listening(instance.lmtp())
                && auth_port.is_none_or(|port| super::listening(loopback(port)))
        });
        if !up {
            let stderr = std::fs::read_to_string(base.join("dovecot.stderr")).unwrap_or_default();
            instance.fail(&format!(
                "IMAP/LMTP not answering within 15 s; stderr:\n{stderr}"
            ));
        }
        instance
    }

    /// The IMAP listener.
    pub fn imap(&self) -> SocketAddr {
        loopback(self.imap_port)
    }

    /// The LMTP listener.
    pub fn lmtp(&self) -> SocketAddr {
        loopback(self.lmtp_port)
    }

    /// Dovecot's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics with `what` and the end of Dovecot's log.
    #[track_caller]
    pub fn fail(&self, what: &str) -> ! {
        panic!(
            "dovecot ({}): {what}\n--- dovecot log (end) ---\n{}",
            self.conf.display(),
            tail(&self.log(), 40)
        )
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let conf = self.conf.to_string_lossy().into_owned();
        let dovecot = self.dovecot.clone();
        let _ = std::panic::catch_unwind(move || {
            run_tool(&dovecot, &["-c", &conf, "stop"], Duration::from_secs(15))
        });
        let exited = wait_until(Duration::from_secs(10), || {
            matches!(child.try_wait(), Ok(Some(_)))
        });
        if !exited {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
