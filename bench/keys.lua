-- wrk script: each request picks one of the keys in $KEYS at random, so load spreads over every
-- tenant. METHOD=GET|PUT; PUT sends a 4 KiB body. With PATHS=N, each request reads or writes
-- /spread/<random 1..N>.txt instead of /bench.txt: the single-tenant baseline with the same
-- working set as N tenants with one file each, so only the number of tenants differs.
local keys = {}
local method = os.getenv("METHOD") or "GET"
local body = string.rep("x", 4096)
local paths = tonumber(os.getenv("PATHS") or "0")
for line in io.lines(os.getenv("KEYS")) do
  if #line > 0 then keys[#keys + 1] = line end
end
math.randomseed(os.time())
request = function()
  local key = keys[math.random(#keys)]
  local headers = { ["Authorization"] = "Bearer " .. key }
  local path = "/v1/files/bench.txt"
  if paths > 0 then path = "/v1/files/spread/" .. math.random(paths) .. ".txt" end
  if method == "PUT" then
    return wrk.format("PUT", path, headers, body)
  end
  return wrk.format("GET", path, headers)
end
