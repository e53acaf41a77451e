-- Capture files on Linux: circular and buffering modes, flush, stop,
-- overwrite, and files written safely (symlinks, existing files, full
-- disks, read-only and wrong paths), with the query counters.
local kl = require "kernellogger"

if kl.platform ~= "linux" then
  describe("capture files #linux", function()
    pending("Linux only")
  end)
  return
end

local H = require "helpers"

local TP = "sock:inet_sock_set_state"

describe("capture files #linux", function()
  local F = H.fixture()
  local name, dir

  before_each(function()
    name = F.name("files")
    dir = F.tmpdir()
  end)

  describe("circular mode", function()
    it("flush writes while tracing goes on, stop writes a newer file and removes the instance", function()
      local file = dir .. "/c.dat"
      local s = assert(kl.start{name = name, flags = {TP}, file = file, circular_mb = 1})
      H.markers(name, 1, 100, 10)
      assert(s:flush())
      assert.is_true(H.instance_exists(name))
      local _, r1 = H.check_file(file)
      assert.equal(100, r1.last_seq)
      local q = assert(s:query())
      assert.equal(H.size(file), q.bytes_written)
      assert.is_true(q.last_flush > 0 and math.abs(q.last_flush - kl._core._walltime()) < 60)

      H.markers(name, 101, 100, 10)
      assert(s:stop())
      assert.is_false(H.instance_exists(name))
      local _, r2 = H.check_file(file)
      assert.equal(200, r2.last_seq) -- newer: holds what came after the flush
      assert.equal(200, r2.markers)  -- and, the ring not being full, what came before
      assert.is_true(H.size(file) > q.bytes_written)
    end)

    it("stays within circular_mb across flushes, keeping the newest events", function()
      local file = dir .. "/cf.dat"
      local mb = 1
      local s = assert(kl.start{name = name, flags = {TP}, file = file, circular_mb = mb})
      local per = mb * 1024 * 1024 // 600
      for round = 0, 3 do
        H.markers(name, round * per + 1, per, 500)
        assert(s:flush())
        local _, r = H.check_file(file)
        assert.equal((round + 1) * per, r.last_seq)
      end
      assert(s:stop())
      local _, r = H.check_file(file)
      assert.equal(4 * per, r.last_seq)
      -- circular_mb is split over the CPUs: one busy CPU keeps 7/8 to all of its share
      assert.is_true(r.markers < 4 * per and r.markers > per // 4)
      assert.is_true(H.size(file) <= mb * 1024 * 1024 + 256 * 1024)
    end)

    it("stop by name from another process writes the file", function()
      local file = dir .. "/byname.dat"
      -- started here, stopped there: this process keeps no handle
      assert(kl.start{name = name, flags = {TP}, file = file, circular_mb = 1})
      H.markers(name, 1, 50, 10)
      local child = H.run(H.lua_cmd(
        ("local kl = require 'kernellogger' assert(kl.stop(%q)) print('stopped')"):format(name)))
      assert.is_true(child.ok, child.err)
      assert.matches("stopped", child.out)
      assert.is_false(H.instance_exists(name))
      local _, r = H.check_file(file)
      assert.equal(50, r.last_seq)
    end)

    it("another process sees bytes_written and last_flush", function()
      local file = dir .. "/q.dat"
      local s = assert(kl.start{name = name, flags = {TP}, file = file, circular_mb = 1})
      H.markers(name, 1, 10, 10)
      assert(s:flush())
      local child = H.run(H.lua_cmd(
        ("local kl = require 'kernellogger' local q = assert(kl.query(%q)) "
          .. "print(q.bytes_written, q.last_flush)"):format(name)))
      assert.is_true(child.ok, child.err)
      local bytes, last = child.out:match("(%d+)%s+([%d%.]+)")
      assert.equal(H.size(file), tonumber(bytes))
      assert.is_true(tonumber(last) > 0)
      assert(s:stop())
    end)
  end)

  describe("buffering mode", function()
    it("writes no file until stop is given one", function()
      local file = dir .. "/b.dat"
      local s = assert(kl.start{name = name, flags = {TP}})
      H.markers(name, 1, 20, 10)
      assert.is_nil(H.size(file))
      assert(s:stop(file))
      local _, r = H.check_file(file)
      assert.equal(20, r.last_seq)
    end)

    it("update{file=} gives the session a file that stop writes", function()
      local file = dir .. "/u.dat"
      local s = assert(kl.start{name = name, flags = {TP}})
      H.markers(name, 1, 20, 10)
      assert(s:update{file = file})
      assert(s:stop())
      local _, r = H.check_file(file)
      assert.equal(20, r.last_seq)
    end)

    it("flush{file=} writes one while the session keeps running", function()
      local file = dir .. "/f.dat"
      local s = assert(kl.start{name = name, flags = {TP}})
      H.markers(name, 1, 20, 10)
      assert(s:flush{file = file})
      assert.is_true(H.instance_exists(name))
      local _, r = H.check_file(file)
      assert.equal(20, r.last_seq)
      assert(s:stop())
    end)

    it("writes files with mode 0600", function()
      local file = dir .. "/m.dat"
      local s = assert(kl.start{name = name, flags = {TP}})
      assert(s:stop(file))
      local r = H.run("stat -c %a " .. H.q(file))
      assert.is_true(r.ok)
      assert.equal("600", r.out:match("%d+"))
    end)
  end)

  describe("overwrite", function()
    it("start and update refuse an existing file unless overwrite = true", function()
      local file = dir .. "/old.dat"
      H.write(file, "old")
      local ok, msg, code = kl.start{name = name, flags = {TP}, file = file, circular_mb = 1}
      assert.is_nil(ok)
      assert.equal("bad_path", code) -- already_exists means a session name is taken
      assert.matches("old.dat", msg)
      assert.matches("overwrite = true replaces it", msg)
      assert.is_false(H.instance_exists(name))
      local s = assert(kl.start{name = name, flags = {TP}})
      local _
      ok, _, code = s:update{file = file}
      assert.is_nil(ok)
      assert.equal("bad_path", code)
      assert.equal("old", H.read(file))
      assert(s:update{file = file, overwrite = true})
      H.markers(name, 1, 5, 10)
      assert(s:stop())
      local _, r = H.check_file(file)
      assert.equal(5, r.last_seq)
    end)

    it("a file that appeared at the target meanwhile is left alone, and stop can retry", function()
      local file = dir .. "/late.dat"
      local s = assert(kl.start{name = name, flags = {TP}, file = file, circular_mb = 1})
      H.markers(name, 1, 5, 10)
      H.write(file, "someone else's")
      local ok, _, code = s:stop()
      assert.is_nil(ok)
      assert.equal("bad_path", code)
      assert.equal("someone else's", H.read(file))
      assert.is_true(H.instance_exists(name))
      assert(s:stop{file = file, overwrite = true})
      local _, r = H.check_file(file)
      assert.equal(5, r.last_seq)
    end)
  end)

  describe("safe files", function()
    local s

    before_each(function()
      s = assert(kl.start{name = name, flags = {TP}})
      H.markers(name, 1, 20, 10)
    end)

    -- each test's session: still running after its refused writes, stopped here
    after_each(function()
      if not s.stopped then assert(s:stop{file = false}) end
    end)

    -- After a refused write the session still runs and a retry elsewhere works.
    local function still_running()
      assert.is_true(H.instance_exists(name))
      assert(s:query())
      local other = dir .. "/retry.dat"
      assert(s:flush(other))
      H.check_file(other)
    end

    it("never writes through a symlink at the target", function()
      local victim = dir .. "/victim"
      H.write(victim, "keep")
      local link = dir .. "/link.dat"
      assert(os.execute("ln -s " .. H.q(victim) .. " " .. H.q(link)))
      local ok, msg, code = s:flush(link)
      assert.is_nil(ok)
      assert.equal("bad_path", code)
      assert.matches("link.dat", msg)
      assert.equal("keep", H.read(victim))
      assert.matches("symbolic link", H.run("stat -c %F " .. H.q(link)).out)
      still_running()
    end)

    it("leaves an existing file alone without overwrite, replaces it with overwrite", function()
      local file = dir .. "/exists.dat"
      H.write(file, "old")
      local ok, msg, code = s:flush(file)
      assert.is_nil(ok)
      assert.equal("bad_path", code)
      assert.matches("exists.dat", msg)
      assert.equal("old", H.read(file))
      assert(s:flush{file = file, overwrite = true})
      local _, r = H.check_file(file)
      assert.equal(20, r.last_seq)
    end)

    it("refuses a path that is a folder", function()
      local ok, _, code = s:flush(dir)
      assert.is_nil(ok)
      assert.equal("bad_path", code)
      ok, _, code = s:flush(dir .. "/missing/x.dat")
      assert.is_nil(ok)
      assert.equal("bad_path", code)
      still_running()
    end)

    it("reports disk_full and keeps the previous file on a full tmpfs", function()
      local full = dir .. "/full"
      assert(os.execute("mkdir " .. H.q(full)))
      assert(os.execute("mount -t tmpfs -o size=64k klt_full " .. H.q(full)))
      local file = full .. "/x.dat"
      H.write(file, "previous")
      H.markers(name, 21, 2000, 500) -- about 1 MB: more than the tmpfs holds
      local ok, msg, code = s:flush{file = file, overwrite = true}
      assert.is_nil(ok)
      assert.equal("disk_full", code)
      assert.matches("x.dat", msg)
      assert.equal("previous", H.read(file))
      local listing = H.run("ls -A " .. H.q(full)).out
      assert.equal("x.dat\n", listing) -- no temporary file left behind
      still_running()
      os.execute("umount " .. H.q(full))
    end)

    it("reports access_denied in a read-only folder", function()
      local ro = dir .. "/ro"
      assert(os.execute("mkdir " .. H.q(ro)))
      assert(os.execute("mount -t tmpfs -o size=1m,ro klt_ro " .. H.q(ro)))
      local ok, msg, code = s:flush(ro .. "/x.dat")
      assert.is_nil(ok)
      assert.equal("access_denied", code)
      assert.matches("x.dat", msg)
      still_running()
      os.execute("umount " .. H.q(ro))
    end)

    it("a failed stop keeps the session so stop can be retried elsewhere", function()
      local ok, _, code = s:stop(dir)
      assert.is_nil(ok)
      assert.equal("bad_path", code)
      assert.is_true(H.instance_exists(name))
      local file = dir .. "/final.dat"
      assert(s:stop(file))
      assert.is_false(H.instance_exists(name))
      local _, r = H.check_file(file)
      assert.equal(20, r.last_seq)
    end)
  end)
end)
