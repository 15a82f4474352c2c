// The device journey end to end, with the code `npm run demo` runs (scripts/demo/): the controller and the update
// service as processes against the real apiserver and S3; resources from deploy/examples; a device's update check,
// download and verification as the plugin does it, and as Capgo's own CLI does it; a 50 % rollout over 4,000 device
// ids; promotion and rollback. Changes are awaited by polling with deadlines, never by timing assertions.
import { createHash } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { APP_RESOURCE, BUNDLE_RESOURCE, CHANNEL_RESOURCE } from '../../../src/api/v1alpha1/index.js';
import {
  FIRST_VERSION,
  Journey,
  SECOND_VERSION,
  deviceIds,
  startProcessJourney,
  type ProcessJourney,
  type UpdateAnswer,
} from '../../../scripts/demo/journey.js';
import type { Stack } from '../../../scripts/demo/stack.js';
import { S3_ENGINES, minioClientFor, startS3Server, type S3Server } from '../../env/environment.js';
import {
  INTEGRATION_TEST_TIMEOUT_MS,
  cleanupTestResources,
  newBucket,
  newNamespace,
  testEnvironment,
  uniqueName,
} from '../../env/fixtures.js';
import { capacitorProject, capgo } from '../../../src/bundle/testing/capgo-cli.js';

const DEVICES = 4000;
const ids = deviceIds(DEVICES, 'e2e');
const probe = ids.slice(0, 16);
const device = deviceIds(1, 'e2e-device')[0]!;

