-- Argo CD health check of the liveupdate.dev kinds (LiveUpdateApp, LiveUpdateChannel, LiveUpdateBundle), from their
-- kstatus conditions (Ready, Reconciling, Stalled) and observedGeneration.
-- Runs in Argo CD's Lua sandbox: Lua 5.1 with only the base and table libraries (no string library, so no string
-- methods either); JSON null arrives as nil. Embedded in argocd-cm.yaml by scripts/generate-argocd-cm.ts.

-- Ready=False reasons a human has to fix (the controller does not retry them); other Ready=False reasons are retried
-- and reported as Progressing.
local terminalReasons = {
  DigestMismatch = true,
  ArtifactTooLarge = true,
  UnsupportedArtifact = true,
  VersionConflict = true,
  SourceSecretInvalid = true,
  SourceUnauthorized = true,
  SigningKeyMissing = true,
  AppHasNoSigningKey = true,
  DuplicateAppId = true,
  BundleAppMismatch = true,
  IndexInvalid = true,
}

local function findCondition(conditions, conditionType)
  for _, condition in ipairs(conditions) do
    if condition.type == conditionType then
      return condition
    end
  end
  return nil
end

local function describe(condition, fallback)
  if condition ~= nil and condition.message ~= nil and condition.message ~= "" then
    return condition.message
  end
  if condition ~= nil and condition.reason ~= nil then
    return condition.reason
  end
  return fallback
end

local hs = {}

if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "Reconciliation is suspended (spec.suspend)"
  return hs
end

local status = obj.status
if status == nil or status.conditions == nil or #status.conditions == 0 then
  hs.status = "Progressing"
  hs.message = "Waiting for the controller to report status"
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration ~= generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the controller to observe generation " .. tostring(generation)
  return hs
end

local stalled = findCondition(status.conditions, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled, "Stalled")
  return hs
end

-- A channel whose rollout a failure threshold halted (paused or rolled back) needs a person: Degraded, with the
-- figures that triggered it and how to resume in the message.
local halted = findCondition(status.conditions, "RolloutHalted")
if halted ~= nil and halted.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(halted, "RolloutHalted")
  return hs
end

local reconciling = findCondition(status.conditions, "Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(reconciling, "Reconciling")
  return hs
end

local ready = findCondition(status.conditions, "Ready")
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready, "Ready")
  return hs
end
if ready.status == "False" and ready.reason ~= nil and terminalReasons[ready.reason] then
  hs.status = "Degraded"
  hs.message = describe(ready, "Not ready")
  return hs
end
hs.status = "Progressing"
hs.message = describe(ready, "Not ready yet")
return hs
