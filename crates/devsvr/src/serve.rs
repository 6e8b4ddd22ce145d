//! The accept loop: one thread per connection, keep-alive, stoppable.

use std::io::BufReader;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::http::{read_request, write_reply, Recorded, Reply};

/// What a handler asks the connection to do.
pub enum Action {
    Reply(Reply),
    /// Write these bytes as the whole response, then close.
    Raw(Vec<u8>),
}

pub type Handler = Arc<dyn Fn(&Recorded) -> Action + Send + Sync>;

/// A running listener; stopping closes it so new connections are refused.
pub struct Server {
    addr: SocketAddr,
    stopped: Arc<AtomicBool>,
}

impl Server {
    pub fn start(addr: &str, handler: Handler) -> std::io::Result<Server> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stopped = Arc::new(AtomicBool::new(false));
        let flag = stopped.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = conn {
                    let h = handler.clone();
                    std::thread::spawn(move || serve_connection(stream, h));
                }
            }
        });
        Ok(Server { addr, stopped })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting: the listener is closed once the accept loop wakes up.
    pub fn stop(&self) {
        if !self.stopped.swap(true, Ordering::SeqCst) {
            let _ = TcpStream::connect(self.addr);
            // Give the accept thread a moment to drop the listener.
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve_connection(stream: TcpStream, handler: Handler) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let (req, version) = match read_request(&mut reader) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(_) => {
                let _ = write_reply(&mut writer, &Reply::empty(400), true);
                return;
            }
        };
        let keep = req.keep_alive(&version);
        match handler(&req) {
            Action::Reply(reply) => {
                if write_reply(&mut writer, &reply, !keep).is_err() || !keep {
                    return;
                }
            }
            Action::Raw(bytes) => {
                let _ = std::io::Write::write_all(&mut writer, &bytes);
                return;
            }
        }
    }
}
