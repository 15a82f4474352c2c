/**
 * The state a channel's rollout is published in, shared by the channel reconciler (which decides halts) and the index
 * publisher (which renders them): Active, Paused (by `spec.rollout.paused` or a halt with `onFailure: Pause`) or
 * RolledBack. An automatic halt holds only for the rollout it was decided for: a new rollout bundle, another
 * percentage or a new value of the resume annotation lifts it (ADR 0019).
 */
import {
  RESUME_ROLLOUT_ANNOTATION,
  type LiveUpdateChannel,
  type LiveUpdateChannelStatusRolloutHalted,
} from '../../api/v1alpha1/index.js';
import { rolloutId, roundPercentage } from '../publishing/render.js';

export type RolloutState = 'Active' | 'Paused' | 'RolledBack';

/** The rollout id of the channel's current spec, or undefined without a rollout. */
export function currentRolloutId(channel: LiveUpdateChannel): string | undefined {
  const r = channel.spec.rollout;
  return r ? rolloutId(channel.metadata.namespace ?? '', channel.metadata.name, r.bundle) : undefined;
}

/** Whether `halt` (from status) still applies to the channel's spec and annotations. */
export function haltApplies(channel: LiveUpdateChannel, halt: LiveUpdateChannelStatusRolloutHalted): boolean {
  const r = channel.spec.rollout;
  return (
    r !== undefined &&
    halt.id === currentRolloutId(channel) &&
    halt.percentage === roundPercentage(r.percentage) &&
    (channel.metadata.annotations?.[RESUME_ROLLOUT_ANNOTATION] ?? '') === (halt.resumeToken ?? '')
  );
}

/** The automatic halt in force, if any. */
export function activeHalt(channel: LiveUpdateChannel): LiveUpdateChannelStatusRolloutHalted | undefined {
  const halt = channel.status?.rollout?.halted;
  return halt && haltApplies(channel, halt) ? halt : undefined;
}

export function rolloutStateOf(channel: LiveUpdateChannel): RolloutState {
  const halt = activeHalt(channel);
  if (halt?.action === 'Rollback') return 'RolledBack';
  if (halt?.action === 'Pause' || channel.spec.rollout?.paused) return 'Paused';
  return 'Active';
}
