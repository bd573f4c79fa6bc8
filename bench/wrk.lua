-- wrk script for the benchmark: POST /embed with STS-B sentences, `batch` per request.
--   wrk -t1 -c32 -d5s -s bench/wrk.lua http://127.0.0.1:8000 -- sentences.txt 1
-- (sentences.txt: one sentence per line). Prints one JSON line when done.
-- Optional 3rd and 4th arguments: a path and a model name, for an OpenAI-style embeddings route
-- ({"input": ..., "model": ...}); used to drive other servers the same way.
local sentences, batch, i, path, model = {}, 1, 0, "/embed", nil

local function json_string(s)
  return '"' .. s:gsub('\\', '\\\\'):gsub('"', '\\"'):gsub('%c', ' ') .. '"'
end

init = function(args)
  for line in io.lines(args[1]) do
    if #line > 0 then table.insert(sentences, json_string(line)) end
  end
  batch = tonumber(args[2] or "1")
  path = args[3] or path
  model = args[4]
end

request = function()
  local body
  if batch == 1 then
    body = '{"inputs": ' .. sentences[i % #sentences + 1] .. '}'
    i = i + 1
  else
    local items = {}
    for k = 1, batch do
      items[k] = sentences[(i + k) % #sentences + 1]
    end
    i = i + batch
    body = '{"inputs": [' .. table.concat(items, ", ") .. ']}'
  end
  if model then  -- the OpenAI shape: same texts, other field names
    body = body:gsub('^{"inputs": ', '{"model": "' .. model .. '", "input": ')
  end
  return wrk.format("POST", path, {["Content-Type"] = "application/json"}, body)
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "wall_s": %.4f, "p50_ms": %.3f, "p95_ms": %.3f, "p99_ms": %.3f, ' ..
    '"non_2xx": %d, "transport_errors": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, e.status, e.connect + e.read + e.write + e.timeout))
end
