/**
 * `liveupdate-operator s3-credentials`: creates the in-cluster S3 store's credential Secrets that are missing and
 * keeps the ones that exist (src/provision/s3-credentials.ts). Runs once, as the chart's pre-install/pre-upgrade hook
 * Job, with a ServiceAccount that may only create Secrets and read the ones it names. Exit 0 when every Secret is
 * present and complete, 1 otherwise, 2 on bad configuration.
 */
import { configOrExit } from '../config/common.js';
import { S3_CREDENTIALS_OPTIONS, parseS3CredentialsConfig } from '../config/s3-credentials.js';
import { KubeClient } from '../kube/client.js';
import { loadKubeConfig } from '../kube/config.js';
import { createLogger } from '../observability/logger.js';
import { ensureCredentialSecrets } from './s3-credentials.js';

export const FIELD_MANAGER = 'liveupdate-s3-credentials';

export async function run(argv: string[], _signal: AbortSignal): Promise<number> {
  const parsed = configOrExit('s3-credentials', S3_CREDENTIALS_OPTIONS, parseS3CredentialsConfig, argv);
  if ('exit' in parsed) return parsed.exit;
  const { config } = parsed;
  const logger = createLogger({ level: config.logLevel, name: 's3-credentials' });
  try {
    const client = new KubeClient(loadKubeConfig(config.kubeconfig), {
      fieldManager: FIELD_MANAGER,
      userAgent: 'liveupdate-operator/s3-credentials',
    });
    const outcomes = await ensureCredentialSecrets(client, config);
    for (const { name, outcome } of outcomes) {
      logger.info({ namespace: config.namespace, name, outcome }, `credentials secret ${outcome}`);
    }
    return 0;
  } catch (err) {
    logger.error(
      { err: err instanceof Error ? err.message : String(err) },
      'ensuring the credential secrets failed',
    );
    return 1;
  }
}
