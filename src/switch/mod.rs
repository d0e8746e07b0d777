//! The software switch: an 802.1Q learning switch in user space for the vPorts the NIC cannot
//! carry. vSwitch, vPort and NIC are separate objects: a [`Switch`] has ports
//! ([`PortConfig`]), and a NIC edge ([`io::Edge`]) connected to a port is its link; disconnecting
//! it is link down. Frames go ingress -> forwarding -> egress ([`pipeline`]) in batches of 32.
//!
//! The pure parts (packet views, table, VLAN, ACL, rate limit, counters, pipeline) take time as
//! an input and are tested without root; the kernel-facing edges (TAP, AF_PACKET) live in
//! `host/`. A running switch is one worker thread that owns the table, so the packet path
//! takes no locks; counters are published per worker and summed on read.

pub mod acl;
pub mod counters;
pub mod fdb;
pub mod flowcache;
pub mod io;
pub mod packet;
pub mod pipeline;
pub mod port;
pub mod qos;
pub mod testkit;
pub mod vlan;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use counters::{Counters, DropReason, PortStats};
pub use flowcache::{FastStats, FlowBackend};
pub use io::{Batch, Edge};
pub use pipeline::Pipeline;
pub use port::PortConfig;

/// A port's number on its switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortId(pub usize);

/// How long an idle worker keeps polling after its last frame before it sleeps.
const SPIN_NS: u64 = 50_000;

/// Most ports one switch has (counters are sized for them up front).
pub const MAX_PORTS: usize = 256;

/// Errors from building or driving a switch.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    /// The switch already has MAX_PORTS ports.
    #[error("switch {switch} already has {MAX_PORTS} ports; remove one first")]
    Full { switch: String },
    /// A port name is taken.
    #[error("switch {switch} already has a port named {port}")]
    Duplicate { switch: String, port: String },
    /// No port by that number.
    #[error("switch {switch} has no port {port}")]
    NoPort { switch: String, port: usize },
    /// The worker thread is gone.
    #[error("the worker of switch {switch} has stopped")]
    Stopped { switch: String },
    /// The worker thread could not start.
    #[error("cannot start the worker of switch {switch}")]
    Spawn {
        switch: String,
        #[source]
        source: std::io::Error,
    },
}

/// Switch-wide settings.
#[derive(Debug, Clone)]
pub struct SwitchConfig {
    pub name: String,
    pub fdb_capacity: usize,
    pub aging_ns: u64,
}

impl SwitchConfig {
    /// The defaults copied from OVS and the Linux bridge: 8,192 entries, 300 s aging.
    pub fn new(name: &str) -> Self {
        SwitchConfig {
            name: name.to_string(),
            fdb_capacity: fdb::DEFAULT_CAPACITY,
            aging_ns: fdb::DEFAULT_AGING_NS,
        }
    }
}

/// A switch and its NICs, driven by whoever owns it: a test calling [`Switch::poll`] with its
/// own clock, or the worker thread of [`Switch::spawn`].
pub struct Switch {
    cfg: SwitchConfig,
    pipeline: Pipeline,
    edges: Vec<Option<Box<dyn Edge>>>,
    rx: Batch,
    tx: Vec<Batch>,
    counters: Arc<Counters>,
    last_expire: u64,
    /// A NIC was lost during a poll: the worker recomputes the descriptors it sleeps on.
    nics_changed: bool,
    /// The kernel flow cache, when turned on ([`Switch::enable_fastpath`]).
    fast: Option<flowcache::FlowCache>,
    last_sweep: u64,
    /// While the worker serves a command: the flow cache's attaches (true) and detaches
    /// (false) it left for after its answer (see [`Switch::apply`]).
    fast_later: Option<Vec<(PortId, bool)>>,
}

impl Switch {
    pub fn new(cfg: SwitchConfig) -> Self {
        let fdb = fdb::Fdb::new(cfg.fdb_capacity, cfg.aging_ns);
        Switch {
            cfg,
            pipeline: Pipeline::new(fdb),
            edges: Vec::new(),
            rx: Batch::new(),
            tx: Vec::new(),
            counters: Arc::new(Counters::new(1, MAX_PORTS)),
            last_expire: 0,
            nics_changed: false,
            fast: None,
            last_sweep: 0,
            fast_later: None,
        }
    }

