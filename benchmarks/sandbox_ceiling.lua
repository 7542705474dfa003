-- wrk script for the sandbox ceiling: POST one JSON send request with N recipients.
-- usage: wrk -s benchmarks/sandbox_ceiling.lua http://127.0.0.1:8787/v1/HXSANDBOX00001IN/sms -- N
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["api-key"] = "sandbox-key"

function init(args)
  local n = tonumber(args[1] or "100")
  local to = {}
  for i = 1, n do
    to[i] = string.format("+9198%08d", i)
  end
  wrk.body = '{"to":"' .. table.concat(to, ",") ..
    '","body":"Your order 12345 has shipped","type":"TXN","sender":"KLRHXA",' ..
    '"template_id":"1107161234567890123"}'
end

local statuses = {}
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  if summary.errors.status > 0 then
    io.write(string.format("non-2xx responses: %d\n", summary.errors.status))
  end
end
