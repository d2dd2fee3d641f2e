// Real remote-sampling clients polling fctrace's sampling port: jaeger-client's remote
// sampler and @opentelemetry/sampler-jaeger-remote. Usage: node remote_sampling.js EXPECTED
// where EXPECTED is "all" or "none". Polls until both clients decide as expected (or 10 s
// pass), then prints {"jaeger": sampled, "otel": sampled, "of": N}.
const { initTracer } = require('jaeger-client');
const { JaegerRemoteSampler } = require('@opentelemetry/sampler-jaeger-remote');
const { AlwaysOffSampler, AlwaysOnSampler } = require('@opentelemetry/sdk-trace-base');
const api = require('@opentelemetry/api');

const expected = process.argv[2];
const service = process.env.SERVICE;
const port = Number(process.env.SAMPLING_PORT);
const N = 50;
const tracer = initTracer(
  {
    serviceName: service,
    reporter: { collectorEndpoint: process.env.ENDPOINT + '/api/traces' },
    sampler: { type: 'remote', param: expected === 'all' ? 0 : 1, host: '127.0.0.1', port, refreshIntervalMs: 100 },
  },
  {},
);
const otel = new JaegerRemoteSampler({
  endpoint: `http://127.0.0.1:${port}`,
  serviceName: service,
  poolingInterval: 100,
  // start from the opposite of what is expected, so only the served rules can pass
  initialSampler: expected === 'all' ? new AlwaysOffSampler() : new AlwaysOnSampler(),
});

function count() {
  let jaeger = 0;
  let o = 0;
  for (let i = 0; i < N; i++) {
    const span = tracer.startSpan('op');
    if (span.context().isSampled()) jaeger++;
    span.finish();
    const traceId = (i + 1).toString(16).padStart(32, 'a');
    const r = otel.shouldSample(api.context.active(), traceId, 'op', api.SpanKind.SERVER, {}, []);
    if (r.decision === 2) o++;
  }
  return { jaeger, otel: o, of: N };
}

const want = expected === 'all' ? N : 0;
const deadline = Date.now() + 10000;
(function poll() {
  const c = count();
  if ((c.jaeger === want && c.otel === want) || Date.now() > deadline) {
    console.log(JSON.stringify(c));
    tracer.close(() => process.exit(0));
    return;
  }
  setTimeout(poll, 50);
})();