    /// Turns the kernel flow cache on ([`flowcache`]): every kernel port connected now or
    /// later gets its kernel half from `backend`. The pipeline stays the authority; the cache
    /// only repeats its unicast decisions between ports without per-frame policy.
    pub fn enable_fastpath(&mut self, backend: Box<dyn FlowBackend>) {
        self.disable_fastpath();
        self.fast = Some(flowcache::FlowCache::new(backend));
        self.pipeline.unicast = Some(Vec::new());
        self.pipeline.fdb.track_changes(true);
        for port in 0..self.edges.len() {
            self.attach_fast(PortId(port));
        }
    }

    /// Turns it off again: every flow goes, every edge gets its own filter back.
    pub fn disable_fastpath(&mut self) {
        for port in 0..self.edges.len() {
            self.detach_fast(PortId(port));
        }
        if let Some(mut fc) = self.fast.take() {
            fc.sweep(
                &mut self.pipeline.stats,
                &mut self.pipeline.fdb,
                self.last_sweep,
            );
        }
        self.pipeline.unicast = None;
        self.pipeline.fdb.track_changes(false);
    }

    /// The flow cache's counts (None when it is off). Hits are as of the last sweep.
    pub fn fastpath_stats(&self) -> Option<FastStats> {
        self.fast.as_ref().map(flowcache::FlowCache::stats)
    }

    /// The flow cache itself, for tests and status.
    pub fn flowcache(&self) -> Option<&flowcache::FlowCache> {
        self.fast.as_ref()
    }

    fn attach_fast(&mut self, port: PortId) {
        if let Some(later) = self.fast_later.as_mut() {
            later.push((port, true));
            return;
        }
        let (Some(fc), Some(Some(edge))) = (self.fast.as_mut(), self.edges.get_mut(port.0)) else {
            return;
        };
        let Some(kp) = edge.kernel_port() else {
            return;
        };
        if let Ok(prog) = fc.attach(port, &kp)
            && edge.set_rx_filter(Some(prog)).is_err()
        {
            fc.detach(port);
        }
    }

    fn detach_fast(&mut self, port: PortId) {
        let Some(fc) = self.fast.as_mut() else {
            return;
        };
        if !fc.attached(port) {
            return;
        }
        if let Some(Some(edge)) = self.edges.get_mut(port.0) {
            let _ = edge.set_rx_filter(None);
        }
        if let Some(later) = self.fast_later.as_mut() {
            // Its flows go now; its kernel link after the answer.
            fc.forget_port(port);
            later.push((port, false));
            return;
        }
        fc.detach(port);
    }

    /// Replaces a port's configuration (ACLs, VLAN mode, limits, admin state) keeping its NIC;
    /// cached flows through the port go.
    pub fn reconfigure(&mut self, port: PortId, cfg: PortConfig) -> Result<(), SwitchError> {
        self.check(port)?;
        if let Some(fc) = self.fast.as_mut() {
            fc.forget_port(port);
        }
        let offloads = self.pipeline.offloads(port);
        self.pipeline.set_port_config(port, cfg);
        let connected = self.edges[port.0].is_some();
        self.pipeline.set_link(port, connected, offloads);
        self.fast_changes();
        Ok(())
    }

    /// Drops the cached flows that depend on table entries that moved or went away.
    fn fast_changes(&mut self) {
        if let Some(fc) = self.fast.as_mut() {
            let changed = self.pipeline.fdb.take_changes();
            fc.forget_macs(&changed);
        }
    }

    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// Adds a vPort, with its NIC if one is given (link up) or without (link down).
    pub fn add_port(
        &mut self,
        cfg: PortConfig,
        edge: Option<Box<dyn Edge>>,
    ) -> Result<PortId, SwitchError> {
        let taken = self
            .pipeline
            .ports
            .iter()
            .flatten()
            .any(|p| p.cfg.name == cfg.name);
        if taken {
            return Err(SwitchError::Duplicate {
                switch: self.cfg.name.clone(),
                port: cfg.name,
            });
        }
        if self.pipeline.ports.iter().all(Option::is_some) && self.pipeline.ports.len() >= MAX_PORTS
        {
            return Err(SwitchError::Full {
                switch: self.cfg.name.clone(),
            });
        }
        let id = self.pipeline.add_port(cfg);
        while self.edges.len() <= id.0 {
            self.edges.push(None);
            self.tx.push(Batch::new());
        }
        if let Some(edge) = edge {
            self.connect(id, edge)?;
        }
        Ok(id)
    }

