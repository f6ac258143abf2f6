-- tools/bench-fg.lua: the foreground load of tools/bench --foreground, a sysbench script.
--
-- A closed loop per thread (sysbench --threads): a point SELECT by primary key (fg_select_pct
-- of the operations) or a single-row UPDATE ... SET amount = amount + 0.01 (the rest), each
-- autocommitted, on a uniformly random id in [fg_lo, fg_hi]: the table's recent rows, which
-- do not match the job's predicate, so the job never moves them and the updates never change
-- a row it moves (only `amount` of a row that stays).
--
-- Latency is measured here, in the client, per request (clock_gettime around execute), into a
-- log-scale histogram (2% wide buckets) per thread. Control goes through files in fg_dir so
-- that the window measured is exactly the contender's run:
--   ready.<thread>   written by each thread once connected and prepared (it then loops)
--   go               created by tools/bench just before the contender starts: from then on
--                    the thread counts operations and records their latency
--   stop             created just after the contender ends: the thread finishes the request
--                    in flight, writes out.<thread> and returns
-- The files are looked at every 10 ms of the thread's clock, not at every request.
-- out.<thread> holds `key value` lines (ops, selects, updates, errors counted in the window;
-- updates_total, errors_total counted over the whole life of the thread, for the exact check
-- of the sum of `amount`), then `b <bucket> <count>` lines; a bucket b covers latencies from
-- 1.02^b to 1.02^(b+1) microseconds.
--
-- Run by tools/bench, roughly:
--   sysbench tools/bench-fg.lua --config-file=F --threads=2 --time=86400 \
--     --fg_table=rewards --fg_lo=744480 --fg_hi=1000000 --fg_select_pct=80 --fg_dir=DIR run

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_fg_timespec;
int clock_gettime(int clk_id, bench_fg_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local ts = ffi.new("bench_fg_timespec")
local function now_us()
   ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
   return tonumber(ts.tv_sec) * 1e6 + tonumber(ts.tv_nsec) / 1e3
end

sysbench.cmdline.options = {
   fg_table = { "Table the foreground reads and updates", "rewards" },
   fg_lo = { "Lowest id of the rows the foreground touches", 1 },
   fg_hi = { "Highest id of the rows the foreground touches", 1 },
   fg_select_pct = { "Share of point selects, in percent (the rest are updates)", 80 },
   fg_dir = { "Directory of the control and output files", "" },
}

local LOG_STEP = math.log(1.02)
local function bucket(us)
   if us < 1 then
      return 0
   end
   return math.floor(math.log(us) / LOG_STEP)
end

local function exists(path)
   local f = io.open(path, "r")
   if f then
      f:close()
      return true
   end
   return false
end

local function write_file(path, text)
   local f = assert(io.open(path .. ".tmp", "w"))
   f:write(text)
   f:close()
   assert(os.rename(path .. ".tmp", path))
end

function event()
   error("tools/bench-fg.lua runs its own loop (thread_run); event() is not used")
end

-- Replaces sysbench's own event loop (sysbench.lua's thread_run): the window is ours.
function thread_run(thread_id)
   local opt = sysbench.opt
   local dir = opt.fg_dir
   assert(dir ~= "", "--fg_dir is required")
   local lo, hi = tonumber(opt.fg_lo), tonumber(opt.fg_hi)
   local select_pct = tonumber(opt.fg_select_pct)
   assert(lo >= 1 and hi >= lo, "need 1 <= fg_lo <= fg_hi")

   local drv = sysbench.sql.driver()
   local con = drv:connect()
   local sel = con:prepare(string.format(
      "SELECT id, user_id, amount, status, note, created_at FROM %s WHERE id = ?", opt.fg_table))
   local sel_id = sel:bind_create(sysbench.sql.type.BIGINT)
   sel:bind_param(sel_id)
   local upd = con:prepare(string.format(
      "UPDATE %s SET amount = amount + 0.01 WHERE id = ?", opt.fg_table))
   local upd_id = upd:bind_create(sysbench.sql.type.BIGINT)
   upd:bind_param(upd_id)

   local hist = {}
   local ops, selects, updates, errors = 0, 0, 0, 0
   local updates_total, errors_total = 0, 0
   local open, stopping = false, false
   local next_check = 0

   write_file(dir .. "/ready." .. thread_id, "ready\n")
   while not stopping do
      local t0 = now_us()
      if t0 >= next_check then
         next_check = t0 + 10000
         if exists(dir .. "/stop") then
            stopping = true
            break
         end
         if not open and exists(dir .. "/go") then
            open = true
         end
      end
      local id = sysbench.rand.uniform(lo, hi)
      local is_select = sysbench.rand.uniform(1, 100) <= select_pct
      local ok, err
      if is_select then
         sel_id:set(id)
         ok, err = pcall(sel.execute, sel)
      else
         upd_id:set(id)
         ok, err = pcall(upd.execute, upd)
      end
      if not ok and not (type(err) == "table" and err.errcode == sysbench.error.RESTART_EVENT) then
         -- Not a deadlock or lock wait timeout (sysbench's ignorable errors): give up, and
         -- say so where tools/bench looks, so that the run is reported as failed.
         write_file(dir .. "/out." .. thread_id, "fatal " .. tostring(err):gsub("\n", " ") .. "\n")
         error(err)
      end
      local t1 = now_us()
      if ok then
         if not is_select then
            updates_total = updates_total + 1
         end
         if open then
            ops = ops + 1
            if is_select then
               selects = selects + 1
            else
               updates = updates + 1
            end
            local b = bucket(t1 - t0)
            hist[b] = (hist[b] or 0) + 1
         end
      else
         errors_total = errors_total + 1
         if open then
            errors = errors + 1
         end
      end
   end

   local lines = {
      "ops " .. ops, "selects " .. selects, "updates " .. updates, "errors " .. errors,
      "updates_total " .. updates_total, "errors_total " .. errors_total,
   }
   for b, n in pairs(hist) do
      lines[#lines + 1] = "b " .. b .. " " .. n
   end
   write_file(dir .. "/out." .. thread_id, table.concat(lines, "\n") .. "\n")
   sel:close()
   upd:close()
   con:disconnect()
end
