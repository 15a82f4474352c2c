// The signed offline release (docs/adr/0021-signed-offline-release.md): one folder (and a tarball of it) an admin
// carries into the air gap. The image as an OCI archive, the chart as `helm package` makes it, SBOMs written by syft,
// cosign keyed signatures (no Rekor, no Fulcio: verifiable offline) of the image digest, the chart and the checksum
// list, images.txt, SHA256SUMS and INSTALL.md.
import { chmod, copyFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { buildImage, sha256File, type BuiltImage, type Log } from '../image/build.js';
import { run } from '../image/containers.js';
import { installGuide } from './install-guide.js';

export interface ReleaseTools {
  readonly helm: string;
  readonly cosign: string;
  readonly syft: string;
}

export interface ReleaseOptions {
  readonly repo: string;
  /** Parent folder of `liveupdate-operator-<version>/` and its tarball. */
  readonly outDir: string;
  readonly tools: ReleaseTools;
  /** cosign private key (password in COSIGN_PASSWORD); without it a throwaway key pair signs (dry runs, tests). */
  readonly key?: string;
  readonly log?: Log;
}

export interface Release {
  readonly version: string;
  readonly dir: string;
  readonly tarball: string;
  readonly image: BuiltImage;
  /** Relative paths inside `dir`. */
  readonly files: {
    readonly imageArchive: string;
    readonly imagePayload: string;
    readonly imageSignature: string;
    readonly chart: string;
    readonly chartSignature: string;
    readonly checksums: string;
    readonly checksumsSignature: string;
    readonly publicKey: string;
    readonly imageSbom: string;
    readonly npmSbom: string;
  };
}

/** Environment for cosign and syft: nothing reaches a network (no update checks, no transparency log). */
function offlineEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    SYFT_CHECK_FOR_APP_UPDATE: 'false',
    COSIGN_YES: 'true',
    COSIGN_PASSWORD: process.env['COSIGN_PASSWORD'] ?? '',
    ...extra,
  };
}

