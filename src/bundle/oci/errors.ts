import { BundleError } from '../errors.js';

/**
 * Why an OCI artifact or its signature is refused. Transport failures (network, 5xx) are not OciErrors: they are
 * {@link RegistryHttpError}s or Node errors, which callers classify as transient.
 */
export type OciErrorReason =
  | 'OciReferenceInvalid'
  | 'OciManifestNotFound'
  | 'OciUnauthorized'
  | 'OciUnsupportedManifest'
  | 'OciLayerAmbiguous'
  | 'OciDigestMismatch'
  | 'OciTagMoved'
  | 'OciDockerConfigInvalid'
  | 'SignatureMissing'
  | 'SignatureInvalid'
  | 'SignatureDigestMismatch'
  | 'VerificationKeyInvalid';

export class OciError extends BundleError {
  override readonly name = 'OciError';
  constructor(
    readonly reason: OciErrorReason,
    message: string,
  ) {
    super(message);
  }
}

/** A registry answered with an unexpected HTTP status. */
export class RegistryHttpError extends Error {
  override readonly name = 'RegistryHttpError';
  constructor(
    readonly status: number,
    readonly url: string,
    detail: string,
  ) {
    super(`${url} answered HTTP ${status}${detail ? `: ${detail}` : ''}`);
  }
}
