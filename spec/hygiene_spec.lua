-- The repository stands on its own: no spec, example, bench or script reads
-- outside it, and every repository path a comment or a document names
-- exists.  (Runs from the repository root, as busted does.)  #linux
local H = require "helpers"

-- Every file under `dirs`, without build output, VCS data and third-party files.
local SELF = "spec/hygiene_spec.lua"  -- it spells the patterns it looks for
local function files(dirs)
  local list = {}
  local p = assert(io.popen("find " .. table.concat(dirs, " ") ..
    " -type f -not -path '*/fixtures/*' -not -path './.git/*' -not -path './build*' " ..
    "-not -path './winbuild/*' 2>/dev/null | sed 's|^\\./||' | sort"))
  for f in p:lines() do
    if f ~= SELF then list[#list + 1] = f end
  end
  p:close()
  return list
end

local function text_of(path)
  local s = H.read(path) or ""
  if s:find("\0", 1, true) then return nil end  -- binary
  return s
end

-- Resolve `rel` against folder `base` ("" is the root); nil when it climbs
-- out of the repository.
local function resolve(base, rel)
  local parts = {}
  for seg in base:gmatch("[^/]+") do parts[#parts + 1] = seg end
  for seg in rel:gmatch("[^/]+") do
    if seg == ".." then
      if #parts == 0 then return nil end
      parts[#parts] = nil
    elseif seg ~= "." then
      parts[#parts + 1] = seg
    end
  end
  return table.concat(parts, "/")
end

local function dirname(path) return path:match("^(.*)/[^/]*$") or "" end

-- Strings that spell a climb but are refused inputs, never read: the
-- validator's own test cases.
local REFUSED_INPUTS = {
  ["spec/options_spec.lua"] = {["../etc"] = true, ["../x"] = true},  -- name = "../etc", "../x:y"
}

describe("the repository #linux", function()
  it("is read only from inside: no spec, example, bench or script climbs out of it", function()
    local bad = {}
    for _, f in ipairs(files{"spec", "examples", "bench", "scripts", ".ci", "bin", "lua"}) do
      local s = text_of(f)
      if s then
        local n = 0
        for line in (s .. "\n"):gmatch("([^\n]*)\n") do
          n = n + 1
          -- (a folder beside the checkout is caught below, as a climb out of it)
          if line:find("/work/", 1, true) then
            bad[#bad + 1] = ("%s:%d: %s"):format(f, n, line)
          end
          -- relative paths: Lua and shell run from the root, C resolves from the file
          local base = f:match("%.[ch]$") and dirname(f) or ""
          for pre, tok in line:gmatch("(.?)([%w_%.%-/]*%.%./[%w_%.%-/]*)") do
            local allowed = REFUSED_INPUTS[f] and REFUSED_INPUTS[f][tok]
            -- "$(dirname "$0")/..": relative to a variable, not to the root
            if not allowed and pre ~= ")" and pre ~= "}" and tok:sub(1, 1) ~= "/"
               and resolve(base, tok) == nil then
              bad[#bad + 1] = ("%s:%d: %s climbs out"):format(f, n, tok)
            end
          end
        end
      end
    end
    assert.same({}, bad)
  end)

  it("keeps lua.h in the binding: no file of csrc/ outside csrc/lua/ includes it (kl.h)", function()
    local bad = {}
    for _, f in ipairs(files{"csrc"}) do
      if not f:match("^csrc/lua/") then
        for line in (text_of(f) or ""):gmatch("[^\n]+") do
          if line:match('^%s*#%s*include%s*[<"]lua') or line:match('^%s*#%s*include%s*[<"]lauxlib') then
            bad[#bad + 1] = f .. ": " .. line
          end
        end
      end
    end
    assert.same({}, bad)
  end)

  it("never asks scanf to allocate (lsan.supp relies on it)", function()
    local bad = {}
    for _, f in ipairs(files{"csrc"}) do
      for line in (text_of(f) or ""):gmatch("[^\n]+") do
        if line:find("scanf", 1, true) and line:find("%%m[%[sc]") then bad[#bad + 1] = f .. ": " .. line end
      end
    end
    assert.same({}, bad)
  end)

  it("names only paths that exist, in its documents and comments", function()
    local TOP = {"csrc", "lua", "spec", "bench", "examples", "scripts", "docs", "cmake",
                 "rockspec", "bin", ".ci", ".github", "fuzz"}
    local ROOT_FILES = {"README.md", "CMakeLists.txt", "config.ld", ".busted", ".luacheckrc",
                        "ARCHITECTURE.md", "STYLE.md"}
    -- bare file names: each must be some file of the repository, unless it is
    -- a system or third-party file named as such
    local EXTERNAL = {["lua.c"] = true, ["lfs.c"] = true, ["core.c"] = true,
                      ["evntrace.h"] = true}
    local basenames = {}
    for _, f in ipairs(files{"."}) do basenames[f:match("[^/]+$")] = true end
    local sources = files{"README.md", "docs", "csrc", "lua", "spec", "bench", "examples",
                          "scripts", ".ci", "cmake", "CMakeLists.txt"}
    local missing = {}
    local function check(f, n, tok)
      tok = tok:gsub("[%.,:;`'\")]+$", "")
      if tok == "" or tok:find("[%*%?<>%%%$]") then return end
      local near = dirname(f) .. "/" .. tok  -- or relative to the file's folder
      if os.execute("test -e " .. H.q(tok) .. " || test -e " .. H.q(near)) ~= true then
        missing[#missing + 1] = ("%s:%d: %s"):format(f, n, tok)
      end
    end
    for _, f in ipairs(sources) do
      local s = text_of(f)
      if s and not f:find("/fixtures/", 1, true) then
        local n = 0
        for line in (s .. "\n"):gmatch("([^\n]*)\n") do
          n = n + 1
          for pre, tok in line:gmatch("(.?)(%.?[%w_%-]+/[%w_%.%-/%*%?<>%%%$]*)") do
            local top = tok:match("^([^/]+)/")
            if pre ~= "/" and pre ~= "." and not pre:match("[%w_%-]") then
              local known = false
              for _, t in ipairs(TOP) do known = known or top == t end
              -- any other folder/name.md or .c is a repository path too
              if known or tok:gsub("[%.,:;`'\")]+$", ""):match("%.md$")
                 or tok:gsub("[%.,:;`'\")]+$", ""):match("%.c$") then
                check(f, n, tok)
              end
            end
          end
          for _, r in ipairs(ROOT_FILES) do
            local at = line:find(r, 1, true)
            if at and not line:sub(at - 1, at - 1):match("[%w_/%.%-]") then check(f, n, r) end
          end
          for _, pat in ipairs{"(.?)([%w_%-]+%.c)%f[^%w_]", "(.?)([%w_%-]+%.md)%f[^%w_]"} do
            for pre, bare in line:gmatch(pat) do
              if not pre:match("[%w_%-/%.]") and not basenames[bare] and not EXTERNAL[bare] then
                missing[#missing + 1] = ("%s:%d: %s"):format(f, n, bare)
              end
            end
          end
        end
      end
    end
    assert.same({}, missing)
  end)
end)
