/**
 * Media types of a live-update bundle stored as an OCI artifact (docs/adr/0022-oci-artifact-source.md).
 *
 * Manifest: an OCI image manifest (`application/vnd.oci.image.manifest.v1+json`) with `artifactType`
 * {@link BUNDLE_ARTIFACT_TYPE}, the OCI 1.1 empty config, and exactly one layer: the web build as a zip
 * ({@link BUNDLE_ZIP_LAYER}) or as a tar.gz of the build directory ({@link BUNDLE_TARBALL_LAYER}).
 * A plain `oras push <ref> bundle.zip` (one layer of `application/vnd.oci.image.layer.v1.tar`) is accepted too:
 * with a single layer the media type does not matter, the content is recognised by its magic bytes.
 */
export const BUNDLE_ARTIFACT_TYPE = 'application/vnd.liveupdate.bundle.v1';
export const BUNDLE_ZIP_LAYER = 'application/vnd.liveupdate.bundle.layer.v1.zip';
export const BUNDLE_TARBALL_LAYER = 'application/vnd.liveupdate.bundle.layer.v1.tar+gzip';
export const BUNDLE_LAYERS: readonly string[] = [BUNDLE_ZIP_LAYER, BUNDLE_TARBALL_LAYER];

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
export const DOCKER_MANIFEST_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
export const OCI_EMPTY_CONFIG = 'application/vnd.oci.empty.v1+json';
/** The OCI 1.1 empty descriptor's content `{}`. */
export const OCI_EMPTY_JSON = Buffer.from('{}');
export const OCI_IMAGE_CONFIG = 'application/vnd.oci.image.config.v1+json';

/** cosign's signature layer: the "simple signing" payload, signed; the signature is in an annotation. */
export const COSIGN_SIMPLE_SIGNING = 'application/vnd.dev.cosign.simplesigning.v1+json';
export const COSIGN_SIGNATURE_ANNOTATION = 'dev.cosignproject.cosign/signature';
export const COSIGN_SIGNATURE_TYPE = 'cosign container image signature';
/** artifactType of cosign signatures stored as OCI 1.1 referrers (`--registry-referrers-mode=oci-1-1`). */
export const COSIGN_SIGNATURE_ARTIFACT = 'application/vnd.dev.cosign.artifact.sig.v1+json';

export const TITLE_ANNOTATION = 'org.opencontainers.image.title';
export const VERSION_ANNOTATION = 'org.opencontainers.image.version';
