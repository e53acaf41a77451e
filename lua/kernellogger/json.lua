--- A small JSON encoder, safe to embed in HTML.
--
-- Strings are made valid UTF-8 (a byte that is not part of a UTF-8 sequence
-- is read as Latin-1) and `<`, `>`, `&`, U+2028 and U+2029 are written as
-- `\uXXXX` escapes, so that no string from a capture can close a `<script>`
-- element or start markup: `</script>` becomes `\u003c/script\u003e`.
--
-- Tables with a positive length (or none at all) are arrays, others objects
-- with their keys sorted; `json.object(t)` marks an empty table as an object.
-- @module kernellogger.json
local M = {}

local OBJECT = setmetatable({}, {__name = "kernellogger.json.object"})

--- Mark `t` as an object (so that `{}` encodes as `{}` rather than `[]`).
-- @tparam table t
-- @treturn table t
function M.object(t) return setmetatable(t or {}, OBJECT) end

local ESC = {['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
             ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t',
             ['<'] = '\\u003c', ['>'] = '\\u003e', ['&'] = '\\u0026'}
local function esc(c) return ESC[c] or ("\\u%04x"):format(c:byte()) end

--- A string as valid UTF-8: bytes that are not part of a sequence read as Latin-1.
-- @string s
-- @treturn string
function M.utf8(s)
  if utf8.len(s) then return s end
  local out, i, n = {}, 1, #s
  while i <= n do
    local len, bad = utf8.len(s, i)
    if len then
      out[#out + 1] = s:sub(i)
      break
    end
    out[#out + 1] = s:sub(i, bad - 1)
    out[#out + 1] = utf8.char(s:byte(bad))
    i = bad + 1
  end
  return table.concat(out)
end

--- A JSON string literal.
-- @string s
-- @treturn string
function M.string(s)
  if not s:find('[%c"\\<>&\128-\255]') then return '"' .. s .. '"' end  -- nothing to escape
  s = M.utf8(s)
  s = s:gsub('[%c"\\<>&]', esc):gsub("\226\128\168", "\\u2028"):gsub("\226\128\169", "\\u2029")
  return '"' .. s .. '"'
end

local encode

local function number(v)
  if math.type(v) == "integer" then return tostring(v) end
  if v ~= v or v == math.huge or v == -math.huge then return "null" end
  if v == math.floor(v) and math.abs(v) < 2^53 then return ("%d"):format(v) end
  return ("%.17g"):format(v)
end

local function array(t, out)
  out[#out + 1] = "["
  for i = 1, #t do
    if i > 1 then out[#out + 1] = "," end
    encode(t[i], out)
  end
  out[#out + 1] = "]"
end

local function object(t, out)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  out[#out + 1] = "{"
  for i, k in ipairs(keys) do
    if i > 1 then out[#out + 1] = "," end
    out[#out + 1] = M.string(k)
    out[#out + 1] = ":"
    local v = t[k]
    if v == nil then v = t[tonumber(k)] end
    encode(v, out)
  end
  out[#out + 1] = "}"
end

encode = function(v, out)
  local ty = type(v)
  if ty == "string" then out[#out + 1] = M.string(v)
  elseif ty == "number" then out[#out + 1] = number(v)
  elseif ty == "boolean" then out[#out + 1] = tostring(v)
  elseif ty == "table" then
    if getmetatable(v) ~= OBJECT and (#v > 0 or next(v) == nil) then array(v, out)
    else object(v, out) end
  else out[#out + 1] = "null" end
end

--- Encode a value.
-- @param v nil, boolean, number, string or table
-- @treturn string
function M.encode(v)
  local out = {}
  encode(v, out)
  return table.concat(out)
end

return M
