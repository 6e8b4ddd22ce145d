//! Replies: parsed as they arrive, each answering the oldest slot; an error reply is heard
//! by its meaning, and a server that is not the primary hands its waiting commands on.

use std::collections::VecDeque;

use phantom_core::fleet::errors::ErrorClass;
use phantom_core::fleet::resp::{self, Limits, Reply};
use phantom_core::fleet::role::{role_of, Role};

use super::super::peer::Peer;
use super::super::waiters::Value;
use super::{Conn, Failure, Kind, Slot, State, Step};

impl Conn {
    /// Parses complete replies off the buffer into their slots. An error reply is heard by
    /// its meaning: one that says this server cannot serve us (a replica, bad credentials)
    /// closes the connection, the next one goes to the next address.
    pub(super) fn parse(&mut self) -> Vec<(u64, Result<Vec<Value>, ()>)> {
        let mut done = Vec::new();
        let mut pos = 0;
        let limits = Limits::default();
        loop {
            let reply = match resp::parse(self.inbuf.get(pos..).unwrap_or_default(), &limits) {
                Ok(Some((reply, used))) => {
                    pos += used;
                    reply
                }
                Ok(None) => break,
                Err(_) => {
                    done.extend(self.fail_collect(Some(Failure::Protocol)));
                    return done;
                }
            };
            let Some(step) = self.slots.front().map(|s| s.step) else {
                // Bytes nobody asked for: out of sync.
                done.extend(self.fail_collect(Some(Failure::Protocol)));
                return done;
            };
            if step == Step::Push {
                if let Some(mut on_reply) = self.push.take() {
                    on_reply(&reply);
                    self.push = Some(on_reply);
                }
                continue;
            }
            if step == Step::Hello {
                self.server = phantom_core::fleet::hello::server_of(&reply);
                self.slots.pop_front();
                continue;
            }
            if step == Step::Role {
                if role_of(&reply) == Role::NotPrimary {
                    // SAFETY: the owner outlives its connections.
                    unsafe { (*self.owner).not_primary(self.addr_name()) };
                    if self.pin.is_some() {
                        // A cluster node that is a replica now: the map is wrong.
                        done.extend(self.fail_collect(Some(Failure::Role)));
                        return done;
                    }
                    self.addr += 1;
                    done.extend(self.reroute());
                    return done;
                }
                self.hops = 0;
                self.handshaking = false;
                let held = core::mem::take(&mut self.held);
                self.out.extend_from_slice(&held);
                self.slots.pop_front();
                continue;
            }
            let auth = step == Step::Auth;
            if let Reply::Error(line) = &reply {
                let class = ErrorClass::of(line);
                // SAFETY: the owner outlives its connections.
                let owner = unsafe { &*self.owner };
                let sentinel = self.kind == Kind::Sentinel;
                owner.reply_error(class, line, self.addr_name(), sentinel);
                if class == ErrorClass::Cluster {
                    let ip = self.pin.as_ref().and_then(Peer::ip);
                    let ask = owner.redirected(line, ip);
                    if let Some(slot) = self.slots.front_mut().filter(|s| s.cmds.is_some()) {
                        slot.ask = slot.ask.or(ask);
                    }
                }
                if auth || class.closes() {
                    let why = if class == ErrorClass::Role {
                        // Another address may be the primary now.
                        self.addr += 1;
                        Failure::Role
                    } else {
                        Failure::Auth
                    };
                    done.extend(self.fail_collect(Some(why)));
                    return done;
                }
            }
            let Some(slot) = self.slots.front_mut() else {
                break;
            };
            slot.got.push(Value::from(&reply));
            if slot.got.len() >= slot.replies {
                if let Some(slot) = self.slots.pop_front() {
                    match (slot.ask, slot.cmds) {
                        (Some(to), Some(cmds)) => self.asks.push(super::Ask {
                            to,
                            cmds,
                            replies: slot.replies,
                            waiter: slot.waiter,
                            deadline: slot.deadline,
                        }),
                        _ if slot.waiter != 0 => done.push((slot.waiter, Ok(slot.got))),
                        _ => {}
                    }
                }
            }
        }
        self.inbuf.drain(..pos);
        if pos > 0 && self.pin.is_some() {
            self.node_answered();
        } else if pos > 0 && self.kind == Kind::Data {
            // SAFETY: the owner outlives its connections.
            unsafe { (*self.owner).answered() };
        }
        if self.stale() {
            // Replaced before its credentials expire, or because the primary moved: the
            // next command reconnects (and logs in again) with nothing in flight to lose.
            self.close();
        }
        done
    }

    /// A cluster node answered: its breaker closes (one log line if it was open).
    fn node_answered(&mut self) {
        self.failures = 0;
        if core::mem::take(&mut self.open_until_ms) != 0 {
            let msg = format!("cluster node {} available again", self.addr_name());
            // SAFETY: the owner outlives its connections.
            unsafe { (*self.owner).log(nginx_sys::NGX_LOG_NOTICE as usize, &msg) };
        }
    }

    /// The server is not the primary: the commands waiting behind the handshake go to the
    /// next address on a new connection (each address once; then they fail).
    pub(super) fn reroute(&mut self) -> Vec<(u64, Result<Vec<Value>, ()>)> {
        self.hops += 1;
        if self.hops >= self.peer_count() {
            self.hops = 0;
            return self.fail_collect(Some(Failure::Role));
        }
        let held = core::mem::take(&mut self.held);
        let waiting: VecDeque<Slot> = self
            .slots
            .drain(..)
            .filter(|s| s.step == Step::Command)
            .collect();
        self.close();
        let connected = self.connect();
        // The caller reads no more from the connection it was reading.
        self.replaced = true;
        if !connected {
            self.slots = waiting;
            return self.fail_collect(Some(Failure::Connect));
        }
        self.slots.extend(waiting);
        self.held = held;
        self.arm_read_timer();
        if self.state == State::Ready {
            self.post_flush();
        }
        Vec::new()
    }
}
