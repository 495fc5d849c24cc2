/**
 * deploy/kubernetes, checked offline: every manifest against its Kubernetes schema
 * (kubernetes-models, @kubernetes-models/prometheus-operator), the kustomizations' files, and the
 * manifests against the service itself (its settings, its probes, its shutdown timing).
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as monitoringV1 from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import type { IServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';
import * as appsV1 from 'kubernetes-models/apps/v1';
import * as autoscalingV2 from 'kubernetes-models/autoscaling/v2';
import * as networkingV1 from 'kubernetes-models/networking.k8s.io/v1';
import * as policyV1 from 'kubernetes-models/policy/v1';
import * as coreV1 from 'kubernetes-models/v1';
import t from 'tap';
import { parse, parseAllDocuments } from 'yaml';
import { authenticatorFor, checkExposure } from '../src/auth.js';
import { ConfigError, configSchema, loadConfig } from '../src/config.js';
import { buildTestApp } from './helper.js';

const DIR = fileURLToPath(new URL('../deploy/kubernetes/', import.meta.url));
const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };

// ---- the files -------------------------------------------------------------------------------

interface Kustomization {
  apiVersion: string;
  kind: string;
  resources?: string[];
  components?: string[];
  labels?: { pairs: Record<string, string> }[];
  images?: { name: string; newName?: string; newTag?: string }[];
}
interface Manifest {
  file: string; // relative to deploy/kubernetes
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  [k: string]: unknown;
}

const yamlFiles = (dir: string): string[] => readdirSync(dir).flatMap((name) => {
  const path = join(dir, name);
  if (statSync(path).isDirectory()) return yamlFiles(path);
  return /\.ya?ml$/.test(name) ? [relative(DIR, path)] : [];
});
const isKustomization = (file: string) => /(^|\/)kustomization\.ya?ml$/.test(file);

const files = yamlFiles(DIR).sort();
const kustomizations = new Map(files.filter(isKustomization)
  .map((f) => [f, parse(readFileSync(join(DIR, f), 'utf8')) as Kustomization]));
const manifests: Manifest[] = files.filter((f) => !isKustomization(f)).flatMap((file) =>
  parseAllDocuments(readFileSync(join(DIR, file), 'utf8')).map((doc) => {
    if (doc.errors.length) throw new Error(`${file}: ${doc.errors[0]!.message}`);
    return { ...(doc.toJS() as Manifest), file };
  }));

const one = <T>(kind: string): T & Manifest => {
  const found = manifests.filter((m) => m.kind === kind);
  if (found.length !== 1) throw new Error(`expected one ${kind} under deploy/kubernetes, found ${found.length}`);
  return found[0] as T & Manifest;
};
const deployment = one<appsV1.IDeployment>('Deployment');
const service = one<coreV1.IService>('Service');
const secret = one<coreV1.ISecret>('Secret');
const pdb = one<policyV1.IPodDisruptionBudget>('PodDisruptionBudget');
const hpa = one<autoscalingV2.IHorizontalPodAutoscaler>('HorizontalPodAutoscaler');
const monitor = one<IServiceMonitor>('ServiceMonitor');
const pod = deployment.spec!.template;
const container = pod.spec!.containers[0]!;
const env = new Map((container.env ?? []).map((e) => [e.name, e]));
const literal = (name: string) => env.get(name)?.value;

// ---- the schemas -----------------------------------------------------------------------------

/** The models this test knows, by apiVersion; a kind found in none of them has no schema. */
const MODELS: Record<string, Record<string, unknown>> = {
  v1: coreV1,
  'apps/v1': appsV1,
  'autoscaling/v2': autoscalingV2,
  'policy/v1': policyV1,
  'networking.k8s.io/v1': networkingV1,
  'monitoring.coreos.com/v1': monitoringV1,
};
interface ModelClass {
  new (data: object): { validate(): void };
  apiVersion: string;
  kind: string;
}
function modelFor(apiVersion: string, kind: string): ModelClass | undefined {
  const m = MODELS[apiVersion]?.[kind];
  if (typeof m !== 'function') return undefined;
  const model = m as unknown as ModelClass;
  return model.apiVersion === apiVersion && model.kind === kind ? model : undefined;
}
function validate(m: Manifest) {
  const Model = modelFor(m.apiVersion, m.kind);
  if (!Model) throw new Error(`${m.file}: no schema for ${m.apiVersion} ${m.kind}`);
  const { file: _file, ...object } = m;
  new Model(object).validate();
}

