-- bench/lib/post.lua: wrk script for bench/enqueue. Every request is POST /v1/messages with
-- one recipient, a subject and about BYTES (env, default 2048) bytes of text, authorised by the
-- bearer token in MT_TOKEN (env). The body is the same each time; no Idempotency-Key, so each
-- 202 is a new message stored durably.
local bytes = tonumber(os.getenv("BYTES") or "2048")
local line = "The quick brown fox jumps over the lazy dog, message body for the outbox bench.\\n"
local text = string.rep(line, math.floor(bytes / #line) + 1):sub(1, bytes)
wrk.method = "POST"
wrk.path = "/v1/messages"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("MT_TOKEN")
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"to":["rcpt@bench.example"],"subject":"bench enqueue","text":"' .. text .. '"}'
