-- moonsocket live dashboard (callback style, as in WebSocketServer).
--
--   moonsocket serve examples/dashboard/server.lua --static examples/dashboard/public
--
-- Every second the server makes up one sample of three series (CPU load in %, requests per
-- second, temperature in °C: random walks, as a real feed would read them from somewhere) and
-- publishes it to the topic "metrics", which every page subscribes to on connect. A page that
-- connects gets the recent history at once, so its chart is never empty.
--
-- Protocol (server → client, JSON text messages):
--   {type="history", interval=ms, samples={sample, ...}}   once, on connect (oldest first)
--   {type="sample", sample=sample}                          every INTERVAL_MS
--   sample = {seq=n, time=seconds since the epoch, cpu=%, rps=n, temp=°C}
-- Clients send nothing (anything they send is ignored).
local cjson = require "cjson"
local moonsocket = require "moonsocket"

local INTERVAL_MS = 1000  -- one sample per second
local HISTORY = 60        -- samples kept, and replayed to a newcomer

local history = {}
local seq = 0
local cpu, rps, temp = 35, 120, 48

local function clamp(x, lo, hi) return math.max(lo, math.min(hi, x)) end
local function round(x, digits)
  local m = 10 ^ (digits or 0)
  return math.floor(x * m + 0.5) / m
end

-- The next sample: each series wanders randomly around its usual level; requests follow the
-- CPU load, and the temperature follows it slowly.
local function next_sample(time)
  cpu = clamp(cpu + (40 - cpu) * 0.15 + (math.random() - 0.5) * 18, 2, 99)
  rps = clamp(rps + (40 + cpu * 2 - rps) * 0.3 + (math.random() - 0.5) * 30, 0, 1000)
  temp = clamp(temp + (35 + cpu * 0.35 - temp) * 0.1 + (math.random() - 0.5) * 0.8, 20, 95)
  seq = seq + 1
  local sample = { seq = seq, time = round(time, 3), cpu = round(cpu, 1), rps = math.floor(rps), temp = round(temp, 1) }
  history[#history + 1] = sample
  if #history > HISTORY then table.remove(history, 1) end
  return sample
end

-- Start with a full history, as if the feed had been running for a minute already.
do
  local now = moonsocket.now()
  for i = HISTORY - 1, 0, -1 do next_sample(now - i * INTERVAL_MS / 1000) end
end

_setInterval(INTERVAL_MS, function()
  local sample = next_sample(moonsocket.now())
  -- A publish is framed once for every subscriber; it returns how many received it.
  _publish("metrics", cjson.encode({ type = "sample", sample = sample }))
end)

function on_connect(clientId)
  _send(clientId, cjson.encode({ type = "history", interval = INTERVAL_MS, samples = history }))
  _subscribe(clientId, "metrics")
end

function main(clientId, message)
  -- A read-only feed: nothing to do with what clients send.
end
