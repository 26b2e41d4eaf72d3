// deploy/kubernetes: every manifest validates against its schema (kubernetes-models for the
// core, apps, Gateway API and Prometheus Operator kinds; schemas/inferencepool-v1.schema.json
// for the InferencePool CRD, which no npm package ships), and the Deployments agree with the
// llmux.yaml in the ConfigMap as llmuxd's own loader reads it (`llmux check-config`): probe
// paths, ports, and drain timings against terminationGracePeriodSeconds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import Ajv from 'ajv';
import { ConfigMap, Secret, Service } from 'kubernetes-models/v1';
import { Deployment } from 'kubernetes-models/apps/v1';
import { HTTPRoute } from '@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1';
import { PodMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { BUILD_DIR } from './harness.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const DEPLOY = path.join(HERE, '..', '..', 'deploy', 'kubernetes');
const ajv = new Ajv({ allErrors: true });
const inferencePool = ajv.compile(JSON.parse(fs.readFileSync(path.join(HERE, 'schemas', 'inferencepool-v1.schema.json'), 'utf8')));

const MODELS = {
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'apps/v1/Deployment': Deployment,
  'gateway.networking.k8s.io/v1/HTTPRoute': HTTPRoute,
  'monitoring.coreos.com/v1/PodMonitor': PodMonitor,
};

// Throws with the schema's message when `doc` is invalid.
function validate(doc) {
  const key = `${doc.apiVersion}/${doc.kind}`;
  if (key === 'inference.networking.k8s.io/v1/InferencePool') {
    if (!inferencePool(doc)) throw new Error(`InferencePool: ${ajv.errorsText(inferencePool.errors)}`);
    return;
  }
  const Model = MODELS[key];
  if (!Model) throw new Error(`no schema for ${key}`);
  new Model(doc).validate();
}

function loadAll() {
  const docs = [];
  for (const file of fs.readdirSync(DEPLOY).filter((f) => f.endsWith('.yaml')).sort()) {
    for (const d of YAML.parseAllDocuments(fs.readFileSync(path.join(DEPLOY, file), 'utf8'))) {
      assert.deepEqual(d.errors, [], `${file}: YAML errors`);
      docs.push({ file, doc: d.toJS() });
    }
  }
  return docs;
}

test('every manifest in deploy/kubernetes validates against its schema', () => {
  const docs = loadAll();
  const kinds = docs.map(({ doc }) => doc.kind).sort();
  assert.deepEqual(kinds, ['ConfigMap', 'Deployment', 'Deployment', 'Deployment', 'HTTPRoute',
    'InferencePool', 'PodMonitor', 'Secret', 'Service', 'Service']);
  for (const { file, doc } of docs) {
    assert.doesNotThrow(() => validate(doc), `${file} ${doc.kind}/${doc.metadata?.name}`);
  }
});

test('the validation rejects broken manifests (it can fail)', () => {
  const docs = loadAll();
  const dep = structuredClone(docs.find(({ doc }) => doc.kind === 'Deployment').doc);
  dep.spec.template.spec.containers[0].readinessProbe.periodSeconds = 'often';
  assert.throws(() => validate(dep));
  const route = structuredClone(docs.find(({ doc }) => doc.kind === 'HTTPRoute').doc);
  route.spec.rules[0].matches[0].path.type = 'Glob';
  assert.throws(() => validate(route));
  const pool = structuredClone(docs.find(({ doc }) => doc.kind === 'InferencePool').doc);
  pool.spec.targetPortNumber = 8080;  // the v1alpha2 field name
  assert.throws(() => validate(pool), /additional properties/);
  const pool2 = structuredClone(docs.find(({ doc }) => doc.kind === 'InferencePool').doc);
  pool2.spec.endpointPickerRef.failureMode = 'FailSometimes';
  assert.throws(() => validate(pool2));
});

function checkConfig(configMap, key) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmux-deploy-'));
  try {
    fs.writeFileSync(path.join(dir, 'llmux.yaml'), configMap.data[key]);
    fs.writeFileSync(path.join(dir, 'tenants.yaml'), configMap.data['tenants.yaml']);
    const out = execFileSync(path.join(BUILD_DIR, 'llmux'),
      ['check-config', path.join(dir, 'llmux.yaml'), '--tenants', path.join(dir, 'tenants.yaml')],
      { encoding: 'utf8' });
    return JSON.parse(out);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

test('Deployments agree with the llmux.yaml they mount: probes, ports, drain timings', () => {
  assert.ok(BUILD_DIR && fs.existsSync(path.join(BUILD_DIR, 'llmux')), 'LLMUX_BUILD_DIR with the llmux tool');
  const docs = loadAll().map(({ doc }) => doc);
  const configMap = docs.find((d) => d.kind === 'ConfigMap');
  const deployments = docs.filter((d) => d.kind === 'Deployment' && d.metadata.name.startsWith('llmux-') && d.metadata.name !== 'llmux-redis');
  assert.deepEqual(deployments.map((d) => d.metadata.name).sort(), ['llmux-cpu', 'llmux-gpu']);
  const pool = docs.find((d) => d.kind === 'InferencePool');
  const service = docs.find((d) => d.kind === 'Service' && d.metadata.name === 'llmux');
  const monitor = docs.find((d) => d.kind === 'PodMonitor');
  for (const dep of deployments) {
    const pod = dep.spec.template.spec;
    const volume = pod.volumes.find((v) => v.name === 'config');
    const key = volume.configMap.items.find((i) => i.path === 'llmux.yaml').key;
    assert.equal(volume.configMap.name, configMap.metadata.name);
    const cfg = checkConfig(configMap, key);
    const c = pod.containers[0];
    const mount = c.volumeMounts.find((m) => m.name === 'config').mountPath;
    assert.deepEqual(c.args, ['--config', `${mount}/llmux.yaml`]);
    const port = (name) => c.ports.find((p) => p.name === name)?.containerPort;
    assert.equal(port('http'), cfg.port, `${dep.metadata.name}: http port vs server.listen`);
    assert.equal(port('metrics'), cfg.metrics_port, `${dep.metadata.name}: metrics port vs server.metrics_listen`);
    assert.equal(c.livenessProbe.httpGet.path, cfg.probes.liveness);
    assert.equal(c.readinessProbe.httpGet.path, cfg.probes.readiness);
    assert.equal(c.startupProbe.httpGet.path, cfg.probes.liveness);
    for (const p of [c.livenessProbe, c.readinessProbe, c.startupProbe]) assert.equal(p.httpGet.port, 'http');
    // Readiness must turn within the grace, or a balancer still routes after it.
    assert.ok(c.readinessProbe.periodSeconds * c.readinessProbe.failureThreshold * 1000 <= cfg.drain_grace_ms,
      `${dep.metadata.name}: readiness reacts within server.drain_grace`);
    // The kubelet must not SIGKILL before llmuxd's own drain ends.
    const preStop = c.lifecycle.preStop.sleep.seconds;
    assert.ok(pod.terminationGracePeriodSeconds >= preStop + Math.ceil(cfg.drain_timeout_ms / 1000) + 5,
      `${dep.metadata.name}: terminationGracePeriodSeconds ${pod.terminationGracePeriodSeconds} < preStop ${preStop} + drain_timeout ${cfg.drain_timeout_ms}ms + 5s`);
    // A startup probe long enough for a model load, and liveness slower than the stall check.
    assert.ok(c.startupProbe.periodSeconds * c.startupProbe.failureThreshold >= 300);
    assert.ok(c.livenessProbe.periodSeconds * c.livenessProbe.failureThreshold * 1000 >= cfg.health_stall_timeout_ms);
    assert.equal(pool.spec.targetPorts[0].number, cfg.port, 'InferencePool targetPorts vs server.listen');
    assert.ok(cfg.trusted_proxies.length > 0);
    for (const [k, v] of Object.entries(pool.spec.selector.matchLabels)) assert.equal(dep.spec.template.metadata.labels[k], v);
    for (const [k, v] of Object.entries(service.spec.selector)) assert.equal(dep.spec.template.metadata.labels[k], v);
    for (const [k, v] of Object.entries(monitor.spec.selector.matchLabels)) assert.equal(dep.spec.template.metadata.labels[k], v);
  }
  assert.equal(service.spec.ports[0].targetPort, 'http');
  assert.equal(monitor.spec.podMetricsEndpoints[0].port, 'metrics');
  assert.equal(monitor.spec.podMetricsEndpoints[0].path, '/metrics');
});

test('llmux check-config reports bad files with file:line', () => {
  assert.ok(BUILD_DIR && fs.existsSync(path.join(BUILD_DIR, 'llmux')), 'LLMUX_BUILD_DIR with the llmux tool');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmux-deploy-'));
  try {
    const file = path.join(dir, 'llmux.yaml');
    fs.writeFileSync(file, 'server:\n  trusted_proxies: ["10.0.0.1/8"]\n');
    let err;
    try {
      execFileSync(path.join(BUILD_DIR, 'llmux'), ['check-config', file], { encoding: 'utf8', stdio: 'pipe' });
    } catch (e) {
      err = e;
    }
    assert.ok(err, 'check-config accepted a bad file');
    assert.equal(err.status, 1);
    assert.match(err.stderr, /llmux\.yaml:2:\d+: server\.trusted_proxies\[0\]: "10\.0\.0\.1\/8" has host bits set/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
