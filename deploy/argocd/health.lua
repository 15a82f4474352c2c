-- Argo CD health check of the liveupdate.dev kinds (LiveUpdateApp, LiveUpdateChannel, LiveUpdateBundle).
-- Runs in Argo CD's Lua sandbox: gopher-lua (Lua 5.1) with only the base, table and a reduced os library (no string
-- library, so no string methods either); JSON null arrives as nil. Embedded in argocd-cm.yaml by
-- scripts/generate-argocd-cm.ts; tested in gopher-lua set up as Argo CD does (test/integration/chart/argocd-health).
--
-- The verdict is kstatus's (sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute for a kind without built-in rules),
-- rule for rule, mapped to Argo CD: Terminating and InProgress are Progressing, Failed is Degraded, Current is
-- Healthy. Two Argo CD-only refinements (docs/adr/0031-argocd-health-kstatus.md): spec.suspend is Suspended, and a
-- channel whose rollout was halted (RolloutHalted=True) is Degraded. While in progress, the message also carries the
-- cause the controller reported (Ready's reason and message), e.g. the transient error it is retrying.

local function findCondition(conditions, conditionType)
  for _, condition in ipairs(conditions) do
    if condition.type == conditionType then
      return condition
    end
  end
  return nil
end

local function nonEmpty(value)
  return value ~= nil and value ~= ""
end

-- kstatus: returns its status and message.
local function kstatus(o)
  local metadata = o.metadata or {}
  -- 1. Scheduled for deletion.
  if nonEmpty(metadata.deletionTimestamp) then
    return "Terminating", "Resource scheduled for deletion"
  end
  local status = o.status or {}
  -- 2. A generation not observed yet; skipped when either field is absent.
  if metadata.generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration ~= metadata.generation then
    return "InProgress", tostring(o.kind) .. " generation is " .. tostring(metadata.generation) ..
      ", but latest observed generation is " .. tostring(status.observedGeneration)
  end
  -- 3. The first of Reconciling=True or Stalled=True, in the order the conditions are listed.
  for _, condition in ipairs(status.conditions or {}) do
    if condition.type == "Reconciling" and condition.status == "True" then
      return "InProgress", condition.message or ""
    end
    if condition.type == "Stalled" and condition.status == "True" then
      return "Failed", condition.message or ""
    end
  end
  -- 4. Nothing abnormal: current.
  return "Current", "Resource is current"
end

-- What the controller reported about its last attempt while Ready is not True: "<reason>: <message>".
local function cause(conditions)
  local ready = findCondition(conditions, "Ready")
  if ready == nil or ready.status == "True" then
    return nil
  end
  if nonEmpty(ready.reason) and nonEmpty(ready.message) then
    return ready.reason .. ": " .. ready.message
  end
  if nonEmpty(ready.message) then
    return ready.message
  end
  if nonEmpty(ready.reason) then
    return ready.reason
  end
  return nil
end

local conditions = (obj.status ~= nil and obj.status.conditions) or {}
local verdict, message = kstatus(obj)
local hs = {}

if verdict == "Terminating" then
  hs.status = "Progressing"
  hs.message = message
  return hs
end

if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "Reconciliation is suspended (spec.suspend)"
  return hs
end

if verdict == "Failed" then
  local stalled = findCondition(conditions, "Stalled")
  hs.status = "Degraded"
  hs.message = nonEmpty(message) and message or (stalled ~= nil and stalled.reason) or "Stalled"
  return hs
end

-- A rollout a failure threshold halted (paused or rolled back) needs a person, also while the halt is published.
local halted = findCondition(conditions, "RolloutHalted")
if halted ~= nil and halted.status == "True" then
  hs.status = "Degraded"
  hs.message = nonEmpty(halted.message) and halted.message or (halted.reason or "RolloutHalted")
  return hs
end

if verdict == "InProgress" then
  hs.status = "Progressing"
  local why = cause(conditions)
  local ready = findCondition(conditions, "Ready")
  if why == nil then
    hs.message = nonEmpty(message) and message or "Reconciling"
  elseif not nonEmpty(message) or ready.message == message then
    -- The Reconciling message repeats Ready's (the error being retried): say it once, with its reason.
    hs.message = why
  else
    hs.message = message .. "; last attempt: " .. why
  end
  return hs
end

-- Current. kstatus ignores Ready; a Ready that is not True (status written without Reconciling or Stalled) is shown.
hs.status = "Healthy"
local ready = findCondition(conditions, "Ready")
local why = cause(conditions)
if ready ~= nil and ready.status == "True" and nonEmpty(ready.message) then
  hs.message = ready.message
elseif why ~= nil then
  hs.message = message .. " (Ready: " .. why .. ")"
else
  hs.message = message
end
return hs
