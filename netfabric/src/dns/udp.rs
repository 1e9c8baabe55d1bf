//! The UDP side of the server: one thread per socket (the sockets share the
//! port with `SO_REUSEPORT`, so the kernel spreads askers over them), each
//! taking up to [`BATCH`] queries per `recvmmsg` and sending their replies
//! with one `sendmmsg`.
//!
//! Measured against hickory's own UDP loop (a tokio task per query, the
//! reply passed through a channel to the task that owns the socket), most
//! of a query's time went to waking threads and tasks, not to DNS: here a
//! query is answered on the thread that received it, with no wakeup.
//!
//! Each thread remembers the replies it built for the current
//! [`Directory`] ([`AnswerCache`]): the same bytes from the same asker get
//! the same reply under the same directory, so a repeated query is answered
//! by copying that reply with the query's ID. A newly published directory
//! empties the cache at the next batch. Names for the upstream resolvers
//! are never cached here (their cache is the resolver's) and are answered
//! from the tokio runtime.

use std::{
    collections::HashMap,
    io,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket},
    os::fd::{AsRawFd, RawFd},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use super::{
    names::{Asker, Directory},
    server::{Handler, UdpAnswer},
};
use crate::observe::metrics::DnsOutcome;

/// Queries taken per `recvmmsg` at most.
const BATCH: usize = 32;
/// The receive buffer of one query (hickory's): a longer datagram is cut.
const DATAGRAM: usize = 4096;
/// How long a receive waits before the thread checks whether to stop (a
/// stop also wakes it at once with `shutdown`; this is the fallback).
const RECV_TIMEOUT: Duration = Duration::from_millis(500);
/// Replies one thread remembers at most (then it starts again).
const CACHE_ENTRIES: usize = 4096;
/// Longer queries are answered without the cache.
const CACHED_QUERY: usize = 512;
/// A DNS header's length: anything shorter gets no reply.
const HEADER: usize = 12;

/// The receive threads; dropping it stops them and closes their sockets.
pub struct UdpServer {
    stop: Arc<AtomicBool>,
    sockets: Vec<Arc<UdpSocket>>,
    threads: Vec<JoinHandle<()>>,
}

impl UdpServer {
    /// One thread per socket (blocking sockets), answering with `handler`;
    /// forwarded names are answered on `runtime`.
    pub fn start(
        sockets: Vec<UdpSocket>,
        handler: Arc<Handler>,
        runtime: tokio::runtime::Handle,
    ) -> io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut server = UdpServer {
            stop: stop.clone(),
            sockets: Vec::new(),
            threads: Vec::new(),
        };
        for (i, socket) in sockets.into_iter().enumerate() {
            socket.set_read_timeout(Some(RECV_TIMEOUT))?;
            let socket = Arc::new(socket);
            server.sockets.push(socket.clone());
            let (handler, runtime, stop) = (handler.clone(), runtime.clone(), stop.clone());
            let thread = std::thread::Builder::new()
                .name(format!("dns-udp-{i}"))
                .spawn(move || serve(&socket, &handler, &runtime, &stop))?;
            server.threads.push(thread);
        }
        Ok(server)
    }
}

impl Drop for UdpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        for socket in &self.sockets {
            // Wakes a thread blocked in recvmmsg (which then returns); on
            // an unconnected UDP socket it also reports ENOTCONN, ignored.
            // SAFETY: shutdown on a descriptor we own; no memory involved.
            unsafe { libc::shutdown(socket.as_raw_fd(), libc::SHUT_RD) };
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// One receive thread until `stop`.
fn serve(
    socket: &Arc<UdpSocket>,
    handler: &Arc<Handler>,
    runtime: &tokio::runtime::Handle,
    stop: &AtomicBool,
) {
    let fd = socket.as_raw_fd();
    let mut batch = Batch::new();
    let mut cache = AnswerCache::default();
    while !stop.load(Ordering::Acquire) {
        let n = match batch.recv(fd) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "receiving DNS queries");
                // Not a busy loop on an error that repeats.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if stop.load(Ordering::Acquire) {
            break;
        }
        // Loaded after the receive: every query of the batch sees a state
        // at least as new as the one published before it arrived.
        let directory = handler.directory.load_full();
        cache.use_directory(&directory);
        for i in 0..n {
            let Some(src) = batch.source(i) else {
                batch.replies[i].clear();
                continue;
            };
            let msg = &batch.bufs[i][..batch.lens[i]];
            let out = &mut batch.replies[i];
            if let Some(job) = cache.answer(handler, &directory, msg, src, out) {
                let (handler, socket) = (handler.clone(), socket.clone());
                runtime.spawn(async move {
                    let (request, name, qtype) = job;
                    let mut out = Vec::new();
                    handler.forward_udp(&request, name, qtype, &mut out).await;
                    if out.is_empty() {
                        return;
                    }
                    // Never block the runtime on a full send buffer: a
                    // reply lost there is a query the client repeats.
                    if let Err(e) = socket2::SockRef::from(&*socket).send_to_with_flags(
                        &out,
                        &request.src().into(),
                        libc::MSG_DONTWAIT,
                    ) {
                        tracing::debug!(error = %e, src = %request.src(), "DNS response not sent");
                    }
                });
            }
        }
        batch.send(fd, n);
    }
}

