-- wrk script for the soak: mixed traffic from many tenants (keys in $KEYS). Per request:
-- 60% GET of the tenant's /bench.txt, 25% PUT of one of 100 paths, 10% a recursive listing,
-- 5% whoami. Every request should succeed: any non-2xx is an error.
local keys = {}
for line in io.lines(os.getenv("KEYS")) do
  if #line > 0 then keys[#keys + 1] = line end
end
local body = string.rep("s", 2048)
math.randomseed(os.time())
request = function()
  local headers = { ["Authorization"] = "Bearer " .. keys[math.random(#keys)] }
  local r = math.random(100)
  if r <= 60 then
    return wrk.format("GET", "/v1/files/bench.txt", headers)
  elseif r <= 85 then
    return wrk.format("PUT", "/v1/files/soak/" .. math.random(100) .. ".txt", headers, body)
  elseif r <= 95 then
    return wrk.format("GET", "/v1/files?prefix=/soak&recursive=true&limit=50", headers)
  end
  return wrk.format("GET", "/v1/whoami", headers)
end
