-- wrk script of `make bench` (scripts/bench.py sets the environment).
--
--   BENCH_BODY, BENCH_CONTENT_TYPE  the POST body (a file) and its Content-Type
--   BENCH_RATE                      0: closed loop, each connection sends as soon as it
--                                   has an answer. Otherwise an open-loop schedule of
--                                   this many requests/s in all (Poisson arrivals), up to
--                                   one outstanding request per connection.
--   BENCH_ARRIVALS                  poisson (the default): the open loop's gaps are random, as
--                                   independent clients send; even: every gap the same, as
--                                   wrk2's and k6's constant-rate open loops send
--   BENCH_THREADS                   wrk's -t, to split BENCH_RATE between its threads
--   BENCH_TRACK                     1: time and count each answer by status (below)
--
-- Tracked, every request is timed on its own and counted by status: each carries an
-- id in X-Request-ID, which the stack's nginx echoes, so its answer is matched to its
-- send time (wrk's own histogram cannot tell an accepted request from a shed one).
-- Every request, a connection's first too, is the POST and waits for its turn in the
-- schedule: wrk asks delay() before each one it sends (a connection is created
-- "delayed"), so there is no burst on connecting, and no request to leave out. (An
-- earlier version opened each connection with a GET that it did not count; it took
-- the schedule's first turns all the same, and over 400 connections at 2x an image
-- model's capacity that was the run's first 0.8 s, with no prediction offered.)

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local timespec = ffi.new("bench_timespec")

local function now_us()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, timespec)
  return tonumber(timespec.tv_sec) * 1e6 + tonumber(timespec.tv_nsec) / 1e3
end

local file = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
local body = file:read("*all")
file:close()
local content_type = os.getenv("BENCH_CONTENT_TYPE")
local rate = tonumber(os.getenv("BENCH_RATE") or "0")
local threads = tonumber(os.getenv("BENCH_THREADS") or "1")
local even_arrivals = os.getenv("BENCH_ARRIVALS") == "even"
-- Building each request and reading each answer in Lua costs the client CPU that the
-- server shares here, so only runs that need it (shed answers among accepted) track.
local track = os.getenv("BENCH_TRACK") == "1"

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = content_type

-- Main state: the threads, to collect their counts when the run is done.
local all_threads = {}
function setup(thread)
  table.insert(all_threads, thread)
  thread:set("thread_index", #all_threads)
end

if rate > 0 then
  local mean_gap_us = 1e6 * threads / rate
  local next_send_us = nil

  function init(args)
    math.randomseed(os.time() * 64 + thread_index)
    next_send_us = now_us()
  end

  function delay()
    -- The next arrival of this thread's schedule; if every connection was busy when it
    -- came due, send now and go on from here (no catch-up burst).
    local gap_us = even_arrivals and mean_gap_us or mean_gap_us * -math.log(1 - math.random())
    next_send_us = math.max(next_send_us + gap_us, now_us())
    return math.floor((next_send_us - now_us()) / 1000 + 0.5)
  end
end

if track then
  latencies_us = {}   -- of 2xx answers; globals, so that done() can read them per thread
  statuses = {}       -- status code (as a string) -> count
  -- A request is a new Lua string; building one with a large body for each send costs
  -- the client more CPU than the server spends refusing it. So requests are built once
  -- per slot (X-Request-ID "s<slot>") and reused: a slot is taken on sending, its time
  -- noted, and freed by the answer that echoes its id. Slots grow to the most requests
  -- ever outstanding at once.
  local slot_requests, slot_sent_us, free_slots = {}, {}, {}

  function request()
    local slot = table.remove(free_slots)
    if slot == nil then
      slot = #slot_requests + 1
      slot_requests[slot] = wrk.format(nil, nil, {["Content-Type"] = content_type, ["X-Request-ID"] = "s" .. slot}, body)
    end
    slot_sent_us[slot] = now_us()
    return slot_requests[slot]
  end

  function response(status, headers, answer)
    local id = headers["X-Request-ID"] or headers["x-request-id"] or ""
    local slot = id:sub(1, 1) == "s" and tonumber(id:sub(2)) or nil
    if slot == nil or slot_sent_us[slot] == nil then
      return
    end
    local key = tostring(status)
    statuses[key] = (statuses[key] or 0) + 1
    if status >= 200 and status < 300 then
      latencies_us[#latencies_us + 1] = now_us() - slot_sent_us[slot]
    end
    slot_sent_us[slot] = nil
    free_slots[#free_slots + 1] = slot
  end
end

local function percentile(sorted, p)
  if #sorted == 0 then
    return -1
  end
  return sorted[math.max(1, math.ceil(#sorted * p / 100))]
end

function done(summary, latency, requests)
  local e = summary.errors
  local extra = ""
  if track then
    local ok, counts = {}, {}
    for _, thread in ipairs(all_threads) do
      for _, value in ipairs(thread:get("latencies_us")) do
        ok[#ok + 1] = value
      end
      for status, count in pairs(thread:get("statuses")) do
        counts[status] = (counts[status] or 0) + count
      end
    end
    table.sort(ok)
    local parts = {}
    for status, count in pairs(counts) do
      parts[#parts + 1] = string.format('"%s": %d', status, count)
    end
    extra = string.format(', "ok_p50_us": %d, "ok_p99_us": %d, "statuses": {%s}',
      percentile(ok, 50), percentile(ok, 99), table.concat(parts, ", "))
  end
  io.write(string.format('BENCH {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
    .. '"errors_status": %d, "errors_socket": %d%s}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout, extra))
end
