// fctrace web UI: search traces, read one as a waterfall. Talks only to the query API.
'use strict';

const $ = (sel) => document.querySelector(sel);
const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
// the result list's order: APM-style, a column's clicks go descending, ascending, back
let sortBy = 'start';
let order = 'desc';

function fmtDuration(us) {
  if (us < 1000) return `${us}µs`;
  if (us < 1e6) return `${(us / 1000).toFixed(2)}ms`;
  return `${(us / 1e6).toFixed(2)}s`;
}
function fmtTime(us) {
  return new Date(us / 1000).toLocaleString();
}
async function api(path) {
  const r = await authFetch(path);
  const body = await r.json();
  if (!r.ok) throw new Error((body.errors && body.errors[0] && body.errors[0].msg) || r.statusText);
  return body.data;
}

async function loadServices() {
  const services = await api('/api/services');
  const sel = $('#service');
  for (const s of services) sel.insertAdjacentHTML('beforeend', `<option value="${esc(s)}">${esc(s)}</option>`);
}
async function loadOperations() {
  const sel = $('#operation');
  sel.innerHTML = '<option value="">All</option>';
  const service = $('#service').value;
  if (!service) return;
  for (const op of await api(`/api/services/${encodeURIComponent(service)}/operations`)) {
    sel.insertAdjacentHTML('beforeend', `<option value="${esc(op)}">${esc(op)}</option>`);
  }
}

function searchParams() {
  const p = new URLSearchParams();
  const traceId = $('#trace-id').value.trim();
  if (traceId) p.set('traceID', traceId);
  const service = $('#service').value;
  if (service) p.set('service', service);
  if ($('#operation').value) p.set('operation', $('#operation').value);
  for (const [id, name] of [['#region', 'region'], ['#environment', 'environment'], ['#component', 'component'],
    ['#instance', 'instance'], ['#url', 'url'], ['#method', 'http_method'], ['#http-status', 'http_status'],
    ['#dmin', 'trace_duration_min'], ['#dmax', 'trace_duration_max']]) {
    const v = $(id).value.trim();
    if (v) p.set(name, v);
  }
  if ($('#url').value.trim() && $('#url-exact').checked) p.set('url_exact', 'true');
  for (const pair of $('#tags').value.split(/\s+/).filter(Boolean)) {
    if (pair.indexOf('=') > 0) p.append('param', pair);
  }
  if ($('#range').value === 'custom') {
    const now = Date.now() * 1000;
    p.set('start', String($('#from').value ? new Date($('#from').value).getTime() * 1000 : now - 1200e6));
    p.set('end', String($('#to').value ? new Date($('#to').value).getTime() * 1000 : now));
  } else {
    p.set('preset', $('#range').value);
    p.set('tz_offset', String(-new Date().getTimezoneOffset()));
  }
  if ($('#outcome').value === 'errors') p.set('errors_only', 'true');
  if ($('#outcome').value === 'successes') p.set('successes_only', 'true');
  p.set('limit', $('#limit').value || '50');
  p.set('sort', sortBy);
  p.set('order', order);
  return p;
}

async function search(ev) {
  if (ev) ev.preventDefault();
  const status = $('#status');
  status.textContent = 'Searching…';
  try {
    const list = await api(`/api/v1/traces?${searchParams()}`);
    const body = $('#results tbody');
    const link = (t, text) => `<a href="#/trace/${esc(t.traceID)}">${esc(text)}</a>`;
    body.innerHTML = list
      .map(
        (t) => `<tr class="row" data-trace="${esc(t.traceID)}">
          <td>${esc(t.httpMethod || '')}</td>
          <td>${link(t, t.restUrl || `${t.rootService}: ${t.rootOperation}`)}</td>
          <td>${esc(fmtTime(t.startTime))}</td>
          <td class="${t.error ? 'err' : 'ok'}">${esc(t.httpStatus || (t.error ? 'Error' : 'OK'))}</td>
          <td>${esc(fmtDuration(t.duration))}</td>
          <td>${link(t, t.traceID)}</td>
          <td>${esc(t.component || '')}</td>
          <td>${esc(t.environment || '')}</td>
          <td>${esc([t.instanceHost, t.instanceIp].filter(Boolean).join(' / ') || t.instanceId || '')}</td>
          <td>${esc(t.httpUrl || '')}</td>
          <td>${t.logsUrl ? `<a class="logs-link" href="#/trace/${esc(t.traceID)}/logs">View logs</a>` : ''}</td>
        </tr>`,
      )
      .join('');
    $('#results').hidden = list.length === 0;
    status.textContent = list.length ? `${list.length} traces` : 'No traces found';
  } catch (e) {
    status.textContent = `Search failed: ${e.message}`;
  }
}

