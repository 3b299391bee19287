//! Shared by the node_* tests: an in-memory LocalPages, and a cluster of NodeRuntimes on
//! loopback TCP in one process.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use memlink_dsm::{
    Access, DsmError, FaultResolver, LocalPages, ManagerKind, NodeConfig, NodeRuntime, PAGE_SIZE,
    PageNo,
};

/// Pages in a Vec, with an access array that "the hardware" checks on every access.
pub struct MemPages {
    inner: Mutex<(Vec<u8>, Vec<Access>)>,
    /// While set, every access change is refused as the kernel refuses an mprotect past
    /// `vm.max_map_count` (ENOMEM), and changes nothing.
    refuse: AtomicBool,
}

impl MemPages {
    pub fn new(pages: u32) -> Arc<MemPages> {
        Arc::new(MemPages {
            inner: Mutex::new((
                vec![0xEE; pages as usize * PAGE_SIZE], // garbage until installed
                vec![Access::None; pages as usize],
            )),
            refuse: AtomicBool::new(false),
        })
    }

    /// From now on, refuse every access change (see the `refuse` field).
    pub fn refuse_changes(&self) {
        self.refuse.store(true, Ordering::SeqCst);
    }

    fn refused(&self) -> std::io::Result<()> {
        if self.refuse.load(Ordering::SeqCst) {
            return Err(std::io::Error::from_raw_os_error(libc::ENOMEM));
        }
        Ok(())
    }

    pub fn access(&self, page: PageNo) -> Access {
        self.inner.lock().unwrap().1[page as usize]
    }

    /// Read a u64 at a region offset like a thread would: fault until the access allows it.
    pub fn read_u64(&self, rt: &NodeRuntime, offset: usize) -> Result<u64, DsmError> {
        let page = (offset / PAGE_SIZE) as PageNo;
        loop {
            {
                let g = self.inner.lock().unwrap();
                if g.1[page as usize] >= Access::Read {
                    let b: [u8; 8] = g.0[offset..offset + 8].try_into().unwrap();
                    return Ok(u64::from_le_bytes(b));
                }
            }
            rt.resolve_fault(page, Access::Read)?;
        }
    }

    /// Write a u64 at a region offset like a thread would.
    pub fn write_u64(&self, rt: &NodeRuntime, offset: usize, v: u64) -> Result<(), DsmError> {
        let page = (offset / PAGE_SIZE) as PageNo;
        loop {
            {
                let mut g = self.inner.lock().unwrap();
                if g.1[page as usize] == Access::Write {
                    g.0[offset..offset + 8].copy_from_slice(&v.to_le_bytes());
                    return Ok(());
                }
            }
            rt.resolve_fault(page, Access::Write)?;
        }
    }
}

impl LocalPages for MemPages {
    fn read_page(&self, page: PageNo, out: &mut [u8]) {
        let g = self.inner.lock().unwrap();
        let at = page as usize * PAGE_SIZE;
        out.copy_from_slice(&g.0[at..at + PAGE_SIZE]);
    }

    fn install_page(&self, page: PageNo, data: &[u8], access: Access) -> std::io::Result<()> {
        self.refused()?;
        let mut g = self.inner.lock().unwrap();
        let at = page as usize * PAGE_SIZE;
        g.0[at..at + PAGE_SIZE].copy_from_slice(data);
        g.1[page as usize] = access;
        Ok(())
    }

    fn set_access(&self, page: PageNo, access: Access) -> std::io::Result<()> {
        self.refused()?;
        self.inner.lock().unwrap().1[page as usize] = access;
        Ok(())
    }
}

pub struct Node {
    pub rt: Arc<NodeRuntime>,
    pub mem: Arc<MemPages>,
}

/// Bound listeners on loopback port 0 and their addresses.
pub fn listeners(n: usize) -> (Vec<TcpListener>, Vec<SocketAddr>) {
    let ls: Vec<_> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let addrs = ls.iter().map(|l| l.local_addr().unwrap()).collect();
    (ls, addrs)
}

pub fn config(id: usize, peers: &[SocketAddr], pages: u32, manager: ManagerKind) -> NodeConfig {
    NodeConfig {
        id: id as u16,
        listen: peers[id],
        peers: peers.to_vec(),
        pages,
        manager,
        connect_timeout: Duration::from_secs(10),
        admission: memlink_dsm::admission::Admission::LoopbackOnly,
        memory_budget: None,
        hold: memlink_dsm::config::DEFAULT_HOLD,
    }
}

/// `n` nodes in this process, connected over loopback TCP.
pub fn cluster(n: usize, pages: u32, manager: ManagerKind) -> Vec<Node> {
    let (ls, addrs) = listeners(n);
    let handles: Vec<_> = ls
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            let cfg = config(i, &addrs, pages, manager);
            thread::spawn(move || {
                let mem = MemPages::new(pages);
                let rt = NodeRuntime::start_with_listener(cfg, l, mem.clone()).unwrap();
                Node { rt, mem }
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}
