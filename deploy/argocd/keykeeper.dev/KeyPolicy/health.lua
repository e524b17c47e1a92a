-- Argo CD health of a keykeeper KeyPolicy (Lua 5.1, as Argo CD runs it).
-- Healthy: Ready=True for the current generation and no key left to re-wrap.
-- Progressing: not yet observed, keys still being re-wrapped after a KMS change, or the
-- KMS unavailable for now. Degraded: an invalid spec or a misconfigured provider.
local hs = {}
local status = obj.status
if status == nil or status.observedGeneration == nil or (obj.metadata.generation ~= nil and status.observedGeneration < obj.metadata.generation) then
  hs.status = "Progressing"
  hs.message = "waiting for keykeeper to observe the latest spec"
  return hs
end
if status.conditions ~= nil then
  for _, condition in ipairs(status.conditions) do
    if condition.type == "Ready" then
      if condition.status ~= "True" then
        if condition.reason == "ProviderUnavailable" then
          hs.status = "Progressing"
        else
          hs.status = "Degraded"
        end
        hs.message = (condition.reason or "") .. ": " .. (condition.message or "")
        return hs
      end
      if status.keysUnderPreviousKms ~= nil and status.keysUnderPreviousKms > 0 then
        hs.status = "Progressing"
        hs.message = status.keysUnderPreviousKms .. " keys still to re-wrap under the new KMS key"
        return hs
      end
      hs.status = "Healthy"
      hs.message = condition.message or ""
      return hs
    end
  end
end
hs.status = "Progressing"
hs.message = "waiting for keykeeper to report Ready"
return hs
