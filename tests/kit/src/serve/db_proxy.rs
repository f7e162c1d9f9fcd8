//! A TCP forwarder in front of the test MariaDB server, so a test can make the database unreachable while the
//! daemon runs ("the database went away") and bring it back.
//!
//! [`DbProxy::start`] listens on `127.0.0.1:0` and forwards every connection to the MariaDB server of
//! [`crate::mysql_server`], from its own thread and tokio runtime. [`DbProxy::cut`] closes every forwarded
//! connection and makes new ones fail at once (accepted and closed before a byte is exchanged);
//! [`DbProxy::restore`] forwards again.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// Shared between the test and the forwarding thread.
#[derive(Default)]
struct State {
    cut: AtomicBool,
    stop: AtomicBool,
    tasks: Mutex<Vec<AbortHandle>>,
}

/// A forwarder to MariaDB that can be cut and restored.
pub struct DbProxy {
    /// Where the proxy listens.
    pub addr: SocketAddr,
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
}

impl DbProxy {
    /// Forwards `127.0.0.1:<random port>` to `upstream` (`host:port` of the MariaDB server).
    pub fn start(upstream: String) -> DbProxy {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        std_listener.set_nonblocking(true).expect("non-blocking");
        let addr = std_listener.local_addr().expect("proxy address");
        let state = Arc::new(State::default());
        let shared = state.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("proxy runtime");
            runtime.block_on(async move {
                let listener = TcpListener::from_std(std_listener).expect("tokio listener");
                while let Ok((client, _)) = listener.accept().await {
                    if shared.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if shared.cut.load(Ordering::SeqCst) {
                        drop(client);
                        continue;
                    }
                    let upstream = upstream.clone();
                    let task = tokio::spawn(forward(client, upstream));
                    let mut tasks = shared.tasks.lock().expect("tasks");
                    tasks.retain(|t| !t.is_finished());
                    tasks.push(task.abort_handle());
                }
                for task in shared.tasks.lock().expect("tasks").drain(..) {
                    task.abort();
                }
            });
        });
        DbProxy {
            addr,
            state,
            thread: Some(thread),
        }
    }

    /// A proxy for the MariaDB server of the tests ([`crate::mysql_server`]).
    pub fn for_test_server() -> DbProxy {
        let server = crate::mysql_server();
        let url = url::Url::parse(&server).expect("MAILCTL_TEST_MYSQL_URL is a URL");
        let host = url.host_str().unwrap_or("127.0.0.1").to_string();
        let port = url.port().unwrap_or(3306);
        DbProxy::start(format!("{host}:{port}"))
    }

    /// `url` (a test database's `mysql://...` URL) with its host and port replaced by the proxy's.
    pub fn url_for(&self, url: &str) -> String {
        let mut url = url::Url::parse(url).expect("database URL");
        url.set_host(Some("127.0.0.1")).expect("set host");
        url.set_port(Some(self.addr.port())).expect("set port");
        url.to_string()
    }

    /// Closes every forwarded connection and refuses new ones until [`DbProxy::restore`].
    pub fn cut(&self) {
        self.state.cut.store(true, Ordering::SeqCst);
        for task in self.state.tasks.lock().expect("tasks").drain(..) {
            task.abort();
        }
    }

    /// Forwards new connections again.
    pub fn restore(&self) {
        self.state.cut.store(false, Ordering::SeqCst);
    }
}

/// Copies bytes both ways until either side closes (or the task is aborted, which drops both sockets).
async fn forward(mut client: TcpStream, upstream: String) {
    let Ok(mut server) = TcpStream::connect(&upstream).await else {
        return;
    };
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}

impl Drop for DbProxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.cut();
        // Wakes the accept loop so it sees the flag.
        let _ = std::net::TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
