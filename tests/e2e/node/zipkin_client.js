// A real Zipkin client (npm `zipkin` with `zipkin-transport-http`, JSON v2) sending to
// fctrace's Zipkin port (ENDPOINT): a server span `GET /checkout` on zipkin-node, its
// client child `get-inventory` to the remote service `inventory` with an annotation and
// an error tag, and a local span. 128-bit trace ids. Prints the trace id it used.
const {
  Tracer, BatchRecorder, ExplicitContext, Annotation, InetAddress, jsonEncoder,
} = require('zipkin');
const { HttpLogger } = require('zipkin-transport-http');

const logger = new HttpLogger({
  endpoint: process.env.ENDPOINT + '/api/v2/spans',
  jsonEncoder: jsonEncoder.JSON_V2,
  httpInterval: 60000,
});
logger.on('success', () => process.exit(0));
logger.on('error', (e) => { console.error(String(e)); process.exit(1); });
const tracer = new Tracer({
  ctxImpl: new ExplicitContext(),
  recorder: new BatchRecorder({ logger }),
  localServiceName: 'zipkin-node',
  traceId128Bit: true,
});

const rootId = tracer.createRootId();
tracer.setId(rootId);
tracer.recordServiceName('zipkin-node');
tracer.recordRpc('GET /checkout');
tracer.recordAnnotation(new Annotation.ServerRecv());
tracer.recordAnnotation(new Annotation.LocalAddr({ host: new InetAddress('127.0.0.1'), port: 8080 }));
tracer.recordBinary('http.path', '/checkout');

const childId = tracer.createChildId();
tracer.setId(childId);
tracer.recordServiceName('zipkin-node');
tracer.recordRpc('get-inventory');
tracer.recordAnnotation(new Annotation.ClientSend());
tracer.recordAnnotation(new Annotation.ServerAddr({
  serviceName: 'inventory', host: new InetAddress('10.0.0.5'), port: 9000,
}));
tracer.recordMessage('retrying');
tracer.recordBinary('error', 'upstream timeout');
tracer.recordAnnotation(new Annotation.ClientRecv());

tracer.setId(rootId);
tracer.local('render', () => 42);
tracer.setId(rootId);
tracer.recordAnnotation(new Annotation.ServerSend());

console.log(rootId.traceId);
// send what the recorder has now instead of waiting for the interval
setTimeout(() => logger.processQueue(logger.fetchImplementation), 50);
