-- Argo CD health of a rolecall WebServer (gopher-lua, Lua 5.1; only base, table and a safe os are loaded).
-- Reads what kstatus reads (observedGeneration, Stalled, Reconciling) plus rolecall's phase:
--   not yet observed, or a request under way     -> Progressing
--   Stalled, or failed pods that rolecall retries -> Degraded
--   stopped on purpose (spec.stopped, a run window, an override) -> Suspended
--     (phase Stopped or the Stopped condition; a Degraded condition left from before the stop does not
--     count, as in rolecall's own phase)
--   Ready                                         -> Healthy
local hs = {status = "Progressing", message = "Waiting for rolecall to report status"}
local st = obj.status
if st == nil then
  return hs
end
if obj.metadata.generation ~= nil and st.observedGeneration ~= obj.metadata.generation then
  hs.message = "Waiting for rolecall to act on generation " .. obj.metadata.generation
  return hs
end
-- rolecall writes its conditions with every status write: none means it has not reported (yet).
if st.conditions == nil or #st.conditions == 0 then
  return hs
end
local conditions = {}
for _, c in ipairs(st.conditions) do
  conditions[c.type] = c
end
local function holds(kind)
  return conditions[kind] ~= nil and conditions[kind].status == "True"
end
local function said(c)
  if c == nil then
    return st.phase or "Unknown"
  end
  return (c.reason or "") .. ": " .. (c.message or "")
end
-- What a person wants to see first on a web tier: connections and users.
local figures = (st.healthyPods or 0) .. " healthy pods, " .. (st.activeConnections or 0) .. " connections"
if st.currentUsers ~= nil then
  figures = figures .. ", " .. st.currentUsers .. " users"
end
if holds("Stalled") then
  return {status = "Degraded", message = said(conditions.Stalled)}
end
local last = st.lastRequest
if st.run ~= nil and last ~= nil and last.outcome == "Failed" then
  return {status = "Degraded", message = (last.action or "request") .. " failed on " .. (last.failed or 0) ..
    " of " .. (last.targets or 0) .. " pods; rolecall retries them: " .. (last.message or "")}
end
-- Stopped on purpose: the Stopped condition is True once the workload is at 0 (spec.stopped, a window or an
-- override); it alone also covers status an older rolecall wrote with phase Running for window stops.
local stopped = st.phase == "Stopped" or holds("Stopped")
if holds("Degraded") and not stopped then
  return {status = "Degraded", message = said(conditions.Degraded)}
end
if holds("Reconciling") then
  return {status = "Progressing", message = said(conditions.Reconciling)}
end
if stopped then
  local why = "stopped as requested"
  if st.runState ~= nil then
    why = st.runState.reason
  end
  return {status = "Suspended", message = "Stopped (" .. (st.rememberedReplicas or 0) ..
    " replicas remembered): " .. why}
end
if holds("Ready") then
  return {status = "Healthy", message = figures}
end
if conditions.Ready ~= nil then
  hs.message = said(conditions.Ready)
end
return hs
