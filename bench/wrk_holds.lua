-- wrk script for bench/hot_wallet.py's holds run. Environment:
--   WALLETS_FILE   one wallet id per line; each hold is on a random one
--   HOLD_AMOUNT    what each hold sets aside ("1.00" if unset)
-- Every connection loops: POST /api/v1/holds {"wallet_uuid","amount"}, then POST
-- /api/v1/holds/{hold_id}/capture {} (all it holds, out of the service), the id read from
-- the 201's body. wrk hands responses to the thread's Lua state without saying which
-- connection they came on: a 201 queues its hold's id, and the next request the thread
-- writes (the one wrk asks for on that connection right after the response, or one of
-- another connection's that comes first) captures the oldest queued hold; with none
-- queued, it opens a new hold. So every hold created is captured by the next request
-- written, at most one per connection is waiting at any time, and a hold's capture always
-- follows its 201. Counts, per thread: holds and captures written, holds created (201),
-- captures done (200), other answers and their first body; one JSON line at the end, as
-- bench/wrk.lua prints. The response() callback costs the generator some CPU: the id
-- must be read.

local wallets = {}
for line in io.lines(os.getenv("WALLETS_FILE")) do
    wallets[#wallets + 1] = line
end
local amount = os.getenv("HOLD_AMOUNT") or "1.00"
local headers = { ["Content-Type"] = "application/json" }
local threads = {}

-- Per-thread state (each wrk thread has its own Lua state).
sent = 0
holds_sent = 0
captures_sent = 0
created = 0
captured = 0
failed = 0
unparsed = 0
first_failure = ""

local queued = {}
local head, tail = 1, 0

function setup(thread)
    thread:set("id", #threads + 1)
    table.insert(threads, thread)
end

function init(args)
    math.randomseed(os.time() * 1000 + id)
end

function request()
    sent = sent + 1
    if head <= tail then
        local hold = queued[head]
        queued[head] = nil
        head = head + 1
        captures_sent = captures_sent + 1
        return wrk.format("POST", "/api/v1/holds/" .. hold .. "/capture", headers, "{}")
    end
    holds_sent = holds_sent + 1
    return wrk.format("POST", "/api/v1/holds", headers, string.format(
        '{"wallet_uuid":"%s","amount":"%s"}', wallets[math.random(#wallets)], amount
    ))
end

function response(status, headers, body)
    if status == 201 then
        local hold = string.match(body, '"hold_id"%s*:%s*"([%x%-]+)"')
        if hold then
            created = created + 1
            tail = tail + 1
            queued[tail] = hold
        else
            unparsed = unparsed + 1
        end
    elseif status == 200 then
        captured = captured + 1
    else
        failed = failed + 1
        if first_failure == "" then
            first_failure = status .. " " .. string.sub(body or "", 1, 300)
        end
    end
end

local function json_string(text)
    return '"' .. string.gsub(text, '[%c"\\]', function(c)
        return string.format("\\u%04x", string.byte(c))
    end) .. '"'
end

function done(summary, latency, requests)
    local totals = {
        sent = 0, holds_sent = 0, captures_sent = 0, created = 0, captured = 0, failed = 0,
        unparsed = 0,
    }
    local first = ""
    for _, thread in ipairs(threads) do
        for name, _ in pairs(totals) do
            totals[name] = totals[name] + thread:get(name)
        end
        if first == "" then
            first = thread:get("first_failure")
        end
    end
    local errors = summary.errors
    io.write(string.format(
        'BENCH_JSON {"duration_us":%d,"responses":%d,"sent":%d,"holds_sent":%d,'
            .. '"captures_sent":%d,"created":%d,"captured":%d,"failed":%d,"unparsed":%d,'
            .. '"first_failure":%s,"not_2xx_3xx":%d,'
            .. '"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},'
            .. '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
        summary.duration, summary.requests, totals.sent, totals.holds_sent,
        totals.captures_sent, totals.created, totals.captured, totals.failed, totals.unparsed,
        json_string(first), errors.status,
        errors.connect, errors.read, errors.write, errors.timeout,
        latency:percentile(50), latency:percentile(90), latency:percentile(99),
        latency.max, latency.mean
    ))
end