function flatten(nodes, out) {
  // iterative pre-order walk: trees can be deep
  const stack = [...nodes].reverse();
  while (stack.length) {
    const n = stack.pop();
    out.push(n);
    for (let i = n.children.length - 1; i >= 0; i--) stack.push(n.children[i]);
  }
  return out;
}

function kvTable(title, kvs) {
  if (!kvs || !kvs.length) return '';
  return `<h4>${esc(title)}</h4><table>${kvs.map((kv) => `<tr><td>${esc(kv.key)}</td><td>${esc(JSON.stringify(kv.value))}</td></tr>`).join('')}</table>`;
}

// A request's function log lines (/api/v1/logs), as a block of text: shared by the
// trace page and the function page's record.
async function requestLogs(requestId) {
  const r = await authFetch(`/api/v1/logs?requestId=${encodeURIComponent(requestId)}`);
  const v = await r.json();
  if (!r.ok) return `<p>Cannot load logs: ${esc((v.errors && v.errors[0] && v.errors[0].msg) || r.statusText)}</p>`;
  if (!v.data.length) return '<p>No log lines.</p>';
  const text = v.data
    .map((l) => `${new Date(l.time / 1000).toISOString()} ${l.stream.padEnd(8)} ${l.message}`)
    .join('\n');
  return `<pre class="logs" data-request="${esc(requestId)}">${esc(text)}</pre>`;
}

function showDetails(node) {
  const s = node.span;
  const logs = s.logs
    .map((l) => kvTable(`Log at ${fmtTime(l.timestamp)}`, l.fields))
    .join('');
  const d = $('#details');
  d.hidden = false;
  d.innerHTML = `<h3>${esc(s.operationName)} <small>${esc(s.serviceName)} · ${esc(s.spanID)}</small></h3>
    <p>Duration ${esc(fmtDuration(s.duration))}, self time ${esc(fmtDuration(node.selfTime))}</p>
    ${s.warnings.map((w) => `<p class="warnings">${esc(w)}</p>`).join('')}
    ${kvTable('Tags', s.tags)}${logs}${kvTable('Process', s.processTags)}`;
}

