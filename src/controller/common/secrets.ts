/** Reading Secrets for reconcilers: values are decoded here and never logged, put in events or status. */
import { Reason, type LiveUpdateApp } from '../../api/v1alpha1/index.js';
import { KeyError, loadSigningKey, type SigningKey } from '../../bundle/index.js';
import type { LabelRequirement } from '../../config/controller.js';
import type { SecretReader, SecretReadOptions } from '../secret-cache.js';
import { StallingError } from './errors.js';

export interface ReadSecretOptions extends SecretReadOptions {
  /** A label the Secret must carry (ADR 0013). */
  required?: LabelRequirement | undefined;
}

/**
 * The Secret's decoded data, or undefined when it does not exist. With `required`, a Secret without that label
 * stalls with SourceSecretNotAllowed before its data is used (docs/adr/0013-secret-access.md): a bundle author may
 * name any Secret of the namespace, so only Secrets an admin marked may be sent to an artifact source.
 */
export async function readSecret(
  secrets: SecretReader,
  namespace: string,
  name: string,
  { required, ...read }: ReadSecretOptions = {},
): Promise<Map<string, Buffer> | undefined> {
  const secret = await secrets.get({ namespace, name }, read);
  if (!secret) return undefined;
  if (required) {
    const value = secret.metadata.labels?.[required.key];
    if (value === undefined || (required.value !== undefined && value !== required.value)) {
      const label = required.value === undefined ? required.key : `${required.key}=${required.value}`;
      throw new StallingError(
        Reason.SourceSecretNotAllowed,
        `Secret ${namespace}/${name} lacks the label ${label} that Secrets used by bundle sources must carry`,
      );
    }
  }
  return new Map(Object.entries(secret.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64')]));
}

export const DEFAULT_SIGNING_KEY_ENTRY = 'private.pem';

/**
 * Signing keys parsed from the Secret copies the cache shares (deep-frozen, one object per version read), so a key is
 * parsed once per Secret version instead of once per bundle build (≈ 0.3 ms each in the controller's profile,
 * docs/performance.md). A copy of its own (no cache) is parsed every time; a refused key is never remembered.
 */
const parsedSigningKeys = new WeakMap<object, Map<string, SigningKey>>();

/**
 * The app's signing key from its Secret. Stalls with SigningKeySecretNotFound, SigningKeyMissing, or the key
 * library's reason (KeyPkcs8PrivateKey, KeyWrongSize, ...) when the key cannot be used.
 */
export async function readSigningKey(
  secrets: SecretReader,
  app: LiveUpdateApp,
  read: SecretReadOptions = {},
): Promise<SigningKey | undefined> {
  const ref = app.spec.signingKey;
  if (!ref) return undefined;
  const namespace = app.metadata.namespace ?? '';
  const entry = ref.key ?? DEFAULT_SIGNING_KEY_ENTRY;
  const secret = await secrets.get({ namespace, name: ref.secretName }, read);
  if (!secret) {
    throw new StallingError(
      Reason.SigningKeySecretNotFound,
      `signing key Secret ${namespace}/${ref.secretName} not found`,
    );
  }
  const shared = secret.data !== undefined && Object.isFrozen(secret.data) ? secret.data : undefined;
  const parsed = shared && parsedSigningKeys.get(shared)?.get(entry);
  if (parsed) return parsed;
  const pem = Buffer.from(secret.data?.[entry] ?? '', 'base64');
  if (pem.length === 0) {
    throw new StallingError(
      Reason.SigningKeyMissing,
      `signing key Secret ${namespace}/${ref.secretName} has no key ${entry}`,
    );
  }
  try {
    const key = loadSigningKey(pem.toString('utf8'));
    if (shared) {
      let keys = parsedSigningKeys.get(shared);
      if (!keys) parsedSigningKeys.set(shared, (keys = new Map<string, SigningKey>()));
      keys.set(entry, key);
    }
    return key;
  } catch (error) {
    if (error instanceof KeyError) {
      throw new StallingError(
        error.reason,
        `signing key in Secret ${namespace}/${ref.secretName} key ${entry}: ${error.message}`,
      );
    }
    throw error;
  }
}
