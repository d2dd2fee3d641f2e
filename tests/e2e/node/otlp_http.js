// A real OpenTelemetry JS SDK exporting OTLP/HTTP JSON to fctrace. Prints the trace id.
const api = require('@opentelemetry/api');
const { BasicTracerProvider, SimpleSpanProcessor } = require('@opentelemetry/sdk-trace-base');
const { resourceFromAttributes } = require('@opentelemetry/resources');
const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-http');

const exporter = new OTLPTraceExporter({ url: process.env.ENDPOINT + '/v1/traces' });
const provider = new BasicTracerProvider({
  resource: resourceFromAttributes({ 'service.name': process.env.SERVICE || 'node-otlp-e2e', 'deployment.environment': 'e2e' }),
  spanProcessors: [new SimpleSpanProcessor(exporter)],
});
const tracer = provider.getTracer('e2e-node', '1.0.0');
const root = tracer.startSpan('GET /items', { kind: api.SpanKind.SERVER, attributes: { 'http.method': 'GET' } });
const ctx = api.trace.setSpan(api.context.active(), root);
const child = tracer.startSpan('load-items', { attributes: { 'app.items': 7 } }, ctx);
child.addEvent('cache-miss', { key: 'user:42' });
child.setStatus({ code: api.SpanStatusCode.ERROR, message: 'cache down' });
child.end();
root.end();
console.log(root.spanContext().traceId);
provider.shutdown().then(() => process.exit(0));
