-- Loaded by tests/bench/measure.py into every measured wrk run: prints the
-- run's figures on one line in exact units (microseconds, counts), so that
-- nothing depends on wrk's rounded, unit-suffixed human summary. Defines only
-- done(), which keeps wrk on its fast path (no Lua call per request).
done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    "BENCH requests=%.0f duration_us=%.0f p50_us=%.0f p99_us=%.0f " ..
    "connect=%.0f read=%.0f write=%.0f timeout=%.0f status=%.0f\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    errors.connect, errors.read, errors.write, errors.timeout, errors.status))
end
