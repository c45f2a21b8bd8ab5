-- Runs main(clientId, message, is_binary) for several messages with one entry from the host
-- (callback-style.ts batches the messages of one socket read). Each message gets a CPU budget
-- of its own: the engine restarts the budget when epoch[1] changes.
--
-- Called as a chunk with the engine's budget epoch table. Returns dispatch and progress.
local epoch = ...

-- Position in the current batch of the message being handled (1-based), 0 when idle: after
-- an error the host asks which message failed.
local at = 0

--- dispatch(main, id1, message1, binary1, id2, message2, binary2, …)
local function dispatch(main, ...)
  local n = select("#", ...)
  local args = { ... }
  local e = epoch[1]
  for i = 1, n, 3 do
    at = (i + 2) // 3
    e = e + 1
    epoch[1] = e
    main(args[i], args[i + 1], args[i + 2])
  end
  at = 0
end

local function progress()
  local failed = at
  at = 0
  return failed
end

return dispatch, progress
