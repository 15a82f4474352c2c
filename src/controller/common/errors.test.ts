import { KubeApiError } from '../../kube/types.js';
import { StoreUnavailableError } from '../../storage/object-store.js';
import { StallingError, TransientError, classify } from './errors.js';

describe('classify', () => {
  it('keeps classified errors', () => {
    const stalled = new StallingError('DigestMismatch', 'no');
    expect(classify(stalled, 'UnexpectedError')).toBe(stalled);
  });

  it('names API server refusals and S3 outages by what failed, not by the fallback', () => {
    const forbidden = classify(
      new KubeApiError(
        'Forbidden',
        403,
        'liveupdateapps.liveupdate.dev is forbidden: cannot list at the cluster scope',
      ),
      'UnexpectedError',
    );
    expect(forbidden).toBeInstanceOf(TransientError);
    expect(forbidden).toMatchObject({
      reason: 'KubernetesApiForbidden',
      message: expect.stringContaining('cannot list at the cluster scope') as unknown,
    });
    expect(classify(new KubeApiError('ServerError', 500, 'etcd timeout'), 'UnexpectedError')).toMatchObject({
      reason: 'KubernetesApiError',
    });
    expect(classify(new StoreUnavailableError('S3 put: ECONNREFUSED'), 'UnexpectedError')).toMatchObject({
      reason: 'StorageUnavailable',
    });
  });

  it('gives anything else the fallback reason', () => {
    expect(classify(new TypeError('x is undefined'), 'UnexpectedError')).toMatchObject({
      reason: 'UnexpectedError',
      message: 'x is undefined',
    });
  });
});
