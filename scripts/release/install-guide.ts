// INSTALL.md of the offline release folder: the admin's steps, the same ones docs/getting-started-airgapped.md
// describes and test/integration/release/offline-release.test.ts runs against a real registry.
import type { BuiltImage } from '../image/build.js';

export function installGuide(release: {
  version: string;
  image: BuiltImage;
  files: {
    imageArchive: string;
    imagePayload: string;
    imageSignature: string;
    chart: string;
    chartSignature: string;
  };
}): string {
  const { version, image, files } = release;
  const repository = image.reference.replace(/:[^:/]+$/, '').replace(/^[^/]+\//, '');
  return `# liveupdate-operator ${version}: offline installation

This folder is everything needed to install liveupdate-operator ${version} in a cluster without Internet access.
Tools on the transfer machine: \`sha256sum\`, \`cosign\` (v2), \`skopeo\` (or \`oras\`/\`crane\`), \`helm\` 3.
Nothing below contacts the Internet: the signatures are keyed cosign signatures, verified without a transparency log.

| file | what |
| --- | --- |
| \`${files.imageArchive}\` | the operator image, an OCI archive (\`${image.reference}\`, digest \`${image.digest}\`) |
| \`${files.imagePayload}\`, \`${files.imageSignature}\` | cosign signature of the image digest, to attach in your registry |
| \`${files.chart}\`, \`${files.chartSignature}\` | the Helm chart and its cosign signature |
| \`sbom/*.cdx.json\` | CycloneDX SBOMs (syft) of the image and of the npm dependency tree |
| \`images.txt\` | every image the chart references by default |
| \`cosign.pub\` | the public key that verifies every signature here |
| \`SHA256SUMS\`, \`SHA256SUMS.sig\` | checksums of every file and their signature |

Compare \`cosign.pub\` with the key the project publishes before trusting anything signed by it.

## 1. Verify the folder

\`\`\`sh
cosign verify-blob --key cosign.pub --insecure-ignore-tlog=true --signature SHA256SUMS.sig SHA256SUMS
sha256sum -c SHA256SUMS
cosign verify-blob --key cosign.pub --insecure-ignore-tlog=true --signature ${files.chartSignature} ${files.chart}
\`\`\`

## 2. Push the image into your registry and attach its signature

\`\`\`sh
MIRROR=registry.internal/mirror      # your registry (and path)
DIGEST=${image.digest}
skopeo copy --preserve-digests oci-archive:${files.imageArchive} docker://$MIRROR/${repository}:${version}
cosign attach signature --payload ${files.imagePayload} --signature ${files.imageSignature} \\
  $MIRROR/${repository}@$DIGEST
cosign verify --key cosign.pub --insecure-ignore-tlog=true $MIRROR/${repository}@$DIGEST
\`\`\`

\`skopeo copy\` keeps the digest (the registry reports \`$DIGEST\`); \`cosign verify\` checks the signature against that
digest. Add \`--dest-creds user:password\` / \`--dest-cert-dir\` (skopeo) and \`docker login\` / \`SSL_CERT_FILE\` (cosign)
as your registry needs.

## 3. Install the chart, pinned to the digest

\`\`\`sh
helm install liveupdate-operator ./${files.chart} -n liveupdate-system --create-namespace \\
  --set global.imageRegistry=$MIRROR --set image.digest=$DIGEST -f values-airgapped.yaml
\`\`\`

See the project's \`docs/getting-started-airgapped.md\` for the values (S3 store, Ingress, NetworkPolicies) and the
first bundle. \`helm template\` (offline rendering, GitOps review) needs \`--kube-version\` (e.g. \`--kube-version 1.34.4\`):
without a cluster helm assumes Kubernetes 1.20, below the chart's minimum of 1.30.
`;
}
