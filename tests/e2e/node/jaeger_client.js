// A real jaeger-client sending to fctrace's collector endpoint (ENDPOINT), or with its
// default UDP sender to an agent port (AGENT=host:port; jaeger-client writes thrift binary
// there): a root span and a child with tags and a log. Prints the trace id it used.
const { initTracer } = require('jaeger-client');

const endpoint = process.env.ENDPOINT;
const service = process.env.SERVICE || 'node-e2e';
const agent = process.env.AGENT;
const reporter = agent
  ? { agentHost: agent.split(':')[0], agentPort: Number(agent.split(':')[1]), flushIntervalMs: 10 }
  : { collectorEndpoint: endpoint + '/api/traces', flushIntervalMs: 10 };
const tracer = initTracer(
  {
    serviceName: service,
    reporter,
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
