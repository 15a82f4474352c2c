import { collectionPath, isRetryable, objectPath, toApiError } from './rest.js';
import { KubeApiError, type ResourceType } from './types.js';

const CM: ResourceType = {
  group: '',
  version: 'v1',
  kind: 'ConfigMap',
  plural: 'configmaps',
  namespaced: true,
};
const BUNDLE: ResourceType = {
  group: 'liveupdate.dev',
  version: 'v1alpha1',
  kind: 'LiveUpdateBundle',
  plural: 'liveupdatebundles',
  namespaced: true,
};
const NS: ResourceType = {
  group: '',
  version: 'v1',
  kind: 'Namespace',
  plural: 'namespaces',
  namespaced: false,
};

describe('paths', () => {
  it('builds core, group, namespaced, cluster-scoped and subresource paths', () => {
    expect(collectionPath(CM, 'a')).toBe('/api/v1/namespaces/a/configmaps');
    expect(collectionPath(CM)).toBe('/api/v1/configmaps');
    expect(objectPath(BUNDLE, { namespace: 'a', name: 'b' }, 'status')).toBe(
      '/apis/liveupdate.dev/v1alpha1/namespaces/a/liveupdatebundles/b/status',
    );
    expect(objectPath(NS, { name: 'x' })).toBe('/api/v1/namespaces/x');
    expect(() => objectPath(CM, { name: 'x' })).toThrow(/namespace required/);
  });
});

describe('toApiError', () => {
  const status = (code: number, reason: string, message: string): string =>
    JSON.stringify({ kind: 'Status', code, reason, message });

  it.each([
    [404, 'NotFound', 'NotFound'],
    [409, 'Conflict', 'Conflict'],
    [409, 'AlreadyExists', 'AlreadyExists'],
    [422, 'Invalid', 'Invalid'],
    [400, 'BadRequest', 'Invalid'],
    [403, 'Forbidden', 'Forbidden'],
    [401, 'Unauthorized', 'Unauthorized'],
    [410, 'Expired', 'Gone'],
    [429, 'TooManyRequests', 'TooManyRequests'],
    [500, 'InternalError', 'ServerError'],
    [500, 'Timeout', 'Timeout'],
    [503, 'ServiceUnavailable', 'Unavailable'],
    [504, 'Timeout', 'Timeout'],
  ])('%i %s → %s', (code, reason, expected) => {
    const e = toApiError(code, status(code, reason, 'the message'), 'GET /x');
    expect(e).toBeInstanceOf(KubeApiError);
    expect(e.reason).toBe(expected);
    expect(e.statusCode).toBe(code);
    expect(e.message).toBe('GET /x: the message');
  });

  it('keeps a bounded raw body when the answer is not a Status', () => {
    const e = toApiError(502, 'x'.repeat(5000), 'GET /x');
    expect(e.reason).toBe('ServerError');
    expect(e.message.length).toBeLessThan(2100);
  });

  it('classifies retryable failures', () => {
    expect(isRetryable(new KubeApiError('Conflict', 409, ''))).toBe(true);
    expect(isRetryable(new KubeApiError('Unavailable', 0, ''))).toBe(true);
    expect(isRetryable(new KubeApiError('Invalid', 422, ''))).toBe(false);
    expect(isRetryable(new Error('x'))).toBe(false);
  });
});
