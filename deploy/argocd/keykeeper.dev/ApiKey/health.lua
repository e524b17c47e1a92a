-- Argo CD health of a keykeeper ApiKey (Lua 5.1, as Argo CD runs it).
-- Healthy: Ready=True for the current generation. Suspended: suspended or revoked on
-- purpose. Progressing: not yet observed, or waiting on something that comes back by
-- itself (a KMS outage, a source Secret not there yet). Degraded: anything else.
local hs = {}
local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "waiting for keykeeper to observe the key"
  return hs
end
if status.observedGeneration == nil or (obj.metadata.generation ~= nil and status.observedGeneration < obj.metadata.generation) then
  hs.status = "Progressing"
  hs.message = "waiting for keykeeper to observe the latest spec"
  return hs
end
if status.phase == "Suspended" or status.phase == "Revoked" or status.phase == "Deleted" then
  hs.status = "Suspended"
  hs.message = "the key is " .. string.lower(status.phase)
  return hs
end
local transient = { ProviderUnavailable = true, SourceNotFound = true }
if status.conditions ~= nil then
  for _, condition in ipairs(status.conditions) do
    if condition.type == "Ready" then
      if condition.status == "True" then
        hs.status = "Healthy"
      elseif transient[condition.reason] then
        hs.status = "Progressing"
      else
        hs.status = "Degraded"
      end
      hs.message = (condition.reason or "") .. ": " .. (condition.message or "")
      return hs
    end
  end
end
hs.status = "Progressing"
hs.message = "waiting for keykeeper to report Ready"
return hs