t.test('every manifest is valid against the schema of its apiVersion and kind', async (t) => {
  t.same([...new Set(manifests.map((m) => `${m.apiVersion} ${m.kind}`))].sort(), [
    'apps/v1 Deployment', 'autoscaling/v2 HorizontalPodAutoscaler', 'monitoring.coreos.com/v1 ServiceMonitor',
    'policy/v1 PodDisruptionBudget', 'v1 Secret', 'v1 Service',
  ]);
  for (const m of manifests) t.doesNotThrow(() => validate(m), `${m.file}: ${m.kind} ${m.metadata.name}`);
});

t.test('the schema check can fail: a wrong type, a missing field, an unknown kind', async (t) => {
  const broken = structuredClone(deployment);
  broken.spec!.template.spec!.containers[0]!.ports![0]!.containerPort = '8080' as unknown as number;
  t.throws(() => validate(broken), /containerPort must be integer/);
  const unnamed = structuredClone(deployment);
  delete (unnamed.spec!.template.spec!.containers[0] as { name?: string }).name;
  t.throws(() => validate(unnamed), /containers\/0 must have required property name/);
  const numbered = structuredClone(monitor);
  numbered.spec.endpoints![0]!.port = 8080 as unknown as string;
  t.throws(() => validate(numbered), /port must be string/);
  t.throws(() => validate({ ...service, kind: 'Servcie' }), /no schema for v1 Servcie/);
  t.throws(() => validate({ ...hpa, apiVersion: 'autoscaling/v9' }), /no schema for autoscaling\/v9/);
});

// ---- the kustomizations ----------------------------------------------------------------------

t.test('the kustomizations list files that exist, and every manifest but the Secret example', async (t) => {
  t.same([...kustomizations.keys()], ['kustomization.yaml', 'monitoring/kustomization.yaml']);
  const listed = new Set<string>();
  for (const [file, k] of kustomizations) {
    const [apiVersion, kind] = file === 'kustomization.yaml'
      ? ['kustomize.config.k8s.io/v1beta1', 'Kustomization']
      : ['kustomize.config.k8s.io/v1alpha1', 'Component'];
    t.same([k.apiVersion, k.kind], [apiVersion, kind], `${file} is a ${kind}`);
    // A field this test does not check would go unchecked: extend the test along with the file.
    t.same(Object.keys(k).filter((f) => !['apiVersion', 'kind', 'resources', 'components', 'labels', 'images']
      .includes(f)), [], `${file}: only fields this test checks`);
    for (const entry of [...(k.resources ?? []), ...(k.components ?? [])]) {
      const path = resolve(DIR, file, '..', entry);
      const target = relative(DIR, path);
      if (statSync(path, { throwIfNoEntry: false })?.isDirectory()) {
        t.ok(kustomizations.has(join(target, 'kustomization.yaml')), `${file}: ${entry} is a kustomization`);
      } else {
        t.ok(files.includes(target), `${file}: ${entry} exists`);
        listed.add(target);
      }
    }
  }
  const unlisted = files.filter((f) => !isKustomization(f) && !listed.has(f));
  t.same(unlisted, ['secret.example.yaml'], 'only the Secret example is left out, deliberately');

  const base = kustomizations.get('kustomization.yaml')!;
  t.same(base.resources, ['deployment.yaml', 'service.yaml', 'pdb.yaml', 'hpa.yaml']);
  t.equal(base.components, undefined, 'the monitoring Component is an overlay\'s choice, not the base\'s');
  t.same(base.labels, [{ pairs: {
    'app.kubernetes.io/part-of': 'workflow-state-service', 'app.kubernetes.io/managed-by': 'kustomize' } }],
  'labels for metadata only: no includeSelectors, since a Deployment\'s selector cannot change');
  t.same(base.images, [{ name: container.image, newTag: pkg.version }],
    'the image kustomize sets is the container\'s, tagged with this version');
  t.equal(container.image, 'workflow-state-service');
});

// ---- the manifests against the service -------------------------------------------------------

/** Node's own settings, read by the runtime rather than by src/config.ts. */
const NODE_SETTINGS = ['NODE_OPTIONS', 'NODE_ENV'];
const secretValues = secret.stringData ?? {};

/** The environment the container gets: literal values, and the Secret example's values. */
function containerEnv(values: Record<string, string> = secretValues): Record<string, string> {
  return Object.fromEntries([...env.values()].map((e) => {
    const ref = e.valueFrom?.secretKeyRef;
    return [e.name, ref ? values[ref.key]! : e.value!];
  }));
}

