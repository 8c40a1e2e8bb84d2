-- Argo CD action: cancel the request in progress by naming it in rolecall.dev/cancel (its token, spec
-- time or schedule slot, as status.run records it). Targets in flight finish; no new target starts.
local run = obj.status.run
local key = run.token or run.clearedAfter or run.scheduledAt
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["rolecall.dev/cancel"] = key
return obj