/// A query for the upstream resolvers, answered on the runtime.
type ForwardJob = (
    Box<hickory_server::server::Request>,
    hickory_proto::rr::Name,
    hickory_proto::rr::RecordType,
);

/// The replies one thread built under one directory, by asker and query
/// bytes after the ID.
#[derive(Default)]
struct AnswerCache {
    directory: Option<Arc<Directory>>,
    entries: HashMap<Box<[u8]>, Cached>,
    /// The key being looked up (kept to reuse its allocation).
    key: Vec<u8>,
}

struct Cached {
    /// The whole reply; its first two bytes (the ID) are the query's.
    reply: Box<[u8]>,
    outcome: DnsOutcome,
}

impl AnswerCache {
    /// Forgets every reply if `directory` is not the one they were built
    /// under.
    fn use_directory(&mut self, directory: &Arc<Directory>) {
        if self
            .directory
            .as_ref()
            .is_some_and(|d| Arc::ptr_eq(d, directory))
        {
            return;
        }
        self.entries.clear();
        self.directory = Some(directory.clone());
    }

    /// `asker` and `msg` without its ID, in `self.key`.
    fn fill_key(&mut self, asker: Asker, msg: &[u8]) {
        self.key.clear();
        match asker {
            Asker::Host => self.key.push(0),
            Asker::Container(owner) => {
                self.key.push(1);
                self.key.extend_from_slice(&owner.to_be_bytes());
            }
        }
        self.key.extend_from_slice(&msg[2..]);
    }

    /// Answers `msg` from `src` into `out` (empty for silence): from the
    /// cache, or through the handler (remembering the reply). A query for
    /// the upstream resolvers is returned, its reply not written.
    fn answer(
        &mut self,
        handler: &Handler,
        directory: &Directory,
        msg: &[u8],
        src: SocketAddr,
        out: &mut Vec<u8>,
    ) -> Option<ForwardJob> {
        let asker = (HEADER..=CACHED_QUERY)
            .contains(&msg.len())
            .then(|| directory.asker(src.ip()))
            .flatten();
        if let Some(asker) = asker {
            self.fill_key(asker, msg);
            if let Some(hit) = self.entries.get(self.key.as_slice()) {
                out.clear();
                out.extend_from_slice(&hit.reply);
                out[..2].copy_from_slice(&msg[..2]);
                handler.counters.query(false);
                handler.counters.response(hit.outcome);
                return None;
            }
        }
        match handler.answer_udp(directory, msg, src, out) {
            UdpAnswer::Silence => {
                out.clear();
                None
            }
            UdpAnswer::Written { outcome } => {
                if let (Some(asker), Some(outcome)) = (asker, outcome)
                    && out.len() >= 2
                {
                    if self.entries.len() >= CACHE_ENTRIES {
                        self.entries.clear();
                    }
                    self.fill_key(asker, msg);
                    self.entries.insert(
                        self.key.as_slice().into(),
                        Cached {
                            reply: out.as_slice().into(),
                            outcome,
                        },
                    );
                }
                None
            }
            UdpAnswer::Forward(request, name, qtype) => {
                out.clear();
                Some((request, name, qtype))
            }
        }
    }
}

/// Buffers for one `recvmmsg` and the `sendmmsg` of its replies.
struct Batch {
    bufs: Vec<[u8; DATAGRAM]>,
    lens: Vec<usize>,
    addrs: Vec<libc::sockaddr_storage>,
    addr_lens: Vec<libc::socklen_t>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
    replies: Vec<Vec<u8>>,
}

