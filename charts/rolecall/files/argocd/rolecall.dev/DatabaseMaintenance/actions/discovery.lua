-- Argo CD action discovery: cancel, offered while a run is in progress.
local actions = {}
local running = obj.status ~= nil and obj.status.phase == "Running"
actions["cancel"] = {["disabled"] = not running}
return actions
