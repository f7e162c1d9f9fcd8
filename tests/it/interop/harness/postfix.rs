//! A private Postfix instance: `main.cf` is a few lines of instance plumbing followed by `main.cf.mailctl`
//! exactly as `mailctl config postfix --out DIR` wrote it (its mysql: maps used as generated), `master.cf`
//! runs smtpd on a free loopback port and the usual services unchrooted. The config, queue and data
//! directories and the log file live under the [`Site`]'s directory. `postfix check` must pass first;
//! `postfix stop` (and, failing that, SIGKILL of the master) runs on drop, even when the test panics.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Site, chown, free_port, loopback, program, run_tool, tail, user_ids, wait_until};
use kit::smtp_client::{Reply, SmtpClient};

/// Postfix's `myhostname` in every instance.
pub const HOSTNAME: &str = "relay.example.test";

/// master.cf: every service Postfix needs, none chrooted (the queue directory holds no chroot files).
const SERVICES: &str = "\
pickup     unix  n  -  n  60    1  pickup
cleanup    unix  n  -  n  -     0  cleanup
qmgr       unix  n  -  n  300   1  qmgr
rewrite    unix  -  -  n  -     -  trivial-rewrite
bounce     unix  -  -  n  -     0  bounce
defer      unix  -  -  n  -     0  bounce
trace      unix  -  -  n  -     0  bounce
verify     unix  -  -  n  -     1  verify
flush      unix  n  -  n  1000? 0  flush
proxymap   unix  -  -  n  -     -  proxymap
proxywrite unix  -  -  n  -     1  proxymap
smtp       unix  -  -  n  -     -  smtp
relay      unix  -  -  n  -     -  smtp
showq      unix  n  -  n  -     -  showq
error      unix  -  -  n  -     -  error
retry      unix  -  -  n  -     -  error
discard    unix  -  -  n  -     -  discard
local      unix  -  n  n  -     -  local
virtual    unix  -  n  n  -     -  virtual
lmtp       unix  -  -  n  -     -  lmtp
anvil      unix  -  -  n  -     1  anvil
scache     unix  -  -  n  -     1  scache
postlog    unix-dgram n - n -   1  postlogd
tlsmgr     unix  -  -  n  1000? 1  tlsmgr
";

/// A running Postfix.
pub struct Postfix {
    postfix: PathBuf,
    /// `config_directory` (main.cf, master.cf).
    pub config_dir: PathBuf,
    queue_dir: PathBuf,
    log: PathBuf,
    /// smtpd's port on 127.0.0.1.
    pub port: u16,
    running: bool,
}

impl Postfix {
    /// Configures an instance serving `maps` (the `--out` directory of `mailctl config postfix`) with the
    /// extra main.cf lines `extra` (e.g. `virtual_transport`; a parameter of the instance plumbing set there
    /// replaces the plumbing's line), runs `postfix check`, starts it and waits until smtpd answers.
    pub fn start(site: &Site, maps: &Path, extra: &[String]) -> Postfix {
        Postfix::start_on(site, maps, extra, free_port())
    }