async function showTrace(id, jumpToLogs) {
  $('#search-page').hidden = true;
  $('#trace-page').hidden = false;
  $('#details').hidden = true;
  $('#trace-title').textContent = `Trace ${id}`;
  const body = $('#waterfall tbody');
  body.innerHTML = '';
  let tree;
  try {
    tree = await api(`/api/v1/traces/${encodeURIComponent(id)}/tree`);
  } catch (e) {
    $('#trace-summary').textContent = e.message;
    return;
  }
  const sum = tree.summary;
  $('#trace-summary').innerHTML = `<span>Start <b>${esc(fmtTime(sum.startTime))}</b></span>
    <span>Duration <b>${esc(fmtDuration(sum.duration))}</b></span>
    <span>Applications <b>${sum.serviceCount}</b></span>
    <span>Depth <b>${sum.depth}</b></span>
    <span>Spans <b>${sum.spanCount}</b></span>
    <span>Errors <b>${sum.errorCount}</b></span>`;
  $('#trace-warnings').innerHTML = sum.warnings.map((w) => `<li>${esc(w)}</li>`).join('');
  const nodes = flatten(tree.roots, []);
  $('#topology .body').innerHTML = TraceViews.topology(nodes);
  $('#sequence .body').innerHTML = TraceViews.sequence(nodes);
  $('#download').onclick = () => TraceViews.download(id);
  const total = Math.max(sum.duration, 1);
  body.innerHTML = nodes
    .map((n, i) => {
      const s = n.span;
      const left = ((s.startTime - sum.startTime) / total) * 100;
      const width = Math.max((s.duration / total) * 100, 0.2);
      const classes = ['row', s.platform ? 'platform' : 'user', s.error ? 'error' : ''].join(' ');
      return `<tr class="${classes}" data-index="${i}" data-span="${esc(s.spanID)}">
        <td class="name"><span class="op" style="--indent:${n.depth * 16}px">${esc(s.operationName)}</span></td>
        <td class="timeline"><div class="bar-track"><div class="bar" style="left:${left}%;width:${width}%" title="${esc(fmtDuration(s.duration))}"></div></div></td>
        <td>${esc(s.serviceName)}</td>
        <td>+${esc(fmtDuration(s.startTime - sum.startTime))}</td>
        <td>${esc(s.host || '')}</td>
        <td class="${s.error ? 'err' : 'ok'}">${s.error ? 'Error' : 'OK'}</td>
      </tr>`;
    })
    .join('');
  body.onclick = (ev) => {
    const tr = ev.target.closest('tr');
    if (tr) showDetails(nodes[Number(tr.dataset.index)]);
  };
  // the logs of each invocation in the trace (platform spans carry its request id)
  const requests = [...new Set(nodes.flatMap((n) => (n.span.tags || [])
    .filter((t) => t.key === 'fc.request_id').map((t) => String(t.value))))];
  const logs = $('#trace-logs');
  logs.innerHTML = '';
  for (const id of requests) {
    logs.insertAdjacentHTML('beforeend', `<h3>Logs of request ${esc(id)}</h3>${await requestLogs(id)}`);
  }
  if (jumpToLogs) logs.scrollIntoView();
}

function route() {
  // #/functions… belongs to functions.js
  if (location.hash.startsWith('#/functions')) return;
  for (const id of ['#functions-page', '#function-page', '#fn-toolbar']) $(id).hidden = true;
  const m = location.hash.match(/^#\/trace\/([0-9a-fA-F]+)(\/logs)?/);
  if (m) return showTrace(m[1], Boolean(m[2]));
  $('#trace-page').hidden = true;
  $('#search-page').hidden = false;
}

$('#search').addEventListener('submit', search);
$('#service').addEventListener('change', loadOperations);
$('#range').addEventListener('change', () => ($('#custom-range').hidden = $('#range').value !== 'custom'));
$('#lookup').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const id = $('#lookup-id').value.trim();
  if (id) location.hash = `#/trace/${id}`;
});
for (const th of document.querySelectorAll('th.sortable')) {
  th.addEventListener('click', () => {
    // descending, then ascending, then back to the default (newest first)
    if (sortBy !== th.dataset.sort) [sortBy, order] = [th.dataset.sort, 'desc'];
    else if (order === 'desc') order = 'asc';
    else [sortBy, order] = ['start', 'desc'];
    for (const o of document.querySelectorAll('th.sortable')) {
      o.textContent = o.textContent.replace(/ [▾▴]$/, '');
      if (o.dataset.sort === sortBy) o.textContent += order === 'desc' ? ' ▾' : ' ▴';
    }
    search();
  });
}
$('#results').addEventListener('click', (ev) => {
  const tr = ev.target.closest('tr.row');
  if (tr && ev.target.tagName !== 'A') location.hash = `#/trace/${tr.dataset.trace}`;
});
window.addEventListener('hashchange', route);
loadServices().catch((e) => ($('#status').textContent = `Cannot load applications: ${e.message}`));
route();
