-- Runs an Argo CD health script the way Argo CD does (gopher-lua, Lua 5.1) as closely as plain Lua 5.1 allows:
-- only the base and table libraries, `require("os")` giving just os.time/os.date, no string library and no string
-- methods, JSON null as nil, an instruction budget instead of Argo CD's 1 s timeout.
--   lua5.1 argocd-sandbox.lua <health.lua> <object.json>   → prints {"status":...,"message":...} as JSON
local cjson = require("cjson")

local function readFile(path)
  local f = assert(io.open(path, "rb"))
  local content = f:read("*a")
  f:close()
  return content
end

-- Argo CD hands objects over without JSON nulls.
local function stripNulls(value)
  if value == cjson.null then return nil end
  if type(value) == "table" then
    local out = {}
    for k, v in pairs(value) do out[k] = stripNulls(v) end
    return out
  end
  return value
end

local scriptPath, objectPath = arg[1], arg[2]
local script = readFile(scriptPath)
local object = stripNulls(cjson.decode(readFile(objectPath)))

local safeOs = { time = os.time, date = os.date }
local env = {
  assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs, pcall = pcall, select = select,
  tonumber = tonumber, tostring = tostring, type = type, unpack = unpack, xpcall = xpcall, rawequal = rawequal,
  rawget = rawget, rawset = rawset, getmetatable = getmetatable, setmetatable = setmetatable, print = print,
  _VERSION = _VERSION,
  table = { concat = table.concat, insert = table.insert, remove = table.remove, sort = table.sort,
            maxn = table.maxn, getn = table.getn },
  require = function(name)
    if name == "os" then return safeOs end
    error("module '" .. tostring(name) .. "' not found")
  end,
  obj = object,
}
env._G = env

local chunk, loadError = loadstring(script, "=health.lua")
if not chunk then
  io.stderr:write("load error: " .. loadError .. "\n")
  os.exit(3)
end
setfenv(chunk, env)

-- No string library: strings lose their methods (s:find, s:lower, ...) as in gopher-lua without it.
local stringMeta = getmetatable("")
local savedIndex = stringMeta.__index
stringMeta.__index = nil
-- Argo CD aborts scripts after 1 s; a fixed instruction budget keeps the emulation deterministic.
debug.sethook(function() error("health script exceeded its instruction budget") end, "", 1000000)
local ok, result = pcall(chunk)
debug.sethook()
stringMeta.__index = savedIndex

if not ok then
  io.stderr:write("runtime error: " .. tostring(result) .. "\n")
  os.exit(2)
end
if type(result) ~= "table" then
  io.stderr:write("the script returned " .. type(result) .. ", not a table\n")
  os.exit(2)
end
io.write(cjson.encode({ status = result.status, message = result.message }), "\n")
