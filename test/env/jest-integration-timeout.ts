// Jest 30 ignores `testTimeout` inside a project, so the integration project sets its default here: tests against
// real processes (apiserver, etcd, S3) may wait for convergence far longer than the 5 s unit default.
import { jest } from '@jest/globals';

jest.setTimeout(120_000);
