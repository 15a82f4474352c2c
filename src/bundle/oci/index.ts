/** Bundles as OCI artifacts and their cosign signatures, shared by the controller's OCI source and the CLI. */
export * from './artifact.js';
export * from './cosign.js';
export * from './docker-config.js';
export * from './errors.js';
export * from './media-types.js';
export * from './reference.js';
export * from './registry-client.js';
