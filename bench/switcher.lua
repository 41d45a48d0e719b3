-- wrk script: GET PATH_PREFIX followed by one of QUERIES (comma-separated, taken in turn), with
-- AUTH as the Authorization header or COOKIE as the Cookie header.
local headers = {}
if os.getenv("AUTH") then headers["Authorization"] = os.getenv("AUTH") end
if os.getenv("COOKIE") then headers["Cookie"] = os.getenv("COOKIE") end
local prefix = os.getenv("PATH_PREFIX")
local queries = {}
for q in string.gmatch(os.getenv("QUERIES") or "", "([^,]+)") do queries[#queries + 1] = q end
if #queries == 0 then queries[1] = "" end
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", prefix .. queries[(i % #queries) + 1], headers)
end
