-- Licensed under the Apache License, Version 2.0 (see LICENSE).
--
-- wrk script of bench/run. Environment:
--   MXF_REQS        file of prepared requests, one per line:
--                   METHOD <TAB> PATH <TAB> AUTHORIZATION <TAB> BODY
--                   (AUTHORIZATION and BODY may be empty)
--   MXF_STOP_AFTER  if set and > 0: each thread stops after its share of
--                   this many responses and creates the file
--                   MXF_DONE_PREFIX<thread number>; bench.py then ends wrk
--                   with SIGINT (wrk itself always runs for its -d)
-- Each thread cycles through all requests from its own starting offset, so
-- the connections send many different requests. done() prints one line
-- "MXFJSON {...}" with the counts and the latency percentiles.

local reqs = {}
local pos = 0
local stop_after = tonumber(os.getenv("MXF_STOP_AFTER") or "0") or 0
local responses = 0
local nthreads = 0
local threads = {}

function setup(thread)
   thread:set("tid", nthreads)
   nthreads = nthreads + 1
   table.insert(threads, thread)
end

function init(args)
   local path = os.getenv("MXF_REQS")
   for line in io.lines(path) do
      local m, p, a, b = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
      if m then
         local h = {}
         if a ~= "" then h["Authorization"] = a end
         if b ~= "" then
            h["Content-Type"] = "application/json"
         else
            b = nil
         end
         reqs[#reqs + 1] = wrk.format(m, p, h, b)
      end
   end
   if #reqs == 0 then
      error("no requests in " .. tostring(path))
   end
   -- Spread the threads over the list.
   pos = ((tid or 0) * 7919) % #reqs
   if stop_after > 0 then
      local n = tonumber(os.getenv("MXF_THREADS") or "1") or 1
      stop_after = math.ceil(stop_after / n)
   end
end

function request()
   pos = pos + 1
   if pos > #reqs then pos = 1 end
   return reqs[pos]
end

if stop_after > 0 then
   function response(status, headers, body)
      responses = responses + 1
      if responses == stop_after then
         local f = io.open(os.getenv("MXF_DONE_PREFIX") .. tostring(tid), "w")
         if f then f:close() end
         wrk.thread:stop()
      end
   end
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'MXFJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"min":%d,"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d}}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.min, latency.mean, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency:percentile(99.9), latency.max))
end
