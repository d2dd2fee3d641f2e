// A real jaeger-client sending to fctrace's collector endpoint: a root span and a child
// with tags and a log. Prints the trace id it used.
const { initTracer } = require('jaeger-client');

const endpoint = process.env.ENDPOINT;
const service = process.env.SERVICE || 'node-e2e';
const tracer = initTracer(
  {
    serviceName: service,
    reporter: { collectorEndpoint: endpoint + '/api/traces', flushIntervalMs: 10 },
    sampler: { type: 'const', param: 1 },
  },
  { tags: { 'deploy.region': 'test-region' } },
);
const root = tracer.startSpan('handle-request');
root.setTag('span.kind', 'server');
const child = tracer.startSpan('query-db', { childOf: root });
child.setTag('db.system', 'mysql');
child.setTag('db.rows', 3);
child.log({ event: 'rows-read', count: 3 });
child.finish();
root.finish();
console.log(root.context().traceIdStr);
tracer.close(() => process.exit(0));
