//! Function instances and the pool per function: cold starts (each step timed), reuse
//! while warm, reaping after `idle_timeout`, replacing instances that died or were killed.
//!
//! An instance of a `command` function is a child process listening on the port given in
//! `FC_SERVER_PORT`/`PORT`; an instance of a `url` function is the running server itself
//! (its "cold start" is the first connection after start or after it sat idle). The pool
//! knows nothing about traces: it reports what it did and how long each step took.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::process::{Child, Command};

use super::events::Subscribers;
use super::functions::{FunctionSpec, Runtime};
use super::logs::{InstanceLog, LogSink};
use super::port::{free_port, wait_for_port};
use crate::clock::now_us;
use tokio::io::AsyncRead;

/// A measured step: when it started (µs since the epoch) and how long it took (µs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timed {
    pub start_us: u64,
    pub duration_us: u64,
}

impl Timed {
    fn since(start_us: u64, started: Instant) -> Timed {
        Timed {
            start_us,
            duration_us: started.elapsed().as_micros() as u64,
        }
    }
}

/// What a cold start did, step by step.
#[derive(Debug, Clone, Default)]
pub struct ColdStart {
    pub prepare_code: Option<Timed>,
    pub runtime_init: Option<Timed>,
    pub initializer: Option<Timed>,
}

#[derive(Debug, Error)]
pub enum AcquireError {
    #[error("every instance is busy and no more may start (max_instances {0})")]
    Throttled(u32),
    #[error("{step} failed: {message}")]
    StartFailed {
        step: &'static str,
        message: String,
        cold: ColdStart,
    },
}

pub struct Instance {
    pub id: String,
    pub base_url: String,
    pid: Option<u32>,
    child: Mutex<Option<Child>>,
    in_flight: AtomicU32,
    last_used: Mutex<Instant>,
    dead: AtomicBool,
    /// Kept started ahead of traffic (`provision`): never reaped while it is.
    provisioned: AtomicBool,
    /// Bytes the gateway sent the instance (request bodies) and received from it
    /// (response bodies): its network traffic as the platform sees it.
    pub rx_bytes: AtomicU64,
    pub tx_bytes: AtomicU64,
    /// Its captured output (command functions only).
    pub log: Option<InstanceLog>,
}

impl Instance {
    /// The host the gateway reaches the instance at (its URL's).
    pub fn host(&self) -> String {
        self.base_url
            .parse::<axum::http::Uri>()
            .ok()
            .and_then(|u| u.host().map(str::to_owned))
            .unwrap_or_default()
    }

    /// Calls running on the instance now.
    pub fn running(&self) -> u32 {
        self.in_flight.load(Ordering::SeqCst)
    }

    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    pub fn is_provisioned(&self) -> bool {
        self.provisioned.load(Ordering::SeqCst)
    }

