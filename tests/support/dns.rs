//! A DNS server for the tests, on 127.0.0.1 (UDP): every `A` question is answered with the
//! address of the moment (TTL 1 s), anything else with no answer. Tests move a name by
//! changing that address.

use std::net::{Ipv4Addr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct Dns {
    pub port: u16,
    addr: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Dns {
    /// Answers every `A` question with `ip`.
    pub fn start(ip: [u8; 4]) -> Dns {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let port = socket.local_addr().unwrap().port();
        let addr = Arc::new(AtomicU32::new(u32::from(Ipv4Addr::from(ip))));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s) = (addr.clone(), stop.clone());
        let thread = std::thread::spawn(move || serve(&socket, &a, &s));
        Dns {
            port,
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// From now on (once caches expire), names resolve to `ip`.
    pub fn point_to(&self, ip: [u8; 4]) {
        self.addr
            .store(u32::from(Ipv4Addr::from(ip)), Ordering::SeqCst);
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(socket: &UdpSocket, addr: &AtomicU32, stop: &AtomicBool) {
    let mut buf = [0u8; 512];
    while !stop.load(Ordering::SeqCst) {
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        if let Some(reply) = answer(&buf[..n], addr.load(Ordering::SeqCst)) {
            let _ = socket.send_to(&reply, from);
        }
    }
}

/// The reply to one query: its id and question, and one `A` record when asked for one.
fn answer(q: &[u8], ip: u32) -> Option<Vec<u8>> {
    if q.len() < 12 {
        return None;
    }
    // The question: labels up to the root, then type and class.
    let mut i = 12;
    while *q.get(i)? != 0 {
        i += 1 + *q.get(i)? as usize;
    }
    let end = i + 5;
    let question = q.get(12..end)?;
    let qtype = u16::from_be_bytes([q[i + 1], q[i + 2]]);
    let is_a = qtype == 1;
    let mut r = Vec::new();
    r.extend_from_slice(&q[..2]);
    r.extend_from_slice(&[0x81, 0x80, 0, 1, 0, u8::from(is_a), 0, 0, 0, 0]);
    r.extend_from_slice(question);
    if is_a {
        // Name (a pointer to the question), A, IN, TTL 1, 4 bytes.
        r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4]);
        r.extend_from_slice(&ip.to_be_bytes());
    }
    Some(r)
}