    /// [`Postfix::start`] with smtpd on `port` (picked beforehand, when another program must know it first).
    pub fn start_on(site: &Site, maps: &Path, extra: &[String], port: u16) -> Postfix {
        let postfix = program("postfix").expect("postfix installed");
        let base = site.path("postfix");
        let (config_dir, queue_dir, data_dir) =
            (base.join("etc"), base.join("queue"), base.join("data"));
        for dir in [&config_dir, &queue_dir, &data_dir] {
            std::fs::create_dir_all(dir).expect("postfix directory");
        }
        // Postfix insists that its data directory belongs to mail_owner; post-install (run by `postfix
        // check`) creates the queue's subdirectories with their owners.
        let (uid, gid) = user_ids("postfix");
        chown(&data_dir, uid, gid);
        let log = base.join("postfix.log");
        let mailctl_lines = std::fs::read_to_string(maps.join("main.cf.mailctl"))
            .expect("main.cf.mailctl written by mailctl config postfix");
        let mut main_cf = format!(
            "# Instance plumbing of the interop test.\n\
             compatibility_level = 3.6\n\
             queue_directory = {queue}\n\
             data_directory = {data}\n\
             maillog_file = {log}\n\
             maillog_file_prefixes = {base}\n\
             myhostname = {HOSTNAME}\n\
             mydestination =\n\
             inet_interfaces = 127.0.0.1\n\
             inet_protocols = ipv4\n\
             smtpd_peername_lookup = no\n\
             smtp_host_lookup = native\n\
             smtpd_relay_restrictions = reject_unauth_destination\n\
             biff = no\n\
             alias_maps =\n\
             alias_database =\n",
            queue = queue_dir.display(),
            data = data_dir.display(),
            log = log.display(),
            base = base.display(),
        );
        let key = |line: &str| line.split('=').next().unwrap_or("").trim().to_string();
        let replaced: Vec<String> = extra.iter().map(|l| key(l)).collect();
        main_cf = main_cf
            .lines()
            .filter(|l| !replaced.contains(&key(l)))
            .map(|l| format!("{l}\n"))
            .collect();
        for line in extra {
            main_cf += line;
            main_cf.push('\n');
        }
        main_cf += "\n# From mailctl config postfix, unchanged.\n";
        main_cf += &mailctl_lines;
        std::fs::write(config_dir.join("main.cf"), main_cf).expect("main.cf");
        std::fs::write(
            config_dir.join("master.cf"),
            format!("127.0.0.1:{port} inet n - n - - smtpd\n{SERVICES}"),
        )
        .expect("master.cf");

        let mut instance = Postfix {
            postfix,
            config_dir,
            queue_dir,
            log,
            port,
            running: false,
        };
        let check = instance.run(&["check"]);
        if check.code != 0 || !check.stderr.trim().is_empty() {
            instance.fail(&format!(
                "`postfix check` exit {}, stderr:\n{}",
                check.code, check.stderr
            ));
        }
        let start = instance.run(&["start"]);
        instance.running = true;
        if start.code != 0 {
            instance.fail(&format!(
                "`postfix start` exit {}, stderr:\n{}",
                start.code, start.stderr
            ));
        }
        if !wait_until(Duration::from_secs(15), || {
            SmtpClient::try_connect(loopback(port)).is_ok_and(|c| c.banner.code == 220)
        }) {
            instance.fail("smtpd does not answer within 15 s");
        }
        instance
    }

    fn run(&self, args: &[&str]) -> kit::Run {
        let dir = self.config_dir.to_string_lossy().into_owned();
        let mut all = vec!["-c", dir.as_str()];
        all.extend_from_slice(args);
        run_tool(&self.postfix, &all, Duration::from_secs(30))
    }

    /// smtpd's address.
    pub fn addr(&self) -> SocketAddr {
        loopback(self.port)
    }

    /// Postfix's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log lines that report trouble (`warning:`, `error:`, `fatal:`, `panic:`).
    pub fn trouble(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| {
                ["warning:", "error:", "fatal:", "panic:"]
                    .iter()
                    .any(|w| l.contains(w))
            })
            .map(str::to_string)
            .collect()
    }

    /// Panics with `what`, main.cf and the end of Postfix's log.
    #[track_caller]
    pub fn fail(&self, what: &str) -> ! {
        panic!(
            "postfix ({}): {what}\n--- main.cf ---\n{}\n--- postfix log (end) ---\n{}",
            self.config_dir.display(),
            std::fs::read_to_string(self.config_dir.join("main.cf")).unwrap_or_default(),
            tail(&self.log(), 40)
        )
    }

    /// The master's pid, from its pid file.
    fn master_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.queue_dir.join("pid/master.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

/// Whether process `pid` exists.
pub fn alive(pid: i32) -> bool {
    kit::os::alive(pid)
}

impl Drop for Postfix {
    fn drop(&mut self) {
        if !self.running {
            return;
        }
        let pid = self.master_pid();
        let this = std::panic::AssertUnwindSafe(&*self);
        let _ = std::panic::catch_unwind(|| this.run(&["stop"]));
        if let Some(pid) = pid
            && !wait_until(Duration::from_secs(10), || !alive(pid))
        {
            // The master this test started; its children exit when it is gone.
            kit::os::signal(pid, libc::SIGKILL);
        }
    }
}

/// One SMTP conversation up to RCPT: connect, EHLO, `MAIL FROM:<from>`, `RCPT TO:<rcpt>`; the RCPT reply.
#[track_caller]
pub fn rcpt_reply(server: SocketAddr, from: &str, rcpt: &str) -> Reply {
    let mut c = SmtpClient::connect(server);
    c.ehlo("client.far.test");
    c.command(&format!("MAIL FROM:<{from}>")).expect(250, "");
    let reply = c.command(&format!("RCPT TO:<{rcpt}>"));
    let _ = c.try_command("QUIT");
    reply
}