    /// Kill the process (if any) and keep the instance from being used again.
    pub fn kill(&self) {
        self.dead.store(true, Ordering::SeqCst);
        if let Some(mut c) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = c.start_kill();
        }
    }

    fn exited(&self) -> bool {
        if self.dead.load(Ordering::SeqCst) {
            return true;
        }
        let mut guard = self.child.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_mut().map(|c| c.try_wait()) {
            Some(Ok(Some(_))) | Some(Err(_)) => {
                self.dead.store(true, Ordering::SeqCst);
                true
            }
            _ => false,
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One invocation's hold on an instance; dropping it frees the slot.
pub struct Lease {
    pub instance: Arc<Instance>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        *self
            .instance
            .last_used
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.instance.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

pub struct Pool {
    pub spec: Arc<FunctionSpec>,
    instances: Mutex<Vec<Arc<Instance>>>,
    starting: AtomicU32,
    next_id: AtomicU64,
    http: reqwest::Client,
    pub(super) logs: LogSink,
    /// The function's telemetry listeners.
    pub events: Arc<Subscribers>,
}

impl Pool {
    pub fn new(spec: Arc<FunctionSpec>, http: reqwest::Client, logs: LogSink) -> Self {
        let events = Arc::new(Subscribers::new(
            &spec.telemetry,
            http.clone(),
            logs.metrics(),
        ));
        Pool {
            logs,
            events,
            spec,
            instances: Mutex::new(Vec::new()),
            starting: AtomicU32::new(0),
            next_id: AtomicU64::new(1),
            http,
        }
    }

    /// A warm instance with a free slot, or a new one (cold), or throttled.
    pub async fn acquire(&self) -> Result<(Lease, Option<ColdStart>), AcquireError> {
        {
            let mut instances = self.instances.lock().unwrap_or_else(|e| e.into_inner());
            instances.retain(|i| !i.exited());
            let limit = self.spec.instance_concurrency;
            // provisioned instances first: they are there to take calls
            let (provisioned, on_demand): (Vec<_>, Vec<_>) =
                instances.iter().partition(|i| i.is_provisioned());
            for i in provisioned.into_iter().chain(on_demand) {
                let taken = i
                    .in_flight
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                        (n < limit).then_some(n + 1)
                    });
                if taken.is_ok() {
                    return Ok((
                        Lease {
                            instance: Arc::clone(i),
                        },
                        None,
                    ));
                }
            }
            let total = instances.len() as u32 + self.starting.load(Ordering::SeqCst);
            if total >= self.spec.max_instances {
                return Err(AcquireError::Throttled(self.spec.max_instances));
            }
            self.starting.fetch_add(1, Ordering::SeqCst);
        }
        let started = self.start_instance().await;
        self.starting.fetch_sub(1, Ordering::SeqCst);
        let (instance, cold) = started?;
        instance.in_flight.store(1, Ordering::SeqCst);
        let instance = Arc::new(instance);
        self.instances
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::clone(&instance));
        Ok((Lease { instance }, Some(cold)))
    }

    /// The instances alive now.
    pub fn live(&self) -> Vec<Arc<Instance>> {
        let mut instances = self.instances.lock().unwrap_or_else(|e| e.into_inner());
        instances.retain(|i| !i.exited());
        instances.clone()
    }

    /// Calls running on the function's instances, and how many instances it has.
    pub fn load(&self) -> (u64, u64) {
        let instances = self.instances.lock().unwrap_or_else(|e| e.into_inner());
        let calls = instances
            .iter()
            .map(|i| u64::from(i.in_flight.load(Ordering::SeqCst)))
            .sum();
        (calls, instances.len() as u64)
    }

    /// Drop instances idle for longer than `idle_timeout`; returns how many.
    pub fn reap_idle(&self) -> usize {
        let idle = self.spec.idle_timeout;
        let mut instances = self.instances.lock().unwrap_or_else(|e| e.into_inner());
        let before = instances.len();
        instances.retain(|i| {
            let busy = i.in_flight.load(Ordering::SeqCst) > 0;
            let fresh = i
                .last_used
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .elapsed()
                < idle;
            let keep = !i.exited() && (busy || fresh || i.is_provisioned());
            if !keep {
                i.kill();
            }
            keep
        });
        before - instances.len()
    }

    /// Provisioned instances alive now, and calls running on them.
    pub fn provisioned_load(&self) -> (u64, u64) {
        let instances = self.instances.lock().unwrap_or_else(|e| e.into_inner());
        instances
            .iter()
            .filter(|i| i.is_provisioned() && !i.exited())
            .fold((0, 0), |(n, calls), i| {
                (n + 1, calls + u64::from(i.in_flight.load(Ordering::SeqCst)))
            })
    }

    /// Provisioned instances alive now.
    pub fn provisioned(&self) -> u64 {
        self.provisioned_load().0
    }

    /// Bring the provisioned instances to `target`: start the missing ones (within
    /// `max_instances`), or make idle ones beyond it on-demand.
    pub async fn provision(&self, target: u32) -> Result<(), AcquireError> {
        loop {
            {
                let mut instances = self.instances.lock().unwrap_or_else(|e| e.into_inner());
                instances.retain(|i| !i.exited());
                let mut have = instances.iter().filter(|i| i.is_provisioned()).count() as u32;
                for i in instances.iter() {
                    if have > target && i.is_provisioned() && i.running() == 0 {
                        i.provisioned.store(false, Ordering::SeqCst);
                        have -= 1;
                    }
                }
                let total = instances.len() as u32 + self.starting.load(Ordering::SeqCst);
                if have >= target || total >= self.spec.max_instances {
                    return Ok(());
                }
                // an idle on-demand instance is provisioned before a new one is started
                if let Some(i) = instances.iter().find(|i| !i.is_provisioned()) {
                    i.provisioned.store(true, Ordering::SeqCst);
                    continue;
                }
                self.starting.fetch_add(1, Ordering::SeqCst);
            }
            let started = self.start_instance().await;
            self.starting.fetch_sub(1, Ordering::SeqCst);
            let (instance, _cold) = started?;
            instance.provisioned.store(true, Ordering::SeqCst);
            self.instances
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Arc::new(instance));
        }
    }

    /// Stop every instance (shutdown).
    pub fn stop_all(&self) {
        for i in self
            .instances
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            i.kill();
        }
    }

    async fn start_instance(&self) -> Result<(Instance, ColdStart), AcquireError> {
        let n = self.next_id.fetch_add(1, Ordering::SeqCst);
        let id = format!("{}-{}-{n}", self.spec.service, self.spec.name);
        let mut cold = ColdStart::default();
        let fail =
            |step: &'static str, message: String, cold: &ColdStart| AcquireError::StartFailed {
                step,
                message,
                cold: cold.clone(),
            };
        // Never wait longer for a start than for a run, and at least 10 s.
        let start_limit = self.spec.timeout.max(Duration::from_secs(10));

        // PrepareCode: make sure the code is there and runnable.
        let t0 = now_us();
        let clock = Instant::now();
        let prepared = prepare(&self.spec.runtime);
        cold.prepare_code = Some(Timed::since(t0, clock));
        let prepared = prepared.map_err(|m| fail("PrepareCode", m, &cold))?;

        // RuntimeInitialization: the process runs and its port answers.
        let t0 = now_us();
        let clock = Instant::now();
        let started = match prepared {
            Prepared::Url(url, addr) => wait_for_port(addr, None, start_limit)
                .await
                .map(|_| (url, None, None, None)),
            Prepared::Command {
                program,
                argv,
                cwd,
                env,
            } => {
                self.spawn(&id, &program, &argv, cwd.as_deref(), &env, start_limit)
                    .await
            }
        };
        cold.runtime_init = Some(Timed::since(t0, clock));
        let (base_url, child, pid, log) =
            started.map_err(|m| fail("RuntimeInitialization", m, &cold))?;
        let instance = Instance {
            id,
            log,
            base_url,
            pid,
            rx_bytes: AtomicU64::new(0),
            tx_bytes: AtomicU64::new(0),
            child: Mutex::new(child),
            in_flight: AtomicU32::new(0),
            last_used: Mutex::new(Instant::now()),
            dead: AtomicBool::new(false),
            provisioned: AtomicBool::new(false),
        };

        // Initializer: once per instance, when configured.
        if self.spec.initializer {
            let t0 = now_us();
            let clock = Instant::now();
            let result = self
                .http
                .post(format!("{}/initialize", instance.base_url))
                .header("x-fc-function-name", &self.spec.name)
                .header("x-fc-service-name", &self.spec.service)
                .timeout(self.spec.timeout)
                .send()
                .await;
            cold.initializer = Some(Timed::since(t0, clock));
            match result {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => {
                    instance.kill();
                    return Err(fail(
                        "Initializer",
                        format!("/initialize answered {}", r.status()),
                        &cold,
                    ));
                }
                Err(e) => {
                    instance.kill();
                    return Err(fail("Initializer", e.to_string(), &cold));
                }
            }
        }
        Ok((instance, cold))
    }

    async fn spawn(
        &self,
        id: &str,
        program: &Path,
        argv: &[String],
        cwd: Option<&Path>,
        env: &std::collections::BTreeMap<String, String>,
        limit: Duration,
    ) -> Result<Spawned, String> {
        let port = free_port().map_err(|e| format!("no free port: {e}"))?;
        let mut cmd = Command::new(program);
        cmd.args(&argv[1..])
            .envs(env)
            .env("FC_SERVER_PORT", port.to_string())
            .env("PORT", port.to_string())
            .env("FC_FUNCTION_NAME", &self.spec.name)
            .env("FC_SERVICE_NAME", &self.spec.service)
            .env("FC_FUNCTION_MEMORY_SIZE", self.spec.memory_mb.to_string())
            .env("FC_INSTANCE_ID", id)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        die_with_daemon(&mut cmd);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
        let pid = child.id();
        let mut streams: Vec<(&'static str, Box<dyn AsyncRead + Unpin + Send>)> = Vec::new();
        if let Some(out) = child.stdout.take() {
            streams.push(("stdout", Box::new(out)));
        }
        if let Some(err) = child.stderr.take() {
            streams.push(("stderr", Box::new(err)));
        }
        let log = InstanceLog::capture(
            &self.logs,
            &self.spec.service,
            &self.spec.name,
            id,
            Arc::clone(&self.events),
            streams,
        );
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_for_port(addr, Some(&mut child), limit).await?;
        Ok((format!("http://{addr}"), Some(child), pid, Some(log)))
    }
}

