import { ConfigError } from './common.js';
import { parseS3CredentialsConfig } from './s3-credentials.js';

describe('s3-credentials configuration', () => {
  it('reads the environment contract of the chart hook Job', () => {
    const c = parseS3CredentialsConfig([], {
      POD_NAMESPACE: 'liveupdate-system',
      LIVEUPDATE_S3_CREDENTIAL_SECRETS: 'lu-s3-credentials=root, lu-s3-controller=controller',
      LIVEUPDATE_SECRET_LABELS: '{"app.kubernetes.io/component":"s3"}',
    })!;
    expect(c.namespace).toBe('liveupdate-system');
    expect(c.secrets).toEqual([
      { name: 'lu-s3-credentials', user: 'root' },
      { name: 'lu-s3-controller', user: 'controller' },
    ]);
    expect(c.accessKeyIdKey).toBe('accessKeyId');
    expect(c.secretAccessKeyKey).toBe('secretAccessKey');
    expect(c.labels).toEqual({ 'app.kubernetes.io/component': 's3' });
    expect(c.annotations).toEqual({});
  });

  it('names every bad option', () => {
    const parse = () =>
      parseS3CredentialsConfig([], {
        LIVEUPDATE_S3_CREDENTIAL_SECRETS: 'Bad_Name=root',
        LIVEUPDATE_SECRET_LABELS: '{"a":1}',
      });
    expect(parse).toThrow(ConfigError);
    expect(parse).toThrow(/LIVEUPDATE_NAMESPACE/);
    expect(parse).toThrow(/LIVEUPDATE_S3_CREDENTIAL_SECRETS.*Bad_Name=root/);
    expect(parse).toThrow(/LIVEUPDATE_SECRET_LABELS.*JSON object of strings/);
  });

  it('refuses one key for both values', () => {
    expect(() =>
      parseS3CredentialsConfig(['--access-key-id-key', 'k', '--secret-access-key-key', 'k'], {
        POD_NAMESPACE: 'ns',
        LIVEUPDATE_S3_CREDENTIAL_SECRETS: 'a=root',
      }),
    ).toThrow(/must differ/);
  });
});
