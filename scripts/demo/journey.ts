// The device journey of the demo and of the end-to-end test, step by step: resources from deploy/examples (templated:
// names, artifact URL, digest), Ready, an update check with a real §2.1 body, download and verification exactly as
// the plugin does it, a 50 % rollout over simulated devices, promotion and rollback. Every step returns figures;
// `npm run demo` prints them, test/integration/e2e/device-journey.test.ts asserts them.
import { createHash, randomBytes } from 'node:crypto';
import { cp, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parse as parseYaml } from 'yaml';
import {
  API_VERSION,
  APP_RESOURCE,
  BUNDLE_RESOURCE,
  CHANNEL_RESOURCE,
  SECRET_RESOURCE,
  type LiveUpdateApp,
  type LiveUpdateBundle,
  type LiveUpdateChannel,
  type LiveUpdateChannelSpecRolloutFailureThresholds,
} from '../../src/api/v1alpha1/index.js';
import {
  PUBLIC_KEY_FILE,
  generateSigningKey,
  loadPublicKey,
  packDirectory,
  verifyBundle,
  writeKeyFiles,
  type SigningKey,
} from '../../src/bundle/index.js';
import type { Condition, KubeObject, ResourceType } from '../../src/kube/types.js';
import type { EnvironmentInfo } from '../../test/env/environment.js';
import { REPO, Stack, StepError, withComponentLogs, type StackOptions } from './stack.js';

export const PLUGIN_VERSION = '8.51.23';
/**
 * The simulated devices run native app 1.0.0 with its builtin web bundle. Capgo compares a "builtin" device by its
 * native version, so a live update 1.0.0 would be "up to date" for them: the live versions start at 1.0.1.
 */
export const NATIVE_VERSION = '1.0.0';
export const FIRST_VERSION = '1.0.1';
export const SECOND_VERSION = '1.1.0';
/** Further live versions for journeys with several rollouts in a row (the self-halting rollout). */
export const THIRD_VERSION = '1.2.0';
export const FOURTH_VERSION = '1.3.0';
const WEBAPP = join(REPO, 'test/fixtures/webapp');
const EXAMPLES = join(REPO, 'deploy/examples');

export type Log = (line: string) => void;

/** What an update check answered, reduced to what the plugin acts on. */
export interface UpdateAnswer {
  readonly status: number;
  readonly body: Record<string, unknown>;
}

export interface PackedBuild {
  readonly version: string;
  readonly bundleName: string;
  readonly zipPath: string;
  readonly sha256: string;
  readonly size: number;
  readonly files: number;
  readonly url: string;
}

export interface Manifests {
  readonly secret: KubeObject & { stringData?: Record<string, string> };
  readonly app: LiveUpdateApp;
  readonly bundle: LiveUpdateBundle;
  readonly channel: LiveUpdateChannel;
  /** Where they came from; `gaps` lists what had to be filled in because deploy/examples lacked it. */
  readonly source: string;
  readonly gaps: string[];
}

/** The example manifests of deploy/examples, or built-in equivalents when a file is missing. */
export async function loadExampleManifests(): Promise<Manifests> {
  const gaps: string[] = [];
  const read = async <T>(file: string, fallback: T): Promise<T> => {
    try {
      return parseYaml(await readFile(join(EXAMPLES, file), 'utf8')) as T;
    } catch {
      gaps.push(`deploy/examples/${file} missing or unreadable: built-in manifest used`);
      return fallback;
    }
  };
  const secret = await read<Manifests['secret']>('signing-key-secret.yaml', {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'my-app-signing-key' },
    stringData: { 'private.pem': '' },
  });
  const app = await read<LiveUpdateApp>('liveupdateapp.yaml', {
    apiVersion: API_VERSION,
    kind: 'LiveUpdateApp',
    metadata: { name: 'my-app' },
    spec: {
      appId: 'com.example.myapp',
      signingKey: { secretName: 'my-app-signing-key', key: 'private.pem' },
      defaultChannel: 'production',
    },
  });
  const bundle = await read<LiveUpdateBundle>('liveupdatebundle.yaml', {
    apiVersion: API_VERSION,
    kind: 'LiveUpdateBundle',
    metadata: { name: 'my-app-1.0.0' },
    spec: { app: 'my-app', version: '1.0.0', source: { http: { url: 'http://invalid/' } } },
  });
  const channel = await read<LiveUpdateChannel>('liveupdatechannel.yaml', {
    apiVersion: API_VERSION,
    kind: 'LiveUpdateChannel',
    metadata: { name: 'production' },
    spec: { app: 'my-app', bundle: 'my-app-1.0.0' },
  });
  return { secret, app, bundle, channel, source: gaps.length ? 'built-in' : 'deploy/examples', gaps };
}

