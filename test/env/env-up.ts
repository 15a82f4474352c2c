// `npm run env:up`: the integration-test environment for manual use, until Ctrl-C.
import { startEnvironment } from './environment.js';

async function main(): Promise<void> {
  const log = (message: string) => console.error(`[env] ${message}`);
  log('starting etcd, kube-apiserver and versitygw (building missing tools first)...');
  const running: { stop?: () => Promise<void> } = {};
  const onSignal = (signal: NodeJS.Signals) => {
    if (!running.stop) {
      // Still starting: exiting runs startEnvironment's 'exit' handler, which kills the servers and removes the dir.
      process.exit(130);
    }
    log(`${signal}: stopping`);
    void running.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        console.error(error);
        process.exit(1);
      },
    );
  };
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, onSignal);
  const env = await startEnvironment({ progress: log, handleSignals: false });
  running.stop = env.stop;
  const { s3 } = env;
  console.log(
    [
      `environment ready in ${env.startupMs} ms (temp dir ${env.tmpDir})`,
      '',
      `kubeconfig:  ${env.kubeconfigPath}`,
      `API server:  ${env.apiServerUrl}`,
      `admin token: ${env.token}`,
      `S3 endpoint: ${s3.endpoint}  (region ${s3.region}, path-style)`,
      `S3 access key: ${s3.accessKey}`,
      `S3 secret key: ${s3.secretKey}`,
      '',
      `export KUBECONFIG=${env.kubeconfigPath}`,
      `export AWS_ACCESS_KEY_ID=${s3.accessKey} AWS_SECRET_ACCESS_KEY=${s3.secretKey} AWS_REGION=${s3.region} AWS_ENDPOINT_URL=${s3.endpoint}`,
      '',
      'Press Ctrl-C to stop (servers are stopped and the temp dir is removed).',
    ].join('\n'),
  );
  // Keeps the process alive until a signal arrives.
  setInterval(() => undefined, 1 << 30);
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
