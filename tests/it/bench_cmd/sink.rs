//! A tiny ESMTP sink for the bench tests: banner, EHLO with PIPELINING, MAIL/RCPT/DATA answered 250, every
//! message recorded dot-unstuffed with the queue id it was acknowledged with (or none, when the sink was told to
//! drop the connection instead), and how many transactions arrived pipelined.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// How the sink answers.
#[derive(Clone, Copy, Default)]
pub struct Behaviour {
    /// Answer 550 to every RCPT.
    pub reject_rcpt: bool,
    /// Close the connection instead of answering the final `.` of every Nth message of a connection.
    pub drop_every: Option<usize>,
}

/// One message the sink read, dot-unstuffed.
#[derive(Clone)]
pub struct Received {
    pub data: Vec<u8>,
    /// The queue id the sink answered with; None when it closed the connection instead.
    pub queue_id: Option<String>,
}

#[derive(Default)]
pub struct State {
    received: Mutex<Vec<Received>>,
    pub pipelined: AtomicUsize,
    open: AtomicUsize,
    pub max_open: AtomicUsize,
    /// Connections accepted in all.
    pub connections: AtomicUsize,
}

/// An SMTP sink on 127.0.0.1, on its own thread and runtime for the rest of the test process.
pub struct Sink {
    pub addr: SocketAddr,
    pub state: Arc<State>,
}

impl Sink {
    pub fn start(behaviour: Behaviour) -> Sink {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let shared = state.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::from_std(listener).unwrap();
                let queue = Arc::new(AtomicUsize::new(0));
                while let Ok((stream, _)) = listener.accept().await {
                    let (state, queue) = (shared.clone(), queue.clone());
                    tokio::spawn(async move {
                        state.connections.fetch_add(1, Ordering::SeqCst);
                        let now = state.open.fetch_add(1, Ordering::SeqCst) + 1;
                        state.max_open.fetch_max(now, Ordering::SeqCst);
                        let _ = session(stream, behaviour, &state, &queue).await;
                        state.open.fetch_sub(1, Ordering::SeqCst);
                    });
                }
            });
        });
        Sink { addr, state }
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }
}

async fn session(
    stream: TcpStream,
    behaviour: Behaviour,
    state: &State,
    queue: &AtomicUsize,
) -> std::io::Result<()> {
    let mut s = BufReader::new(stream);
    s.get_mut().write_all(b"220 sink.test ESMTP\r\n").await?;
    let (mut rcpt_ok, mut messages) = (false, 0usize);
    loop {
        let mut line = String::new();
        if s.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-sink.test\r\n250-PIPELINING\r\n250-SIZE 100000000\r\n250 8BITMIME\r\n",
            "MAIL" => {
                if s.buffer().windows(7).any(|w| w == b"RCPT TO") {
                    state.pipelined.fetch_add(1, Ordering::SeqCst);
                }
                rcpt_ok = false;
                b"250 2.1.0 Ok\r\n"
            }
            "RCPT" if behaviour.reject_rcpt => b"550 5.1.1 <x>: user unknown\r\n",
            "RCPT" => {
                rcpt_ok = true;
                b"250 2.1.5 Ok\r\n"
            }
            "DATA" if !rcpt_ok => b"554 5.5.1 no valid recipients\r\n",
            "DATA" => {
                s.get_mut().write_all(b"354 go ahead\r\n").await?;
                let mut data = Vec::new();
                loop {
                    let mut l = Vec::new();
                    if s.read_until(b'\n', &mut l).await? == 0 {
                        return Ok(());
                    }
                    if l == b".\r\n" {
                        break;
                    }
                    data.extend_from_slice(l.strip_prefix(b".").unwrap_or(&l));
                }
                messages += 1;
                rcpt_ok = false;
                if behaviour.drop_every.is_some_and(|n| messages % n == 0) {
                    let r = Received {
                        data,
                        queue_id: None,
                    };
                    state.received.lock().unwrap().push(r);
                    return Ok(());
                }
                let id = format!("Q{}", queue.fetch_add(1, Ordering::SeqCst));
                let reply = format!("250 2.0.0 Ok: queued as {id}\r\n");
                let r = Received {
                    data,
                    queue_id: Some(id),
                };
                state.received.lock().unwrap().push(r);
                s.get_mut().write_all(reply.as_bytes()).await?;
                continue;
            }
            "RSET" => b"250 2.0.0 Ok\r\n",
            "QUIT" => {
                s.get_mut().write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            }
            _ => b"500 5.5.2 what\r\n",
        };
        s.get_mut().write_all(reply).await?;
    }
}
