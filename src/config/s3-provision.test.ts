import { ConfigError } from './common.js';
import { parseS3ProvisionConfig } from './s3-provision.js';

const ENV = {
  STORE_URL: 'http://127.0.0.1:9000',
  BUCKET: 'liveupdate',
  ROOT_ACCESS_KEY: 'root',
  ROOT_SECRET_KEY: 'root-secret',
  CONTROLLER_ACCESS_KEY: 'liveupdate-controller-a',
  CONTROLLER_SECRET_KEY: 'c-secret',
  UPDATE_SERVER_ACCESS_KEY: 'liveupdate-update-server-b',
  UPDATE_SERVER_SECRET_KEY: 'u-secret',
};

describe('s3-provision configuration', () => {
  it("reads the chart's provisioning container contract", () => {
    const c = parseS3ProvisionConfig([], ENV)!;
    expect(c.endpoint.href).toBe('http://127.0.0.1:9000/');
    expect(c.bucket).toBe('liveupdate');
    expect(c.root).toEqual({ accessKeyId: 'root', secretAccessKey: 'root-secret' });
    expect(c.controller.accessKeyId).toBe('liveupdate-controller-a');
    expect(c.updateServer.secretAccessKey).toBe('u-secret');
    expect(c.policiesDir).toBe('/policies');
    expect(c.intervalSeconds).toBe(300);
  });

  it('names every missing or bad option', () => {
    const parse = () =>
      parseS3ProvisionConfig([], { ...ENV, BUCKET: 'Not_A_Bucket', CONTROLLER_SECRET_KEY: '' });
    expect(parse).toThrow(ConfigError);
    expect(parse).toThrow(/BUCKET.*Not_A_Bucket/);
    expect(parse).toThrow(/CONTROLLER_SECRET_KEY/);
  });

  it('refuses a component user that is root or the other component', () => {
    expect(() => parseS3ProvisionConfig([], { ...ENV, CONTROLLER_ACCESS_KEY: 'root' })).toThrow(
      /three different users/,
    );
    expect(() =>
      parseS3ProvisionConfig([], { ...ENV, UPDATE_SERVER_ACCESS_KEY: 'liveupdate-controller-a' }),
    ).toThrow(/three different users/);
  });
});
