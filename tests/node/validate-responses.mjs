// Validates live API responses against docs/openapi.yaml (issue 16: "a test validates a sample of
// live responses, every route at least once, errors included").
//
//   node tests/node/validate-responses.mjs docs/openapi.yaml samples.json
//
// samples.json: [{method, path (the spec's template), status, content_type, body}], as recorded
// by tests/integration/test_openapi_live.py. Each sample's status must be documented for its
// operation, its content type too, and a JSON body must validate against the response's schema
// (JSON Schema 2020-12, as OpenAPI 3.1 uses, by ajv). Every operation of the spec must have at
// least one sample. Prints one line per problem and "N passed, N failed"; exits 1 on any.
import fs from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const Ajv2020 = require("ajv/dist/2020").default;
const yaml = require("js-yaml");

const [specPath, samplesPath] = process.argv.slice(2);
const spec = yaml.load(fs.readFileSync(specPath, "utf8"));
const samples = JSON.parse(fs.readFileSync(samplesPath, "utf8"));
// Not strict: the spec's schemas carry OpenAPI's own keywords (example, ...).
const ajv = new Ajv2020({ strict: false, allErrors: false });
// The two formats the spec uses, as RFC 3339 says them (ajv knows none without a plugin).
ajv.addFormat("date-time", /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/);
ajv.addFormat("date", /^\d{4}-\d\d-\d\d$/);
ajv.addFormat("uri", /^[a-z][a-z0-9+.-]*:[^\s]*$/i);
const METHODS = ["get", "put", "post", "patch", "delete"];

function deref(obj) {
  let o = obj;
  while (o && o.$ref) {
    const parts = o.$ref.replace(/^#\//, "").split("/");
    o = parts.reduce((x, k) => (x ? x[k] : undefined), spec);
  }
  return o;
}

const validators = new Map();
function validatorFor(key, schema) {
  if (!validators.has(key)) {
    // The schema's #/components/... references resolve inside this wrapper.
    validators.set(key, ajv.compile({ ...schema, components: spec.components }));
  }
  return validators.get(key);
}

const problems = [];
const seen = new Set();
let passed = 0;
for (const s of samples) {
  const where = `${s.method} ${s.path} -> ${s.status}`;
  const op = spec.paths[s.path] && spec.paths[s.path][s.method.toLowerCase()];
  if (!op) {
    problems.push(`${where}: no such operation in the spec`);
    continue;
  }
  seen.add(`${s.method.toUpperCase()} ${s.path}`);
  const response = deref(op.responses[String(s.status)] || op.responses.default);
  if (!response) {
    problems.push(`${where}: status not documented`);
    continue;
  }
  if (!response.content) {
    if (s.body && s.body.length > 0) problems.push(`${where}: a body where none is documented`);
    else passed++;
    continue;
  }
  // The documented media type, by its full name or its type/subtype (a key may carry
  // parameters, as Prometheus' "text/plain; version=0.0.4" does).
  const ctype = (s.content_type || "").split(";")[0].trim();
  const mediaKey = Object.keys(response.content).find(
    (k) => k === s.content_type || k.split(";")[0].trim() === ctype);
  const media = mediaKey !== undefined ? response.content[mediaKey] : undefined;
  if (!media) {
    problems.push(`${where}: content type ${ctype} not documented (${Object.keys(response.content)})`);
    continue;
  }
  if (ctype !== "application/json" || !media.schema) {
    passed++;
    continue;
  }
  let doc;
  try {
    doc = JSON.parse(s.body);
  } catch (e) {
    problems.push(`${where}: not JSON: ${e.message}`);
    continue;
  }
  const validate = validatorFor(`${s.path} ${s.method} ${s.status} ${ctype}`, deref(media.schema));
  if (validate(doc)) {
    passed++;
  } else {
    const e = validate.errors[0];
    problems.push(`${where}: ${e.instancePath || "/"} ${e.message} ${JSON.stringify(e.params)}` +
      ` in ${s.body.slice(0, 300)}`);
  }
}
for (const [path, ops] of Object.entries(spec.paths)) {
  for (const m of METHODS) {
    if (ops[m] && !seen.has(`${m.toUpperCase()} ${path}`)) {
      problems.push(`${m.toUpperCase()} ${path}: no live response sampled`);
    }
  }
}
for (const p of problems) console.log(`FAIL ${p}`);
console.log(`${passed} passed, ${problems.length} failed`);
process.exit(problems.length > 0 ? 1 : 0);
