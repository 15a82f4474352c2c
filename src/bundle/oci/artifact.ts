/** A bundle as an OCI artifact: choosing the bundle layer of a pulled manifest, and pushing a zip or tarball. */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { OciError } from './errors.js';
import {
  BUNDLE_ARTIFACT_TYPE,
  BUNDLE_LAYERS,
  BUNDLE_TARBALL_LAYER,
  BUNDLE_ZIP_LAYER,
  OCI_EMPTY_CONFIG,
  OCI_EMPTY_JSON,
  OCI_MANIFEST,
  TITLE_ANNOTATION,
} from './media-types.js';
import type { Descriptor, ImageManifest, RegistryClient } from './registry-client.js';

/**
 * The layer that holds the bundle: the one with `mediaType` when given; else the one with a bundle media type;
 * else the only layer (a plain `oras push` of one file). Several candidates are refused as ambiguous.
 */
export function selectBundleLayer(manifest: ImageManifest, mediaType?: string): Descriptor {
  const layers = manifest.layers;
  const pick = (candidates: Descriptor[], why: string): Descriptor => {
    if (candidates.length === 1) return candidates[0]!;
    throw new OciError(
      'OciLayerAmbiguous',
      `${candidates.length === 0 ? 'no' : candidates.length} layer(s) ${why}; the artifact needs exactly one bundle layer`,
    );
  };
  if (mediaType)
    return pick(
      layers.filter((l) => l.mediaType === mediaType),
      `of media type ${mediaType}`,
    );
  const ours = layers.filter((l) => BUNDLE_LAYERS.includes(l.mediaType));
  if (ours.length > 0) return pick(ours, `of the bundle media types`);
  return pick(layers, 'in the manifest and none of a bundle media type');
}

export interface PushedArtifact {
  manifestDigest: string;
  layerDigest: string;
  size: number;
}

/** Pushes a zip (or tar.gz) as a one-layer artifact with the bundle media types and tags it. */
export async function pushBundleArtifact(
  client: RegistryClient,
  repository: string,
  tag: string,
  file: { path: string; size: number; sha256: string; format: 'zip' | 'tarball'; title: string },
  annotations: Record<string, string>,
  signal: AbortSignal,
): Promise<PushedArtifact> {
  const layer: Descriptor = {
    mediaType: file.format === 'zip' ? BUNDLE_ZIP_LAYER : BUNDLE_TARBALL_LAYER,
    digest: `sha256:${file.sha256}`,
    size: file.size,
    annotations: { [TITLE_ANNOTATION]: file.title },
  };
  const config: Descriptor = {
    mediaType: OCI_EMPTY_CONFIG,
    digest: `sha256:${createHash('sha256').update(OCI_EMPTY_JSON).digest('hex')}`,
    size: OCI_EMPTY_JSON.length,
  };
  await client.pushBlob(repository, { ...config, body: OCI_EMPTY_JSON }, signal);
  await client.pushBlob(
    repository,
    { digest: layer.digest, size: layer.size, body: () => createReadStream(file.path) },
    signal,
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType: BUNDLE_ARTIFACT_TYPE,
      config,
      layers: [layer],
      ...(Object.keys(annotations).length > 0 ? { annotations } : {}),
    }),
  );
  const manifestDigest = await client.pushManifest(repository, tag, manifest, OCI_MANIFEST, signal);
  return { manifestDigest, layerDigest: layer.digest, size: file.size };
}
