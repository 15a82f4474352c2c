/**
 * What a fetch needs from the Secrets a bundle's source names: credentials, CA bundles and client certificates, read
 * through the source-Secret label gate (docs/adr/0013-secret-access.md). A missing Secret or key stalls with a reason
 * and a message naming the Secret; values never reach logs, events or status.
 */
import { Reason, type LiveUpdateBundle } from '../../api/v1alpha1/index.js';
import type { LabelRequirement } from '../../config/controller.js';
import type { SecretReader, SecretReadOptions } from '../secret-cache.js';
import { StallingError } from '../common/errors.js';
import { readSecret } from '../common/secrets.js';
import type { FetchRequest } from './fetch.js';
import { clientCertificate, ociFetchOptions } from './fetch-oci.js';

export type SourceCredentials = Pick<FetchRequest, 'http' | 's3' | 'oci'>;

export async function sourceCredentials(
  secrets: SecretReader,
  bundle: LiveUpdateBundle,
  requiredLabel: LabelRequirement | undefined,
  read: SecretReadOptions = {},
): Promise<SourceCredentials> {
  const namespace = bundle.metadata.namespace ?? '';
  const { http, s3, oci } = bundle.spec.source;
  const secret = async (name: string): Promise<Map<string, Buffer>> => {
    const data = await readSecret(secrets, namespace, name, { ...read, required: requiredLabel });
    if (!data) throw new StallingError(Reason.SourceSecretNotFound, `Secret ${namespace}/${name} not found`);
    return data;
  };
  /** The PEM CA bundle under `key` (default ca.crt) of a caSecretRef. */
  const caBundle = async (ref: { name: string; key?: string }): Promise<string> => {
    const entry = ref.key ?? 'ca.crt';
    const ca = (await secret(ref.name)).get(entry);
    if (!ca)
      throw new StallingError(
        Reason.SourceSecretInvalid,
        `Secret ${namespace}/${ref.name} has no key ${entry}`,
      );
    return ca.toString('utf8');
  };
  if (http) {
    const result: NonNullable<FetchRequest['http']> = {};
    if (http.secretRef) {
      const data = await secret(http.secretRef.name);
      const text = (k: string) => data.get(k)?.toString('utf8');
      const token = text('token');
      const username = text('username');
      if (!token && username === undefined) {
        throw new StallingError(
          Reason.SourceSecretInvalid,
          `Secret ${namespace}/${http.secretRef.name} has neither token nor username`,
        );
      }
      result.credentials = token ? { token } : { username: username ?? '', password: text('password') ?? '' };
    }
    if (http.caSecretRef) result.ca = await caBundle(http.caSecretRef);
    if (http.certSecretRef) {
      const name = http.certSecretRef.name;
      Object.assign(result, clientCertificate(`${namespace}/${name}`, await secret(name)));
    }
    return { http: result };
  }
  if (oci) return { oci: await ociFetchOptions(oci, namespace, secret) };
  if (s3) {
    const result: NonNullable<FetchRequest['s3']> = {};
    if (s3.secretRef) {
      const data = await secret(s3.secretRef.name);
      const accessKey = data.get('accessKeyID')?.toString('utf8');
      const secretKey = data.get('secretAccessKey')?.toString('utf8');
      if (!accessKey || !secretKey) {
        throw new StallingError(
          Reason.SourceSecretInvalid,
          `Secret ${namespace}/${s3.secretRef.name} needs keys accessKeyID and secretAccessKey`,
        );
      }
      result.credentials = { accessKey, secretKey };
    }
    if (s3.caSecretRef) result.ca = await caBundle(s3.caSecretRef);
    return { s3: result };
  }
  return {};
}