    /// Removes a vPort, returning its NIC.
    pub fn remove_port(&mut self, port: PortId) -> Result<Option<Box<dyn Edge>>, SwitchError> {
        let edge = self.disconnect(port)?;
        self.pipeline.remove_port(port);
        Ok(edge)
    }

    /// Connects a NIC to a port: link up.
    pub fn connect(&mut self, port: PortId, edge: Box<dyn Edge>) -> Result<(), SwitchError> {
        self.check(port)?;
        let offloads = edge.offloads();
        self.detach_fast(port);
        self.edges[port.0] = Some(edge);
        self.pipeline.set_link(port, true, offloads);
        self.attach_fast(port);
        Ok(())
    }

    /// Disconnects a port's NIC: link down. Returns the NIC.
    pub fn disconnect(&mut self, port: PortId) -> Result<Option<Box<dyn Edge>>, SwitchError> {
        self.check(port)?;
        self.detach_fast(port);
        self.pipeline.set_link(port, false, false);
        self.fast_changes();
        Ok(self.edges[port.0].take())
    }

    fn check(&self, port: PortId) -> Result<(), SwitchError> {
        match self.pipeline.ports.get(port.0) {
            Some(Some(_)) => Ok(()),
            _ => Err(SwitchError::NoPort {
                switch: self.cfg.name.clone(),
                port: port.0,
            }),
        }
    }

    pub fn port_id(&self, name: &str) -> Option<PortId> {
        self.pipeline
            .ports
            .iter()
            .position(|p| p.as_ref().is_some_and(|p| p.cfg.name == name))
            .map(PortId)
    }

    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// The published counters (up to date after each [`Switch::poll`]).
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// One pass over every connected NIC: receive a batch from each, run it through the
    /// pipeline, send the results; first, once a second, expire old table entries. Returns
    /// how many frames came in. `now` is nanoseconds on a monotonic clock.
    pub fn poll(&mut self, now: u64) -> usize {
        if now.saturating_sub(self.last_expire) >= 1_000_000_000 {
            if let Some(fc) = self.fast.as_mut() {
                fc.sweep(&mut self.pipeline.stats, &mut self.pipeline.fdb, now);
                self.last_sweep = now;
            }
            self.pipeline.fdb.expire(now);
            self.fast_changes();
            self.last_expire = now;
            // A deleted netdev raises its socket's error when it goes down, before it is
            // gone: the check then finds it still there. Asking every NIC once a second
            // catches what that one look missed.
            self.check_nics(0..self.edges.len());
        }
        let mut received = 0;
        for src in 0..self.edges.len() {
            let Some(edge) = self.edges[src].as_mut() else {
                continue;
            };
            self.rx.clear();
            if let Err(e) = edge.recv(&mut self.rx) {
                if io::nic_gone(&e) {
                    self.lose_nic(src);
                } else {
                    self.pipeline.stats[src].drop(DropReason::TxError);
                }
                continue;
            }
            if self.rx.is_empty() {
                continue;
            }
            received += self.rx.len();
            self.pipeline
                .process(PortId(src), &self.rx, now, &mut self.tx);
            self.flush();
            if self.fast.is_some() {
                self.offer_flows(PortId(src));
                if let Some(edge) = self.edges[src].as_mut() {
                    edge.rx_done();
                }
            }
        }
        self.counters.publish(0, &self.pipeline.stats);
        received
    }

    /// After a batch went out: drops flows the batch invalidated, then offers the batch's
    /// unicast decisions to the flow cache.
    fn offer_flows(&mut self, src: PortId) {
        self.fast_changes();
        let Some(fc) = self.fast.as_mut() else {
            return;
        };
        let Some(list) = self.pipeline.unicast.as_mut() else {
            return;
        };
        for u in list.drain(..) {
            fc.offer(
                &self.pipeline.ports,
                &self.pipeline.fdb,
                src,
                u.dst,
                u.vid,
                self.rx.frame(u.index),
            );
        }
    }

    /// Sends every destination's batch and counts what went out.
    fn flush(&mut self) {
        let mut lost = Vec::new();
        for (i, out) in self.tx.iter_mut().enumerate() {
            if out.is_empty() {
                continue;
            }
            let sent = match self.edges[i].as_mut().map(|edge| edge.send(out)) {
                Some(Ok(n)) => n,
                Some(Err(e)) if io::nic_gone(&e) => {
                    lost.push(i);
                    0
                }
                _ => 0,
            };
            let st = &mut self.pipeline.stats[i];
            for (k, (f, _)) in out.iter().enumerate() {
                if k < sent {
                    st.tx_packets += 1;
                    st.tx_bytes += f.len() as u64;
                } else {
                    st.drop(DropReason::TxError);
                }
            }
            out.clear();
        }
        for i in lost {
            self.lose_nic(i);
        }
    }

