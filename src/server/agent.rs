//! The Jaeger agent's UDP ports: `emitBatch` datagrams in thrift compact (6831) or binary
//! (6832), as Jaeger clients send them by default.
//!
//! Each port has one thread of its own that receives and decodes, one datagram at a time,
//! off the async workers, and hands the spans to the pipeline without waiting for their
//! write (up to [`IN_FLIGHT`] writes wait at once, taken together by the writer's group
//! commit); while the thread is busy the kernel's socket buffer holds what arrives. UDP cannot be answered, so every
//! datagram is counted by result in `fctrace_agent_datagrams_total` (a refused one is
//! counted there and in the usual refusal series, never dropped unseen). Decoding is
//! `receive::jaeger_thrift`'s; this module only moves datagrams.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::AppState;
use crate::pipeline::{Partial, SubmitError};
use crate::receive::jaeger_thrift::{self, ThriftProtocol};
use crate::receive::thrift::ThriftError;
use crate::store::keys::DEFAULT_TENANT;

/// The largest datagram Jaeger clients send (their `maxPacketSize`); anything longer is
/// counted as oversized without being decoded.
pub const MAX_DATAGRAM: usize = 65_000;

/// How often a receiving thread looks at the stop flag while no datagram comes.
const POLL: Duration = Duration::from_millis(200);

/// The socket receive buffer asked for: bursts wait here while the thread decodes (the
/// kernel grants at most `net.core.rmem_max`).
const RECEIVE_BUFFER: usize = 8 << 20;

/// Datagrams of one port waiting for their write at once: the thread goes on receiving
/// while the writer's group commit takes them together; past this it waits.
const IN_FLIGHT: usize = 1024;

/// A running agent port; `stop` ends its thread.
pub struct AgentPort {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl AgentPort {
    /// Start receiving on `socket` (already bound) with `protocol`.
    pub fn start(
        socket: UdpSocket,
        protocol: ThriftProtocol,
        state: AppState,
        runtime: tokio::runtime::Handle,
    ) -> std::io::Result<AgentPort> {
        socket.set_read_timeout(Some(POLL))?;
        let sock = socket2::SockRef::from(&socket);
        if let Err(e) = sock.set_recv_buffer_size(RECEIVE_BUFFER) {
            tracing::warn!(error = %e, "agent port: receive buffer not enlarged");
        }
        tracing::debug!(
            bytes = sock.recv_buffer_size().unwrap_or(0),
            "agent port receive buffer"
        );
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let name = match protocol {
            ThriftProtocol::Compact => "agent-compact",
            ThriftProtocol::Binary => "agent-binary",
        };
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || receive_loop(&socket, protocol, &state, &runtime, &flag))?;
        Ok(AgentPort { stop, thread })
    }

    /// Stop after the datagram in hand, and wait for the thread (its pipeline handle goes
    /// with it).
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.thread.join();
    }
}

fn receive_loop(
    socket: &UdpSocket,
    protocol: ThriftProtocol,
    state: &AppState,
    runtime: &tokio::runtime::Handle,
    stop: &AtomicBool,
) {
    let label = match protocol {
        ThriftProtocol::Compact => "compact",
        ThriftProtocol::Binary => "binary",
    };
    // one byte more than the cap tells an oversized datagram from one exactly at it
    let mut buf = vec![0u8; 65_536];
    let in_flight = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    while !stop.load(Ordering::SeqCst) {
        let n = match socket.recv_from(&mut buf) {
            Ok((n, _)) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => {
                tracing::warn!(error = %e, port = label, "agent receive failed");
                std::thread::sleep(POLL);
                continue;
            }
        };
        if n > MAX_DATAGRAM {
            state.metrics.agent_datagram(label, "oversized");
            continue;
        }
        if state.tenancy.is_on() {
            // a datagram carries no token: with tenants, nobody may write this way
            state.metrics.agent_datagram(label, "unauthenticated");
            continue;
        }
        let Ok(permit) = runtime.block_on(Arc::clone(&in_flight).acquire_owned()) else {
            return;
        };
        handle(&buf[..n], protocol, label, state, runtime, permit);
    }
    // the datagrams still being written are counted before the port stops
    let _ = runtime.block_on(in_flight.acquire_many(IN_FLIGHT as u32));
}

/// Decode one datagram here and hand its spans to the pipeline without waiting for the
/// write; it is counted by result when the write ends (or now, when it does not decode).
fn handle(
    datagram: &[u8],
    protocol: ThriftProtocol,
    label: &'static str,
    state: &AppState,
    runtime: &tokio::runtime::Handle,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let mut mem = state.budget.reserve();
    let limits = state.settings.limits;
    let spans = match jaeger_thrift::decode_emit_batch(datagram, protocol, &limits, &mut mem) {
        Ok(spans) => spans,
        Err(e) => {
            tracing::debug!(error = %e, "agent datagram refused");
            let result = match e {
                ThriftError::Limit(_) => "limit",
                _ => "malformed",
            };
            state.metrics.agent_datagram(label, result);
            return;
        }
    };
    state.metrics.received("jaeger_agent", spans.len());
    let state = state.clone();
    runtime.spawn(async move {
        // nobody to answer: keep the valid spans, count the rest (in `spans_refused` too)
        let submitted = state
            .pipeline
            .submit(DEFAULT_TENANT, spans, Partial::DropInvalid)
            .await;
        // held until the spans are stored: the budget counts them while in memory
        drop(mem);
        drop(permit);
        let result = match submitted {
            Ok(outcome) if outcome.rejected.is_empty() => "stored",
            Ok(_) | Err(SubmitError::Invalid(_)) => "invalid",
            Err(e) => {
                tracing::debug!(error = %e, "agent datagram not stored");
                "overloaded"
            }
        };
        state.metrics.agent_datagram(label, result);
    });
}
