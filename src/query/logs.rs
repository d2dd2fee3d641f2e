//! Function log lines, found: one function's lines in a time window (or one request's,
//! found through its invocation record), filtered by instance and substring, oldest
//! first. Reads at most [`MAX_SCANNED`] lines a question.

use std::ops::ControlFlow;

use serde::{Deserialize, Serialize};

use super::Query;
use crate::model::LogLine;
use crate::store::keys::Tenant;
use crate::store::StoreError;

/// Lines one question reads at most; past it the answer says it was cut short.
pub const MAX_SCANNED: usize = 200_000;

/// What to find.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LogQuery {
    pub service: Option<String>,
    pub function: Option<String>,
    pub request_id: Option<String>,
    pub instance_id: Option<String>,
    pub start_us: u64,
    pub end_us: u64,
    /// A substring of the message.
    pub q: Option<String>,
    pub limit: usize,
    /// `service`, `function` and the window are the request's already (a query node
    /// found its record): `request_id` only picks lines.
    #[serde(default)]
    pub resolved: bool,
}

/// A line with the function it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FoundLine {
    pub service_name: String,
    pub function_name: String,
    #[serde(flatten)]
    pub line: LogLine,
}

impl Query {
    /// The lines `q` asks for, and whether the walk stopped at [`MAX_SCANNED`]. With a
    /// request id, its record names the function and window (no record yet: nothing).
    pub fn logs(&self, tenant: Tenant, q: &LogQuery) -> Result<(Vec<FoundLine>, bool), StoreError> {
        if let Some(r) = &self.remote {
            // the record is found once, here; the lines may be on any store node
            let mut one = q.clone();
            if let (Some(id), false) = (&q.request_id, q.resolved) {
                let Some(rec) = self.invocation(tenant, id)? else {
                    return Ok((Vec::new(), false));
                };
                if q.service.as_ref().is_some_and(|s| *s != rec.service)
                    || q.function.as_ref().is_some_and(|f| *f != rec.function)
                {
                    return Ok((Vec::new(), false));
                }
                one.start_us = rec.start_time.max(q.start_us);
                one.service = Some(rec.service);
                one.function = Some(rec.function);
                one.resolved = true;
            }
            let (found, missing) = r.logs(tenant, &one);
            self.gaps.add(missing);
            return Ok(found);
        }
        let resolved = match (&q.service, &q.function) {
            (Some(s), Some(f)) if q.resolved => Some((s.clone(), f.clone(), q.start_us, q.end_us)),
            _ => None,
        };
        let (service, function, start, end) = match (&q.request_id, resolved) {
            (_, Some(r)) => r,
            (Some(id), None) => match self.invocation(tenant, id)? {
                None => return Ok((Vec::new(), false)),
                Some(r) => {
                    if q.service.as_ref().is_some_and(|s| *s != r.service)
                        || q.function.as_ref().is_some_and(|f| *f != r.function)
                    {
                        return Ok((Vec::new(), false));
                    }
                    // from its (first attempt's) start: an asynchronous call's later
                    // attempts, and what its destination was sent, come after
                    (
                        r.service,
                        r.function,
                        r.start_time.max(q.start_us),
                        q.end_us,
                    )
                }
            },
            (None, None) => match (&q.service, &q.function) {
                (Some(s), Some(f)) => (s.clone(), f.clone(), q.start_us, q.end_us),
                _ => return Ok((Vec::new(), false)),
            },
        };
        let mut out = Vec::new();
        let mut scanned = 0usize;
        let mut capped = false;
        self.store
            .scan_logs(tenant, &service, &function, start, end, |_, v| {
                scanned += 1;
                if scanned > MAX_SCANNED {
                    capped = true;
                    return ControlFlow::Break(());
                }
                let Ok(line) = serde_json::from_slice::<LogLine>(v) else {
                    return ControlFlow::Continue(());
                };
                let keep = q
                    .request_id
                    .as_ref()
                    .is_none_or(|id| line.request_id.as_ref() == Some(id))
                    && q.instance_id
                        .as_ref()
                        .is_none_or(|i| *i == line.instance_id)
                    && q.q
                        .as_ref()
                        .is_none_or(|s| line.message.contains(s.as_str()));
                if keep {
                    out.push(FoundLine {
                        service_name: service.clone(),
                        function_name: function.clone(),
                        line,
                    });
                    if out.len() >= q.limit {
                        return ControlFlow::Break(());
                    }
                }
                ControlFlow::Continue(())
            })?;
        Ok((out, capped))
    }
}
