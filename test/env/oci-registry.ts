// A real OCI registry (CNCF Distribution v3, the cached binary) of a test's own: 127.0.0.1, a random port, TLS from a
// throwaway CA and htpasswd basic auth, storage in a temp dir. Also the environment that makes the real `oras` and
// `cosign` binaries trust it and log in to it (a docker config dir and SSL_CERT_FILE), and the docker-config JSON a
// pull Secret holds.
import type { ChildProcess } from 'node:child_process';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import bcrypt from 'bcryptjs';
import { fileTail, freePort, spawnOwned } from './process-utils.js';
import { TOOLS, toolPath, type ToolName } from './testbin.js';
import { testCertificateAuthority, type IssuedCertificate, type TestCertificateAuthority } from './tls.js';

export interface TestRegistry {
  /** The registry's temp dir: tools run in it, key pairs made there land there. */
  readonly dir: string;
  /** host:port, as it appears in references (`127.0.0.1:5123/team/app:1.0.0`). */
  readonly host: string;
  /** https://host:port (or http:// without TLS). */
  readonly url: string;
  readonly username: string;
  readonly password: string;
  /** PEM of the CA that issued the registry's certificate (undefined without TLS). */
  readonly ca: string | undefined;
  /** The CA, to issue client certificates when the registry requires them (mTLS). */
  readonly authority: TestCertificateAuthority;
  /** `.dockerconfigjson` content with this registry's credentials. */
  readonly dockerConfigJson: string;
  /** Environment for oras/cosign: DOCKER_CONFIG with the credentials, SSL_CERT_FILE trusting the CA. */
  readonly toolEnv: NodeJS.ProcessEnv;
  /** Runs one of the cached OCI tools (oras, cosign) against this registry; rejects with its output on failure. */
  run(
    tool: Extract<ToolName, 'oras' | 'cosign'>,
    args: readonly string[],
    env?: NodeJS.ProcessEnv,
  ): Promise<string>;
  /** Where the registry keeps a blob's bytes (to tamper with them behind its back). */
  blobPath(digest: string): string;
  stop(): Promise<void>;
}

export interface RegistryOptions {
  /** Serve plain HTTP instead of TLS (for the insecure-source tests). Default false. */
  readonly plainHttp?: boolean;
  /** Require basic auth (default true). */
  readonly auth?: boolean;
  /** Require a client certificate issued by the registry's CA (mTLS). Default false. */
  readonly clientCertificates?: boolean;
}

export async function startTestRegistry(options: RegistryOptions = {}): Promise<TestRegistry> {
  const binary = toolPath(TOOLS.registry);
  if (!existsSync(binary)) throw new Error(`registry not built at ${binary}: run npm run testbin`);
  const dir = await mkdtemp(join(tmpdir(), 'lu-registry-'));
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  const tls = options.plainHttp !== true;
  const auth = options.auth !== false;
  const username = `ci-${randomBytes(3).toString('hex')}`;
  const password = randomBytes(12).toString('base64url');
  const authority = testCertificateAuthority('liveupdate-test-registry-ca');
  const server: IssuedCertificate = authority.issue('server');
  await mkdir(join(dir, 'data'));
  await mkdir(join(dir, 'docker'));
  await writeFile(join(dir, 'ca.crt'), authority.cert);
  await writeFile(join(dir, 'server.crt'), server.cert);
  await writeFile(join(dir, 'server.key'), server.key, { mode: 0o600 });
  await writeFile(join(dir, 'htpasswd'), `${username}:${bcrypt.hashSync(password, 10)}\n`);
  const config = [
    'version: 0.1',
    'log:',
    '  level: warn',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${join(dir, 'data')}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: ${host}`,
    `  secret: ${randomBytes(16).toString('hex')}`,
    ...(tls
      ? [
          '  tls:',
          `    certificate: ${join(dir, 'server.crt')}`,
          `    key: ${join(dir, 'server.key')}`,
          ...(options.clientCertificates ? ['    clientcas:', `      - ${join(dir, 'ca.crt')}`] : []),
        ]
      : []),
    ...(auth
      ? ['auth:', '  htpasswd:', '    realm: liveupdate-test', `    path: ${join(dir, 'htpasswd')}`]
      : []),
  ].join('\n');
  await writeFile(join(dir, 'config.yml'), `${config}\n`);
  const dockerConfigJson = JSON.stringify({
    auths: { [host]: { auth: Buffer.from(`${username}:${password}`).toString('base64') } },
  });
  await writeFile(join(dir, 'docker', 'config.json'), dockerConfigJson, { mode: 0o600 });
  const toolEnv: NodeJS.ProcessEnv = {
    ...process.env,
    DOCKER_CONFIG: join(dir, 'docker'),
    SSL_CERT_FILE: join(dir, 'ca.crt'),
    HOME: dir,
  };

  const log = join(dir, 'registry.log');
  const out = openSync(log, 'a');
  const child: ChildProcess = spawnOwned(binary, ['serve', join(dir, 'config.yml')], {
    // Distribution v3 exports OpenTelemetry traces by default; nothing listens for them here.
    env: { ...process.env, OTEL_TRACES_EXPORTER: 'none', OTEL_SDK_DISABLED: 'true' },
    stdio: ['ignore', out, out],
  });
  closeSync(out);
  const url = `${tls ? 'https' : 'http'}://${host}`;
  const probeCertificate = options.clientCertificates
    ? authority.issue('client', 'readiness-probe')
    : undefined;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) {
      throw new Error(`registry exited with ${child.exitCode}:\n${await fileTail(log)}`);
    }
    if (await answers(host, tls, probeCertificate)) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`registry did not answer within 30 s:\n${await fileTail(log)}`);
    }
    await sleep(100);
  }

  const run = (tool: 'oras' | 'cosign', args: readonly string[], env?: NodeJS.ProcessEnv) =>
    new Promise<string>((resolve, reject) => {
      execFile(
        toolPath(TOOLS[tool]),
        [...args],
        { env: { ...toolEnv, ...env }, cwd: dir, timeout: 120_000, maxBuffer: 16 << 20 },
        (error, stdout, stderr) => {
          if (error)
            reject(new Error(`${tool} ${args.join(' ')} failed: ${error.message}\n${stderr}${stdout}`));
          else resolve(`${stdout}${stderr}`);
        },
      );
    });

  return {
    dir,
    host,
    url,
    username,
    password,
    ca: tls ? authority.cert : undefined,
    authority,
    dockerConfigJson,
    toolEnv,
    run,
    blobPath(digest) {
      const hex = digest.replace(/^sha256:/, '');
      return join(dir, 'data', 'docker', 'registry', 'v2', 'blobs', 'sha256', hex.slice(0, 2), hex, 'data');
    },
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Whether the registry answers /v2/ at all (401 counts: auth is on). TLS is not checked here, only liveness. */
function answers(host: string, tls: boolean, client?: IssuedCertificate): Promise<boolean> {
  const request = tls ? httpsRequest : httpRequest;
  return new Promise((resolve) => {
    const req = request(`${tls ? 'https' : 'http'}://${host}/v2/`, {
      rejectUnauthorized: false,
      timeout: 1000,
      ...(client ? { cert: client.cert, key: client.key } : {}),
    });
    req.on('response', (res) => {
      res.resume();
      resolve(true);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}
