//! The echo API: answers every request with a JSON description of what it received.

use std::sync::{Arc, Mutex};

use serde_json::json;

use crate::http::{Recorded, Reply};
use crate::serve::{Action, Server};

pub struct EchoServer {
    server: Server,
    seen: Arc<Mutex<Vec<Recorded>>>,
}

impl EchoServer {
    pub fn start() -> std::io::Result<EchoServer> {
        EchoServer::start_on("127.0.0.1:0")
    }

    pub fn start_on(addr: &str) -> std::io::Result<EchoServer> {
        let seen: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let log = seen.clone();
        let server = Server::start(
            addr,
            Arc::new(move |req: &Recorded| {
                if let Ok(mut l) = log.lock() {
                    l.push(req.clone());
                }
                Action::Reply(Reply::json(200, &describe(req)))
            }),
        )?;
        Ok(EchoServer { server, seen })
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.server.addr()
    }

    pub fn requests(&self) -> usize {
        self.seen.lock().map(|l| l.len()).unwrap_or(0)
    }

    pub fn last(&self) -> Option<Recorded> {
        self.seen.lock().ok()?.last().cloned()
    }

    pub fn all(&self) -> Vec<Recorded> {
        self.seen.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

fn describe(req: &Recorded) -> serde_json::Value {
    let headers: Vec<[&str; 2]> = req
        .headers
        .iter()
        .map(|(k, v)| [k.as_str(), v.as_str()])
        .collect();
    json!({
        "method": req.method,
        "uri": req.target,
        "headers": headers,
        "body": String::from_utf8_lossy(&req.body),
    })
}
