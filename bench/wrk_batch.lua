-- wrk script for bench/hot_wallet.py's batch-endpoint run. Environment:
--   WALLETS_FILE   one wallet id per line; each operation picks one at random
--   BATCH_SIZE     operations per request (1,000 by default)
-- Every request is a POST /api/v1/operations/batch of alternating DEPOSIT and WITHDRAW of
-- "1.00" on random wallets. Bodies are built at start-up (a few per thread, cycled): building
-- 1,000 items per request would cost the generator CPU the server needs. Each response's
-- applied operations are counted (one `{"status":200,` per applied item); at this request
-- rate (tens per second) a response callback costs nothing that matters. One JSON line is
-- printed at the end, as bench/wrk.lua does.

local wallets = {}
for line in io.lines(os.getenv("WALLETS_FILE")) do
    wallets[#wallets + 1] = line
end
local size = tonumber(os.getenv("BATCH_SIZE") or "1000")
local headers = { ["Content-Type"] = "application/json" }
local threads = {}

sent = 0
applied = 0

function setup(thread)
    thread:set("id", #threads + 1)
    table.insert(threads, thread)
end

local requests = {}

function init(args)
    math.randomseed(os.time() * 1000 + id)
    for n = 1, 8 do
        local items = {}
        for i = 1, size do
            local kind = (i % 2 == 0) and "DEPOSIT" or "WITHDRAW"
            items[i] = '{"wallet_uuid":"' .. wallets[math.random(#wallets)]
                .. '","operation":"' .. kind .. '","amount":"1.00"}'
        end
        local body = '{"operations":[' .. table.concat(items, ",") .. ']}'
        requests[n] = wrk.format("POST", "/api/v1/operations/batch", headers, body)
    end
end

function request()
    sent = sent + 1
    return requests[sent % #requests + 1]
end

function response(status, headers, body)
    if status == 200 then
        local _, count = string.gsub(body, '{"status":200,', "")
        applied = applied + count
    end
end

function done(summary, latency, requests)
    local total_sent, total_applied = 0, 0
    for _, thread in ipairs(threads) do
        total_sent = total_sent + thread:get("sent")
        total_applied = total_applied + thread:get("applied")
    end
    local errors = summary.errors
    io.write(string.format(
        'BENCH_JSON {"duration_us":%d,"responses":%d,"sent":%d,"applied":%d,"not_2xx_3xx":%d,'
            .. '"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},'
            .. '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
        summary.duration, summary.requests, total_sent, total_applied, errors.status,
        errors.connect, errors.read, errors.write, errors.timeout,
        latency:percentile(50), latency:percentile(90), latency:percentile(99),
        latency.max, latency.mean
    ))
end
