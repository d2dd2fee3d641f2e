// fctrace web UI: a trace's topology (the applications it went through, with the calls
// between them) and its sequence (each call between applications, in time order, with the
// caller's and the callee's time side by side), drawn as SVG from the tree API's nodes;
// and the trace's download as JSON. Used by app.js's trace page.
'use strict';

const TraceViews = (() => {
  const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
  const ms = (us) => `${(us / 1000).toFixed(us < 10000 ? 2 : 0)}ms`;

  // Calls between applications: a span whose parent belongs to another application.
  // `nodes` are the tree API's nodes in pre-order. A span placed under a node only because
  // its own parent is missing (a repair) is no call.
  function calls(nodes) {
    const out = [];
    const visit = (n) => {
      for (const c of n.children) {
        if (c.span.parentSpanID === n.span.spanID && c.span.serviceName !== n.span.serviceName) {
          out.push({
            from: n.span.serviceName,
            to: c.span.serviceName,
            operation: c.span.operationName,
            start: c.span.startTime,
            client: n.span.duration,
            server: c.span.duration,
            error: c.span.error,
          });
        }
      }
    };
    nodes.forEach(visit);
    return out.sort((a, b) => a.start - b.start);
  }

  // Applications in the order they first appear (a root's first).
  function applications(nodes) {
    const seen = [];
    for (const n of nodes) if (!seen.includes(n.span.serviceName)) seen.push(n.span.serviceName);
    return seen;
  }

  function topology(nodes) {
    const apps = applications(nodes);
    const edges = new Map();
    for (const c of calls(nodes)) {
      const k = `${c.from}\u0000${c.to}`;
      edges.set(k, (edges.get(k) || 0) + 1);
    }
    // columns by distance from the first application
    const level = new Map([[apps[0], 0]]);
    let changed = true;
    while (changed) {
      changed = false;
      for (const k of edges.keys()) {
        const [a, b] = k.split('\u0000');
        if (level.has(a) && !level.has(b)) { level.set(b, level.get(a) + 1); changed = true; }
      }
    }
    for (const a of apps) if (!level.has(a)) level.set(a, 0);
    const rows = new Map();
    const pos = new Map();
    const W = 250, H = 70, BW = 160, BH = 34;
    for (const a of apps) {
      const col = level.get(a);
      const row = rows.get(col) || 0;
      rows.set(col, row + 1);
      pos.set(a, { x: 20 + col * W, y: 20 + row * H });
    }
    const width = 40 + (Math.max(...level.values()) + 1) * W;
    const height = 40 + Math.max(...rows.values()) * H;
    const lines = [...edges].map(([k, n]) => {
      const [a, b] = k.split('\u0000');
      const p = pos.get(a), q = pos.get(b);
      const x1 = p.x + BW, y1 = p.y + BH / 2, x2 = q.x, y2 = q.y + BH / 2;
      return `<g class="edge" data-from="${esc(a)}" data-to="${esc(b)}"><line x1="${x1}" y1="${y1}" x2="${x2}" y2="${y2}" marker-end="url(#arrow)"/>
        <text x="${(x1 + x2) / 2}" y="${(y1 + y2) / 2 - 6}" text-anchor="middle">${n} call${n > 1 ? 's' : ''}</text></g>`;
    });
    const boxes = apps.map((a) => {
      const p = pos.get(a);
      return `<g class="app" data-app="${esc(a)}"><rect x="${p.x}" y="${p.y}" width="${BW}" height="${BH}" rx="6"/>
        <text x="${p.x + BW / 2}" y="${p.y + BH / 2 + 4}" text-anchor="middle">${esc(a)}</text></g>`;
    });
    return `<svg width="${width}" height="${height}" role="img" aria-label="topology">
      <defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z"/></marker></defs>
      ${lines.join('')}${boxes.join('')}</svg>`;
  }

  function sequence(nodes) {
    const apps = applications(nodes);
    const list = calls(nodes);
    if (!list.length) return '<p>No calls between applications: one application did everything.</p>';
    const COL = 220, TOP = 40, ROW = 44;
    const x = (a) => 110 + apps.indexOf(a) * COL;
    const height = TOP + list.length * ROW + 20;
    const width = 40 + apps.length * COL;
    const heads = apps.map((a) => `<g class="lifeline" data-app="${esc(a)}"><text x="${x(a)}" y="20" text-anchor="middle">${esc(a)}</text>
      <line x1="${x(a)}" y1="28" x2="${x(a)}" y2="${height - 5}"/></g>`);
    const arrows = list.map((c, i) => {
      const y = TOP + i * ROW + 20;
      const x1 = x(c.from), x2 = x(c.to);
      return `<g class="call${c.error ? ' error' : ''}" data-from="${esc(c.from)}" data-to="${esc(c.to)}" data-client="${c.client}" data-server="${c.server}">
        <line x1="${x1}" y1="${y}" x2="${x2}" y2="${y}" marker-end="url(#arrow2)"/>
        <text x="${(x1 + x2) / 2}" y="${y - 6}" text-anchor="middle">${esc(c.operation)}</text>
        <text class="times" x="${(x1 + x2) / 2}" y="${y + 14}" text-anchor="middle">client ${ms(c.client)} · server ${ms(c.server)}</text></g>`;
    });
    return `<svg width="${width}" height="${height}" role="img" aria-label="sequence">
      <defs><marker id="arrow2" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z"/></marker></defs>
      ${heads.join('')}${arrows.join('')}</svg>`;
  }

  // The trace as Jaeger's JSON (/api/traces/{id}), saved as a file.
  async function download(id) {
    const r = await authFetch(`/api/traces/${encodeURIComponent(id)}`);
    const blob = new Blob([await r.text()], { type: 'application/json' });
    const a = document.createElement('a');
    a.href = URL.createObjectURL(blob);
    a.download = `trace-${id}.json`;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }

  return { topology, sequence, download, calls };
})();
