-- wrk script: each request picks one of the keys in $KEYS at random, so load spreads over every
-- tenant. METHOD=GET|PUT; PUT sends a 4 KiB body.
local keys = {}
local method = os.getenv("METHOD") or "GET"
local body = string.rep("x", 4096)
for line in io.lines(os.getenv("KEYS")) do
  if #line > 0 then keys[#keys + 1] = line end
end
math.randomseed(os.time())
request = function()
  local key = keys[math.random(#keys)]
  local headers = { ["Authorization"] = "Bearer " .. key }
  if method == "PUT" then
    return wrk.format("PUT", "/v1/files/bench.txt", headers, body)
  end
  return wrk.format("GET", "/v1/files/bench.txt", headers)
end
