-- Argo CD health of a rolecall DatabaseMaintenance (gopher-lua, Lua 5.1): a Job-like run, or a
-- CronJob-like schedule of runs.
--   not yet observed, pending, queued or running -> Progressing (a schedule between runs is Healthy)
--   a failed run, or Stalled                    -> Degraded
--   suspend: true, or the last run cancelled    -> Suspended
--   the last run succeeded (or was a dry run)   -> Healthy
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
local function said(c)
  if c == nil then
    return st.phase or "Unknown"
  end
  return (c.reason or "") .. ": " .. (c.message or "")
end
if conditions.Stalled ~= nil and conditions.Stalled.status == "True" then
  return {status = "Degraded", message = said(conditions.Stalled)}
end
if st.phase == "Failed" then
  local c = conditions.Failed or conditions.Complete
  if c ~= nil then
    return {status = "Degraded", message = said(c)}
  end
  return {status = "Degraded", message = "The run failed"}
end
if obj.spec.suspend == true and st.phase ~= "Running" then
  return {status = "Suspended", message = "suspend is true: no new runs start"}
end
if st.phase == "Cancelled" then
  return {status = "Suspended", message = said(conditions.Complete)}
end
if st.phase == "Running" or st.phase == "Queued" then
  if conditions.Reconciling ~= nil then
    return {status = "Progressing", message = said(conditions.Reconciling)}
  end
  return {status = "Progressing", message = st.phase}
end
if st.phase == "Succeeded" then
  return {status = "Healthy", message = said(conditions.Complete)}
end
if obj.spec.schedule ~= nil and st.nextRunAt ~= nil then
  return {status = "Healthy", message = "Next run at " .. st.nextRunAt}
end
return hs
