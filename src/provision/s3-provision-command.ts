/**
 * `liveupdate-operator s3-provision`: the chart's provisioning container beside an in-cluster versitygw store
 * (src/provision/versitygw.ts). It runs in the store's Pod, reaches the store over 127.0.0.1 and gets the three
 * credentials as environment variables from their Secrets, so it needs no Kubernetes API access (the Pod mounts no
 * ServiceAccount token). It repeats every --interval-seconds (a restored or rotated Secret is re-applied), retrying
 * failures, until stopped; with 0 it runs once: exit 0 when provisioned, 1 on failure, 2 on bad configuration.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { configOrExit } from '../config/common.js';
import {
  S3_PROVISION_OPTIONS,
  parseS3ProvisionConfig,
  type S3ProvisionConfig,
} from '../config/s3-provision.js';
import { createLogger } from '../observability/logger.js';
import { provisionVersitygw, type PolicyDocument } from './versitygw.js';

/** Wait before retrying a failed round in the repeating mode (the store may still be starting). */
const RETRY_MS = 5_000;

async function readPolicy(dir: string, file: string): Promise<PolicyDocument> {
  const path = join(dir, file);
  const parsed = JSON.parse(await readFile(path, 'utf8')) as unknown;
  if (
    parsed === null ||
    typeof parsed !== 'object' ||
    !Array.isArray((parsed as { Statement?: unknown }).Statement)
  ) {
    throw new Error(`${path} is not an IAM policy document with a Statement list`);
  }
  return parsed as PolicyDocument;
}

async function provisionOnce(config: S3ProvisionConfig, signal: AbortSignal) {
  return provisionVersitygw({
    endpoint: config.endpoint,
    region: config.region,
    bucket: config.bucket,
    root: config.root,
    users: [
      {
        component: 'controller',
        credentials: config.controller,
        policy: await readPolicy(config.policiesDir, 'controller.json'),
      },
      {
        component: 'update-server',
        credentials: config.updateServer,
        policy: await readPolicy(config.policiesDir, 'update-server.json'),
      },
    ],
    signal,
  });
}

export async function run(argv: string[], signal: AbortSignal): Promise<number> {
  const parsed = configOrExit('s3-provision', S3_PROVISION_OPTIONS, parseS3ProvisionConfig, argv);
  if ('exit' in parsed) return parsed.exit;
  const { config } = parsed;
  const logger = createLogger({ level: config.logLevel, name: 's3-provision' });
  while (!signal.aborted) {
    let wait = config.intervalSeconds * 1000;
    try {
      const outcome = await provisionOnce(config, signal);
      logger.info(
        { bucket: config.bucket, bucketOutcome: outcome.bucket, users: outcome.users },
        'store provisioned',
      );
      if (config.intervalSeconds === 0) return 0;
    } catch (err) {
      if (signal.aborted) break;
      logger.error(
        { err: err instanceof Error ? err.message : String(err) },
        'provisioning the store failed',
      );
      if (config.intervalSeconds === 0) return 1;
      wait = Math.min(wait, RETRY_MS);
    }
    await sleep(wait, undefined, { signal }).catch(() => undefined);
  }
  return 0;
}
