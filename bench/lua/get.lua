-- wrk -s get.lua URL -- NAME COUNT: GET NAME-0 .. NAME-(COUNT-1) in turn
-- (each thread starts at a different offset).
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")

local next_thread = 0
function setup(thread)
   thread:set("tid", next_thread)
   next_thread = next_thread + 1
end

function init(args)
   name = args[1]
   count = tonumber(args[2])
   i = (tid or 0) * 7
end

function request()
   i = (i + 1) % count
   return wrk.format("GET", "/" .. name .. "-" .. i)
end

function done(summary, latency, requests)
   report(summary, latency)
end