impl Batch {
    fn new() -> Self {
        // SAFETY: sockaddr_storage, iovec and mmsghdr are plain C structs
        // for which all zeroes is a valid value.
        let (addr, iovec, header) = unsafe {
            (
                std::mem::zeroed::<libc::sockaddr_storage>(),
                std::mem::zeroed::<libc::iovec>(),
                std::mem::zeroed::<libc::mmsghdr>(),
            )
        };
        Batch {
            bufs: vec![[0; DATAGRAM]; BATCH],
            lens: vec![0; BATCH],
            addrs: vec![addr; BATCH],
            addr_lens: vec![0; BATCH],
            iovecs: vec![iovec; BATCH],
            headers: vec![header; BATCH],
            replies: (0..BATCH).map(|_| Vec::with_capacity(512)).collect(),
        }
    }

    /// Waits for at least one datagram and takes up to [`BATCH`]: how many.
    fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        for i in 0..BATCH {
            self.iovecs[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: DATAGRAM,
            };
            let header = &mut self.headers[i];
            header.msg_len = 0;
            header.msg_hdr.msg_name = (&raw mut self.addrs[i]).cast();
            header.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_hdr.msg_iov = &raw mut self.iovecs[i];
            header.msg_hdr.msg_iovlen = 1;
            header.msg_hdr.msg_control = std::ptr::null_mut();
            header.msg_hdr.msg_controllen = 0;
            header.msg_hdr.msg_flags = 0;
        }
        // SAFETY: every header points at buffers of this batch that live
        // and stay in place for the call (the vectors are not resized).
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for i in 0..n {
            self.lens[i] = (self.headers[i].msg_len as usize).min(DATAGRAM);
            self.addr_lens[i] = self.headers[i].msg_hdr.msg_namelen;
        }
        Ok(n)
    }

    /// The source of datagram `i`, `None` if it cannot be answered (as
    /// hickory's server: port 0, an unspecified or broadcast address).
    fn source(&self, i: usize) -> Option<SocketAddr> {
        let addr = &self.addrs[i];
        let len = self.addr_lens[i] as usize;
        let src = match i32::from(addr.ss_family) {
            libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
                // SAFETY: the kernel wrote a sockaddr_in (family AF_INET)
                // into storage large and aligned enough for any address.
                let v4 = unsafe { &*(&raw const *addr).cast::<libc::sockaddr_in>() };
                SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr)),
                    u16::from_be(v4.sin_port),
                ))
            }
            libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
                // SAFETY: as above, a sockaddr_in6 (family AF_INET6).
                let v6 = unsafe { &*(&raw const *addr).cast::<libc::sockaddr_in6>() };
                SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(v6.sin6_addr.s6_addr),
                    u16::from_be(v6.sin6_port),
                    v6.sin6_flowinfo,
                    v6.sin6_scope_id,
                ))
            }
            _ => return None,
        };
        let unusable = src.port() == 0
            || src.ip().is_unspecified()
            || matches!(src.ip(), std::net::IpAddr::V4(v4) if v4.is_broadcast());
        (!unusable).then_some(src)
    }

    /// Sends the non-empty replies among the first `n`, each to the source
    /// of its query.
    fn send(&mut self, fd: RawFd, n: usize) {
        let mut count = 0;
        for i in 0..n {
            if self.replies[i].is_empty() {
                continue;
            }
            self.iovecs[count] = libc::iovec {
                iov_base: self.replies[i].as_mut_ptr().cast(),
                iov_len: self.replies[i].len(),
            };
            let header = &mut self.headers[count];
            header.msg_len = 0;
            header.msg_hdr.msg_name = (&raw mut self.addrs[i]).cast();
            header.msg_hdr.msg_namelen = self.addr_lens[i];
            header.msg_hdr.msg_iov = &raw mut self.iovecs[count];
            header.msg_hdr.msg_iovlen = 1;
            header.msg_hdr.msg_control = std::ptr::null_mut();
            header.msg_hdr.msg_controllen = 0;
            header.msg_hdr.msg_flags = 0;
            count += 1;
        }
        let mut sent = 0;
        while sent < count {
            // SAFETY: the headers point at replies and addresses of this
            // batch, unchanged during the call.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    self.headers[sent..].as_mut_ptr(),
                    (count - sent) as libc::c_uint,
                    0,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // The first of those left failed: it is lost, like a
                // datagram, and the client asks again.
                tracing::debug!(error = %e, "DNS response not sent");
                sent += 1;
            } else {
                sent += r as usize;
            }
        }
    }
}
