-- Shared by the wrk scripts of load-tests/bench/ (loaded with dofile): thread ids and pacing.
--
-- With BENCH_RATE > 0, each of the BENCH_THREADS wrk threads hands out send times at
-- BENCH_RATE / BENCH_THREADS per second (whole milliseconds, wrk's unit) and a connection waits
-- for its slot: an open model as long as the connections suffice. With BENCH_RATE = 0 (or
-- unset) requests go as fast as the connections do.
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } cg_timespec;
int clock_gettime(int clk, cg_timespec *ts);
]]
local ts = ffi.new("cg_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

-- Each thread gets `tid` = 1, 2, ...
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

local rate = tonumber(os.getenv("BENCH_RATE") or "0")
local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
if rate > 0 then
  local per_ms = rate / nthreads / 1000
  local start, slot = nil, 0
  function delay()
    local t = now_ms()
    if not start then start = t end
    slot = slot + 1
    local wait = start + slot / per_ms - t
    if wait <= 0 then return 0 end
    return math.floor(wait)
  end
end