/** A deterministic, valid UUID v4 (lowercase) per index: the same simulated devices on every run. */
export function deviceId(index: number, seed = 'liveupdate-demo'): string {
  const h = createHash('sha256').update(`${seed}:${index}`).digest('hex');
  const variant = ((parseInt(h[16]!, 16) & 0x3) | 0x8).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

export function deviceIds(count: number, seed?: string): string[] {
  return Array.from({ length: count }, (_, i) => deviceId(i, seed));
}

const clone = <T>(value: T): T => structuredClone(value);

function conditionSummary(obj: { status?: { conditions?: Condition[] } }): string {
  const conditions = obj.status?.conditions ?? [];
  return conditions
    .map(
      (c) =>
        `${c.type}=${c.status}${c.status === 'True' && c.type === 'Ready' ? '' : c.reason ? `(${c.reason})` : ''}`,
    )
    .join(' ');
}

type Observed = KubeObject & { status?: { observedGeneration?: number; conditions?: Condition[] } };

/** kstatus "Current": Ready=True at the current generation. */
export function isReady(obj: Observed): boolean {
  return (
    obj.status?.observedGeneration === obj.metadata.generation &&
    (obj.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True')
  );
}

export interface JourneyOptions {
  readonly stack: Stack;
  readonly namespace: string;
  /** Scratch space for keys, zips and downloads (the caller removes it). */
  readonly workDir: string;
  /** Overrides the example's appId (the e2e test uses a unique one). */
  readonly appId?: string;
  readonly log?: Log;
  /** Deadline of each wait (Ready, a change becoming visible to devices). */
  readonly waitMs?: number;
}

export class Journey {
  readonly stack: Stack;
  readonly namespace: string;
  readonly log: Log;
  readonly waitMs: number;
  key: SigningKey | undefined;
  publicKeyPath = '';
  manifests: Manifests | undefined;
  appId = '';
  appName = '';
  channelName = '';
  readonly builds = new Map<string, PackedBuild>();

  constructor(readonly options: JourneyOptions) {
    this.stack = options.stack;
    this.namespace = options.namespace;
    this.log = options.log ?? (() => undefined);
    this.waitMs = options.waitMs ?? 90_000;
  }

  get keyId(): string {
    if (!this.key) throw new Error('no key yet');
    return this.key.keyId;
  }

  build(version: string): PackedBuild {
    const build = this.builds.get(version);
    if (!build) throw new Error(`no build ${version}`);
    return build;
  }

  /** Packs the sample web build as the first version and a changed copy as the second, served by the artifact server. */
  async packBuilds(versions: readonly string[] = [FIRST_VERSION, SECOND_VERSION]): Promise<PackedBuild[]> {
    this.manifests ??= await loadExampleManifests();
    this.appName = this.manifests.app.metadata.name;
    const packed: PackedBuild[] = [];
    for (const version of versions) {
      const dir = join(this.options.workDir, `web-${version}`);
      await cp(WEBAPP, dir, { recursive: true });
      const index = join(dir, 'index.html');
      await writeFile(
        index,
        (await readFile(index, 'utf8')).replace(
          '<h1>Live update fixture</h1>',
          `<h1>Live update fixture ${version}</h1>`,
        ),
      );
      const zipPath = join(this.options.workDir, `web-${version}.zip`);
      const result = await packDirectory(dir, zipPath);
      const path = `/${this.appName}/${version}/web.zip`;
      this.stack.artifacts.routes.set(path, await readFile(zipPath));
      const build: PackedBuild = {
        version,
        bundleName: `${this.appName}-${version}`,
        zipPath,
        sha256: result.sha256,
        size: result.size,
        files: result.files,
        url: this.stack.artifacts.url(path),
      };
      this.builds.set(version, build);
      packed.push(build);
    }
    return packed;
  }

  /** `liveupdate keys create` equivalent: .capgo_key_v2 and .capgo_key_v2.pub in the work dir. */
  async createKey(): Promise<{ keyId: string; publicKeyPath: string }> {
    this.key = generateSigningKey();
    const files = await writeKeyFiles(this.key, join(this.options.workDir, 'keys'));
    this.publicKeyPath = files.publicKeyPath;
    return { keyId: files.keyId, publicKeyPath: join(this.options.workDir, 'keys', PUBLIC_KEY_FILE) };
  }

  private bundleManifest(version: string): LiveUpdateBundle {
    const m = this.manifests!;
    const build = this.build(version);
    const bundle = clone(m.bundle);
    bundle.metadata = { name: build.bundleName, namespace: this.namespace };
    bundle.spec.app = this.appName;
    bundle.spec.version = version;
    bundle.spec.source = { ...bundle.spec.source, http: { ...bundle.spec.source.http, url: build.url } };
    bundle.spec.digest = `sha256:${build.sha256}`;
    // The example targets native 1.4.x; the simulated devices run native 1.0.0.
    if (bundle.spec.minNativeVersion !== undefined) bundle.spec.minNativeVersion = NATIVE_VERSION;
    bundle.spec.comment = `Demo build ${version}`;
    if (bundle.spec.link !== undefined) bundle.spec.link = `https://example.com/releases/${version}`;
    return bundle;
  }

  /** The key Secret, the App, the first bundle and the channel serving it (deploy/examples, templated). */
  async createResources(firstVersion = FIRST_VERSION): Promise<string[]> {
    const m = (this.manifests ??= await loadExampleManifests());
    if (!this.key) await this.createKey();
    const ns = this.namespace;
    const secret = clone(m.secret);
    const app = clone(m.app);
    const keyField = app.spec.signingKey?.key ?? 'private.pem';
    secret.metadata = {
      ...secret.metadata,
      name: app.spec.signingKey?.secretName ?? secret.metadata.name,
      namespace: ns,
    };
    secret.stringData = { [keyField]: this.key!.privateKeyPem };
    app.metadata = { name: this.appName, namespace: ns };
    if (this.options.appId) app.spec.appId = this.options.appId;
    this.appId = app.spec.appId;
    const channel = clone(m.channel);
    this.channelName = channel.metadata.name;
    channel.metadata = { name: this.channelName, namespace: ns };
    channel.spec.app = this.appName;
    channel.spec.bundle = this.build(firstVersion).bundleName;
    const bundle = this.bundleManifest(firstVersion);
    const kube = this.stack.kube;
    await kube.create(SECRET_RESOURCE, secret);
    await kube.create(APP_RESOURCE, app);
    await kube.create(BUNDLE_RESOURCE, bundle);
    await kube.create(CHANNEL_RESOURCE, channel);
    return [
      `Secret/${secret.metadata.name}`,
      `LiveUpdateApp/${app.metadata.name} (appId ${this.appId})`,
      `LiveUpdateBundle/${bundle.metadata.name}`,
      `LiveUpdateChannel/${channel.metadata.name} → ${channel.spec.bundle}`,
    ];
  }

  async createBundle(version: string): Promise<string> {
    const bundle = this.bundleManifest(version);
    await this.stack.kube.create(BUNDLE_RESOURCE, bundle);
    return bundle.metadata.name;
  }

  /** Polls the objects until each is Ready at its generation, logging every change of conditions. */
  async waitReady(objects: readonly { type: ResourceType; name: string }[]): Promise<number> {
    const started = Date.now();
    const deadline = started + this.waitMs;
    const last = new Map<string, string>();
    for (;;) {
      this.stack.assertRunning();
      let ready = 0;
      for (const { type, name } of objects) {
        let obj: Observed | undefined;
        try {
          obj = await this.stack.kube.get<Observed>(type, { namespace: this.namespace, name });
        } catch {
          obj = undefined;
        }
        const id = `${type.kind}/${name}`;
        const summary = obj
          ? `gen ${obj.metadata.generation ?? '?'}: ${conditionSummary(obj) || '(no conditions yet)'}`
          : 'not found';
        if (last.get(id) !== summary) {
          last.set(id, summary);
          this.log(`    · ${id} ${summary}`);
        }
        if (obj && isReady(obj)) ready++;
      }
      if (ready === objects.length) return Date.now() - started;
      if (Date.now() > deadline) {
        throw new StepError(
          `not Ready after ${this.waitMs / 1000} s: ${objects.map((o) => `${o.type.kind}/${o.name} [${last.get(`${o.type.kind}/${o.name}`)}]`).join('; ')}`,
          'controller',
        );
      }
      await sleep(300);
    }
  }

  async app(): Promise<LiveUpdateApp> {
    return this.stack.kube.get<LiveUpdateApp>(APP_RESOURCE, {
      namespace: this.namespace,
      name: this.appName,
    });
  }

  async channel(): Promise<LiveUpdateChannel> {
    return this.stack.kube.get<LiveUpdateChannel>(CHANNEL_RESOURCE, {
      namespace: this.namespace,
      name: this.channelName,
    });
  }

  /** The §2.1 info object an Android device with the app's public key sends. */
  deviceBody(id: string, versionName: string): Record<string, unknown> {
    return {
      platform: 'android',
      device_id: id,
      app_id: this.appId,
      custom_id: '',
      version_build: NATIVE_VERSION,
      version_code: '100',
      version_os: '14',
      version_name: versionName,
      plugin_version: PLUGIN_VERSION,
      is_emulator: false,
      is_prod: true,
      install_source: 'google_play',
      defaultChannel: '',
      key_id: this.keyId,
    };
  }

  async checkUpdate(id: string, versionName = 'builtin'): Promise<UpdateAnswer> {
    let response: Response;
    try {
      response = await fetch(this.stack.updateUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(this.deviceBody(id, versionName)),
      });
    } catch (error) {
      throw new StepError(`POST ${this.stack.updateUrl} failed: ${String(error)}`, 'update-server');
    }
    const text = await response.text();
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(text) as Record<string, unknown>;
    } catch {
      throw new StepError(
        `POST /updates answered ${response.status} with non-JSON: ${text.slice(0, 200)}`,
        'update-server',
      );
    }
    return { status: response.status, body };
  }

  /** What the plugin would do with an answer: the version it installs, or `<kind>:<error>`. */
  static outcome(answer: UpdateAnswer): string {
    const b = answer.body;
    if ('error' in b || 'kind' in b) return `${String(b['kind'])}:${String(b['error'])}`;
    return typeof b['version'] === 'string' ? b['version'] : `invalid:${answer.status}`;
  }

  /**
   * Downloads `url` and verifies it as the 8.x plugin does (§6.3): session key, unwrap the AES key with the public
   * key, decrypt, recover the signed SHA-256 and compare it with the decrypted zip's.
   */
  async downloadAndVerify(answer: UpdateAnswer, label: string) {
    const url = answer.body['url'];
    if (typeof url !== 'string')
      throw new StepError(`the answer has no url: ${JSON.stringify(answer.body)}`, 'update-server');
    const started = Date.now();
    const response = await fetch(url);
    if (response.status !== 200)
      throw new StepError(`GET ${url} answered ${response.status}`, 'update-server');
    const bytes = Buffer.from(await response.arrayBuffer());
    const contentLength = Number(response.headers.get('content-length'));
    if (contentLength !== bytes.length) {
      throw new StepError(
        `GET ${url}: Content-Length ${contentLength} but ${bytes.length} bytes`,
        'update-server',
      );
    }
    const downloaded = join(this.options.workDir, `${label}.download.zip`);
    const decrypted = join(this.options.workDir, `${label}.decrypted.zip`);
    await writeFile(downloaded, bytes);
    const publicKey = loadPublicKey(await readFile(this.publicKeyPath, 'utf8'));
    const checksum = answer.body['checksum'];
    const sessionKey = answer.body['session_key'];
    const result = await verifyBundle({
      input: downloaded,
      checksum: typeof checksum === 'string' ? checksum : undefined,
      publicKey,
      ...(typeof sessionKey === 'string' ? { sessionKey } : {}),
      output: decrypted,
    });
    return {
      downloaded,
      decrypted,
      downloadedBytes: bytes.length,
      downloadMs: Date.now() - started,
      sha256: result.sha256,
      plainSize: (await stat(decrypted)).size,
      encrypted: result.encrypted,
    };
  }

  /** Every device asks once (with `versionName` as its running bundle); counts what they would install. */
  async split(
    ids: readonly string[],
    versionName = 'builtin',
    concurrency = 32,
  ): Promise<Map<string, number>> {
    const counts = new Map<string, number>();
    let next = 0;
    const worker = async () => {
      while (next < ids.length) {
        const id = ids[next++]!;
        const outcome = Journey.outcome(await this.checkUpdate(id, versionName));
        counts.set(outcome, (counts.get(outcome) ?? 0) + 1);
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    return counts;
  }

  /** Per device: what it gets (for the stability check of a sticky rollout). */
  async assignments(
    ids: readonly string[],
    versionName = 'builtin',
    concurrency = 32,
  ): Promise<Map<string, string>> {
    const result = new Map<string, string>();
    let next = 0;
    const worker = async () => {
      while (next < ids.length) {
        const id = ids[next++]!;
        result.set(id, Journey.outcome(await this.checkUpdate(id, versionName)));
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    return result;
  }

  /** Polls update checks of `probe` devices until `done` holds for the outcomes; returns the time it took. */
  async waitUntilServed(
    probe: readonly string[],
    versionName: string,
    done: (outcomes: string[]) => boolean,
    what: string,
  ): Promise<number> {
    const started = Date.now();
    let outcomes: string[] = [];
    for (;;) {
      this.stack.assertRunning();
      outcomes = await Promise.all(
        probe.map(async (id) => Journey.outcome(await this.checkUpdate(id, versionName))),
      );
      if (done(outcomes)) return Date.now() - started;
      if (Date.now() - started > this.waitMs) {
        throw new StepError(
          `${what}: not visible to devices after ${this.waitMs / 1000} s (last answers: ${[...new Set(outcomes)].join(', ')})`,
          'controller',
        );
      }
      await sleep(300);
    }
  }

  /**
   * Adds `spec.rollout` (the new bundle to `percentage` % of devices, sticky) to the channel, with failure
   * thresholds when given (otherwise the channel's are kept).
   */
  async startRollout(
    version: string,
    percentage: number,
    failureThresholds?: LiveUpdateChannelSpecRolloutFailureThresholds,
  ): Promise<void> {
    await this.stack.kube.mergePatch(
      CHANNEL_RESOURCE,
      { namespace: this.namespace, name: this.channelName },
      {
        spec: {
          rollout: {
            bundle: this.build(version).bundleName,
            percentage,
            ...(failureThresholds ? { failureThresholds } : {}),
          },
        },
      },
    );
  }

  /** Polls the channel until its rollout is halted (RolloutHalted=True); returns the channel and the time it took. */
  async waitRolloutHalted(): Promise<{ channel: LiveUpdateChannel; ms: number }> {
    const started = Date.now();
    for (;;) {
      this.stack.assertRunning();
      const channel = await this.channel();
      if (rolloutHaltedCondition(channel)) return { channel, ms: Date.now() - started };
      if (Date.now() - started > this.waitMs) {
        throw new StepError(
          `the rollout was not halted after ${this.waitMs / 1000} s (stats: ${JSON.stringify(channel.status?.stats?.rollout ?? {})})`,
          'controller',
        );
      }
      await sleep(200);
    }
  }

  /** `channel.bundle = <version>` and the rollout removed (what a promotion pull request changes). */
  async setChannelBundle(version: string): Promise<void> {
    await this.stack.kube.mergePatch(
      CHANNEL_RESOURCE,
      { namespace: this.namespace, name: this.channelName },
      {
        spec: { bundle: this.build(version).bundleName, rollout: null },
      },
    );
  }

  async waitChannelReady(): Promise<number> {
    return this.waitReady([{ type: CHANNEL_RESOURCE, name: this.channelName }]);
  }
}

export interface ProcessJourneyOptions {
  readonly env: EnvironmentInfo;
  /** The test's own namespace and bucket (the caller creates and removes them). */
  readonly namespace: string;
  readonly bucket: string;
  /** Per component 'process' (default) or 'container'; container mode needs `containers`. */
  readonly run?: StackOptions['run'];
  readonly containers?: StackOptions['containers'];
  readonly waitMs?: number;
  /** Extra environment of the controller and the update service (e.g. short telemetry intervals). */
  readonly controllerEnv?: NodeJS.ProcessEnv;
  readonly updateServerEnv?: NodeJS.ProcessEnv;
}

/** A started stack with its journey; `stop()` stops the components and removes the work dir. */
export interface ProcessJourney {
  readonly stack: Stack;
  readonly journey: Journey;
  readonly workDir: string;
  /** Runs a step; a failure carries the end of the component logs that explain it. */
  withLogs<T>(fn: () => Promise<T>): Promise<T>;
  /** How each component ended (`exit code 0` after a graceful SIGTERM). */
  stop(): Promise<Record<string, string>>;
}

/**
 * What every end-to-end test starts with: a work dir `liveupdate-<prefix>-*`, the CRDs, the artifact server, the
 * controller and the update service (processes, or containers of the image), a Journey with a unique appId
 * `com.example.<prefix><hex>` and both versions packed. On a failure everything started is stopped again.
 */
export async function startProcessJourney(
  prefix: string,
  options: ProcessJourneyOptions,
): Promise<ProcessJourney> {
  const workDir = await mkdtemp(join(tmpdir(), `liveupdate-${prefix}-`));
  const stack = new Stack({
    env: options.env,
    logDir: join(workDir, 'logs'),
    namespace: options.namespace,
    bucket: options.bucket,
    ...(options.run ? { run: options.run } : {}),
    ...(options.containers ? { containers: options.containers } : {}),
  });
  const withLogs = <T>(fn: () => Promise<T>): Promise<T> => withComponentLogs(stack, fn);
  const stop = async (): Promise<Record<string, string>> => {
    const stopped = await stack.stop();
    await rm(workDir, { recursive: true, force: true });
    return stopped;
  };
  try {
    await withLogs(async () => {
      await stack.installCrds();
      await stack.artifacts.start();
      await Promise.all([
        stack.startController(options.controllerEnv ? { env: options.controllerEnv } : {}),
        stack.startUpdateServer(options.updateServerEnv ? { env: options.updateServerEnv } : {}),
      ]);
    });
    const journey = new Journey({
      stack,
      namespace: options.namespace,
      workDir,
      appId: `com.example.${prefix.replace(/[^a-z0-9]/gi, '')}${randomBytes(3).toString('hex')}`,
      waitMs: options.waitMs ?? 60_000,
    });
    await journey.packBuilds([FIRST_VERSION, SECOND_VERSION]);
    return { stack, journey, workDir, withLogs, stop };
  } catch (error) {
    await stop().catch(() => undefined);
    throw error;
  }
}

/** The channel's RolloutHalted condition while it is True. */
export function rolloutHaltedCondition(channel: LiveUpdateChannel): Condition | undefined {
  return channel.status?.conditions?.find((c) => c.type === 'RolloutHalted' && c.status === 'True');
}

/**
 * What every device of `ids` reports after an update: `members` (those in the rollout) installed the rollout version,
 * those whose position among them modulo 100 is below `failPercent` failing with `action`; the others installed stable.
 */
export function installOutcomes(
  ids: readonly string[],
  members: readonly string[],
  versions: { stable: string; rollout: string },
  failPercent: number,
  action: InstallOutcome,
): Array<{ id: string; version: string; outcome: InstallOutcome }> {
  const inRollout = new Set(members);
  let n = 0;
  return ids.map((id) => {
    if (!inRollout.has(id)) return { id, version: versions.stable, outcome: 'set' };
    const fails = n++ % 100 < failPercent;
    return { id, version: versions.rollout, outcome: fails ? action : 'set' };
  });
}

/** `{ '1.0.0': 2004, '1.1.0': 1996 }` → "1.0.0: 2004 (50.1 %), 1.1.0: 1996 (49.9 %)". */
export function formatCounts(counts: Map<string, number>): string {
  const total = [...counts.values()].reduce((a, b) => a + b, 0);
  return [...counts.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([version, n]) => `${version}: ${n} (${((100 * n) / total).toFixed(1)} %)`)
    .join(', ');
}

/** Which stats action a simulated device sends after installing an update (CAPGO-PROTOCOL.md §3). */
export type InstallOutcome = 'set' | 'decrypt_fail' | 'download_fail' | 'update_fail';

/**
 * Every device posts its stats batch exactly as the plugin does (a JSON array of §2.1 info objects with `action`,
 * `version_name`, `old_version_name` and `timestamp`): an `app_moved_to_foreground`, then the outcome of installing
 * `version`. Returns the number of events sent, once every POST was answered 200.
 */
export async function sendInstallStats(
  journey: Journey,
  devices: ReadonlyArray<{ id: string; version: string; outcome: InstallOutcome }>,
  concurrency = 32,
): Promise<number> {
  let next = 0;
  let sent = 0;
  const worker = async () => {
    while (next < devices.length) {
      const d = devices[next++]!;
      const info = journey.deviceBody(d.id, 'builtin');
      const now = Date.now();
      const batch = [
        {
          ...info,
          action: 'app_moved_to_foreground',
          version_name: 'builtin',
          old_version_name: '',
          timestamp: now,
        },
        {
          ...info,
          action: d.outcome,
          version_name: d.version,
          old_version_name: 'builtin',
          timestamp: now + 1,
        },
      ];
      const response = await fetch(journey.stack.statsUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json; charset=utf-8' },
        body: JSON.stringify(batch),
      });
      const text = await response.text();
      if (response.status !== 200)
        throw new StepError(
          `POST /stats answered ${response.status}: ${text.slice(0, 200)}`,
          'update-server',
        );
      sent += batch.length;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return sent;
}
