/**
 * Constants of the liveupdate.dev/v1alpha1 API: group, version, finalizer, annotations, condition types and
 * CamelCase reasons. Reasons are part of the API: tooling and users branch on them, so they never change meaning.
 */
import type { ResourceType } from '../../kube/types.js';

export const GROUP = 'liveupdate.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}` as const;

/** Held by every object the controller has to clean up after (stored objects, index entries). */
export const FINALIZER = 'liveupdate.dev/finalizer';
/** Setting or changing this annotation forces a reconcile (Flux's reconcile.fluxcd.io/requestedAt). */
export const RECONCILE_REQUESTED_AT_ANNOTATION = 'liveupdate.dev/reconcile-requested-at';
/**
 * Changing this annotation on a LiveUpdateChannel lifts an automatic rollout halt (status.rollout.halted); later
 * judgements count only what devices reported after the resume.
 */
export const RESUME_ROLLOUT_ANNOTATION = 'liveupdate.dev/resume-rollout';
/** Field manager of every write the controller makes (server-side apply of status, finalizer patches). */
export const FIELD_MANAGER = 'liveupdate-controller';
/** The literal a channel serves to send devices back to the bundle shipped in the native app. */
export const BUILTIN_BUNDLE = 'builtin';

export const APP_RESOURCE: ResourceType = {
  group: GROUP,
  version: VERSION,
  kind: 'LiveUpdateApp',
  plural: 'liveupdateapps',
  namespaced: true,
};
export const CHANNEL_RESOURCE: ResourceType = {
  group: GROUP,
  version: VERSION,
  kind: 'LiveUpdateChannel',
  plural: 'liveupdatechannels',
  namespaced: true,
};
export const BUNDLE_RESOURCE: ResourceType = {
  group: GROUP,
  version: VERSION,
  kind: 'LiveUpdateBundle',
  plural: 'liveupdatebundles',
  namespaced: true,
};
export const SECRET_RESOURCE: ResourceType = {
  group: '',
  version: 'v1',
  kind: 'Secret',
  plural: 'secrets',
  namespaced: true,
};

/** Condition types. Ready/Reconciling/Stalled follow kstatus; the rest are domain conditions. */
export const ConditionType = {
  Ready: 'Ready',
  Reconciling: 'Reconciling',
  Stalled: 'Stalled',
  /** Bundle: the artifact was fetched from its source (positive polarity). */
  ArtifactFetched: 'ArtifactFetched',
  /** Bundle: the last fetch failed (negative polarity: present only while true). */
  FetchFailed: 'FetchFailed',
  /** Bundle: digest, zip structure and stored copy were checked (positive). */
  Verified: 'Verified',
  /** Bundle: a check failed (negative). */
  VerificationFailed: 'VerificationFailed',
  /** Bundle: status.artifact exists in the store with the recorded size and digest (positive). */
  ArtifactInStorage: 'ArtifactInStorage',
  /** Bundle: deletion waits because a channel serves the bundle (negative). */
  DeletionBlocked: 'DeletionBlocked',
  /** App: the signing key was read and is usable (positive). */
  KeyValid: 'KeyValid',
  /** App: the release index was written for the current state (positive). */
  Published: 'Published',
  /** Channel: the live and rollout bundles exist, belong to the app and are Ready (positive). */
  BundlesResolved: 'BundlesResolved',
  /** Channel: a failure threshold halted the rollout (negative polarity: present only while the halt holds). */
  RolloutHalted: 'RolloutHalted',
} as const;
export type ConditionType = (typeof ConditionType)[keyof typeof ConditionType];

