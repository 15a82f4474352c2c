// Jest runs TypeScript ESM through ts-jest (see docs/adr/0001-esm-typescript-jest-node24.md).
/** @type {import('ts-jest').TsJestTransformerOptions} */
const tsJest = { useESM: true, tsconfig: 'tsconfig.json', diagnostics: false };

const common = {
  extensionsToTreatAsEsm: ['.ts'],
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  transform: { '^.+\\.ts$': ['ts-jest', tsJest] },
  testEnvironment: 'node',
};

/** @type {import('jest').Config} */
export default {
  projects: [
    {
      ...common,
      displayName: 'unit',
      roots: ['<rootDir>/src'],
      testMatch: ['**/*.test.ts'],
    },
    {
      ...common,
      displayName: 'integration',
      roots: ['<rootDir>/test/integration'],
      testMatch: ['**/*.test.ts'],
      globalSetup: '<rootDir>/test/env/jest-global-setup.ts',
      globalTeardown: '<rootDir>/test/env/jest-global-teardown.ts',
      setupFilesAfterEnv: ['<rootDir>/test/env/jest-integration-timeout.ts'],
    },
    {
      // `npm run test:cluster`: a real single-node cluster of its own (test/cluster/node.ts), not in `npm test`.
      ...common,
      displayName: 'cluster',
      roots: ['<rootDir>/test/cluster'],
      testMatch: ['**/*.test.ts'],
    },
  ],
};
