-- wrk -s put.lua URL -- TOKEN SIZE: every request PUTs SIZE bytes under a new id
-- TOKEN-<thread>-<counter> (the archive is write-once, so an id is never reused).
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")

local next_thread = 0
function setup(thread)
   thread:set("tid", next_thread)
   next_thread = next_thread + 1
end

function init(args)
   token = args[1]
   body = string.rep("x", tonumber(args[2]))
   counter = 0
end

function request()
   counter = counter + 1
   return wrk.format("PUT", "/" .. token .. "-" .. tid .. "-" .. counter, {}, body)
end

function done(summary, latency, requests)
   report(summary, latency)
end
