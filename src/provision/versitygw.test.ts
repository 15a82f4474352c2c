import { bucketPolicy } from './versitygw.js';

describe('versitygw bucket policy', () => {
  it("gives each component's statements to that component's user only", () => {
    const policy = JSON.parse(
      bucketPolicy([
        {
          component: 'controller',
          credentials: { accessKeyId: 'c', secretAccessKey: 'x' },
          policy: {
            Statement: [{ Effect: 'Allow', Action: ['s3:PutObject'], Resource: ['arn:aws:s3:::b/*'] }],
          },
        },
        {
          component: 'update-server',
          credentials: { accessKeyId: 'u', secretAccessKey: 'y' },
          policy: {
            Statement: [{ Effect: 'Allow', Action: ['s3:GetObject'], Resource: ['arn:aws:s3:::b/*'] }],
          },
        },
      ]),
    ) as { Statement: { Action: string[]; Principal: unknown }[] };
    expect(policy.Statement).toEqual([
      expect.objectContaining({ Action: ['s3:PutObject'], Principal: { AWS: ['c'] } }),
      expect.objectContaining({ Action: ['s3:GetObject'], Principal: { AWS: ['u'] } }),
    ]);
  });
});
