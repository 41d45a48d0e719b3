-- wrk script: GET /v1/files/bench.txt with one credential: AUTH="Bearer <key>" as the
-- Authorization header, or COOKIE="tenantry_session=..." as the Cookie header (a signed-in
-- person; reads need no Origin).
local headers = {}
if os.getenv("AUTH") then headers["Authorization"] = os.getenv("AUTH") end
if os.getenv("COOKIE") then headers["Cookie"] = os.getenv("COOKIE") end
request = function()
  return wrk.format("GET", "/v1/files/bench.txt", headers)
end
