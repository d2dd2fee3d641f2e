//! Running one call: the gateway's path from an invoke request to the function's
//! answer, with its cold start, platform spans, record, metrics and telemetry events
//! (`Platform::invoke`, and `invoke_as` for an attempt of a queued asynchronous call).
//! The registry, pools and background loops are `mod.rs`'s.

use std::sync::Arc;
use std::time::Instant;

use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;

use super::context::{baggage, random_span_id};
use super::instance::{AcquireError, Timed};
use super::record::{operation_of, Outcomes};
use super::stitch::Target;
use super::*;
use crate::clock::now_us;

impl Platform {
    pub async fn invoke(&self, req: InvokeRequest) -> Result<InvokeResponse, InvokeError> {
        self.invoke_as(req, None).await
    }

    /// Run a call; `attempt` when it is an attempt of a queued asynchronous call (its
    /// request id is the call's).
    pub async fn invoke_as(
        &self,
        req: InvokeRequest,
        attempt: Option<queue::AsyncCall>,
    ) -> Result<InvokeResponse, InvokeError> {
        let started = Instant::now();
        let Some(pool) = self.pools.get(&(req.service.clone(), req.function.clone())) else {
            self.refused(&req.service, &req.function, started.elapsed());
            return Err(InvokeError::NotFound(req.service, req.function));
        };
        let spec = &pool.spec;
        let start_us = now_us();
        let request_id = attempt.as_ref().map_or_else(
            || format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)),
            |a| a.request_id.clone(),
        );
        // Held until the call is answered: the platform-wide limit.
        let permit = Arc::clone(&self.limit).try_acquire_owned().ok();
        let platform_concurrent = self.running();
        let decision = self.decide_trace(&req, spec);
        let mut baggage = baggage(&req.headers);
        // how often this call chain has come through the function, this call included,
        // carried to the function in the baggage it passes on
        let depth = recursion::depth(&mut baggage, &spec.platform_service());
        let invoke_span = random_span_id();
        let invocation_span = random_span_id();
        let flags: u8 = match (decision.sampled, decision.debug) {
            (_, true) => 3,
            (true, false) => 1,
            (false, false) => 0,
        };
        let trigger_name = match req.trigger {
            Trigger::Event => "other",
            Trigger::Http { .. } => "http",
        };

        if spec.max_recursion_depth > 0 && depth > spec.max_recursion_depth {
            self.metrics.recursion_dropped(&spec.platform_service());
            self.record(
                spec,
                &request_id,
                start_us,
                started.elapsed(),
                &decision,
                invoke_span,
                flags,
                Outcomes {
                    error_type: Some(record::RECURSION_ERROR),
                    status_code: 400,
                    operation: operation_of(trigger_name),
                    platform_concurrent,
                    attempt: attempt.clone(),
                    ..Outcomes::default()
                },
            );
            return Err(InvokeError::Recursive {
                service: req.service,
                function: req.function,
                depth,
                request_id,
            });
        }
        if permit.is_none() {
            self.record(
                spec,
                &request_id,
                start_us,
                started.elapsed(),
                &decision,
                invoke_span,
                flags,
                Outcomes {
                    error_type: Some("ResourceThrottled"),
                    status_code: 503,
                    operation: operation_of(trigger_name),
                    platform_concurrent,
                    attempt: attempt.clone(),
                    ..Outcomes::default()
                },
            );
            return Err(InvokeError::ResourceThrottled {
                limit: self.max_concurrent,
                request_id,
            });
        }
        if decision.sampled {
            // Before the function runs: its spans may arrive before ours.
            self.stitcher.register(
                &request_id,
                Target {
                    trace_id: decision.trace_id,
                    invocation_span,
                },
            );
        }
        let acquired = pool.acquire().await;
        // The instance to run on, or why none could be started.
        let (lease, cold) = match acquired {
            Ok((lease, cold)) => (Ok(lease), cold),
            Err(AcquireError::Throttled(max)) => {
                self.metrics.throttled(&spec.platform_service());
                let (concurrent, instances) = pool.load();
                self.record(
                    spec,
                    &request_id,
                    start_us,
                    started.elapsed(),
                    &decision,
                    invoke_span,
                    flags,
                    Outcomes {
                        error_type: Some("Throttled"),
                        status_code: 429,
                        operation: operation_of(trigger_name),
                        concurrent: concurrent + 1,
                        instances,
                        platform_concurrent,
                        attempt: attempt.clone(),
                        ..Outcomes::default()
                    },
                );
                return Err(InvokeError::Throttled {
                    service: req.service,
                    function: req.function,
                    why: format!(
                        "every instance is busy and no more may start (max_instances {max})"
                    ),
                    request_id,
                });
            }
            Err(AcquireError::StartFailed {
                step,
                message,
                cold,
            }) => {
                let kind = if step == "Initializer" {
                    error_type::INITIALIZATION
                } else {
                    error_type::START
                };
                (Err((kind, format!("{step} failed: {message}"))), Some(cold))
            }
        };

        let (concurrent, instances) = pool.load();
        let provision = provision::facts(spec, pool, lease.as_ref().ok());
        let tracing_ctx = events::Tracing {
            trace_id: decision.trace_id,
            span_id: invocation_span,
            parent_id: invoke_span,
            sampled: decision.sampled,
        };
        if let Some(c) = &cold {
            let instance = lease.as_ref().map(|l| l.instance.id.as_str()).unwrap_or("");
            lifecycle::init(&pool.events, c, spec, &request_id, instance, lease.is_ok());
        }
        let mut run = None;
        let mut peak_rss = 0u64;
        let (status, headers, body, error) = match &lease {
            Err((kind, message)) => {
                let (kind, message) = (*kind, message.clone());
                tracing::warn!(function = %spec.platform_service(), error = %message, "instance did not start");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    HeaderMap::new(),
                    Bytes::from(
                        serde_json::json!({"errorType": kind, "errorMessage": message}).to_string(),
                    ),
                    Some((kind, message)),
                )
            }
            Ok(lease) => {
                let outbound = self.outbound_headers(
                    spec,
                    &req,
                    &request_id,
                    &decision,
                    invocation_span,
                    invoke_span,
                    flags,
                    &baggage,
                );
                let run_start = now_us();
                let run_clock = Instant::now();
                let start = events::Event::Start {
                    at: run_start,
                    request_id: request_id.clone(),
                    tracing: tracing_ctx,
                };
                match &lease.instance.log {
                    Some(log) => log.start(&request_id, || pool.events.offer(&start)),
                    None => pool.events.offer(&start),
                }
                let result = self.call(spec, lease, &req, outbound, &mut peak_rss).await;
                run = Some(Timed {
                    start_us: run_start,
                    duration_us: run_clock.elapsed().as_micros() as u64,
                });
                result
            }
        };
        if let (Ok(lease), Some(run)) = (&lease, run) {
            // after the function's last lines, when its output is captured
            let ended = lifecycle::end_events(&lifecycle::Ended {
                request_id: &request_id,
                instance: &lease.instance.id,
                run_start: run.start_us,
                run_end: run.start_us + run.duration_us,
                error_type: error.as_ref().map(|(k, _)| *k),
                produced_bytes: body.len() as u64,
                report: events::Report {
                    duration_ms: run.duration_us as f64 / 1000.0,
                    billed_ms: run.duration_us.div_ceil(1000),
                    memory_mb: spec.memory_mb,
                    max_memory_used_mb: peak_rss as f64 / (1024.0 * 1024.0),
                    init_duration_ms: cold.as_ref().map(lifecycle::init_ms),
                },
                tracing: tracing_ctx,
            });
            let subs = Arc::clone(&pool.events);
            let send = move || ended.iter().for_each(|e| subs.offer(e));
            match &lease.instance.log {
                Some(log) => log.end(&request_id, send),
                None => send(),
            }
        }
        let instance_id = lease.as_ref().ok().map(|l| l.instance.id.clone());
        let ip_address = lease
            .as_ref()
            .map(|l| l.instance.host())
            .unwrap_or_default();
        drop(lease);

        let duration = started.elapsed();
        let invoke = Timed {
            start_us,
            duration_us: duration.as_micros() as u64,
        };
        let error_type = error.as_ref().map(|(k, _)| *k);
        if decision.sampled {
            let spans = spans::build(&spans::Invocation {
                service: &spec.service,
                function: &spec.name,
                request_id: &request_id,
                trace_id: decision.trace_id,
                caller: decision.caller,
                flags: flags as u32,
                invoke_span,
                invocation_span,
                trigger: trigger_name,
                memory_mb: spec.memory_mb,
                instance_id: instance_id.as_deref(),
                hostname: Some(record::hostname()),
                ip: Some(ip_address.as_str()),
                invoke,
                cold: cold.as_ref(),
                run,
                error_type,
                error_message: error.as_ref().map(|(_, m)| m.as_str()),
                resource_mode: provision.mode,
                warnings: &decision.warnings,
                context_format: decision.format,
                baggage: &baggage,
            });
            self.store_spans(
                spec.tenant_id,
                spans,
                "platform spans not stored after retries",
            );
        }
        // the initializer alone, as the platforms report `initializationDurationMs`
        let init_us = cold
            .as_ref()
            .and_then(|c| c.initializer.as_ref())
            .map_or(0, |t| t.duration_us);
        self.record(
            spec,
            &request_id,
            start_us,
            duration,
            &decision,
            invoke_span,
            flags,
            Outcomes {
                cold: cold.is_some(),
                init_us,
                peak_rss,
                error_type,
                status_code: status.as_u16(),
                instance_id,
                ip_address,
                concurrent,
                instances,
                platform_concurrent,
                billed_ms: run.map_or(0, |r| r.duration_us.div_ceil(1000)),
                schedule_us: run.map_or(0, |r| r.start_us.saturating_sub(start_us)),
                operation: operation_of(trigger_name),
                attempt,
                provision,
            },
        );
        drop(permit);
        self.metrics
            .invocation(&spec.platform_service(), error_type, cold.is_some());
        Ok(InvokeResponse {
            status,
            headers,
            body,
            request_id,
            duration,
            error_type,
        })
    }
}