t.test('every variable the Deployment sets, and every key of the Secret, is a setting the service reads', async (t) => {
  const known = [...Object.keys(configSchema.shape), ...NODE_SETTINGS];
  t.same([...env.keys(), ...Object.keys(secretValues)].filter((name) => !known.includes(name)), []);
  t.same(Object.keys(secretValues).sort(), ['AUTH_TOKENS', 'DATABASE_URL']);

  const refs = [...env.values()].flatMap((e) => (e.valueFrom?.secretKeyRef ? [[e.name, e.valueFrom.secretKeyRef]] : []));
  t.same(refs, [
    ['DATABASE_URL', { name: secret.metadata.name, key: 'DATABASE_URL' }],
    ['AUTH_TOKENS', { name: secret.metadata.name, key: 'AUTH_TOKENS' }],
  ], 'the secrets come from the Secret example\'s name and keys, by the same names');
  t.same([...env.values()].filter((e) => e.value === undefined && !e.valueFrom?.secretKeyRef), [],
    'every other variable is a literal');
});

t.test('the Deployment\'s environment parses as the service\'s configuration', async (t) => {
  const config = loadConfig(containerEnv());
  t.equal(config.HOST, '0.0.0.0');
  t.equal(config.PORT, 8080);
  t.equal(config.LOG_LEVEL, 'info');
  t.equal(config.SHUTDOWN_DRAIN_S, 5);
  t.equal(config.REQUEST_TIMEOUT_MS, 15_000);
  t.equal(config.DATABASE_POOL_MAX, 4);
  t.match(config.DATABASE_URL, /^postgres:\/\//);
  t.equal(checkExposure(config), undefined, 'listening on 0.0.0.0 with credentials configured');

  // The example's token list has the shape src/auth.ts reads, and unedited it stops the service.
  t.throws(() => authenticatorFor(config), new ConfigError(
    'Invalid configuration:\n  AUTH_TOKENS[0.token_sha256]: must be 64 hex digits'));
  const digest = createHash('sha256').update('a-token').digest('hex');
  const filled = loadConfig(containerEnv({ ...secretValues,
    AUTH_TOKENS: secretValues.AUTH_TOKENS!.replace('<sha256 hex of the token>', digest) }));
  const authenticate = authenticatorFor(filled)!;
  t.same(await authenticate('a-token'),
    { name: 'orchestrator', tenant: 'acme', scopes: new Set(['read', 'write']) });
});

t.test('NODE_OPTIONS caps the heap below the container\'s memory limit', async (t) => {
  t.equal(literal('NODE_OPTIONS'), '--max-old-space-size=384');
  t.same(container.resources, {
    requests: { cpu: '250m', memory: '384Mi' },
    limits: { cpu: '1', memory: '768Mi' },
  });
  // Node itself takes the option (it refuses one it does not know), and its heap fits the limit
  // with 128 MiB to spare for buffers and native memory. The heap's limit is the old space plus the
  // young generation, which Node 24 makes up to 192 MiB (Node 20: 48): run on each Node of .ci/run.
  const heapLimit = Number(execFileSync(process.execPath,
    ['-p', 'require("node:v8").getHeapStatistics().heap_size_limit'],
    { env: { PATH: process.env.PATH, NODE_OPTIONS: literal('NODE_OPTIONS') }, encoding: 'utf8' }));
  t.ok(heapLimit >= 384 * 2 ** 20 && heapLimit + 128 * 2 ** 20 <= 768 * 2 ** 20, `heap limit ${heapLimit} bytes on Node ${process.version}`);
});

t.test('the probes answer 200 on the container\'s port, which the Service targets', async (t) => {
  const { app } = await buildTestApp(t);
  const probes = { startup: container.startupProbe, liveness: container.livenessProbe, readiness: container.readinessProbe };
  t.same(Object.fromEntries(Object.entries(probes).map(([k, p]) => [k, p?.httpGet?.path])),
    { startup: '/health/live', liveness: '/health/live', readiness: '/health/ready' });
  for (const [kind, probe] of Object.entries(probes)) {
    t.equal(probe!.httpGet!.port, 'http', `${kind} probe on the named port`);
    const res = await app.inject({ url: probe!.httpGet!.path });
    t.equal(res.statusCode, 200, `${kind} probe GET ${probe!.httpGet!.path}`);
  }
  const scrape = await app.inject({ url: monitor.spec.endpoints![0]!.path! });
  t.equal(scrape.statusCode, 200, 'the ServiceMonitor\'s path is the metrics route');
  t.match(scrape.body, /^# HELP http_request_duration_seconds /m);

  t.same(container.ports, [{ name: 'http', containerPort: 8080, protocol: 'TCP' }]);
  t.equal(Number(literal('PORT')), 8080, 'PORT is the container port');
  t.same(service.spec!.ports, [{ name: 'http', port: 80, targetPort: 'http', protocol: 'TCP' }]);
  t.equal(service.spec!.type, 'ClusterIP');
});

t.test('the Service, PodDisruptionBudget, autoscaler, spread and ServiceMonitor select this Deployment', async (t) => {
  const podLabels = pod.metadata!.labels!;
  const selector = deployment.spec!.selector.matchLabels!;
  t.same(selector, { 'app.kubernetes.io/name': 'workflow-state-service' });
  t.same(podLabels, selector, 'the pods carry the Deployment\'s selector');
  t.same(service.spec!.selector, selector, 'Service');
  t.same(pdb.spec!.selector, { matchLabels: selector }, 'PodDisruptionBudget');
  t.equal(pdb.spec!.maxUnavailable, 1);
  t.same(hpa.spec!.scaleTargetRef,
    { apiVersion: 'apps/v1', kind: 'Deployment', name: deployment.metadata.name }, 'autoscaler');
  for (const c of pod.spec!.topologySpreadConstraints!) {
    t.same(c.labelSelector, { matchLabels: selector }, `spread over ${c.topologyKey}`);
  }

  t.same(monitor.spec.selector.matchLabels, { 'app.kubernetes.io/name': 'workflow-state-service' });
  for (const [k, v] of Object.entries(monitor.spec.selector.matchLabels!)) {
    t.equal(service.metadata.labels?.[k], v, `the Service carries the ServiceMonitor's label ${k}`);
  }
  t.equal(monitor.spec.namespaceSelector, undefined, 'the ServiceMonitor looks in its own namespace');
  t.same(monitor.spec.endpoints!.map((e) => [e.port, e.path]), [[service.spec!.ports![0]!.name, '/metrics']]);
});

t.test('replicas: the autoscaler owns the count, from 2, and their connections fit PostgreSQL\'s default', async (t) => {
  t.equal(deployment.spec!.replicas, undefined, 'no replicas for `kubectl apply` to reset');
  t.same([hpa.spec!.minReplicas, hpa.spec!.maxReplicas], [2, 8]);
  t.same(hpa.spec!.metrics, [{ type: 'Resource',
    resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 70 } } }]);
  t.same(deployment.spec!.strategy, { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } });
  // Two pools of DATABASE_POOL_MAX and the health probe's connection, per pod; max_connections 100
  // by default, 3 of them reserved for superusers.
  const perPod = 2 * Number(literal('DATABASE_POOL_MAX')) + 1;
  const pods = hpa.spec!.maxReplicas + 1;
  t.ok(pods * perPod <= 97, `${pods} pods x ${perPod} connections = ${pods * perPod}`);
});