export async function buildRelease(options: ReleaseOptions): Promise<Release> {
  const log = options.log ?? ((message: string) => process.stderr.write(`[release] ${message}\n`));
  const { version } = JSON.parse(await readFile(join(options.repo, 'package.json'), 'utf8')) as {
    version: string;
  };
  const name = `liveupdate-operator-${version}`;
  const dir = join(options.outDir, name);
  await rm(dir, { recursive: true, force: true });
  for (const sub of ['images', 'charts', 'sbom']) await mkdir(join(dir, sub), { recursive: true });

  const image = await buildImage({ repo: options.repo, log });
  const files = {
    imageArchive: `images/${name}.oci.tar`,
    imagePayload: `images/${name}.oci.tar.payload.json`,
    imageSignature: `images/${name}.oci.tar.sig`,
    chart: `charts/${name}.tgz`,
    chartSignature: `charts/${name}.tgz.sig`,
    checksums: 'SHA256SUMS',
    checksumsSignature: 'SHA256SUMS.sig',
    publicKey: 'cosign.pub',
    imageSbom: `sbom/${name}.image.cdx.json`,
    npmSbom: `sbom/${name}.npm.cdx.json`,
  };
  await copyFile(image.archive, join(dir, files.imageArchive));

  log('packaging the chart');
  await run(options.tools.helm, [
    'package',
    join(options.repo, 'charts', 'liveupdate-operator'),
    '--destination',
    join(dir, 'charts'),
  ]);
  if (basename(files.chart) !== `${name}.tgz`) throw new Error('unexpected chart file name');

  log('writing SBOMs with syft (the image; the npm dependency tree of package-lock.json)');
  await run(
    options.tools.syft,
    [
      'scan',
      `oci-archive:${join(dir, files.imageArchive)}`,
      '-q',
      '-o',
      `cyclonedx-json=${join(dir, files.imageSbom)}`,
    ],
    { env: offlineEnv() },
  );
  const lockDir = join(options.outDir, `.${name}-lock`);
  await rm(lockDir, { recursive: true, force: true });
  await mkdir(lockDir);
  try {
    for (const file of ['package.json', 'package-lock.json'])
      await copyFile(join(options.repo, file), join(lockDir, file));
    await run(
      options.tools.syft,
      [
        'scan',
        `dir:${lockDir}`,
        '-q',
        '--source-name',
        'liveupdate-operator',
        '--source-version',
        version,
        '-o',
        `cyclonedx-json=${join(dir, files.npmSbom)}`,
      ],
      { env: offlineEnv() },
    );
  } finally {
    await rm(lockDir, { recursive: true, force: true });
  }

  // The signing key: the maintainer's, or a throwaway pair whose private half never enters the folder.
  const keyDir = join(options.outDir, `.${name}-key`);
  await rm(keyDir, { recursive: true, force: true });
  await mkdir(keyDir, { mode: 0o700 });
  try {
    let key = options.key;
    let env = offlineEnv();
    if (key === undefined) {
      log('no --key: signing with a throwaway key pair (a dry run; publish releases signed with your key)');
      env = offlineEnv({ COSIGN_PASSWORD: '' });
      await run(options.tools.cosign, ['generate-key-pair'], { cwd: keyDir, env });
      key = join(keyDir, 'cosign.key');
      await copyFile(join(keyDir, 'cosign.pub'), join(dir, files.publicKey));
    } else {
      await writeFile(
        join(dir, files.publicKey),
        await run(options.tools.cosign, ['public-key', '--key', key], { env }),
      );
    }
    const signBlob = async (file: string, signature: string) => {
      await run(
        options.tools.cosign,
        [
          'sign-blob',
          '--key',
          key,
          '--tlog-upload=false',
          '--output-signature',
          join(dir, signature),
          join(dir, file),
        ],
        { env },
      );
      // cosign writes signatures owner-only; they are public.
      await chmod(join(dir, signature), 0o644);
    };

    log(`signing the image ${image.digest} (cosign simple-signing payload, attached after the push)`);
    // `cosign generate` writes the payload `cosign sign` would sign, offline for a digest reference; the admin
    // attaches payload and signature in the mirror with `cosign attach signature` and verifies with `cosign verify`.
    const payload = await run(
      options.tools.cosign,
      ['generate', `${image.reference.replace(/:[^:/]+$/, '')}@${image.digest}`],
      {
        env,
      },
    );
    await writeFile(join(dir, files.imagePayload), payload);
    await signBlob(files.imagePayload, files.imageSignature);
    await signBlob(files.chart, files.chartSignature);

    await writeFile(join(dir, 'images.txt'), await imagesTxt(options.repo, image));
    await writeFile(join(dir, 'INSTALL.md'), installGuide({ version, image, files }));
    const listed = [
      files.imageArchive,
      files.imagePayload,
      files.imageSignature,
      files.chart,
      files.chartSignature,
      files.imageSbom,
      files.npmSbom,
      files.publicKey,
      'images.txt',
      'INSTALL.md',
    ];
    const sums = await Promise.all(
      listed.map(async (file) => `${await sha256File(join(dir, file))}  ${file}`),
    );
    await writeFile(join(dir, files.checksums), `${sums.join('\n')}\n`);
    await signBlob(files.checksums, files.checksumsSignature);
  } finally {
    await rm(keyDir, { recursive: true, force: true });
  }

  const tarball = join(options.outDir, `${name}.tar`);
  // The layers inside the archive are gzip already: a plain tar, with stable owner and order.
  await run('tar', [
    '--sort=name',
    '--owner=0',
    '--group=0',
    '--numeric-owner',
    '-cf',
    tarball,
    '-C',
    options.outDir,
    name,
  ]);
  return { version, dir, tarball, image, files };
}

/**
 * images.txt of the release: the operator image by tag and digest (shipped in the folder), then the other images the
 * chart references by default (deploy/images.txt; not shipped: the S3 store image is the admin's choice).
 */
async function imagesTxt(repo: string, image: BuiltImage): Promise<string> {
  const others = (await readFile(join(repo, 'deploy', 'images.txt'), 'utf8'))
    .split('\n')
    .filter(
      (line) =>
        line.trim() && !line.startsWith('#') && !line.startsWith(image.reference.replace(/:[^:/]+$/, '')),
    );
  return [
    '# The operator image of this release (images/*.oci.tar), by tag and digest:',
    `${image.reference}@${image.digest}`,
    '# Referenced by the chart defaults but not shipped here (the in-cluster S3 store; any S3 server image works):',
    ...others,
    '',
  ].join('\n');
}
