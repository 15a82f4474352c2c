/** The liveupdate.dev/v1alpha1 API: generated kind types, short aliases and constants. */
export * from './constants.js';
export type * from './types.generated.js';

import type {
  LiveUpdateAppStatusChannelsItem,
  LiveUpdateBundleSpecSource,
  LiveUpdateBundleSpecSourceHttp,
  LiveUpdateBundleSpecSourceOci,
  LiveUpdateBundleSpecSourceS3,
  LiveUpdateBundleStatusArtifactProvenance,
  LiveUpdateBundleStatusArtifact,
  LiveUpdateChannelSpecPolicy,
  LiveUpdateChannelSpecRollout,
} from './types.generated.js';

export type BundleSource = LiveUpdateBundleSpecSource;
export type HttpSource = LiveUpdateBundleSpecSourceHttp;
export type S3Source = LiveUpdateBundleSpecSourceS3;
export type OciSource = LiveUpdateBundleSpecSourceOci;
export type ArtifactProvenance = LiveUpdateBundleStatusArtifactProvenance;
export type Artifact = LiveUpdateBundleStatusArtifact;
export type ChannelPolicy = LiveUpdateChannelSpecPolicy;
export type ChannelRollout = LiveUpdateChannelSpecRollout;
export type ChannelSummary = LiveUpdateAppStatusChannelsItem;