    /// The NIC of port `port` is gone: the port goes link down (its frames count as link-down
    /// drops, as for a disconnected NIC) and the worker stops polling it; whoever attached it
    /// connects a new one when the device is back.
    fn lose_nic(&mut self, port: usize) {
        if let Some(fc) = self.fast.as_mut() {
            fc.detach(PortId(port));
        }
        if self.edges.get_mut(port).and_then(Option::take).is_some() {
            self.pipeline.set_link(PortId(port), false, false);
            self.fast_changes();
            self.pipeline.stats[port].nic_lost += 1;
            self.nics_changed = true;
        }
    }

    /// Asks the edges whose descriptors reported an error whether their NIC is still there.
    /// Returns whether any is (a passing error, now read and cleared).
    fn check_nics(&mut self, ports: impl Iterator<Item = usize>) -> bool {
        let mut alive = false;
        for port in ports {
            let health = self
                .edges
                .get_mut(port)
                .and_then(|e| e.as_mut())
                .map(|e| e.health());
            match health {
                Some(Err(_)) => self.lose_nic(port),
                Some(Ok(())) => alive = true,
                None => {}
            }
        }
        alive
    }

    /// Starts the worker thread. It polls the NICs, sleeping on their descriptors when idle,
    /// until the handle is stopped or dropped.
    pub fn spawn(self) -> Result<SwitchHandle, SwitchError> {
        let name = self.cfg.name.clone();
        let counters = self.counters.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let (cmd_tx, cmd_rx) = channel();
        let worker_stop = stop.clone();
        let spawn_failed = |source| SwitchError::Spawn {
            switch: name.clone(),
            source,
        };
        let bell = io::wait::Bell::new().map_err(spawn_failed)?;
        let ringer = bell.ringer().map_err(spawn_failed)?;
        let thread = std::thread::Builder::new()
            .name(format!("switch-{name}"))
            .spawn(move || self.run(&worker_stop, &cmd_rx, &bell))
            .map_err(spawn_failed)?;
        Ok(SwitchHandle {
            name,
            counters,
            stop,
            commands: cmd_tx,
            ringer,
            thread: Some(thread),
        })
    }

