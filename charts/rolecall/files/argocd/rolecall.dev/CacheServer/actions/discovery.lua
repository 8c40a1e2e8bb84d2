-- Argo CD action discovery: clear is always offered; cancel only while a request is in progress.
local actions = {}
actions["clear"] = {}
local running = obj.status ~= nil and obj.status.run ~= nil
actions["cancel"] = {["disabled"] = not running}
return actions
