//! Ports of spawned instances: choosing one for an instance to listen on, and waiting
//! until something listens there. Spawning and proxying are `instance`'s.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::process::Child;

/// A port for an instance to listen on, chosen below the kernel's ephemeral range: the
/// instance binds it only after this check, and a port from a port-0 bind could be handed
/// to any other socket in between (a parallel test's daemon once took one, and the
/// gateway proxied the function's calls to it). Falls back to a port-0 bind when the
/// range leaves no room or every try is taken.
pub(super) fn free_port() -> std::io::Result<u16> {
    // above the well-known ports fctrace and its neighbours listen on by default
    // (Jaeger's up to 16687, Zipkin's 9411, OTLP's 4317/4318, Prometheus, NATS)
    const FLOOR: u16 = 20_000;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    if ephemeral_low > FLOOR {
        for _ in 0..64 {
            let port = fastrand::u16(FLOOR..ephemeral_low);
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return Ok(port);
            }
        }
    }
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(l.local_addr()?.port())
}

/// Wait until `addr` accepts a connection; fail early if the child exits.
pub(super) async fn wait_for_port(
    addr: SocketAddr,
    mut child: Option<&mut Child>,
    limit: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        let listening = TcpStream::connect(addr).await.is_ok();
        // Checked after connecting too: a process that exited without listening leaves
        // its port free, and another process (another daemon's instance) may take it.
        if let Some(c) = child.as_deref_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                return Err(format!(
                    "process exited ({status}) before listening on {addr}"
                ));
            }
        }
        if listening {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "nothing listened on {addr} within {}s",
                limit.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ports_are_free_and_outside_the_ephemeral_range() {
        let low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        for _ in 0..20 {
            let port = free_port().unwrap();
            // port-0 binds (every daemon and test here) are handed ports from `low` up
            assert!(
                (20_000..low).contains(&port),
                "{port} (ephemeral from {low})"
            );
            std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        }
    }
}
