-- wrk script for bench/hot_wallet.py. Environment:
--   BENCH_MODE     "operations" (POST alternating DEPOSIT/WITHDRAW), "transfers" (POST a
--                  transfer of 1.00) or "get" (GET BENCH_PATH)
--   WALLETS_FILE   one wallet id per line; each request picks one (the only one, for a hot wallet)
--   TRANSFER_TO    in "transfers" mode, the destination of every transfer (from a random
--                  wallet of the file); unset, a random other wallet of the file
--   BENCH_PATH     the path to GET in "get" mode
--   BENCH_KEYS     when set, a prefix: every operation carries a new Idempotency-Key
--   BENCH_API_KEY  when set, every request carries it (Authorization: Bearer)
--   BENCH_METADATA when set, every operation carries a 3-key metadata object
-- It counts the requests written, so that the harness can reconcile what the clients saw
-- with what the ledger holds, and prints one JSON line at the end. No response() callback:
-- handing every response to Lua would cost the generator CPU the server needs; wrk itself
-- counts the responses and, among them, those with a status other than 2xx or 3xx.

local mode = os.getenv("BENCH_MODE") or "operations"
local path = os.getenv("BENCH_PATH") or "/health/live"
local wallets = {}
local threads = {}

local transfer_to = os.getenv("TRANSFER_TO")

if mode ~= "get" then
    for line in io.lines(os.getenv("WALLETS_FILE")) do
        wallets[#wallets + 1] = line
    end
end

local key_prefix = os.getenv("BENCH_KEYS")
local headers = { ["Content-Type"] = "application/json" }
local api_key = os.getenv("BENCH_API_KEY")
if api_key then
    headers["Authorization"] = "Bearer " .. api_key
end
local bodies = {
    '{"operation":"DEPOSIT","amount":"1.00"}',
    '{"operation":"WITHDRAW","amount":"1.00"}',
}
if os.getenv("BENCH_METADATA") then
    local metadata = ',"metadata":{"order_id":"ord_1042","channel":"web","customer":"cus_77"}}'
    for index, body in ipairs(bodies) do
        bodies[index] = body:sub(1, -2) .. metadata
    end
end

-- Per-thread state (each wrk thread has its own Lua state).
sent = 0

function setup(thread)
    thread:set("id", #threads + 1)
    table.insert(threads, thread)
end

-- Requests that never change (GET, or one wallet without keys) are formatted once:
-- wrk.format per request costs the generator CPU that the server needs.
local prebuilt = nil

function init(args)
    math.randomseed(os.time() * 1000 + id)
    if mode == "get" then
        prebuilt = { wrk.format("GET", path) }
    elseif #wallets == 1 and not key_prefix then
        local target = "/api/v1/wallets/" .. wallets[1] .. "/operation"
        prebuilt = {
            wrk.format("POST", target, headers, bodies[1]),
            wrk.format("POST", target, headers, bodies[2]),
        }
    end
end

local function transfer()
    local source = wallets[math.random(#wallets)]
    local destination = transfer_to
    while destination == nil or destination == source do
        destination = wallets[math.random(#wallets)]
    end
    return wrk.format("POST", "/api/v1/transfers", headers, string.format(
        '{"from_wallet_uuid":"%s","to_wallet_uuid":"%s","amount":"1.00"}', source, destination
    ))
end

function request()
    sent = sent + 1
    if prebuilt then
        return prebuilt[sent % #prebuilt + 1]
    end
    if mode == "transfers" then
        return transfer()
    end
    local wallet = wallets[1]
    if #wallets > 1 then
        wallet = wallets[math.random(#wallets)]
    end
    if key_prefix then
        headers["Idempotency-Key"] = key_prefix .. "-" .. id .. "-" .. sent
    end
    return wrk.format(
        "POST", "/api/v1/wallets/" .. wallet .. "/operation", headers, bodies[sent % 2 + 1]
    )
end

function done(summary, latency, requests)
    local total_sent = 0
    for _, thread in ipairs(threads) do
        total_sent = total_sent + thread:get("sent")
    end
    local errors = summary.errors
    io.write(string.format(
        'BENCH_JSON {"duration_us":%d,"responses":%d,"sent":%d,"not_2xx_3xx":%d,'
            .. '"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},'
            .. '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
        summary.duration, summary.requests, total_sent, errors.status,
        errors.connect, errors.read, errors.write, errors.timeout,
        latency:percentile(50), latency:percentile(90), latency:percentile(99),
        latency.max, latency.mean
    ))
end