    fn run(
        mut self,
        stop: &AtomicBool,
        commands: &Receiver<Command>,
        bell: &io::wait::Bell,
    ) -> Switch {
        let start = Instant::now();
        let mut last_busy = 0u64;
        let mut fds: Vec<std::os::fd::RawFd> = Vec::new();
        let mut fd_ports: Vec<usize> = Vec::new();
        let mut all_fds = false;
        let mut edges_changed = true;
        while !stop.load(Ordering::Relaxed) {
            while let Ok(cmd) = commands.try_recv() {
                self.apply(cmd);
                edges_changed = true;
            }
            if edges_changed || self.nics_changed {
                (fds, fd_ports) = self
                    .edges
                    .iter()
                    .enumerate()
                    .filter_map(|(port, e)| Some((e.as_ref()?.raw_fd()?, port)))
                    .unzip();
                all_fds = fds.len() == self.edges.iter().flatten().count();
                // The bell last, past the ports' descriptors.
                fds.push(bell.fd());
                edges_changed = false;
                self.nics_changed = false;
            }
            let now = start.elapsed().as_nanos() as u64;
            if self.poll(now) > 0 {
                last_busy = now;
                continue;
            }
            // While traffic flows, keep polling: sleeping costs a wake-up per burst, and on a
            // virtual machine an idle vCPU's wake-up can take longer than a ring lasts under
            // a flood. After SPIN_NS without a frame, sleep on the NICs.
            if now.saturating_sub(last_busy) < SPIN_NS {
                std::hint::spin_loop();
                continue;
            }
            // Asleep, a command (or a stop) rings the bell: it is served at once, not when
            // the wait times out.
            let timeout = if all_fds { 10 } else { 1 };
            if fd_ports.is_empty() && !all_fds {
                // Only edges without a descriptor (memory edges): poll them often.
                std::thread::sleep(Duration::from_micros(200));
            } else {
                let faulty = io::wait::readable(&fds, timeout);
                bell.hush();
                // A descriptor in error stays ready: without this, a NIC that keeps reporting
                // an error with its device still there would turn the wait into a spin.
                let ports = faulty.iter().filter_map(|&i| fd_ports.get(i).copied());
                if !faulty.is_empty() && self.check_nics(ports) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        self
    }

    /// Serves a command, answering before the flow cache's kernel half follows: loading a
    /// port's socket filter and attaching or detaching its tc program waits for the kernel
    /// (tcx swaps its program list under RCU: a grace period, tens of milliseconds on a
    /// loaded host), and the port forwards through the ring meanwhile. Done before the next
    /// command is read, so every later command sees the cache as if done at once.
    fn apply(&mut self, cmd: Command) {
        self.fast_later = Some(Vec::new());
        self.answer(cmd);
        for (port, attach) in self.fast_later.take().unwrap_or_default() {
            if attach {
                self.attach_fast(port);
            } else if let Some(fc) = self.fast.as_mut() {
                fc.detach(port);
            }
        }
    }

    fn answer(&mut self, cmd: Command) {
        match cmd {
            Command::AddPort(cfg, edge, reply) => {
                let _ = reply.send(self.add_port(cfg, edge));
            }
            Command::Connect(port, edge, reply) => {
                let _ = reply.send(self.connect(port, edge));
            }
            Command::Disconnect(port, reply) => {
                let _ = reply.send(self.disconnect(port));
            }
            Command::RemovePort(port, reply) => {
                let _ = reply.send(self.remove_port(port));
            }
            Command::Reconfigure(port, cfg, reply) => {
                let _ = reply.send(self.reconfigure(port, cfg));
            }
            Command::Fastpath(reply) => {
                let _ = reply.send(Ok(self.fastpath_stats()));
            }
        }
    }
}

type Reply<T> = Sender<Result<T, SwitchError>>;

enum Command {
    AddPort(PortConfig, Option<Box<dyn Edge>>, Reply<PortId>),
    Connect(PortId, Box<dyn Edge>, Reply<()>),
    Disconnect(PortId, Reply<Option<Box<dyn Edge>>>),
    RemovePort(PortId, Reply<Option<Box<dyn Edge>>>),
    Reconfigure(PortId, PortConfig, Reply<()>),
    Fastpath(Reply<Option<FastStats>>),
}

/// A running switch: its counters, and commands to its worker.
pub struct SwitchHandle {
    name: String,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    commands: Sender<Command>,
    ringer: io::wait::Ringer,
    thread: Option<JoinHandle<Switch>>,
}

impl SwitchHandle {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    fn ask<T>(&self, cmd: impl FnOnce(Reply<T>) -> Command) -> Result<T, SwitchError> {
        let stopped = || SwitchError::Stopped {
            switch: self.name.clone(),
        };
        let (tx, rx) = channel();
        self.commands.send(cmd(tx)).map_err(|_| stopped())?;
        self.ringer.ring();
        rx.recv().map_err(|_| stopped())?
    }

    pub fn add_port(
        &self,
        cfg: PortConfig,
        edge: Option<Box<dyn Edge>>,
    ) -> Result<PortId, SwitchError> {
        self.ask(|r| Command::AddPort(cfg, edge, r))
    }

    pub fn connect(&self, port: PortId, edge: Box<dyn Edge>) -> Result<(), SwitchError> {
        self.ask(|r| Command::Connect(port, edge, r))
    }

    pub fn disconnect(&self, port: PortId) -> Result<Option<Box<dyn Edge>>, SwitchError> {
        self.ask(|r| Command::Disconnect(port, r))
    }

    pub fn remove_port(&self, port: PortId) -> Result<Option<Box<dyn Edge>>, SwitchError> {
        self.ask(|r| Command::RemovePort(port, r))
    }

    /// Replaces a port's configuration, keeping its NIC ([`Switch::reconfigure`]).
    pub fn reconfigure(&self, port: PortId, cfg: PortConfig) -> Result<(), SwitchError> {
        self.ask(|r| Command::Reconfigure(port, cfg, r))
    }

    /// The flow cache's counts (None when it is off).
    pub fn fastpath_stats(&self) -> Result<Option<FastStats>, SwitchError> {
        self.ask(Command::Fastpath)
    }

    /// Stops the worker and returns the switch (with its NICs) as it was.
    pub fn stop(mut self) -> Option<Switch> {
        self.stop.store(true, Ordering::Relaxed);
        self.ringer.ring();
        self.thread.take().and_then(|t| t.join().ok())
    }
}

impl Drop for SwitchHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.ringer.ring();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests;