/** CamelCase reasons of this API's conditions and events. */
export const Reason = {
  Succeeded: 'Succeeded',
  Progressing: 'Progressing',
  ProgressingWithRetry: 'ProgressingWithRetry',
  /** A failure no step classified (a bug, or a dependency we do not know); retried with backoff. */
  UnexpectedError: 'UnexpectedError',
  /** The API server refused a request (403): the controller's RBAC does not allow it. */
  KubernetesApiForbidden: 'KubernetesApiForbidden',
  /** Any other API server error a step did not classify. */
  KubernetesApiError: 'KubernetesApiError',

  // Bundle source
  SourceNotFound: 'SourceNotFound',
  SourceUnauthorized: 'SourceUnauthorized',
  SourceSecretNotFound: 'SourceSecretNotFound',
  SourceSecretInvalid: 'SourceSecretInvalid',
  /** The source names a Secret without the label the controller requires (LIVEUPDATE_SOURCE_SECRET_LABEL). */
  SourceSecretNotAllowed: 'SourceSecretNotAllowed',
  SourceUnavailable: 'SourceUnavailable',
  SourceCertificateInvalid: 'SourceCertificateInvalid',
  /** An http source redirects in a circle, or more often than the fetcher follows. */
  SourceRedirectLoop: 'SourceRedirectLoop',
  ArtifactTooLarge: 'ArtifactTooLarge',
  DigestMismatch: 'DigestMismatch',
  UnsupportedArtifact: 'UnsupportedArtifact',
  ArtifactStored: 'ArtifactStored',
  StorageVerificationFailed: 'StorageVerificationFailed',
  StorageUnavailable: 'StorageUnavailable',
  VersionConflict: 'VersionConflict',
  AppNotFound: 'AppNotFound',
  /** Another channel of the app already uses this channel's device-visible name (spec.deviceName). */
  DeviceNameConflict: 'DeviceNameConflict',
  AppNotReady: 'AppNotReady',
  AppHasNoSigningKey: 'AppHasNoSigningKey',
  ServedByChannel: 'ServedByChannel',

  // OCI sources and signatures (the bundle library's OciError reasons)
  OciTagMoved: 'OciTagMoved',
  OciDigestMismatch: 'OciDigestMismatch',
  OciLayerAmbiguous: 'OciLayerAmbiguous',
  OciUnsupportedManifest: 'OciUnsupportedManifest',
  OciDockerConfigInvalid: 'OciDockerConfigInvalid',
  SignatureMissing: 'SignatureMissing',
  SignatureInvalid: 'SignatureInvalid',
  SignatureDigestMismatch: 'SignatureDigestMismatch',
  VerificationKeyInvalid: 'VerificationKeyInvalid',

  // App
  SigningKeySecretNotFound: 'SigningKeySecretNotFound',
  SigningKeyMissing: 'SigningKeyMissing',
  DuplicateAppId: 'DuplicateAppId',
  IndexPublished: 'IndexPublished',
  IndexInvalid: 'IndexInvalid',
  /** No channel of the app serves a Ready bundle yet: there is nothing devices could be answered with. */
  NoChannelPublished: 'NoChannelPublished',
  /** spec.defaultChannel names no channel that is published. */
  DefaultChannelNotFound: 'DefaultChannelNotFound',
  /** The stored index or root is corrupt or from a newer schema version; it is not rewritten. */
  IndexDocumentUnreadable: 'IndexDocumentUnreadable',
  RootDocumentUnreadable: 'RootDocumentUnreadable',
  /** Another writer kept changing the index or root while this one published; retried with backoff. */
  ConcurrentWrite: 'ConcurrentWrite',

  // Channel
  BundleNotFound: 'BundleNotFound',
  BundleNotReady: 'BundleNotReady',
  BundleAppMismatch: 'BundleAppMismatch',
  BundlesResolved: 'BundlesResolved',
  /** The rollout version's failure rate (its 95 % Wilson lower bound) went above maxFailurePercent. */
  FailureThresholdExceeded: 'FailureThresholdExceeded',
  /** Event: an automatic halt was lifted by a change of the rollout or the resume annotation. */
  RolloutResumed: 'RolloutResumed',
} as const;
export type Reason = (typeof Reason)[keyof typeof Reason];
