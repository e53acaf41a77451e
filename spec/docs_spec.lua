-- Documentation coverage, in the spirit of libtracefs's check-manpages.sh:
-- every public function and method the C core registers is documented in
-- init.lua's LDoc comments and named in the README.
local H = require "helpers"

local function registered(file, array)
  local src = assert(H.read(file))
  local body = assert(src:match("static const luaL_Reg " .. array .. "%[%] = (%b{})"), array)
  local names = {}
  for n in body:gmatch('{"([%w_]+)",') do
    if n:sub(1, 1) ~= "_" then names[#names + 1] = n end
  end
  return names
end

describe("the documentation", function()
  local init = assert(H.read("lua/kernellogger/init.lua"))
  local readme = assert(H.read("README.md"))

  it("documents every module function of the core", function()
    local names = registered("csrc/lua/module.c", "functions")
    assert.is_true(#names >= 7)
    for _, n in ipairs(names) do
      assert.is_truthy(init:find("@function " .. n .. "\n", 1, true) or
                       init:find("function M." .. n .. "(", 1, true), "init.lua: " .. n)
      assert.is_truthy(readme:find("kl." .. n .. "(", 1, true), "README: kl." .. n)
    end
  end)

  it("names every Session method in the README", function()
    for _, n in ipairs(registered("csrc/lua/session.c", "session_methods")) do
      assert.is_truthy(readme:find("s:" .. n, 1, true), "README: s:" .. n)
    end
  end)
end)
