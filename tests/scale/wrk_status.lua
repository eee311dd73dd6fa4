-- tests/scale: every request is a GET of a Vault path (answered 307), and
-- the run's figures are printed on one line: requests, socket errors, and
-- responses that were not 307 (counted per thread, summed in done()).
local threads = {}

setup = function(thread)
  table.insert(threads, thread)
end

init = function()
  other = 0
end

response = function(status, headers, body)
  if status ~= 307 then
    other = other + 1
  end
end

done = function(summary, latency, requests)
  local not307 = 0
  for _, t in ipairs(threads) do
    not307 = not307 + t:get("other")
  end
  local e = summary.errors
  io.write(string.format(
    "WRK requests=%d connect=%d read=%d write=%d timeout=%d not307=%d\n",
    summary.requests, e.connect, e.read, e.write, e.timeout, not307))
end