// The whole journey runs on each S3 server (ADR 0033): no behaviour may depend on one server's quirks.
describe.each(S3_ENGINES)('S3 server %s', (engine) => {
  let started: ProcessJourney | undefined;
  let s3Server: S3Server | undefined;
  let stack: Stack;
  let journey: Journey;
  let capgoProject: string | undefined;
  let answer: UpdateAnswer;
  let downloaded: string;

  /** Runs a step; a failure carries the end of the component logs that explain it. */
  const withLogs = <T>(fn: () => Promise<T>): Promise<T> => started!.withLogs(fn);

  beforeAll(async () => {
    // On versitygw, the environment's S3 server; on SeaweedFS, one started for this journey.
    let env = testEnvironment();
    let bucket: string;
    if (engine === env.s3.engine) {
      bucket = await newBucket('e2e');
    } else {
      s3Server = await startS3Server(engine);
      env = { ...env, s3: s3Server };
      bucket = uniqueName('e2e');
      await minioClientFor(s3Server).makeBucket(bucket, s3Server.region);
    }
    started = await startProcessJourney('e2e', { env, namespace: await newNamespace('e2e'), bucket });
    ({ stack, journey } = started);
    await journey.createKey();
  }, INTEGRATION_TEST_TIMEOUT_MS);

  afterAll(async () => {
    const stopped = started ? await started.stop() : {};
    if (capgoProject) await rm(capgoProject, { recursive: true, force: true });
    await s3Server?.stop();
    await cleanupTestResources();
    // Both components shut down gracefully on SIGTERM.
    expect(stopped).toEqual({ controller: 'exit code 0', 'update-server': 'exit code 0' });
  }, INTEGRATION_TEST_TIMEOUT_MS);

  describe(`device journey against the controller and update service processes, S3 on ${engine}`, () => {
    it(
      'the resources of deploy/examples become Ready',
      () =>
        withLogs(async () => {
          const created = await journey.createResources(FIRST_VERSION);
          expect(journey.manifests?.source).toBe('deploy/examples');
          expect(created).toHaveLength(4);
          await journey.waitReady([
            { type: APP_RESOURCE, name: journey.appName },
            { type: BUNDLE_RESOURCE, name: journey.build(FIRST_VERSION).bundleName },
            { type: CHANNEL_RESOURCE, name: journey.channelName },
          ]);
          const app = await journey.app();
          expect(app.status?.keyId).toBe(journey.keyId);
          expect((await journey.channel()).status).toMatchObject({ servingVersion: FIRST_VERSION });
        }),
      INTEGRATION_TEST_TIMEOUT_MS,
    );

    it(
      'a device checking for updates gets the bundle with an encrypted-bundle answer',
      () =>
        withLogs(async () => {
          await journey.waitUntilServed(
            [device],
            'builtin',
            (o) => o[0] === FIRST_VERSION,
            'the first bundle',
          );
          answer = await journey.checkUpdate(device, 'builtin');
          expect(answer.status).toBe(200);
          const b = answer.body;
          expect(b).toMatchObject({ version: FIRST_VERSION });
          expect(b).not.toHaveProperty('error');
          expect(b).not.toHaveProperty('kind');
          expect(b).not.toHaveProperty('message');
          expect(String(b['url'])).toMatch(new RegExp(`^${stack.publicUrl}/bundles/`));
          expect(b['checksum']).toMatch(/^[0-9a-f]{512}$/);
          expect(b['session_key']).toMatch(/^[A-Za-z0-9+/]{22}==:[A-Za-z0-9+/]{342}==$/);
        }),
      INTEGRATION_TEST_TIMEOUT_MS,
    );

    it(
      'the download passes the plugin’s verification and decrypts to the packed zip',
      () =>
        withLogs(async () => {
          const result = await journey.downloadAndVerify(answer, 'first');
          const build = journey.build(FIRST_VERSION);
          expect(result.encrypted).toBe(true);
          expect(result.sha256).toBe(build.sha256);
          expect((await readFile(result.decrypted)).equals(await readFile(build.zipPath))).toBe(true);
          downloaded = result.downloaded;
        }),
      INTEGRATION_TEST_TIMEOUT_MS,
    );

    it(
      'Capgo’s CLI accepts the served bundle: `capgo bundle decrypt --checksum` matches',
      async () => {
        capgoProject = await capacitorProject(journey.appId);
        const result = await capgo(capgoProject, [
          'bundle',
          'decrypt',
          downloaded,
          String(answer.body['session_key']),
          '--checksum',
          String(answer.body['checksum']),
          '--key',
          journey.publicKeyPath,
        ]);
        expect(result.output).toContain('Checksum matches');
        expect(result.code).toBe(0);
        const plain = await readFile(`${downloaded}_decrypted.zip`);
        expect(createHash('sha256').update(plain).digest('hex')).toBe(journey.build(FIRST_VERSION).sha256);
      },
      INTEGRATION_TEST_TIMEOUT_MS,
    );

    it(
      `a 50 % rollout splits ${DEVICES} devices within 50 ± 4 %, the same way on every check`,
      () =>
        withLogs(async () => {
          await journey.createBundle(SECOND_VERSION);
          await journey.waitReady([
            { type: BUNDLE_RESOURCE, name: journey.build(SECOND_VERSION).bundleName },
          ]);
          await journey.startRollout(SECOND_VERSION, 50);
          await journey.waitChannelReady();
          await journey.waitUntilServed(probe, 'builtin', (o) => o.includes(SECOND_VERSION), 'the rollout');
          const first = await journey.assignments(ids);
          const outcomes = [...first.values()];
          expect(new Set(outcomes)).toEqual(new Set([FIRST_VERSION, SECOND_VERSION]));
          const share = outcomes.filter((v) => v === SECOND_VERSION).length / DEVICES;
          expect(share).toBeGreaterThanOrEqual(0.46);
          expect(share).toBeLessThanOrEqual(0.54);
          const again = await journey.assignments(ids);
          expect(again).toEqual(first);
        }),
      INTEGRATION_TEST_TIMEOUT_MS,
    );

    it(
      'promotion (channel.bundle = the new bundle, rollout removed) reaches every device',
      () =>
        withLogs(async () => {
          await journey.setChannelBundle(SECOND_VERSION);
          await journey.waitChannelReady();
          expect((await journey.channel()).status).toMatchObject({ servingVersion: SECOND_VERSION });
          await journey.waitUntilServed(
            probe,
            'builtin',
            (o) => o.every((v) => v === SECOND_VERSION),
            'the promotion',
          );
          expect(await journey.split(ids)).toEqual(new Map([[SECOND_VERSION, DEVICES]]));
          // A device already on it is up to date.
          expect(Journey.outcome(await journey.checkUpdate(device, SECOND_VERSION))).toBe(
            'up_to_date:no_new_version_available',
          );
        }),
      INTEGRATION_TEST_TIMEOUT_MS,
    );

    it(
      'rollback (channel.bundle = the first bundle): devices on the new version are told to install the first again',
      () =>
        withLogs(async () => {
          await journey.setChannelBundle(FIRST_VERSION);
          await journey.waitChannelReady();
          await journey.waitUntilServed(
            probe,
            SECOND_VERSION,
            (o) => o.every((v) => v === FIRST_VERSION),
            'the rollback',
          );
          expect(await journey.split(ids, SECOND_VERSION)).toEqual(new Map([[FIRST_VERSION, DEVICES]]));
          const back = await journey.downloadAndVerify(
            await journey.checkUpdate(device, SECOND_VERSION),
            'rollback',
          );
          expect(back.sha256).toBe(journey.build(FIRST_VERSION).sha256);
        }),
      INTEGRATION_TEST_TIMEOUT_MS,
    );
  });
});
