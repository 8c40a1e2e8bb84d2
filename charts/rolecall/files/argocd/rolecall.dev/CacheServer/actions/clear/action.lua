-- Argo CD action: ask rolecall for a cache clear on this CacheServer by setting rolecall.dev/clear-requested-at to the time now
-- (a new request token). Annotation only: an action that patched spec would be undone by self-heal.
-- Argo CD runs it with its own account, which admission then records as the requester.
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["rolecall.dev/clear-requested-at"] = os.date("!%Y-%m-%dT%H:%M:%SZ")
return obj
