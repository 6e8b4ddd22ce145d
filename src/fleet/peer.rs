//! The servers the fleet tier connects to, owned by the worker: the configuration's are
//! copied in, and Sentinel and DNS answers replace them at run time. A connection keeps a
//! copy of the one it talks to, so a list that changes under it never leaves it dangling.

use core::cell::{Cell, RefCell};
use core::mem::size_of;
use std::net::SocketAddr;

use nginx_sys::{ngx_str_t, sockaddr, socklen_t};

/// One server address and its name (`host:port`), for connecting and for log lines.
#[derive(Clone)]
pub(crate) struct Peer {
    storage: Box<libc::sockaddr_storage>,
    socklen: socklen_t,
    name: Box<str>,
}

impl Peer {
    /// Copies an address nginx resolved (configuration time or its resolver).
    ///
    /// # Safety
    /// `sa` must point at `len` bytes of a socket address.
    pub(crate) unsafe fn copy(sa: *const sockaddr, len: socklen_t, name: &str) -> Option<Peer> {
        if sa.is_null() || len as usize > size_of::<libc::sockaddr_storage>() {
            return None;
        }
        // SAFETY: an all-zero sockaddr_storage is valid; `len` bytes fit (checked).
        let mut storage: Box<libc::sockaddr_storage> = Box::new(unsafe { core::mem::zeroed() });
        // SAFETY: per contract, and the destination holds `len` bytes.
        unsafe {
            core::ptr::copy_nonoverlapping(
                sa as *const u8,
                &mut *storage as *mut libc::sockaddr_storage as *mut u8,
                len as usize,
            )
        };
        Some(Peer {
            storage,
            socklen: len,
            name: name.into(),
        })
    }

    /// An IP address and port (what a Sentinel answers).
    pub(crate) fn from_socket(addr: SocketAddr) -> Peer {
        // SAFETY: an all-zero sockaddr_storage is valid; filled below as its family says.
        let mut storage: Box<libc::sockaddr_storage> = Box::new(unsafe { core::mem::zeroed() });
        let socklen = match addr {
            SocketAddr::V4(a) => {
                // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr.
                let sin = unsafe { &mut *(&mut *storage as *mut _ as *mut libc::sockaddr_in) };
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = a.port().to_be();
                sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
                size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(a) => {
                // SAFETY: as above.
                let sin6 = unsafe { &mut *(&mut *storage as *mut _ as *mut libc::sockaddr_in6) };
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = a.port().to_be();
                sin6.sin6_addr.s6_addr = a.ip().octets();
                size_of::<libc::sockaddr_in6>()
            }
        };
        Peer {
            storage,
            socklen: socklen as socklen_t,
            name: addr.to_string().into(),
        }
    }

    /// This address with `port` (a resolver answers without one), named `ip:port`.
    pub(crate) fn with_port(mut self, port: u16) -> Peer {
        let family = self.storage.ss_family as libc::c_int;
        let ip = match family {
            libc::AF_INET => {
                // SAFETY: the family says the storage holds a sockaddr_in.
                let sin = unsafe { &mut *(&mut *self.storage as *mut _ as *mut libc::sockaddr_in) };
                sin.sin_port = port.to_be();
                std::net::IpAddr::from(u32::from_be(sin.sin_addr.s_addr).to_be_bytes())
            }
            libc::AF_INET6 => {
                // SAFETY: the family says the storage holds a sockaddr_in6.
                let sin6 =
                    unsafe { &mut *(&mut *self.storage as *mut _ as *mut libc::sockaddr_in6) };
                sin6.sin6_port = port.to_be();
                std::net::IpAddr::from(sin6.sin6_addr.s6_addr)
            }
            _ => return self,
        };
        self.name = SocketAddr::new(ip, port).to_string().into();
        self
    }

    /// The IP address, for an IP socket.
    pub(crate) fn ip(&self) -> Option<std::net::IpAddr> {
        match self.storage.ss_family as libc::c_int {
            libc::AF_INET => {
                // SAFETY: the family says the storage holds a sockaddr_in.
                let sin = unsafe { &*(&*self.storage as *const _ as *const libc::sockaddr_in) };
                Some(u32::from_be(sin.sin_addr.s_addr).to_be_bytes().into())
            }
            libc::AF_INET6 => {
                // SAFETY: the family says the storage holds a sockaddr_in6.
                let sin6 = unsafe { &*(&*self.storage as *const _ as *const libc::sockaddr_in6) };
                Some(sin6.sin6_addr.s6_addr.into())
            }
            _ => None,
        }
    }

    pub(crate) fn sockaddr(&self) -> *mut sockaddr {
        &*self.storage as *const libc::sockaddr_storage as *mut sockaddr
    }

    pub(crate) fn socklen(&self) -> socklen_t {
        self.socklen
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The name as nginx's peer connection wants it (borrowing this peer).
    pub(crate) fn ngx_name(&self) -> ngx_str_t {
        ngx_str_t {
            len: self.name.len(),
            data: self.name.as_ptr() as *mut u8,
        }
    }

    /// The same address (the name aside).
    pub(crate) fn same_as(&self, other: &Peer) -> bool {
        let n = self.socklen as usize;
        let bytes = |p: &Peer| {
            // SAFETY: the storage holds at least `socklen` initialized bytes.
            unsafe { core::slice::from_raw_parts(&*p.storage as *const _ as *const u8, n) }
        };
        self.socklen == other.socklen && bytes(self) == bytes(other)
    }
}

/// The data servers a worker connects to now, and a generation bumped when they change:
/// a connection made under an older generation is replaced once nothing is in flight.
#[derive(Default)]
pub(crate) struct Servers {
    list: RefCell<Vec<Peer>>,
    generation: Cell<u64>,
}

impl Servers {
    /// The `i`th server (modulo their number), copied.
    pub(crate) fn get(&self, i: usize) -> Option<Peer> {
        let list = self.list.borrow();
        list.get(i % list.len().max(1)).cloned()
    }

    pub(crate) fn len(&self) -> usize {
        self.list.borrow().len()
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.get()
    }

    /// Replaces the list; `true` (and a new generation) when it differs.
    pub(crate) fn replace(&self, new: Vec<Peer>) -> bool {
        let mut list = self.list.borrow_mut();
        let same = list.len() == new.len() && list.iter().zip(&new).all(|(a, b)| a.same_as(b));
        if same {
            return false;
        }
        *list = new;
        self.generation.set(self.generation.get() + 1);
        true
    }
}
