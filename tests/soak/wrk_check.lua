-- tests/soak: keep-alive load that checks every answer. Arguments (after
-- "--"): the Location prefixes of the fake cluster's nodes, e.g.
-- "http://vault-a:8200/". Prints one line: requests, socket errors,
-- answers that were not 307, and 307s whose Location named no node.
local threads = {}

setup = function(thread)
  table.insert(threads, thread)
end

init = function(args)
  prefixes = args
  other, badloc = 0, 0
end

response = function(status, headers, body)
  if status ~= 307 then
    other = other + 1
    return
  end
  local location = headers["Location"] or ""
  for _, prefix in ipairs(prefixes) do
    if location:sub(1, #prefix) == prefix then
      return
    end
  end
  badloc = badloc + 1
end

done = function(summary, latency, requests)
  local not307, bad = 0, 0
  for _, t in ipairs(threads) do
    not307 = not307 + t:get("other")
    bad = bad + t:get("badloc")
  end
  local e = summary.errors
  io.write(string.format(
    "WRK requests=%d connect=%d read=%d write=%d timeout=%d status=%d not307=%d badloc=%d p99_ms=%.1f\n",
    summary.requests, e.connect, e.read, e.write, e.timeout, e.status, not307, bad,
    latency:percentile(99) / 1000))
end