/// The instance is killed when the daemon dies, however it dies (`kill -9` included):
/// an instance outliving its gateway would run on, unreachable, holding its port and
/// memory. Linux's parent-death signal is tied to the thread that started the child;
/// instances are started from the runtime's worker threads, which live as long as the
/// daemon.
fn die_with_daemon(cmd: &mut Command) {
    // SAFETY: the closure runs in the child between fork and exec and only makes two
    // async-signal-safe system calls.
    let parent = std::process::id() as libc::pid_t;
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // the daemon died before the signal was asked for
            if libc::getppid() != parent {
                return Err(std::io::Error::other("the daemon is gone"));
            }
            Ok(())
        });
    }
}

/// A started instance: its URL, process, pid and captured output.
type Spawned = (String, Option<Child>, Option<u32>, Option<InstanceLog>);

enum Prepared {
    Url(String, SocketAddr),
    Command {
        program: PathBuf,
        argv: Vec<String>,
        cwd: Option<PathBuf>,
        env: std::collections::BTreeMap<String, String>,
    },
}

/// Resolve what an instance needs before it can start: the program on PATH (or relative
/// to `cwd`) and the working directory, or the URL's address.
fn prepare(runtime: &Runtime) -> Result<Prepared, String> {
    match runtime {
        Runtime::Url(url) => {
            let rest = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"))
                .unwrap_or(url);
            let hostport = rest.split('/').next().unwrap_or(rest);
            let default_port = if url.starts_with("https://") { 443 } else { 80 };
            let hostport = if hostport.contains(':') {
                hostport.to_owned()
            } else {
                format!("{hostport}:{default_port}")
            };
            let addr = std::net::ToSocketAddrs::to_socket_addrs(&hostport)
                .map_err(|e| format!("cannot resolve {hostport}: {e}"))?
                .next()
                .ok_or_else(|| format!("{hostport} resolves to no address"))?;
            Ok(Prepared::Url(url.clone(), addr))
        }
        Runtime::Command { argv, cwd, env } => {
            if let Some(dir) = cwd {
                if !dir.is_dir() {
                    return Err(format!(
                        "working directory {} does not exist",
                        dir.display()
                    ));
                }
            }
            let program = resolve_program(&argv[0], cwd.as_deref())
                .ok_or_else(|| format!("program {:?} not found", argv[0]))?;
            Ok(Prepared::Command {
                program,
                argv: argv.clone(),
                cwd: cwd.clone(),
                env: env.clone(),
            })
        }
    }
}

fn resolve_program(name: &str, cwd: Option<&Path>) -> Option<PathBuf> {
    let is_file = |p: &Path| p.is_file();
    if name.contains('/') {
        let p = match cwd {
            Some(dir) if !Path::new(name).is_absolute() => dir.join(name),
            _ => PathBuf::from(name),
        };
        return is_file(&p).then_some(p);
    }
    std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .find(|p| is_file(p))
}

/// Resident memory of a process in bytes, from /proc.
/// CPU time (user + system, in clock ticks) a process has used.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // fields after the command, which is in parentheses and may hold spaces
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split_whitespace();
    // state is field 3; utime and stime are fields 14 and 15
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
