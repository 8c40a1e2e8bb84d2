-- Argo CD action: cancel the run in progress by naming its status.scheduledAt in rolecall.dev/cancel.
-- The batch in flight commits and is counted; no new batch or step starts.
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["rolecall.dev/cancel"] = obj.status.scheduledAt
return obj
