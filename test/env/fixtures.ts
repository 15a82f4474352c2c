// Helpers for integration tests: connections to the run's environment (started by Jest's global setup), and
// per-test namespaces and buckets. Call `cleanupTestResources()` in `afterAll` of each test file.
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import type { Client as MinioClient, BucketItem, IncompleteUploadedBucketItem } from 'minio';
import { S3ObjectStore } from '../../src/storage/s3-store.js';
import { minioClientFor, type EnvironmentInfo } from './environment.js';
import { TOOLS, toolPath, type ToolName } from './testbin.js';

/** kubectl 1.33 shipped with the Cloud SDK on the build machines; `/usr/bin/kubectl` is only a dispatcher. */
export const KUBECTL = process.env['LIVEUPDATE_KUBECTL'] ?? '/usr/lib/google-cloud-sdk/bin/kubectl.1.33';

/**
 * Pass as the third argument of `test()`: Jest reads `testTimeout` only from the root config, not from a project,
 * so integration tests would otherwise get the 5 s default.
 */
export const INTEGRATION_TEST_TIMEOUT_MS = 120_000;

let cachedInfo: EnvironmentInfo | undefined;

export function testEnvironment(): EnvironmentInfo {
  if (cachedInfo) return cachedInfo;
  const path = process.env['LIVEUPDATE_TEST_ENV'];
  if (!path) {
    throw new Error('LIVEUPDATE_TEST_ENV is not set: run integration tests with `npm run test:integration`');
  }
  cachedInfo = JSON.parse(readFileSync(path, 'utf8')) as EnvironmentInfo;
  return cachedInfo;
}

export function kubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(testEnvironment().kubeconfigPath);
  return kc;
}

/** Path of a cached Go tool (helm, kubeconform, ...), ensured by the global setup. */
export function toolBinary(name: ToolName): string {
  return toolPath(TOOLS[name]);
}

/** A DNS-1123 label (valid as namespace and bucket name): `<prefix>-<time>-<random>`, at most 63 characters. */
export function uniqueName(prefix: string): string {
  const clean =
    prefix
      .toLowerCase()
      .replace(/[^a-z0-9-]/g, '-')
      .slice(0, 40)
      .replace(/^-+|-+$/g, '') || 'test';
  return `${clean}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
}

const createdNamespaces: string[] = [];
const createdBuckets: string[] = [];

/** Creates a namespace of its own for one test. */
export async function newNamespace(prefix = 'test'): Promise<string> {
  const name = uniqueName(prefix);
  await kubeConfig()
    .makeApiClient(CoreV1Api)
    .createNamespace({ body: { metadata: { name, labels: { 'liveupdate.dev/test': 'true' } } } });
  createdNamespaces.push(name);
  return name;
}

export function s3Client(options: { readonly partSize?: number } = {}): MinioClient {
  return minioClientFor(testEnvironment().s3, options);
}

/** An S3ObjectStore on the test S3 server for `bucket`, with the environment's credentials. */
export function s3Store(
  bucket: string,
  overrides: Partial<ConstructorParameters<typeof S3ObjectStore>[0]> = {},
): S3ObjectStore {
  const { s3 } = testEnvironment();
  return new S3ObjectStore({
    endpoint: s3.endpoint,
    bucket,
    region: s3.region,
    accessKeyId: s3.accessKey,
    secretAccessKey: s3.secretKey,
    ...overrides,
  });
}

/** Creates a bucket of its own for one test. */
export async function newBucket(prefix = 'test'): Promise<string> {
  const name = uniqueName(prefix);
  await s3Client().makeBucket(name, testEnvironment().s3.region);
  createdBuckets.push(name);
  return name;
}

/** Removes every object and unfinished multipart upload, then the bucket. */
export async function deleteBucket(name: string): Promise<void> {
  const client = s3Client();
  if (!(await client.bucketExists(name))) return;
  const names: string[] = [];
  for await (const item of client.listObjectsV2(name, '', true) as AsyncIterable<BucketItem>) {
    if (item.name) names.push(item.name);
  }
  if (names.length > 0) await client.removeObjects(name, names);
  const uploads: string[] = [];
  for await (const upload of client.listIncompleteUploads(
    name,
    '',
    true,
  ) as AsyncIterable<IncompleteUploadedBucketItem>) {
    if (upload.key) uploads.push(upload.key);
  }
  for (const key of uploads) await client.removeIncompleteUpload(name, key);
  await client.removeBucket(name);
}

/**
 * Deletes this test file's namespaces and buckets. Namespaces only go Terminating: the environment has no
 * controller-manager to finalize them, which is harmless because every test uses fresh names.
 */
export async function cleanupTestResources(): Promise<void> {
  const core = kubeConfig().makeApiClient(CoreV1Api);
  const namespaces = createdNamespaces.splice(0);
  const buckets = createdBuckets.splice(0);
  const results = await Promise.allSettled([
    ...namespaces.map((name) => core.deleteNamespace({ name })),
    ...buckets.map((name) => deleteBucket(name)),
  ]);
  const failures = results.filter((result): result is PromiseRejectedResult => result.status === 'rejected');
  if (failures.length > 0) {
    throw new AggregateError(
      failures.map((failure) => failure.reason as unknown),
      'cleaning up test namespaces or buckets failed',
    );
  }
}
