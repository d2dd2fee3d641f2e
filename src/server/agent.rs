//! The Jaeger agent's UDP ports: `emitBatch` datagrams in thrift compact (6831) or binary
//! (6832), as Jaeger clients send them by default.
//!
//! Each port has one thread of its own that receives, decodes and submits: the decoding
//! stays off the async workers, one datagram at a time per port, and while the thread is
//! busy the kernel's socket buffer holds what arrives. UDP cannot be answered, so every
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
        let result = if n > MAX_DATAGRAM {
            "oversized"
        } else {
            handle(&buf[..n], protocol, state, runtime)
        };
        state.metrics.agent_datagram(label, result);
    }
}

/// Decode and submit one datagram; the result label for it.
fn handle(
    datagram: &[u8],
    protocol: ThriftProtocol,
    state: &AppState,
    runtime: &tokio::runtime::Handle,
) -> &'static str {
    let mut mem = state.budget.reserve();
    let limits = state.settings.limits;
    let spans = match jaeger_thrift::decode_emit_batch(datagram, protocol, &limits, &mut mem) {
        Ok(spans) => spans,
        Err(e) => {
            tracing::debug!(error = %e, "agent datagram refused");
            return match e {
                ThriftError::Limit(_) => "limit",
                _ => "malformed",
            };
        }
    };
    state.metrics.received("jaeger_agent", spans.len());
    // nobody to answer: keep the valid spans, count the rest (in `spans_refused` too)
    let submitted = runtime.block_on(state.pipeline.submit(
        DEFAULT_TENANT,
        spans,
        Partial::DropInvalid,
    ));
    drop(mem);
    match submitted {
        Ok(outcome) if outcome.rejected.is_empty() => "stored",
        Ok(_) | Err(SubmitError::Invalid(_)) => "invalid",
        Err(e) => {
            tracing::debug!(error = %e, "agent datagram not stored");
            "overloaded"
        }
    }
}