t.test('shutdown: the grace period outlasts preStop, the drain and the longest request', async (t) => {
  const preStop = container.lifecycle!.preStop!.exec!.command!;
  t.same(preStop, ['sleep', '5']);
  const config = loadConfig(containerEnv());
  const needed = Number(preStop[1]) + config.SHUTDOWN_DRAIN_S + config.REQUEST_TIMEOUT_MS / 1000;
  t.equal(needed, 25);
  t.equal(pod.spec!.terminationGracePeriodSeconds, 40);
  t.ok(pod.spec!.terminationGracePeriodSeconds! > needed, `${pod.spec!.terminationGracePeriodSeconds} s > ${needed} s`);

  // The listener opens after the database answered and the migrations ran.
  const startup = container.startupProbe!;
  t.same([startup.periodSeconds, startup.failureThreshold], [5, 24]);
  t.ok(startup.periodSeconds! * startup.failureThreshold! > config.DATABASE_CONNECT_TIMEOUT_S,
    `startup budget ${startup.periodSeconds! * startup.failureThreshold!} s > ${config.DATABASE_CONNECT_TIMEOUT_S} s`);
});

t.test('the pod runs as the image\'s node user, unprivileged, on a read-only root', async (t) => {
  t.same(pod.spec!.securityContext, {
    runAsNonRoot: true, runAsUser: 1000, runAsGroup: 1000, seccompProfile: { type: 'RuntimeDefault' },
  });
  t.same(container.securityContext, {
    allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] },
  });
  t.equal(pod.spec!.automountServiceAccountToken, false);
  t.same(container.volumeMounts, [{ name: 'tmp', mountPath: '/tmp' }]);
  t.same(pod.spec!.volumes, [{ name: 'tmp', emptyDir: { sizeLimit: '64Mi' } }], '/tmp writable, in an emptyDir');
});
