// `npm run image`: builds the operator image from the Dockerfile with buildah (docs/adr/0020), writes it as an OCI
// archive and prints where it is and its digest. Options: `--archive <path>` to write the archive elsewhere.
import { parseArgs } from 'node:util';
import { repoRoot } from '../test/env/process-utils.js';
import { buildImage } from './image/build.js';

const { values } = parseArgs({ options: { archive: { type: 'string' } } });
const started = Date.now();
buildImage({ repo: repoRoot(), ...(values.archive !== undefined ? { archive: values.archive } : {}) }).then(
  (image) => {
    console.log(
      [
        `image:   ${image.reference} (id ${image.imageId.slice(0, 12)}, ${image.size}, Node ${image.nodeVersion})`,
        `archive: ${image.archive}`,
        `digest:  ${image.digest}`,
        `took:    ${Math.round((Date.now() - started) / 1000)} s`,
      ].join('\n'),
    );
  },
  (error: unknown) => {
    console.error(error instanceof Error ? error.message : error);
    process.exit(1);
  },
);
