// fctrace web UI: the Functions view (#/functions) and a function's page
// (#/functions/SERVICE/FUNCTION): per-minute metrics as charts drawn here as SVG (no
// library, no network), the function's live instances, and its requests, where a request
// id opens its record and, when sampled, its trace. Talks to /api/v1/functions,
// /api/v1/metrics, /api/v1/instances, /api/v1/invocations and /api/v1/logs like any client.
(() => {
  const $f = (sel) => document.querySelector(sel);
  const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  const api = async (path) => {
    const r = await authFetch(path);
    const v = await r.json();
    if (!r.ok) throw new Error((v.errors && v.errors[0] && v.errors[0].msg) || r.statusText);
    return v.data;
  };
  // range (seconds) -> the metric period that gives a readable chart
  const periodFor = (range) => (range <= 3600 ? 60 : range <= 6 * 3600 ? 300 : 3600);
  const range = () => Number($f('#fn-range').value);
  const dims = (svc, fn) => `service=${encodeURIComponent(svc)}&function=${encodeURIComponent(fn)}`;
  const lastSecs = (secs) => {
    const end = Date.now();
    return `start=${end - secs * 1000}&end=${end}`;
  };
  const metric = (name, svc, fn, secs, period) =>
    api(`/api/v1/metrics/${name}?${dims(svc, fn)}&${lastSecs(secs)}&period=${period}`);
  const sum = (pts) => pts.reduce((a, p) => a + p.value, 0);
  const fmt = (v, unit) => {
    if (v === null || v === undefined || Number.isNaN(v)) return '–';
    if (unit === 'ms') return v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(1)} ms`;
    if (unit === '%') return `${v.toFixed(1)} %`;
    if (unit === 'MB') return `${v.toFixed(1)} MB`;
    return Number.isInteger(v) ? String(v) : v.toFixed(2);
  };

  function show(section) {
    for (const id of ['#search-page', '#trace-page', '#functions-page', '#function-page']) {
      $f(id).hidden = id !== section;
    }
    $f('#fn-toolbar').hidden = false;
  }

  async function listFunctions() {
    show('#functions-page');
    const body = $f('#functions tbody');
    const status = $f('#functions-status');
    status.textContent = 'Loading…';
    const secs = range();
    const period = 3600;
    try {
      const fns = await api('/api/v1/functions');
      const rows = await Promise.all(fns.map(async (f) => {
        const [calls, ferr, serr, p99, cold] = await Promise.all(
          ['FunctionTotalInvocations', 'FunctionFunctionErrors', 'FunctionServerErrors',
            'FunctionLatencyP99', 'FunctionColdStarts']
            .map((m) => metric(m, f.serviceName, f.functionName, secs, period)),
        );
        const n = sum(calls);
        return { f, n, errors: sum(ferr) + sum(serr),
          p99: p99.length ? Math.max(...p99.map((p) => p.value)) : null,
          cold: n ? (100 * sum(cold)) / n : null };
      }));
      body.innerHTML = rows.map(({ f, n, errors, p99, cold }) => {
        const href = `#/functions/${encodeURIComponent(f.serviceName)}/${encodeURIComponent(f.functionName)}`;
        return `<tr class="row" data-href="${href}"><td><a href="${href}">${esc(f.serviceName)}/${esc(f.functionName)}</a></td>
          <td>${n}</td><td class="${errors ? 'err' : ''}">${errors}</td><td>${fmt(p99, 'ms')}</td>
          <td>${fmt(cold, '%')}</td><td>${f.memoryMB} MB</td></tr>`;
      }).join('');
      $f('#functions').hidden = false;
      status.textContent = rows.length ? '' : 'No functions are declared (--functions).';
    } catch (e) {
      status.textContent = `Cannot load functions: ${e.message}`;
    }
  }

  // A line chart of one or more series [{name, points:[{timestamp, value}]}] over
  // [from, to] (ms), as an SVG string.
  function chart(title, unit, series, from, to) {
    const W = 520, H = 170, L = 56, R = 10, T = 24, B = 28;
    const all = series.flatMap((s) => s.points.map((p) => p.value));
    const max = all.length ? Math.max(...all, 0) : 0;
    const top = max > 0 ? max * 1.1 : 1;
    const x = (t) => L + ((t - from) / Math.max(to - from, 1)) * (W - L - R);
    const y = (v) => T + (1 - v / top) * (H - T - B);
    const colors = ['#1f77b4', '#c0392b', '#6b4fbb', '#2e7d32'];
    const lines = series.map((s, i) => {
      const pts = s.points.map((p) => `${x(p.timestamp).toFixed(1)},${y(p.value).toFixed(1)}`);
      const dots = s.points.length === 1
        ? `<circle cx="${pts[0].split(',')[0]}" cy="${pts[0].split(',')[1]}" r="3" fill="${colors[i % 4]}"/>` : '';
      return `<polyline class="series" fill="none" stroke="${colors[i % 4]}" stroke-width="2" points="${pts.join(' ')}"/>${dots}`;
    }).join('');
    const legend = series.map((s, i) =>
      `<tspan fill="${colors[i % 4]}">■ ${esc(s.name)}</tspan>`).join(' ');
    const time = (t) => new Date(t).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    return `<figure class="chart" data-metric="${esc(title)}">
      <svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(title)}">
        <text x="${L}" y="15" class="title">${esc(title)} <tspan class="unit">(${esc(unit)})</tspan></text>
        <text x="${W - R}" y="15" text-anchor="end" class="legend">${legend}</text>
        <line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" class="axis"/>
        <line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" class="axis"/>
        <text x="${L - 4}" y="${T + 4}" text-anchor="end" class="tick">${fmt(top, '')}</text>
        <text x="${L - 4}" y="${H - B}" text-anchor="end" class="tick">0</text>
        <text x="${L}" y="${H - 8}" class="tick">${time(from)}</text>
        <text x="${W - R}" y="${H - 8}" text-anchor="end" class="tick">${time(to)}</text>
        ${lines}
        ${all.length ? '' : `<text x="${(L + W) / 2}" y="${H / 2}" text-anchor="middle" class="tick">no calls in this range</text>`}
      </svg></figure>`;
  }

  const CHARTS = [
    ['Invocations', 'count', [['FunctionTotalInvocations', 'calls']]],
    ['Errors', 'count', [['FunctionFunctionErrors', 'function'], ['FunctionServerErrors', 'server'],
      ['FunctionClientErrors', 'client']]],
    ['Throttles', 'count', [['FunctionConcurrencyThrottles', '429'], ['FunctionResourceThrottles', '503']]],
    ['Latency', 'ms', [['FunctionLatencyP50', 'p50'], ['FunctionLatencyP99', 'p99'], ['FunctionLatencyAvg', 'avg']]],
    ['Cold starts', 'count', [['FunctionColdStarts', 'cold starts']]],
    ['Memory', 'MB', [['FunctionMaxMemoryUsage', 'max used'], ['FunctionMemoryLimitMB', 'limit']]],
  ];

  async function showFunction(svc, fn) {
    show('#function-page');
    $f('#fn-title').textContent = `${svc}/${fn}`;
    const status = $f('#function-status');
    status.textContent = 'Loading…';
    const secs = range();
    const period = periodFor(secs);
    const to = Date.now();
    const from = to - secs * 1000;
    try {
      const charts = await Promise.all(CHARTS.map(async ([title, unit, metrics]) => {
        const series = await Promise.all(metrics.map(async ([m, name]) =>
          ({ name, points: await metric(m, svc, fn, secs, period) })));
        return chart(title, unit, series, from, to);
      }));
      $f('#fn-charts').innerHTML = charts.join('');
      const instances = await api(`/api/v1/instances?${dims(svc, fn)}`);
      $f('#fn-instances tbody').innerHTML = instances.map((i) => `<tr>
        <td>${esc(i.instanceID)}</td><td>${fmt(i.cpuPercent, '%')}</td><td>${fmt(i.memoryUsageMB, 'MB')}</td>
        <td>${fmt(i.memoryUsagePercent, '%')}</td><td>${i.concurrentRequests}</td>
        <td>${i.rxTotalBytes} / ${i.txTotalBytes}</td><td>${esc(i.ipAddress)}</td></tr>`).join('')
        || '<tr><td colspan="7">No live instance.</td></tr>';
      const start = (to - secs * 1000) * 1000;
      const calls = await api(`/api/v1/invocations?${dims(svc, fn)}&start=${start}&limit=50`);
      $f('#fn-requests tbody').innerHTML = calls.map((c) => `<tr class="row" data-request="${esc(c.requestId)}">
        <td><a href="#/functions/${encodeURIComponent(svc)}/${encodeURIComponent(fn)}" data-request="${esc(c.requestId)}">${esc(c.requestId)}</a></td>
        <td>${new Date(c.startTime / 1000).toLocaleTimeString()}</td><td>${fmt(c.durationMs, 'ms')}</td>
        <td class="${c.hasFunctionError || c.statusCode >= 500 ? 'err' : 'ok'}">${c.statusCode}</td>
        <td>${esc(c.errorType || '')}</td><td>${c.isColdStart ? 'cold' : ''}</td></tr>`).join('')
        || '<tr><td colspan="6">No requests in this range.</td></tr>';
      status.textContent = '';
    } catch (e) {
      status.textContent = `Cannot load ${svc}/${fn}: ${e.message}`;
    }
  }

  async function showRecord(id) {
    const box = $f('#fn-record');
    try {
      const r = await api(`/api/v1/invocations/${encodeURIComponent(id)}`);
      const trace = r.isSampled && r.traceContext ? r.traceContext.split(':')[0] : null;
      box.innerHTML = `<h3>Request ${esc(r.requestId)}</h3>
        ${trace ? `<p><a id="fn-record-trace" href="#/trace/${esc(trace)}">Open its trace</a></p>` : '<p>Not sampled: no trace.</p>'}
        <table>${Object.entries(r).map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`).join('')}</table>
        <h4>Logs</h4><div id="fn-record-logs"></div>`;
      box.hidden = false;
      // requestLogs is app.js's (loaded first)
      $f('#fn-record-logs').innerHTML = await requestLogs(r.requestId);
    } catch (e) {
      box.textContent = `Cannot load request ${id}: ${e.message}`;
      box.hidden = false;
    }
  }

  function route() {
    const m = location.hash.match(/^#\/functions(?:\/([^/]+)\/([^/]+))?\/?$/);
    if (!m) return;
    $f('#fn-record').hidden = true;
    if (m[1]) showFunction(decodeURIComponent(m[1]), decodeURIComponent(m[2]));
    else listFunctions();
  }

  $f('#fn-range').addEventListener('change', route);
  $f('#functions').addEventListener('click', (ev) => {
    const tr = ev.target.closest('tr.row');
    if (tr && ev.target.tagName !== 'A') location.hash = tr.dataset.href;
  });
  $f('#fn-requests').addEventListener('click', (ev) => {
    const el = ev.target.closest('[data-request]');
    if (!el) return;
    ev.preventDefault();
    showRecord(el.dataset.request);
  });
  window.addEventListener('hashchange', route);
  route();
})();
