// A Node function for fctrace's gateway, traced with jaeger-client.
//
// Custom-runtime HTTP protocol: listens on FC_SERVER_PORT, answers POST /initialize once
// per instance and POST /invoke per event (any other path through the HTTP trigger). Its
// spans are children of the platform's Invocation span (x-fc-tracing-opentracing-span-context)
// and go to the collector in x-fc-tracing-jaeger-endpoint.
const http = require('http');
const { initTracer, SpanContext } = require('jaeger-client');

const service = `${process.env.FC_SERVICE_NAME || 'demo'}-${process.env.FC_FUNCTION_NAME || 'node'}`;
let tracer = null;
let initialized = false;

function tracerFor(endpoint) {
  if (!tracer && endpoint) {
    tracer = initTracer(
      { serviceName: service, reporter: { collectorEndpoint: endpoint, flushIntervalMs: 10 }, sampler: { type: 'const', param: 1 } },
      { tags: { 'function.runtime': 'nodejs' } },
    );
  }
  return tracer;
}

function reply(res, status, body) {
  const data = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) });
  res.end(data);
}

http
  .createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const event = Buffer.concat(chunks).toString();
      if (req.method === 'POST' && req.url === '/initialize') {
        initialized = true;
        return reply(res, 200, { initialized: true });
      }
      const t = tracerFor(req.headers['x-fc-tracing-jaeger-endpoint']);
      const raw = req.headers['x-fc-tracing-opentracing-span-context'];
      const parent = raw ? SpanContext.fromString(raw) : null;
      if (t && parent) {
        const span = t.startSpan('node-handler', { childOf: parent });
        span.setTag('fc.request_id', req.headers['x-fc-request-id'] || '');
        const child = t.startSpan('node-render', { childOf: span });
        child.log({ event: 'rendered', bytes: event.length });
        child.finish();
        span.finish();
      }
      reply(res, 200, { language: 'node', path: req.url, initialized, event });
    });
  })
  .listen(Number(process.env.FC_SERVER_PORT || process.env.PORT || 9000), process.env.FC_SERVER_HOST || '127.0.0.1');
